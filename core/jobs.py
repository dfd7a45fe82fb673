"""Ingestion jobs in the metadata store: create, claim, heartbeat, progress, cancel, finish.

The store is the truth about a job; the task queue (core.queue) only carries wake-ups. A job
is claimed atomically together with its index's write lease, so one job writes an index at a
time and a job never runs twice at once. A worker that dies stops heartbeating: after
`jobs.stale_after_s` its job is queued again (`reap_stale`) and resumes where the per-document
items say it stopped. Times are UTC.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import delete, func, or_, select, update

from core.db import IndexRecord, JobItemRecord, JobRecord, Store
from core.errors import IngestionJobNotFoundError, JobNotCancellableError
from core.job_specs import KIND_SOURCES as KIND_SOURCES
from core.job_specs import KIND_UPLOAD as KIND_UPLOAD
from core.job_specs import JobSpec, read_spec

QUEUED = "queued"
RUNNING = "running"
SUCCEEDED = "succeeded"
PARTIALLY_SUCCEEDED = "partially_succeeded"
FAILED = "failed"
CANCELLED = "cancelled"
TERMINAL = frozenset({SUCCEEDED, PARTIALLY_SUCCEEDED, FAILED, CANCELLED})
JobStatus = Literal["queued", "running", "succeeded", "partially_succeeded", "failed", "cancelled"]

ITEM_PENDING = "pending"
ITEM_INDEXED = "indexed"
ITEM_UNCHANGED = "unchanged"
ITEM_FAILED = "failed"
ITEM_DELETED = "deleted"
ITEM_STATUSES = (ITEM_PENDING, ITEM_INDEXED, ITEM_UNCHANGED, ITEM_FAILED, ITEM_DELETED)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def as_utc(value: dt.datetime | None) -> dt.datetime | None:
    """SQLite hands back naive datetimes; everything stored is UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=dt.UTC)


@dataclass(frozen=True)
class Progress:
    """Counts of the current run's documents by outcome."""

    total: int = 0
    pending: int = 0
    indexed: int = 0
    unchanged: int = 0
    failed: int = 0
    deleted: int = 0
    chunks_written: int = 0

    @property
    def processed(self) -> int:
        return self.total - self.pending


@dataclass(frozen=True)
class ItemError:
    doc_id: str
    source: str
    error: str


@dataclass(frozen=True)
class Claim:
    """A claimed job: who runs it (the token the heartbeat and finish must present)."""

    job: JobRecord
    worker: str


def create_job(
    store: Store,
    *,
    index_name: str,
    spec: JobSpec,
    refresh_interval_s: int | None = None,
    items: Sequence[tuple[str, str]] = (),
) -> JobRecord:
    """A queued job (with pending items when its documents are known up front, as for uploads)."""
    job = JobRecord(
        id=uuid.uuid4().hex,
        index_name=index_name,
        kind=spec.kind,
        status=QUEUED,
        spec=spec.model_dump(mode="json"),
        refresh_interval_s=refresh_interval_s,
        run=1,
        attempts=0,
        cancel_requested=False,
        created_at=utcnow(),
    )
    with store.session() as s:
        s.add(job)
        s.flush()
        s.add_all(_pending(job.id, items))
    return job


def job_spec(job: JobRecord) -> JobSpec:
    """What the job does (core/job_specs.py), as the API wrote it."""
    return read_spec(job.kind, job.spec)


def get_job(store: Store, job_id: str) -> JobRecord:
    with store.session() as s:
        job = s.get(JobRecord, job_id)
    if job is None:
        raise IngestionJobNotFoundError(f"no ingestion job {job_id!r}", param="job_id")
    return job


def list_jobs(
    store: Store, *, index_name: str | None = None, status: str | None = None, limit: int = 100
) -> list[JobRecord]:
    """Newest first."""
    query = select(JobRecord).order_by(JobRecord.created_at.desc()).limit(limit)
    if index_name is not None:
        query = query.where(JobRecord.index_name == index_name)
    if status is not None:
        query = query.where(JobRecord.status == status)
    with store.session() as s:
        return list(s.scalars(query))


