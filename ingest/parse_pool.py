"""Run parsers in reusable child processes that are killed when a file takes too long.

Parsers can hang or crash inside C code (pdfminer on hostile PDFs, libxml2, tesseract), where
no Python-level timeout reaches. A worker is a fresh interpreter (started with subprocess, so
it is safe from threaded parents and never re-imports the caller's __main__), serves many
files over a pipe, and is replaced only after it was killed or died. Each worker leads its own
process group, so a kill also ends the tesseract/poppler/pandoc processes it started.

A pool may cap each worker's memory (RLIMIT_DATA: heap and private mappings, which the
processes it starts inherit). A job that runs out raises ParseMemoryLimitError and its worker
is replaced; one that a failed allocation kills is a dead worker whose error names the limit.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from importlib import import_module
from multiprocessing.connection import Connection
from typing import Any, Protocol, TypeVar

from core.errors import DocumentParseError, ParseMemoryLimitError, ParseTimeoutError

logger = logging.getLogger(__name__)

A = TypeVar("A")
R = TypeVar("R")

DEFAULT_STARTUP_TIMEOUT_S = 180.0
_READY = "ready"
_BOOT = (
    "import sys; sys.path[:0] = sys.argv[5:]; from ingest.parse_pool import serve; "
    "serve(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4]))"
)
MEMORY_SETTING = "ingest.parse_memory_mb"


class ParseRunner(Protocol):
    """Runs one parse job: `func(arg)`, within `timeout_s` where the runner can enforce it."""

    def run(self, func: Callable[[A], R], arg: A, *, timeout_s: float) -> R: ...


class InlineParseRunner:
    """Runs jobs in the calling process: no isolation, no timeout (tests of pure mapping, tools)."""

    def run(self, func: Callable[[A], R], arg: A, *, timeout_s: float) -> R:
        return func(arg)


class ParserPool:
    """Up to `max_workers` reusable worker processes; callers from many threads share them.

    A job that outlives `timeout_s` has its worker killed and raises ParseTimeoutError; a
    worker that dies raises DocumentParseError. Either way the next job gets a fresh worker.
    `warmup` ("module:function") runs once in each new worker before it takes jobs (imports,
    model loading) and is not counted against the per-file timeout; `env` is added to the
    workers' environment (e.g. thread limits, which must be set before numpy loads). Workers
    are recycled after `max_jobs` jobs to bound memory growth. `memory_limit_mb` (0: none)
    caps each worker's and its children's writable memory. Jobs (func, arg, result,
    exception) must pickle.
    """

    def __init__(
        self,
        *,
        max_workers: int = 1,
        warmup: str = "",
        env: Mapping[str, str] | None = None,
        startup_timeout_s: float = DEFAULT_STARTUP_TIMEOUT_S,
        max_jobs: int = 500,
        memory_limit_mb: int = 0,
    ) -> None:
        self._warmup = warmup
        self._memory_limit_mb = memory_limit_mb
        self._env = dict(env or {})
        self._startup_timeout_s = startup_timeout_s
        self._max_jobs = max_jobs
        self._slots = threading.BoundedSemaphore(max_workers)
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []
        self._busy: set[_Worker] = set()
        self._closed = False

    def run(self, func: Callable[[A], R], arg: A, *, timeout_s: float) -> R:
        """`func(arg)` in a worker, or ParseTimeoutError after `timeout_s` seconds."""
        with self._slots:
            worker = self._checkout()
            try:
                result = worker.call(func, arg, timeout_s=timeout_s)
            except _JobFailed as failed:
                if isinstance(failed.error, ParseMemoryLimitError):
                    self._discard(worker)  # a fresh heap for the next job
                else:
                    self._checkin(worker)
                raise failed.error from None
            except BaseException:
                self._discard(worker)
                raise
            self._checkin(worker)
            return result

    def close(self) -> None:
        """Stop every worker; later calls to run raise."""
        with self._lock:
            self._closed = True
            workers = self._idle + list(self._busy)
            self._idle.clear()
        for worker in workers:
            worker.stop()

    def __enter__(self) -> ParserPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _checkout(self) -> _Worker:
        with self._lock:
            if self._closed:
                raise RuntimeError("ParserPool is closed")
            worker = self._idle.pop() if self._idle else None
        if worker is None or not worker.alive:
            if worker is not None:
                worker.kill()
            worker = _Worker(
                self._warmup,
                self._env,
                startup_timeout_s=self._startup_timeout_s,
                memory_limit_mb=self._memory_limit_mb,
            )
        with self._lock:
            self._busy.add(worker)
        return worker

    def _checkin(self, worker: _Worker) -> None:
        with self._lock:
            self._busy.discard(worker)
            if not self._closed and worker.jobs < self._max_jobs:
                self._idle.append(worker)
                return
        worker.stop()

    def _discard(self, worker: _Worker) -> None:
        with self._lock:
            self._busy.discard(worker)
        worker.kill()


class _JobFailed(Exception):
    """The job raised inside a healthy worker; carries the job's own exception."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


