"""Ingestion job records on SQLite and PostgreSQL: claims, index write leases, heartbeats,
reaping dead workers, outcomes, cancellation and refresh scheduling (core.jobs)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from core import jobs
from core.db import Store
from core.errors import IngestionJobNotFoundError, JobNotCancellableError
from core.job_specs import SourcesSpec
from tests.support.stores import store_with_indexes

STALE = 60.0


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    with store_with_indexes(store_url) as store:
        yield store


def _job(store: Store, index: str = "a", **kwargs: object) -> str:
    return jobs.create_job(store, index_name=index, spec=SourcesSpec(), **kwargs).id  # type: ignore[arg-type]


def _claim(store: Store, job_id: str, worker: str = "w1", stale: float = STALE) -> jobs.Claim:
    claim = jobs.claim(store, job_id, worker=worker, stale_after_s=stale)
    assert isinstance(claim, jobs.Claim), claim
    return claim


def test_jobs_claim_runs_a_job_once(store: Store) -> None:
    job_id = _job(store)
    claim = _claim(store, job_id)
    assert (claim.job.status, claim.job.attempts) == (jobs.RUNNING, 1)
    assert jobs.claim(store, job_id, worker="w2", stale_after_s=STALE) is None
    assert jobs.heartbeat(store, job_id, worker="w1")
    assert not jobs.heartbeat(store, job_id, worker="w2")


def test_jobs_one_writer_per_index(store: Store) -> None:
    first, second, other = _job(store, "a"), _job(store, "a"), _job(store, "b")
    _claim(store, first)
    assert jobs.claim(store, second, worker="w2", stale_after_s=STALE) is False
    _claim(store, other, worker="w3")  # another index is free
    assert jobs.index_writer(store, "a", stale_after_s=STALE) == first
    jobs.finish(store, first, worker="w1")
    assert jobs.index_writer(store, "a", stale_after_s=STALE) is None
    _claim(store, second, worker="w2")


def test_jobs_dead_worker_is_reaped_and_its_job_resumed(store: Store) -> None:
    job_id = _job(store)
    _claim(store, job_id, worker="dead")
    jobs.add_items(store, job_id, [("d1", "s1"), ("d2", "s2")])
    jobs.record_item(store, job_id, "d1", source="s1", status=jobs.ITEM_INDEXED, chunk_count=3)
    assert jobs.reap_stale(store, stale_after_s=0, max_attempts=3) == [job_id]
    claim = _claim(store, job_id, worker="alive", stale=0)
    assert claim.job.attempts == 2
    # the dead worker's late writes are refused; finished items survive the resume
    assert jobs.finish(store, job_id, worker="dead") is None
    assert not jobs.heartbeat(store, job_id, worker="dead")
    jobs.add_items(store, job_id, [("d1", "s1"), ("d2", "s2")])
    assert jobs.item_statuses(store, job_id) == {"d1": jobs.ITEM_INDEXED, "d2": jobs.ITEM_PENDING}


def test_jobs_fail_after_max_attempts(store: Store) -> None:
    job_id = _job(store)
    _claim(store, job_id)
    assert jobs.reap_stale(store, stale_after_s=0, max_attempts=1) == []
    job = jobs.get_job(store, job_id)
    assert job.status == jobs.FAILED
    assert "stopped 1 times" in (job.error or "")
    assert jobs.index_writer(store, "a", stale_after_s=STALE) is None


@pytest.mark.parametrize(
    ("outcomes", "error", "expected"),
    [
        ([jobs.ITEM_INDEXED, jobs.ITEM_UNCHANGED], None, jobs.SUCCEEDED),
        ([jobs.ITEM_INDEXED, jobs.ITEM_FAILED], None, jobs.PARTIALLY_SUCCEEDED),
        ([jobs.ITEM_FAILED], None, jobs.FAILED),
        ([], "folder is gone", jobs.FAILED),
        ([], None, jobs.SUCCEEDED),
    ],
)
def test_jobs_finish_status_follows_the_items(
    store: Store, outcomes: list[str], error: str | None, expected: str
) -> None:
    job_id = _job(store)
    _claim(store, job_id)
    for n, outcome in enumerate(outcomes):
        jobs.record_item(
            store,
            job_id,
            f"d{n}",
            source="s",
            status=outcome,
            error="bad" if outcome == jobs.ITEM_FAILED else None,
        )
    done = jobs.finish(store, job_id, worker="w1", error=error)
    assert done is not None
    assert (done.status, done.error) == (expected, error)
    progress = jobs.job_progress(store, job_id)
    assert (progress.total, progress.pending) == (len(outcomes), 0)
    assert [e.error for e in jobs.job_errors(store, job_id)] == ["bad"] * outcomes.count(
        jobs.ITEM_FAILED
    )


def test_jobs_cancel(store: Store) -> None:
    queued, running = _job(store, "a"), _job(store, "b")
    assert jobs.request_cancel(store, queued).status == jobs.CANCELLED
    assert jobs.claim(store, queued, worker="w", stale_after_s=STALE) is None
    _claim(store, running)
    assert jobs.request_cancel(store, running).status == jobs.RUNNING
    assert not jobs.heartbeat(store, running, worker="w1")  # the runner is told to stop
    done = jobs.finish(store, running, worker="w1")
    assert done is not None
    assert done.status == jobs.CANCELLED
    one_off = _job(store, "a")
    _claim(store, one_off)
    jobs.finish(store, one_off, worker="w1")
    with pytest.raises(JobNotCancellableError):
        jobs.request_cancel(store, one_off)
    with pytest.raises(IngestionJobNotFoundError):
        jobs.request_cancel(store, "nope")


def test_jobs_refresh_schedules_the_next_run(store: Store) -> None:
    job_id = _job(store, refresh_interval_s=0)
    _claim(store, job_id)
    jobs.record_item(store, job_id, "d", source="s", status=jobs.ITEM_INDEXED)
    done = jobs.finish(store, job_id, worker="w1")
    assert done is not None
    assert done.next_run_at is not None
    assert jobs.start_due_refreshes(store) == [job_id]
    assert jobs.start_due_refreshes(store) == []  # started once, whoever asks
    job = jobs.get_job(store, job_id)
    assert (job.status, job.run, job.attempts) == (jobs.QUEUED, 2, 0)
    assert jobs.job_progress(store, job_id).total == 0
    _claim(store, job_id)
    jobs.finish(store, job_id, worker="w1")
    cancelled = jobs.request_cancel(store, job_id)
    assert (cancelled.status, cancelled.next_run_at) == (jobs.CANCELLED, None)
    assert jobs.start_due_refreshes(store) == []


def test_jobs_shutdown_requeues_without_counting_an_attempt(store: Store) -> None:
    job_id = _job(store)
    _claim(store, job_id)
    assert jobs.requeue(store, job_id, worker="w1")
    job = jobs.get_job(store, job_id)
    assert (job.status, job.attempts) == (jobs.QUEUED, 0)
    assert jobs.index_writer(store, "a", stale_after_s=STALE) is None


def test_jobs_of_a_deleted_index_fail(store: Store) -> None:
    job_id = _job(store, "b")
    store.delete_index("b")
    assert jobs.claim(store, job_id, worker="w", stale_after_s=STALE) is None
    assert jobs.get_job(store, job_id).status == jobs.FAILED
    assert jobs.delete_index_jobs(store, "b") == 1
