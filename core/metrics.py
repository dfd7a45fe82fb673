"""Prometheus metrics any package may update (api, ingest, worker) and per-request phase timings.

Metrics live in prometheus-client's default registry of the process; the API serves them at
`/metrics`. A worker in its own process can expose its registry with `serve_metrics(port)`.
`phase("retrieve")` both observes a histogram and, inside a request, feeds `Server-Timing`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

from prometheus_client import Counter, Gauge, Histogram, start_http_server

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

HTTP_REQUESTS = Counter(
    "ondata_http_requests_total",
    "HTTP requests by route template, method and status.",
    ["route", "method", "status"],
)
HTTP_LATENCY = Histogram(
    "ondata_http_request_duration_seconds",
    "HTTP request latency (to the last body byte).",
    ["route", "method"],
    buckets=_LATENCY_BUCKETS,
)
RATE_LIMITED = Counter(
    "ondata_rate_limited_total", "Requests refused by per-key limits.", ["limit"]
)
INGEST_DOCUMENTS = Counter(
    "ondata_ingest_documents_total", "Documents through ingestion, by outcome.", ["outcome"]
)
INGEST_CHUNKS = Counter("ondata_ingest_chunks_total", "Chunks written to an index.")
INGEST_FAILURES = Counter("ondata_ingest_failures_total", "Documents whose ingestion failed.")
QUEUE_DEPTH = Gauge("ondata_queue_depth", "Ingestion tasks waiting in the task queue.")
EMBEDDING_SECONDS = Histogram(
    "ondata_embedding_duration_seconds",
    "Time spent in one embedding call, by what was embedded.",
    ["kind"],
    buckets=_LATENCY_BUCKETS,
)
ANSWER_PHASE_SECONDS = Histogram(
    "ondata_answer_phase_duration_seconds",
    "Time per answer phase (retrieve, generate).",
    ["phase"],
    buckets=_LATENCY_BUCKETS,
)


def record_ingest(
    *, ingested: int = 0, unchanged: int = 0, failed: int = 0, chunks: int = 0
) -> None:
    """Count one ingestion run's outcome (call once per run or per document)."""
    for outcome, n in (("ingested", ingested), ("unchanged", unchanged), ("failed", failed)):
        if n:
            INGEST_DOCUMENTS.labels(outcome=outcome).inc(n)
    if failed:
        INGEST_FAILURES.inc(failed)
    if chunks:
        INGEST_CHUNKS.inc(chunks)


def set_queue_depth_source(source: Callable[[], float]) -> None:
    """Read the queue depth from `source` at each scrape (the task queue owner registers it)."""
    QUEUE_DEPTH.set_function(source)


@contextmanager
def embedding_timer(kind: str) -> Iterator[None]:
    """Observe one embedding call (`kind`: documents or query)."""
    with EMBEDDING_SECONDS.labels(kind=kind).time():
        yield


@dataclass
class Timings:
    """Phases of one request, in order: name -> (start, seconds), for `Server-Timing`."""

    started: float = field(default_factory=time.perf_counter)
    phases: dict[str, tuple[float, float]] = field(default_factory=dict)

    def add(self, name: str, start: float, seconds: float) -> None:
        self.phases[name] = (start, seconds)


_timings: ContextVar[Timings | None] = ContextVar("ondata_timings", default=None)


def start_timings() -> Timings:
    """Begin collecting phase timings for the current request (its context and child tasks)."""
    timings = Timings()
    _timings.set(timings)
    return timings


@contextmanager
def phase(name: str) -> Iterator[None]:
    """Time a phase: observed in ANSWER_PHASE_SECONDS and added to the request's timings."""
    start = time.perf_counter()
    try:
        yield
    finally:
        seconds = time.perf_counter() - start
        ANSWER_PHASE_SECONDS.labels(phase=name).observe(seconds)
        if (timings := _timings.get()) is not None:
            timings.add(name, start, seconds)


def serve_metrics(port: int, *, addr: str = "127.0.0.1") -> None:
    """Expose this process's metrics on http://addr:port/metrics (for out-of-process workers)."""
    start_http_server(port, addr=addr)