class _Lost(Exception):
    """Another worker claimed the job between our read and our write: roll the lease back."""


def claim(store: Store, job_id: str, *, worker: str, stale_after_s: float) -> Claim | bool | None:
    """Take a queued (or abandoned) job and its index's write lease in one transaction.

    Returns the Claim; None when the job is not claimable (finished, cancelled, running
    elsewhere); False when another job holds the index's write lease (try again later).
    """
    now = utcnow()
    stale = now - dt.timedelta(seconds=stale_after_s)
    try:
        with store.session() as s:
            job = s.get(JobRecord, job_id)
            if job is None or job.cancel_requested or not _claimable(job, stale):
                return None
            if s.get(IndexRecord, job.index_name) is None:
                job.status, job.finished_at = FAILED, now
                job.error = f"index {job.index_name!r} no longer exists"
                return None
            if not _take_lease(s, job.index_name, job_id, now=now, stale=stale):
                return False
            taken = s.execute(
                update(JobRecord)
                .where(
                    JobRecord.id == job_id,
                    JobRecord.status == job.status,
                    JobRecord.attempts == job.attempts,
                )
                .values(
                    status=RUNNING,
                    worker=worker,
                    heartbeat_at=now,
                    attempts=JobRecord.attempts + 1,
                    started_at=func.coalesce(JobRecord.started_at, now),
                    finished_at=None,
                )
            )
            if taken.rowcount != 1:  # type: ignore[attr-defined]
                raise _Lost
    except _Lost:
        return None
    return Claim(get_job(store, job_id), worker)


def _take_lease(
    s: Any, index_name: str, job_id: str, *, now: dt.datetime, stale: dt.datetime
) -> bool:
    lease = s.execute(
        update(IndexRecord)
        .where(
            IndexRecord.name == index_name,
            or_(
                IndexRecord.writer_job_id.is_(None),
                IndexRecord.writer_job_id == job_id,
                IndexRecord.writer_heartbeat_at < stale,
            ),
        )
        .values(writer_job_id=job_id, writer_heartbeat_at=now)
    )
    return bool(lease.rowcount == 1)


def _claimable(job: JobRecord, stale: dt.datetime) -> bool:
    if job.status == QUEUED:
        return True
    beat = as_utc(job.heartbeat_at)
    return job.status == RUNNING and (beat is None or beat < stale)


def heartbeat(store: Store, job_id: str, *, worker: str) -> bool:
    """Renew the job's and its index lease's heartbeat; False when the job should stop
    (cancel requested, or no longer this worker's)."""
    now = utcnow()
    with store.session() as s:
        owned = s.execute(
            update(JobRecord)
            .where(JobRecord.id == job_id, JobRecord.worker == worker, JobRecord.status == RUNNING)
            .values(heartbeat_at=now)
        )
        s.execute(
            update(IndexRecord)
            .where(IndexRecord.writer_job_id == job_id)
            .values(writer_heartbeat_at=now)
        )
        cancel = s.scalar(select(JobRecord.cancel_requested).where(JobRecord.id == job_id))
    return owned.rowcount == 1 and not cancel  # type: ignore[attr-defined]


def finish(store: Store, job_id: str, *, worker: str, error: str | None = None) -> JobRecord | None:
    """End this worker's run: the status follows from cancellation, `error` and the items.

    Releases the index lease and, for a refreshing job, sets when it runs next. Returns None
    when the job was no longer this worker's (it was reaped and runs elsewhere).
    """
    now = utcnow()
    progress = job_progress(store, job_id)
    with store.session() as s:
        job = s.get(JobRecord, job_id)
        if job is None or job.worker != worker or job.status != RUNNING:
            return None
        job.status = _final_status(job, progress, error)
        job.error = error
        job.finished_at = now
        job.heartbeat_at = now
        job.next_run_at = _next_run(job, now)
        _release_lease(s, job_id)
    return get_job(store, job_id)


def _final_status(job: JobRecord, progress: Progress, error: str | None) -> str:
    if job.cancel_requested:
        return CANCELLED
    if error is not None:
        return FAILED
    ok = progress.indexed + progress.unchanged + progress.deleted
    if progress.failed and ok:
        return PARTIALLY_SUCCEEDED
    if progress.failed:
        return FAILED
    return SUCCEEDED


