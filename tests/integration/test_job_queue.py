"""The job queue on real Huey: SQLite storage with the SQLite store (embedded default) and
Redis storage with the PostgreSQL store (scale-out). Consumers are real Huey worker threads;
the handlers here are small functions standing in for the ingest task."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from core import jobs
from core.db import Store, make_engine
from core.errors import SourceUnavailableError
from core.job_specs import SourcesSpec
from core.queue import JobConsumer, JobQueue, JobRun
from core.settings import JobsSettings, Settings
from tests.support.stores import store_with_indexes

REDIS = "redis://127.0.0.1:6379/0"


@pytest.fixture(params=["sqlite", "redis"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    queue = request.param
    cfg = JobsSettings(
        queue=queue,
        redis_url=REDIS if queue == "redis" else None,
        queue_name=f"ondata-test-{uuid.uuid4().hex[:8]}",
        heartbeat_s=0.1,
        stale_after_s=0.6,
        poll_s=0.05,
        busy_retry_s=0.1,
    )
    db = (
        request.getfixturevalue("postgres_url")
        if queue == "redis"
        else f"sqlite:///{tmp_path / 'ondata.db'}"
    )
    settings = Settings(data_dir=tmp_path / "data", database_url=db, jobs=cfg)
    yield settings
    if queue == "redis":
        JobQueue(settings, Store(make_engine(db))).huey.storage.flush_all()


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    with store_with_indexes(settings.resolved_database_url) as store:
        yield store


def _wait(store: Store, job_id: str, statuses: frozenset[str] = jobs.TERMINAL) -> Any:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job = jobs.get_job(store, job_id)
        if job.status in statuses:
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} still {jobs.get_job(store, job_id).status}")


def _job(store: Store, index: str = "a") -> str:
    return jobs.create_job(store, index_name=index, spec=SourcesSpec()).id


def _consumer(
    settings: Settings, store: Store, handler: Callable[[JobRun, Any], None], workers: int = 1
) -> tuple[JobQueue, JobConsumer]:
    queue = JobQueue(settings, store, handler=handler)
    consumer = JobConsumer(queue, workers=workers, context="ctx")
    consumer.start()
    return queue, consumer


def test_queue_runs_jobs_one_writer_per_index(settings: Settings, store: Store) -> None:
    seen: list[tuple[str, str | None, Any]] = []

    def handler(run: JobRun, context: Any) -> None:
        writer = jobs.index_writer(store, run.index_name, stale_after_s=60)
        seen.append((run.id, writer, context))
        run.add_items([(f"{run.id}-doc", "src")])
        run.record(f"{run.id}-doc", source="src", status=jobs.ITEM_INDEXED, chunks=2)
        time.sleep(0.2)  # overlap the jobs, so a second writer of an index would show

    queue, consumer = _consumer(settings, store, handler, workers=3)
    try:
        ids = [_job(store, index) for index in ("a", "a", "a", "b")]
        for job_id in ids:
            queue.enqueue(job_id)
        done = [_wait(store, job_id) for job_id in ids]
    finally:
        consumer.stop()
    assert [j.status for j in done] == [jobs.SUCCEEDED] * 4
    assert sorted(job_id for job_id, _, _ in seen) == sorted(ids)
    assert all(writer == job_id and ctx == "ctx" for job_id, writer, ctx in seen)
    assert jobs.job_progress(store, ids[0]).chunks_written == 2


def test_queue_requeues_a_dead_workers_job(settings: Settings, store: Store) -> None:
    job_id = _job(store)
    # a worker took the job (its queue message is gone) and died without a heartbeat
    assert isinstance(jobs.claim(store, job_id, worker="dead", stale_after_s=60), jobs.Claim)
    attempts: list[int] = []

    def handler(run: JobRun, _: Any) -> None:
        attempts.append(run.job.attempts)

    _, consumer = _consumer(settings, store, handler)
    try:
        job = _wait(store, job_id)
    finally:
        consumer.stop()
    assert (job.status, attempts) == (jobs.SUCCEEDED, [2])


def test_queue_shutdown_hands_the_job_to_the_next_consumer(
    settings: Settings, store: Store
) -> None:
    started = threading.Event()

    def stoppable(run: JobRun, _: Any) -> None:
        run.add_items([("d1", "s"), ("d2", "s")])
        run.record("d1", source="s", status=jobs.ITEM_INDEXED)
        started.set()
        while not run.should_stop():
            time.sleep(0.02)

    queue, consumer = _consumer(settings, store, stoppable)
    job_id = _job(store)
    queue.enqueue(job_id)
    assert started.wait(30)
    consumer.stop()
    job = jobs.get_job(store, job_id)
    assert (job.status, job.attempts) == (jobs.QUEUED, 0)
    resumed: list[dict[str, str]] = []

    def finishing(run: JobRun, _: Any) -> None:
        statuses = run.add_items([("d1", "s"), ("d2", "s")])
        resumed.append(statuses)
        run.record("d2", source="s", status=jobs.ITEM_INDEXED)

    _, consumer = _consumer(settings, store, finishing)
    try:
        job = _wait(store, job_id)
    finally:
        consumer.stop()
    assert job.status == jobs.SUCCEEDED
    assert resumed == [{"d1": jobs.ITEM_INDEXED, "d2": jobs.ITEM_PENDING}]


def test_queue_cancel_stops_a_running_job(settings: Settings, store: Store) -> None:
    started = threading.Event()

    def slow(run: JobRun, _: Any) -> None:
        run.add_items([(f"d{n}", "s") for n in range(200)])
        started.set()
        for n in range(200):
            if run.should_stop():
                return
            run.record(f"d{n}", source="s", status=jobs.ITEM_INDEXED)
            time.sleep(0.02)

    queue, consumer = _consumer(settings, store, slow)
    try:
        job_id = _job(store)
        queue.enqueue(job_id)
        assert started.wait(30)
        jobs.request_cancel(store, job_id)
        job = _wait(store, job_id)
    finally:
        consumer.stop()
    assert job.status == jobs.CANCELLED
    assert jobs.job_progress(store, job_id).pending > 0


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (SourceUnavailableError("folder is gone"), "folder is gone"),
        (KeyError("x"), "internal error: KeyError"),
    ],
)
def test_queue_handler_errors_fail_the_job(
    settings: Settings, store: Store, error: Exception, message: str
) -> None:
    def failing(run: JobRun, _: Any) -> None:
        raise error

    queue, consumer = _consumer(settings, store, failing)
    try:
        job_id = _job(store)
        queue.enqueue(job_id)
        job = _wait(store, job_id)
    finally:
        consumer.stop()
    assert (job.status, job.error) == (jobs.FAILED, message)
    assert jobs.index_writer(store, "a", stale_after_s=60) is None
