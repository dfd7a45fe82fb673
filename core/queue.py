"""The task queue behind ingestion jobs: Huey on SQLite (embedded) or Redis (scale-out).

One task code path, two deployments. `JobQueue.enqueue(job_id)` puts a wake-up on Huey; a
consumer (threads inside `ondata serve`, or `ondata worker` processes) claims the job in the
store (core.jobs), keeps its heartbeat while the handler runs, and records how it ended.
The handler comes from the `ondata.tasks` entry point named "ingest" (core never imports the
ingest package). Huey removes a message when a worker takes it, so a worker killed mid-job
would lose it: each consumer also runs a maintenance thread that requeues jobs whose
heartbeat stopped and starts due refreshes.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from functools import lru_cache
from importlib.metadata import entry_points
from typing import Any

from huey import RedisHuey, SqliteHuey
from huey.api import Huey
from huey.consumer import Consumer

from core import jobs
from core.db import Store
from core.errors import ConfigurationError, OndataError
from core.job_specs import JobSpec
from core.settings import JobsSettings, Settings

logger = logging.getLogger(__name__)

TASK_GROUP = "ondata.tasks"
INGEST_TASK = "ingest"


class JobRun:
    """What a task handler sees of the job it runs: its record and how to report progress."""

    def __init__(self, store: Store, claim: jobs.Claim) -> None:
        self.store = store
        self.job = claim.job
        self.worker = claim.worker
        self._stop = threading.Event()
        self.interrupted = False

    @property
    def id(self) -> str:
        return self.job.id

    @property
    def index_name(self) -> str:
        return self.job.index_name

    @property
    def spec(self) -> JobSpec:
        return jobs.job_spec(self.job)

    @property
    def resumed(self) -> bool:
        """Whether an earlier attempt of this run was interrupted (items may be half done)."""
        return self.job.attempts > 1

    def should_stop(self) -> bool:
        """True once the job was cancelled or taken over; check between documents."""
        return self._stop.is_set()

    def beat(self) -> None:
        if not jobs.heartbeat(self.store, self.id, worker=self.worker):
            self._stop.set()

    def interrupt(self) -> None:
        """Stop at the next document boundary because this process shuts down."""
        self.interrupted = True
        self._stop.set()

    def add_items(self, items: list[tuple[str, str]]) -> dict[str, str]:
        """Register the run's documents (doc_id, source); returns every item's status."""
        jobs.add_items(self.store, self.id, items)
        return jobs.item_statuses(self.store, self.id)

    def record(
        self, doc_id: str, *, source: str, status: str, error: str | None = None, chunks: int = 0
    ) -> None:
        jobs.record_item(
            self.store,
            self.id,
            doc_id,
            source=source,
            status=status,
            error=error,
            chunk_count=chunks,
        )


TaskHandler = Callable[[JobRun, Any], None]
"""handler(run, context): does the job's work; `context` is what the consumer was given."""


@lru_cache(maxsize=8)
def load_handler(name: str = INGEST_TASK) -> TaskHandler:
    """The task handler registered under `ondata.tasks` with this name."""
    for ep in entry_points(group=TASK_GROUP):
        if ep.name == name:
            handler: TaskHandler = ep.load()
            return handler
    raise ConfigurationError(
        f"no {TASK_GROUP!r} entry point named {name!r}: is the ondata package installed?"
    )


def make_huey(settings: Settings) -> Huey:
    """Huey on the configured storage; results are not kept (the store holds job state)."""
    cfg = settings.jobs
    if cfg.queue == "redis":
        return RedisHuey(cfg.queue_name, url=cfg.redis_url, results=False, utc=True)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    path = settings.data_dir / "queue.db"
    return SqliteHuey(cfg.queue_name, filename=str(path), results=False, utc=True)