def _next_run(job: JobRecord, now: dt.datetime) -> dt.datetime | None:
    if job.refresh_interval_s is None or job.status == CANCELLED:
        return None
    return now + dt.timedelta(seconds=job.refresh_interval_s)


def _release_lease(s: Any, job_id: str) -> None:
    s.execute(
        update(IndexRecord)
        .where(IndexRecord.writer_job_id == job_id)
        .values(writer_job_id=None, writer_heartbeat_at=None)
    )


def requeue(store: Store, job_id: str, *, worker: str) -> bool:
    """Hand this worker's run back to the queue (the process is shutting down); the attempt
    does not count. False when the job was no longer this worker's."""
    with store.session() as s:
        job = s.get(JobRecord, job_id)
        if job is None or job.worker != worker or job.status != RUNNING:
            return False
        job.status = CANCELLED if job.cancel_requested else QUEUED
        job.attempts = max(0, job.attempts - 1)
        if job.cancel_requested:
            job.finished_at = utcnow()
        _release_lease(s, job_id)
        return not job.cancel_requested


def request_cancel(store: Store, job_id: str) -> JobRecord:
    """Cancel a job: a queued one at once, a running one at its next document boundary, a
    refreshing one's future runs. A finished one-off job is a JobNotCancellableError (409)."""
    with store.session() as s:
        job = s.get(JobRecord, job_id)
        if job is None:
            raise IngestionJobNotFoundError(f"no ingestion job {job_id!r}", param="job_id")
        if job.status in TERMINAL and (job.status == CANCELLED or job.refresh_interval_s is None):
            if job.status == CANCELLED:
                return job
            raise JobNotCancellableError(f"ingestion job {job_id!r} already {job.status}")
        job.cancel_requested = True
        job.next_run_at = None
        if job.status != RUNNING:
            job.status = CANCELLED
            job.finished_at = job.finished_at or utcnow()
    return get_job(store, job_id)


def reap_stale(store: Store, *, stale_after_s: float, max_attempts: int) -> list[str]:
    """Requeue running jobs whose worker stopped heartbeating (or fail them after
    `max_attempts`); returns the ids to enqueue again."""
    stale = utcnow() - dt.timedelta(seconds=stale_after_s)
    requeued: list[str] = []
    with store.session() as s:
        rows = s.scalars(
            select(JobRecord).where(JobRecord.status == RUNNING, JobRecord.heartbeat_at < stale)
        )
        for job in rows:
            if job.cancel_requested:
                job.status, job.finished_at = CANCELLED, utcnow()
                _release_lease(s, job.id)
            elif job.attempts >= max_attempts:
                job.status, job.finished_at = FAILED, utcnow()
                job.error = f"the worker running this job stopped {job.attempts} times"
                _release_lease(s, job.id)
            else:
                job.status = QUEUED
                requeued.append(job.id)
    return requeued


def start_due_refreshes(store: Store) -> list[str]:
    """Queue the next run of refreshing jobs that are due; returns their ids."""
    now = utcnow()
    due: list[str] = []
    with store.session() as s:
        ids = s.scalars(
            select(JobRecord.id).where(JobRecord.next_run_at <= now, JobRecord.status.in_(TERMINAL))
        ).all()
        for job_id in ids:
            started = s.execute(
                update(JobRecord)
                .where(JobRecord.id == job_id, JobRecord.next_run_at <= now)
                .values(
                    status=QUEUED,
                    run=JobRecord.run + 1,
                    attempts=0,
                    next_run_at=None,
                    error=None,
                    finished_at=None,
                    started_at=None,
                    heartbeat_at=None,
                )
            )
            if started.rowcount == 1:  # type: ignore[attr-defined]
                s.execute(delete(JobItemRecord).where(JobItemRecord.job_id == job_id))
                due.append(job_id)
    return due


