"""The scale-out deployment as separate processes: `ondata serve` and two `ondata worker`s on
the machine's PostgreSQL (a schema of their own) and Redis (a queue of their own), with the
server-mode index (`QdrantServerIndex` over HTTP) on the Qdrant stand-in.

What this proves: the three processes share one metadata store, job queue and vector index
through their real clients; uploads to the API become jobs that run on the worker processes,
two at once on different workers (each worker runs one job at a time, and a job takes longer
than a worker's 0.5 s poll); the API answers from the chunks the workers wrote (with
citations), records the conversation, and every chunk is in the index exactly once. What it
does not: the real Qdrant server engine (the stand-in is qdrant-client's local engine behind
Qdrant's REST routes), Docker networking, or more than one host.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from core.db import JobRecord, Store, make_engine
from core.keys import KeyStore
from core.queue import JobQueue
from core.settings import Settings
from tests.fakes.qdrant_server import QdrantStandIn
from tests.integration.api_support import DOCUMENTS

REDIS = "redis://127.0.0.1:6379/0"
# Two indexes: one job may write an index at a time, so two jobs at once need two.
UPLOADS = {"handbook": ["travel.md", "cafeteria.txt"], "security": ["security.md"]}
TERMINAL = {"succeeded", "partially_succeeded", "failed", "cancelled"}
ONDATA = shutil.which("ondata", path=str(Path(sys.executable).parent)) or "ondata"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Cluster:
    """The processes of one deployment, their shared environment, and their logs."""

    root: Path
    env: dict[str, str]
    port: int
    qdrant: QdrantStandIn
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = (self.root / f"{name}.log").open("wb")
        process = subprocess.Popen(
            [ONDATA, *args], env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        self.processes[name] = process
        return process

    def log(self, name: str) -> str:
        return (self.root / f"{name}.log").read_text(errors="replace")

    def stop(self, name: str) -> None:
        process = self.processes[name]
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def logs(self) -> str:
        tails = []
        for name in self.processes:
            tails.append(f"--- {name} ---\n{self.log(name)[-3000:]}")
        return "\n".join(tails)

    def alive(self, name: str) -> bool:
        return self.processes[name].poll() is None


@pytest.fixture
def cluster(tmp_path: Path, postgres_url: str) -> Iterator[Cluster]:
    qdrant = QdrantStandIn().start()
    queue_name = f"ondata-test-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONDATA_")}
    env.update(
        ONDATA_DATA_DIR=str(tmp_path / "data"),
        ONDATA_DATABASE_URL=postgres_url,
        ONDATA_INDEX__BACKEND="server",
        ONDATA_INDEX__URL=qdrant.url,
        ONDATA_JOBS__QUEUE="redis",
        ONDATA_JOBS__REDIS_URL=REDIS,
        ONDATA_JOBS__QUEUE_NAME=queue_name,
        ONDATA_API__RATE_LIMIT_REDIS_URL=REDIS,
        ONDATA_API__AUTH_REQUIRED="true",
        # one BLAS thread per process: three processes share two cores
        OMP_NUM_THREADS="1",
        ONDATA_EMBEDDING__THREADS="1",
    )
    deployment = Cluster(root=tmp_path, env=env, port=_free_port(), qdrant=qdrant)
    try:
        yield deployment
    finally:
        for name in list(deployment.processes):
            deployment.stop(name)
        qdrant.stop()
        settings = Settings(
            data_dir=tmp_path / "data",
            database_url=postgres_url,
            jobs={"queue": "redis", "redis_url": REDIS, "queue_name": queue_name},  # type: ignore[arg-type]
        )
        store = Store(make_engine(postgres_url))
        JobQueue(settings, store).huey.storage.flush_all()
        store.engine.dispose()


def _wait_ready(cluster: Cluster, client: httpx.Client) -> None:
    """The API answers /readyz and both workers have said they are ready."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        assert all(cluster.alive(n) for n in cluster.processes), cluster.logs()
        workers_ready = all("worker ready" in cluster.log(n) for n in ("worker-1", "worker-2"))
        try:
            if workers_ready and client.get("/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    pytest.fail(f"the deployment did not become ready\n{cluster.logs()}")


def _upload(client: httpx.Client, index: str, names: list[str]) -> str:
    files = [("files", (n, DOCUMENTS[n].encode(), "text/plain")) for n in names]
    response = client.post(f"/v1/indexes/{index}/documents", files=files)
    assert response.status_code == 202, response.text
    job_id: str = response.json()["job_id"]
    return job_id


def _wait_job(cluster: Cluster, client: httpx.Client, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        job: dict[str, Any] = client.get(f"/v1/ingestion/jobs/{job_id}").json()
        if job["status"] in TERMINAL:
            return job
        time.sleep(0.5)
    pytest.fail(f"job {job_id} did not finish: {job}\n{cluster.logs()}")


def _worker_pid(postgres_url: str, job_id: str) -> int:
    """The process that ran the job: core.queue names workers host:pid/suffix."""
    engine = make_engine(postgres_url, migrate=False)
    try:
        with engine.connect() as conn:
            worker = conn.execute(select(JobRecord.worker).where(JobRecord.id == job_id)).scalar()
    finally:
        engine.dispose()
    assert worker, f"job {job_id} names no worker"
    return int(worker.split(":", 1)[1].split("/", 1)[0])


def _ask(client: httpx.Client, index: str, question: str) -> dict[str, Any]:
    body = {
        "messages": [{"role": "user", "content": question}],
        "data_sources": [{"type": "ondata", "parameters": {"index_name": index}}],
        "conversation_id": "c1",
    }
    response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    message: dict[str, Any] = response.json()["choices"][0]["message"]
    return message


def _cited(message: dict[str, Any]) -> list[dict[str, Any]]:
    """The citations the answer's [docN] markers name ([docN] is citations[N-1])."""
    citations: list[dict[str, Any]] = message["context"]["citations"]
    return [citations[int(n) - 1] for n in re.findall(r"\[doc(\d+)\]", message["content"])]


def _registered_chunks(client: httpx.Client, index: str) -> int:
    """Chunks the document registry says the index holds (one entry per uploaded file)."""
    documents = client.get(f"/v1/indexes/{index}/documents").json()["data"]
    assert sorted(d["filename"] for d in documents) == sorted(UPLOADS[index])
    return sum(int(d["chunk_count"]) for d in documents)


def _stored_chunk_ids(qdrant: QdrantStandIn, index: str) -> list[str]:
    with qdrant.lock:
        points, _ = qdrant.engine.scroll(f"ondata_{index}", limit=1000, with_payload=True)
    return [str(p.payload["chunk_id"]) for p in points if p.payload]


def test_scale_out_serve_and_two_workers_share_store_queue_and_index(
    cluster: Cluster, postgres_url: str
) -> None:
    engine = make_engine(postgres_url)
    admin = KeyStore(engine).create(role="admin", name="scale-out test").key
    engine.dispose()
    cluster.start("api", "serve", "--host", "127.0.0.1", "--port", str(cluster.port))
    workers = {cluster.start(name, "worker").pid: name for name in ("worker-1", "worker-2")}
    with httpx.Client(base_url=cluster.url, headers={"api-key": admin}, timeout=60) as client:
        _wait_ready(cluster, client)
        for index in UPLOADS:
            assert client.post("/v1/indexes", json={"name": index}).status_code == 201
        job_ids = [_upload(client, index, names) for index, names in UPLOADS.items()]
        jobs = [_wait_job(cluster, client, job_id) for job_id in job_ids]
        assert [j["status"] for j in jobs] == ["succeeded", "succeeded"], jobs
        pids = {_worker_pid(postgres_url, job_id) for job_id in job_ids}
        assert pids == set(workers), "each worker process ran one of the two jobs"

        # The API answers from the chunks the workers wrote, and records the conversation.
        hotels = _ask(client, "handbook", "What is the hotel limit in capital cities?")
        badges = _ask(client, "security", "What colour badge must visitors wear?")
        assert {c["filepath"] for c in _cited(hotels)} == {"travel.md"}
        assert {c["filepath"] for c in _cited(badges)} == {"security.md"}
        assert "180 euros" in hotels["content"]
        assert "red badge" in badges["content"]
        history = client.get("/v1/conversations/c1").json()
        assert [m["role"] for m in history["messages"]] == ["user", "assistant"] * 2
        assert history["messages"][3]["content"] == badges["content"]

        registered = {index: _registered_chunks(client, index) for index in UPLOADS}
    for index, expected in registered.items():
        chunk_ids = _stored_chunk_ids(cluster.qdrant, index)
        assert len(chunk_ids) == len(set(chunk_ids)) == expected > 0, index  # no dupes, none lost
