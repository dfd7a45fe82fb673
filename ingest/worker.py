"""`ondata worker`: a process that consumes ingestion jobs from the task queue.

Scale-out: run N of these (any hosts) with ONDATA_JOBS__QUEUE=redis, a shared PostgreSQL
store and a Qdrant server index. SIGTERM or SIGINT stops it at the next document boundary;
the job it was running goes back to the queue for another worker.
"""

from __future__ import annotations

import logging
import signal
import threading

import typer

from core.queue import JobConsumer, JobQueue
from core.settings import load_settings
from retrieval.resources import open_worker_resources

logger = logging.getLogger(__name__)


def worker(
    threads: int = typer.Option(1, "--threads", min=1, max=16, help="Jobs run at once."),
) -> None:
    """Run ingestion jobs from the queue until stopped (SIGTERM/SIGINT)."""
    settings = load_settings()
    if settings.index.backend == "edge":
        logger.warning(
            "index.backend=edge: a Qdrant Edge index can be open in one process only; "
            "do not run `ondata serve` or other workers on the same data dir"
        )
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    with open_worker_resources(settings) as resources:
        consumer = JobConsumer(
            JobQueue(settings, resources.store), workers=threads, context=resources
        )
        consumer.start()
        typer.echo(f"worker ready ({settings.jobs.queue} queue, {threads} thread(s))", err=True)
        stop.wait()
        typer.echo("worker stopping", err=True)
        consumer.stop()