class _Worker:
    """One child interpreter and the two pipes to it."""

    def __init__(
        self,
        warmup: str,
        env: dict[str, str],
        *,
        startup_timeout_s: float,
        memory_limit_mb: int = 0,
    ) -> None:
        self.memory_limit_mb = memory_limit_mb
        child_reads, parent_writes = os.pipe()
        parent_reads, child_writes = os.pipe()
        started = time.monotonic()
        paths = [p for p in sys.path if p and os.path.isdir(p)]
        fds = (str(child_reads), str(child_writes))
        command = [sys.executable, "-c", _BOOT, *fds, warmup, str(memory_limit_mb), *paths]
        self.process = subprocess.Popen(
            command,
            pass_fds=(child_reads, child_writes),
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, **env} if env else None,
        )
        os.close(child_reads)
        os.close(child_writes)
        self._out = Connection(parent_writes, readable=False)
        self._in = Connection(parent_reads, writable=False)
        self.jobs = 0
        self._await_ready(startup_timeout_s)
        logger.info(
            "parser worker pid=%d ready in %.1fs", self.process.pid, time.monotonic() - started
        )

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def call(self, func: Callable[[A], R], arg: A, *, timeout_s: float) -> R:
        self.jobs += 1
        try:
            self._out.send_bytes(pickle.dumps((func, arg)))
        except OSError as exc:
            raise DocumentParseError(self._death(self.process.poll())) from exc
        if not self._in.poll(timeout_s):
            raise ParseTimeoutError(
                f"parsing took longer than {timeout_s:g}s (ingest.file_timeout_s)"
            )
        status, payload = self._receive()
        if status == "error":
            raise _JobFailed(payload)
        return payload  # type: ignore[no-any-return]

    def _await_ready(self, timeout_s: float) -> None:
        if not self._in.poll(timeout_s):
            self.kill()
            raise DocumentParseError(f"parser worker did not start within {timeout_s:g}s")
        status, payload = self._receive()
        if status != _READY:
            self.kill()
            raise DocumentParseError(f"parser worker failed to start: {payload}")

    def _receive(self) -> tuple[str, Any]:
        try:
            message: tuple[str, Any] = pickle.loads(self._in.recv_bytes())
        except (EOFError, OSError) as exc:
            code = self.process.wait(timeout=5)
            raise DocumentParseError(self._death(code)) from exc
        return message

    def _death(self, code: int | None) -> str:
        message = f"parser process died (exit code {code})"
        if self.memory_limit_mb and code is not None and code < 0:  # killed by a signal
            message += (
                f", likely past the memory limit ({self.memory_limit_mb} MB, {MEMORY_SETTING})"
            )
        return message

    def stop(self) -> None:
        """Closing the pipe ends the worker's loop; kill it if it lingers."""
        self._close_pipes()
        try:
            self.process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """Kill the worker and everything it started (its process group)."""
        self._close_pipes()
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def _close_pipes(self) -> None:
        self._out.close()
        self._in.close()


