"""Scale-out recovery: a real `ondata worker` (Huey on Redis, PostgreSQL store) is SIGKILLed
in the middle of a folder job; a second worker resumes it, and the index ends with exactly the
chunks the documents make: none duplicated, none lost.

The index is a Qdrant Edge shard, which one process at a time may open: here the workers are
its only writers, one after the other, and the test reads it once the last worker has stopped.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core import jobs
from core.db import IndexRecord, Store, make_engine
from core.job_specs import FolderSource, SourcesSpec
from core.queue import JobQueue
from core.settings import JobsSettings, Settings
from ingest.parsers import doc_id_for
from retrieval.index import open_index

REDIS = "redis://127.0.0.1:6379/0"
DOCUMENTS = 12
CHUNK_SIZE, CHUNK_OVERLAP = 48, 8
TOPICS = ("hotel limits", "train classes", "badge rules", "cafeteria hours", "expense claims")


def _text(n: int) -> str:
    topic = TOPICS[n % len(TOPICS)]
    lines = [
        f"Policy {n} about {topic}, paragraph {p}: staff must follow rule {n}.{p}."
        for p in range(12)
    ]
    return f"Policy {n}\n\n" + "\n".join(lines) + "\n"


@pytest.fixture
def setup(tmp_path: Path, postgres_url: str) -> Iterator[tuple[Settings, dict[str, str]]]:
    folder = tmp_path / "shared" / "policies"
    folder.mkdir(parents=True)
    for n in range(DOCUMENTS):
        (folder / f"policy-{n:02d}.txt").write_text(_text(n), encoding="utf-8")
    cfg = JobsSettings(
        queue="redis",
        redis_url=REDIS,
        queue_name=f"ondata-crash-{uuid.uuid4().hex[:8]}",
        heartbeat_s=0.3,
        stale_after_s=2.0,
        poll_s=0.1,
        batch_documents=1,
        source_roots=(tmp_path / "shared",),
    )
    settings = Settings(data_dir=tmp_path / "data", database_url=postgres_url, jobs=cfg)
    env = {
        **os.environ,
        "ONDATA_DATA_DIR": str(settings.data_dir),
        "ONDATA_DATABASE_URL": postgres_url,
        "ONDATA_JOBS__QUEUE": "redis",
        "ONDATA_JOBS__REDIS_URL": REDIS,
        "ONDATA_JOBS__QUEUE_NAME": cfg.queue_name,
        "ONDATA_JOBS__HEARTBEAT_S": "0.3",
        "ONDATA_JOBS__STALE_AFTER_S": "2",
        "ONDATA_JOBS__POLL_S": "0.1",
        "ONDATA_JOBS__BATCH_DOCUMENTS": "1",
        "ONDATA_JOBS__SOURCE_ROOTS": json.dumps([str(tmp_path / "shared")]),
    }
    yield settings, env
    store = Store(make_engine(postgres_url))
    JobQueue(settings, store).huey.storage.flush_all()
    store.engine.dispose()


def _start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    script = Path(sys.executable).parent / "ondata"
    command = (
        [str(script)]
        if script.exists()
        else [sys.executable, "-c", "from core.cli import main; main()"]
    )
    with log.open("ab") as out:
        return subprocess.Popen(
            [*command, "worker"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the kill takes its children too
        )


def _wait(store: Store, job_id: str, done: Any, worker: subprocess.Popen[bytes], log: Path) -> Any:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        job = jobs.get_job(store, job_id)
        progress = jobs.job_progress(store, job_id)
        if done(job, progress):
            return job, progress
        if worker.poll() is not None:
            raise AssertionError(f"worker exited {worker.returncode}:\n{log.read_text()[-3000:]}")
        time.sleep(0.05)
    raise AssertionError(
        f"job {job_id}: {jobs.get_job(store, job_id).status}\n{log.read_text()[-3000:]}"
    )


def test_worker_killed_mid_job_is_resumed_without_duplicates(
    setup: tuple[Settings, dict[str, str]], tmp_path: Path
) -> None:
    settings, env = setup
    store = Store(make_engine(settings.resolved_database_url))
    store.save_index(
        IndexRecord(
            name="crash",
            embedding_model="all-MiniLM-L6-v2",
            dimension=384,
            chunk_size=CHUNK_SIZE,
            chunk_overlap=CHUNK_OVERLAP,
        )
    )
    folder = tmp_path / "shared" / "policies"
    spec = SourcesSpec(sources=[FolderSource(path=str(folder))])
    job = jobs.create_job(store, index_name="crash", spec=spec)
    JobQueue(settings, store).enqueue(job.id)
    log = tmp_path / "workers.log"

    first = _start_worker(env, log)
    _, progress = _wait(store, job.id, lambda j, p: p.processed >= 2, first, log)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    killed = jobs.get_job(store, job.id)
    assert killed.status == jobs.RUNNING  # nobody told the store: the worker just vanished
    assert jobs.job_progress(store, job.id).pending > 0

    second = _start_worker(env, log)
    try:
        done, progress = _wait(store, job.id, lambda j, p: j.status in jobs.TERMINAL, second, log)
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=120) == 0, log.read_text()[-3000:]
    assert (done.status, done.attempts) == (jobs.SUCCEEDED, 2), done.error
    assert progress.failed == 0
    assert progress.indexed + progress.unchanged == DOCUMENTS

    # every document is registered once, whole: its chunk count is what its parse makes
    records = {r.doc_id: r for r in store.list_documents("crash")}
    assert sorted(records) == sorted(doc_id_for(str(p)) for p in folder.iterdir())
    assert all(r.status == "indexed" and r.chunk_count > 1 for r in records.values())
    expected = {doc_id: r.chunk_count for doc_id, r in records.items()}
    index = open_index(settings, "crash", dimension=384)
    try:
        counted = {doc_id: index.count(doc_id=doc_id) for doc_id in expected}
        total = index.count()
    finally:
        index.close()
        store.engine.dispose()
    assert counted == expected  # none duplicated, none lost, no leftover of the killed attempt
    assert total == sum(expected.values())  # and no chunk of any other document