def add_items(store: Store, job_id: str, items: Iterable[tuple[str, str]]) -> None:
    """Register the run's documents as pending; documents already listed keep their outcome
    (a resumed run skips them)."""
    wanted = dict(items)
    with store.session() as s:
        known = set(s.scalars(select(JobItemRecord.doc_id).where(JobItemRecord.job_id == job_id)))
        s.add_all(_pending(job_id, [(d, src) for d, src in wanted.items() if d not in known]))


def _pending(job_id: str, items: Iterable[tuple[str, str]]) -> list[JobItemRecord]:
    return [
        JobItemRecord(
            job_id=job_id, doc_id=doc_id, source=source, status=ITEM_PENDING, chunk_count=0
        )
        for doc_id, source in items
    ]


def item_statuses(store: Store, job_id: str) -> dict[str, str]:
    with store.session() as s:
        rows = s.execute(
            select(JobItemRecord.doc_id, JobItemRecord.status).where(JobItemRecord.job_id == job_id)
        )
        return {row.doc_id: row.status for row in rows}


def record_item(
    store: Store,
    job_id: str,
    doc_id: str,
    *,
    source: str,
    status: str,
    error: str | None = None,
    chunk_count: int = 0,
) -> None:
    """Store one document's outcome in the current run."""
    with store.session() as s:
        s.merge(
            JobItemRecord(
                job_id=job_id,
                doc_id=doc_id,
                source=source,
                status=status,
                error=error,
                chunk_count=chunk_count,
            )
        )


def job_progress(store: Store, job_id: str) -> Progress:
    with store.session() as s:
        rows = s.execute(
            select(JobItemRecord.status, func.count(), func.sum(JobItemRecord.chunk_count))
            .where(JobItemRecord.job_id == job_id)
            .group_by(JobItemRecord.status)
        ).all()
    counts = {status: int(n) for status, n, _ in rows}
    written = sum(int(chunks or 0) for status, _, chunks in rows if status == ITEM_INDEXED)
    return Progress(
        total=sum(counts.values()),
        chunks_written=written,
        **{status: counts.get(status, 0) for status in ITEM_STATUSES},
    )


def job_errors(store: Store, job_id: str, *, limit: int = 1000) -> list[ItemError]:
    with store.session() as s:
        rows = s.scalars(
            select(JobItemRecord)
            .where(JobItemRecord.job_id == job_id, JobItemRecord.status == ITEM_FAILED)
            .order_by(JobItemRecord.doc_id)
            .limit(limit)
        )
        return [ItemError(r.doc_id, r.source, r.error or "failed") for r in rows]


def cancel_index_jobs(store: Store, index_name: str) -> list[str]:
    """Ask every unfinished job of an index to stop; returns the ids still running."""
    running: list[str] = []
    for job in list_jobs(store, index_name=index_name, limit=10_000):
        if job.status in TERMINAL and job.next_run_at is None:
            continue
        updated = request_cancel(store, job.id)
        if updated.status == RUNNING:
            running.append(job.id)
    return running


def index_writer(store: Store, index_name: str, *, stale_after_s: float) -> str | None:
    """The job holding the index's write lease, if its heartbeat is fresh."""
    record = store.get_index(index_name)
    if record is None or record.writer_job_id is None:
        return None
    beat = as_utc(record.writer_heartbeat_at)
    fresh = beat is not None and beat >= utcnow() - dt.timedelta(seconds=stale_after_s)
    return record.writer_job_id if fresh else None


def fail_unstarted(store: Store, job_id: str, *, error: str) -> None:
    """Mark a job that never reached the queue as failed."""
    with store.session() as s:
        job = s.get(JobRecord, job_id)
        if job is not None and job.status == QUEUED:
            job.status, job.error, job.finished_at = FAILED, error, utcnow()


def delete_index_jobs(store: Store, index_name: str) -> int:
    """Forget every job of a deleted index (and their items); returns how many."""
    with store.session() as s:
        ids = list(s.scalars(select(JobRecord.id).where(JobRecord.index_name == index_name)))
        if ids:
            s.execute(delete(JobItemRecord).where(JobItemRecord.job_id.in_(ids)))
            s.execute(delete(JobRecord).where(JobRecord.id.in_(ids)))
        return len(ids)