class JobQueue:
    """Enqueues ingestion jobs on Huey and runs them (in whichever process consumes)."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        *,
        huey: Huey | None = None,
        handler: TaskHandler | None = None,
    ) -> None:
        """`handler` defaults to the `ondata.tasks` entry point "ingest" (loaded when a job
        first runs, so processes that only enqueue never import it)."""
        self.settings = settings
        self.store = store
        self.huey = huey or make_huey(settings)
        self._handler = handler
        self.context: Any = None
        self._active: set[JobRun] = set()
        self._active_lock = threading.Lock()
        self._task = self.huey.task(name="ondata.ingest")(self._execute)

    @property
    def config(self) -> JobsSettings:
        return self.settings.jobs

    def enqueue(self, job_id: str, *, delay: float = 0.0) -> None:
        if delay > 0:
            self._task.schedule((job_id,), delay=delay)
        else:
            self._task(job_id)

    def pending_count(self) -> int:
        """Wake-ups waiting in the queue (for metrics)."""
        return int(self.huey.pending_count())

    def revoke_pending(self) -> None:
        """Drop every queued wake-up (tests; a job's state stays in the store)."""
        self.huey.flush()

    def _execute(self, job_id: str) -> None:
        worker = f"{socket.gethostname()}:{os.getpid()}/{uuid.uuid4().hex[:8]}"
        claim = jobs.claim(
            self.store, job_id, worker=worker, stale_after_s=self.config.stale_after_s
        )
        if claim is False:
            logger.info("index busy; job %s retries in %.1fs", job_id, self.config.busy_retry_s)
            self.enqueue(job_id, delay=self.config.busy_retry_s)
            return
        if claim is None or claim is True:
            return
        self._run(JobRun(self.store, claim))

    def interrupt_running(self) -> None:
        """Ask the jobs running in this process to stop at a document boundary (shutdown)."""
        with self._active_lock:
            for run in self._active:
                run.interrupt()

    def _run(self, run: JobRun) -> None:
        with self._active_lock:
            self._active.add(run)
        try:
            error = self._call_handler(run)
        finally:
            with self._active_lock:
                self._active.discard(run)
        if run.interrupted and jobs.requeue(self.store, run.id, worker=run.worker):
            self.enqueue(run.id)  # the queue is durable: the next consumer resumes it
            logger.info("job %s interrupted by shutdown; queued again", run.id)
            return
        done = jobs.finish(self.store, run.id, worker=run.worker, error=error)
        logger.info("job %s ended: %s", run.id, done.status if done else "taken over")

    def _call_handler(self, run: JobRun) -> str | None:
        stop_beating = threading.Event()
        beater = threading.Thread(
            target=_heartbeat_loop,
            args=(run, stop_beating, self.config.heartbeat_s),
            name=f"heartbeat-{run.id[:8]}",
            daemon=True,
        )
        beater.start()
        error: str | None = None
        try:
            logger.info("job %s started (attempt %d)", run.id, run.job.attempts)
            (self._handler or load_handler())(run, self.context)
        except OndataError as exc:
            error = exc.message
        except Exception as exc:
            logger.exception("job %s failed", run.id)
            error = f"internal error: {type(exc).__name__}"
        finally:
            stop_beating.set()
            beater.join()
        return error

    def maintain(self) -> None:
        """Requeue jobs of dead workers and start due refreshes (every consumer calls this)."""
        cfg = self.config
        stale = jobs.reap_stale(
            self.store, stale_after_s=cfg.stale_after_s, max_attempts=cfg.max_attempts
        )
        for job_id in stale + jobs.start_due_refreshes(self.store):
            self.enqueue(job_id)
        if stale:
            logger.warning("requeued %d job(s) whose worker stopped: %s", len(stale), stale)


def _heartbeat_loop(run: JobRun, stop: threading.Event, every_s: float) -> None:
    while not stop.wait(every_s):
        try:
            run.beat()
        except Exception:  # a store hiccup must not kill the job; the next beat retries
            logger.warning("heartbeat of job %s failed", run.id, exc_info=True)


class _QuietConsumer(Consumer):  # type: ignore[misc]
    """Huey's consumer without its process-wide signal handlers (we own the process)."""

    def _set_signal_handlers(self) -> None:
        return None


class JobConsumer:
    """Huey worker threads plus the maintenance thread, started and stopped together."""

    def __init__(self, queue: JobQueue, *, workers: int, context: Any) -> None:
        queue.context = context
        self.queue = queue
        cfg = queue.config
        self._consumer = _QuietConsumer(
            queue.huey,
            workers=workers,
            worker_type="thread",
            periodic=False,
            initial_delay=min(cfg.poll_s, 0.1),
            max_delay=cfg.poll_s,
            backoff=1.15,
            scheduler_interval=1,
            check_worker_health=False,
            shutdown_timeout=60,
        )
        self._stop = threading.Event()
        self._maintenance = threading.Thread(
            target=self._maintain_loop, name="ondata-jobs-maintenance", daemon=True
        )

    def start(self) -> None:
        self._consumer.start()
        self._maintenance.start()
        logger.info("job consumer started (%d worker threads)", self._consumer.workers)

    def stop(self, *, graceful: bool = True) -> None:
        self._stop.set()
        self.queue.interrupt_running()
        self._consumer.stop(graceful=graceful)
        self._maintenance.join(timeout=10)

    def _maintain_loop(self) -> None:
        every = min(self.queue.config.heartbeat_s, 5.0)
        while True:
            try:
                self.queue.maintain()
            except Exception:
                logger.warning("job maintenance failed", exc_info=True)
            if self._stop.wait(every):
                return