def serve(in_fd: int, out_fd: int, warmup: str, memory_limit_mb: int = 0) -> None:
    """Worker main: cap memory, warm up, then answer pickled (func, arg) jobs until the pipe
    closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the parent; it kills us
    _watch_parent(os.getppid())
    jobs, results = Connection(in_fd, writable=False), Connection(out_fd, readable=False)
    try:
        limit_memory(memory_limit_mb)
        if warmup:
            module, _, name = warmup.partition(":")
            getattr(import_module(module), name)()
    except BaseException as exc:
        reason = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, MemoryError):
            reason = f"{memory_limit_error().message}: too little to start a parser process"
        results.send_bytes(pickle.dumps(("failed", reason)))
        return
    results.send_bytes(pickle.dumps((_READY, None)))
    while True:
        try:
            func, arg = pickle.loads(jobs.recv_bytes())
        except (EOFError, OSError):
            return
        results.send_bytes(_outcome(func, arg))


def limit_memory(megabytes: int) -> None:
    """Cap this process's writable memory, and that of every process it starts (0: no cap).

    RLIMIT_DATA rather than RLIMIT_AS: it counts what a process can write (heap, anonymous
    and private mappings), not shared libraries or address space reserved and never used (a
    warmed-up worker reserves ~1 GB it never touches; pandoc's runtime reserves far more).
    """
    if megabytes <= 0:
        return
    wanted = megabytes * 1024 * 1024
    _, hard = resource.getrlimit(resource.RLIMIT_DATA)
    cap = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (cap, cap))


def memory_limit_error() -> ParseMemoryLimitError:
    """The per-file error for a job that ran out of memory in this process."""
    soft, _ = resource.getrlimit(resource.RLIMIT_DATA)
    if soft == resource.RLIM_INFINITY:
        return ParseMemoryLimitError("parsing ran out of memory")
    return ParseMemoryLimitError(
        f"parsing exceeds the memory limit ({soft // (1024 * 1024)} MB, {MEMORY_SETTING})"
    )


def _reached_limit(peak_before: int) -> bool:
    """Whether this job drove the process's peak resident memory up near its cap: C libraries
    that fail an allocation often say so only as "unknown error". The cap counts memory asked
    for, not touched, and the request that failed may have been as large as what was already
    held (buffers double), so the peak of a job that ran out can sit well below the cap: 60%
    (90% missed a real case once on a loaded machine)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_DATA)
    peak = _peak_rss()
    return soft != resource.RLIM_INFINITY and peak > peak_before and peak >= 0.6 * soft


def _reset_peak_rss() -> None:
    """Start this job's peak at the current resident size (Linux: writing 5 to clear_refs
    resets VmHWM), so a peak an earlier job reached does not hide this job's."""
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


def _peak_rss() -> int:
    """The process's peak resident bytes since the last reset (VmHWM), else its lifetime peak."""
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def _outcome(func: Callable[[Any], Any], arg: Any) -> bytes:
    """The pickled ("ok", result) or ("error", exception) of one job."""
    _reset_peak_rss()
    peak_before = _peak_rss()
    try:
        result: tuple[str, Any] = ("ok", func(arg))
    except MemoryError:
        result = ("error", memory_limit_error())
    except Exception as exc:
        memory = _reached_limit(peak_before) and not isinstance(exc, ParseMemoryLimitError)
        result = ("error", memory_limit_error() if memory else exc)
    try:
        data = pickle.dumps(result)
        if result[0] == "error":
            pickle.loads(data)  # some exceptions pickle but cannot be rebuilt on the other side
        return data
    except Exception as exc:  # a result or exception that cannot cross the pipe
        reason = result[1] if result[0] == "error" else exc
        error = DocumentParseError(f"parser failed: {type(reason).__name__}: {reason}")
        return pickle.dumps(("error", error))


def _watch_parent(parent: int) -> None:
    """Exit when the parent goes away, even while the main thread is stuck in a parser."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
