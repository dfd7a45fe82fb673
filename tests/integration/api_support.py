"""Helpers for the API integration tests: the real app under uvicorn on a loopback port, and a
tiny real index (parsed, chunked, embedded with the bundled ONNX model, stored in Qdrant Edge).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from core.settings import Settings
from ingest.parsers import doc_id_for
from ingest.service import open_pipeline, parser_for
from ingest.sources import source_files

INDEX = "handbook"

DOCUMENTS = {
    "travel.md": """# Travel policy

## Hotels
Employees may book hotels up to 180 euros per night in capital cities.
Outside capital cities the hotel limit is 120 euros per night.

## Trains
First class train travel is allowed for journeys longer than four hours.
""",
    "cafeteria.txt": (
        "The cafeteria opens at eight in the morning and closes at three in the afternoon.\n"
        "Vegetarian meals are served every day.\n"
    ),
    "security.md": """# Security

## Badges
Visitors must wear a red badge at all times and be escorted by an employee.
Lost badges must be reported to the security desk within one hour.
""",
}


def build_index(settings: Settings, root: Path, *, index: str = INDEX) -> None:
    """Write the fixture documents under `root` and ingest them into `index`."""
    root.mkdir(parents=True, exist_ok=True)
    for name, text in DOCUMENTS.items():
        (root / name).write_text(text, encoding="utf-8")
    with open_pipeline(settings, index) as pipeline:
        files = source_files([root], doc_id_for=doc_id_for)
        report = pipeline.ingest_files(files, parse=parser_for(settings))
    assert report.documents_ingested == len(DOCUMENTS), report


@contextmanager
def serve_in_thread(app: FastAPI) -> Iterator[str]:
    """Serve `app` with uvicorn on 127.0.0.1 (a free port) in a thread; yields the base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        _wait_started(server, thread)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def _wait_started(server: uvicorn.Server, thread: threading.Thread) -> None:
    deadline = time.monotonic() + 120
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("uvicorn exited during startup (see the log above)")
        if time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start within 120 s")
        time.sleep(0.02)


def wait_job(
    http: httpx.Client,
    job_id: str,
    *,
    timeout_s: float = 240,
    until: Callable[[dict[str, Any]], bool] | None = None,
) -> dict[str, Any]:
    """Poll an ingestion job until it has finished (or `until(job)` holds); fail after
    timeout_s with the job's last state."""
    deadline = time.monotonic() + timeout_s
    job: dict[str, Any] = {}
    while time.monotonic() < deadline:
        job = dict(http.get(f"/v1/ingestion/jobs/{job_id}").json())
        if until(job) if until else job["status"] not in ("queued", "running"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish: {job}")
