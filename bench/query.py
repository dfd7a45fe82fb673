"""Query latency on SciFact over HTTP, beside its in-process floor, in one run.

Prints, for the SciFact index (5,183 abstracts) on this machine:
  1. the floor: in-process query embedding (ONNX) + one hybrid Qdrant Edge query, from 1/4/16
     threads;
  2. POST /v1/search and extractive POST /v1/chat/completions against `ondata serve` (the real
     app under uvicorn, a separate process on loopback) from 1/4/16 concurrent clients;
  3. streaming overhead: the time to the first streamed byte of a grounded answer through a
     chat model (the loopback fake OpenAI server of tests/fakes, with a known time to first
     token and --token-ms a token, streamed or not), minus that model's own time (the intent
     rewrite and the answer's first token): a server that waited for the whole reply would
     show the model's generation time here.
Every request asks a SciFact query not asked before in that server (no cache hits).
The index is built once through the ingestion pipeline into bench/results/query-data/.
Usage: .venv/bin/python -m bench.query [--requests 80] [--clients 1,4,16] [--ttft-ms 100]
       [--token-ms 20] [--rebuild]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from core.settings import Settings, configure_offline_environment

configure_offline_environment()

from ingest.service import open_pipeline  # noqa: E402
from ingest.sources import document_from_record  # noqa: E402
from retrieval.embedders import make_embedder  # noqa: E402
from retrieval.index import open_index  # noqa: E402
from retrieval.search import Searcher  # noqa: E402
from retrieval.sparse import Bm25Encoder  # noqa: E402
from tests.fakes.openai_server import CHAT_MODEL, FakeOpenAIServer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATASET = ROOT.parent / "shared" / "datasets" / "scifact"
DATA_DIR = ROOT / "bench" / "results" / "query-data"
BUILT = DATA_DIR / "built.json"
INDEX = "scifact"
TOP_N = 5
OVERFETCH = 4  # Searcher's default: top_n * 4 hits per query
WARMUP = 8
SERVER_TIMING = re.compile(r"(\w+);dur=([\d.]+)")


@dataclass(frozen=True)
class Row:
    """One measured line of the table."""

    what: str
    clients: int
    latencies_ms: list[float]
    wall_s: float | None  # None: not a throughput measurement
    errors: int = 0

    def p(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q))

    def line(self) -> str:
        rate = f"{len(self.latencies_ms) / self.wall_s:.1f}" if self.wall_s else "-"
        errors = f"  errors={self.errors}" if self.errors else ""
        return (
            f"{self.what:<36} {self.clients:>7} {len(self.latencies_ms):>5} "
            f"{self.p(50):>8.1f} {self.p(95):>8.1f} {rate:>7}{errors}"
        )


# --- the index ------------------------------------------------------------------------------


def settings_for(**env: str) -> Settings:
    """The settings `ondata serve` gets from these ONDATA_* variables, on the bench data dir."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return Settings(data_dir=DATA_DIR)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key)
            else:
                os.environ[key] = value


def ensure_index(rebuild: bool) -> dict[str, Any]:
    """Build the SciFact index once (ingestion pipeline, then optimize); returns its facts."""
    if BUILT.exists() and not rebuild:
        facts: dict[str, Any] = json.loads(BUILT.read_text())
        return facts
    shutil.rmtree(DATA_DIR, ignore_errors=True)
    DATA_DIR.mkdir(parents=True)
    records = [json.loads(line) for line in (DATASET / "corpus.jsonl").open(encoding="utf-8")]
    docs = [document_from_record(r["_id"], title=r["title"], text=r["text"]) for r in records]
    started = time.perf_counter()
    with open_pipeline(settings_for(), INDEX) as pipeline:
        report = pipeline.ingest_documents(docs)
        optimize = getattr(pipeline.index, "optimize", None)
        if optimize is not None:
            optimize()
    facts = {
        "documents": report.documents_ingested,
        "chunks": report.chunks_written,
        "build_s": round(time.perf_counter() - started, 1),
    }
    BUILT.write_text(json.dumps(facts))
    return facts


def load_queries() -> list[str]:
    with (DATASET / "queries.jsonl").open(encoding="utf-8") as fh:
        return [json.loads(line)["text"] for line in fh]


class Pool:
    """Hands out SciFact queries, each once, so no request hits a query cache."""

    def __init__(self, queries: Sequence[str]) -> None:
        self._queries = list(queries)
        self._next = 0

    def take(self, n: int) -> list[str]:
        if self._next + n > len(self._queries):
            raise SystemExit(f"out of queries: asked {n} more after {self._next}; use --requests")
        out = self._queries[self._next : self._next + n]
        self._next += n
        return out


# --- the floor: in-process embedding + Qdrant query -----------------------------------------


def measure_floor(
    queries: Sequence[str], clients: Sequence[int], requests: int, env: dict[str, str]
) -> list[Row]:
    """Searcher.rank: embed the query, BM25 terms, one hybrid query -- the index's own ranking
    with the server's embedder, fusion and settings, without strictness, dedupe or HTTP."""
    settings = settings_for(**env)
    embedder = make_embedder(settings.embedding)
    index = open_index(settings, INDEX, dimension=embedder.dimension)
    searcher = Searcher(embedder=embedder, sparse=Bm25Encoder(), indexes=lambda _: index)

    def one(query: str) -> float:
        started = time.perf_counter()
        searcher.rank(INDEX, query, mode="hybrid", limit=TOP_N * OVERFETCH)
        return (time.perf_counter() - started) * 1000

    try:
        for query in queries[:WARMUP]:
            one(query)
        return [_threaded(one, queries, c, requests) for c in clients]
    finally:
        index.close()


def _threaded(one: Callable[[str], float], queries: Sequence[str], c: int, n: int) -> Row:
    batch = list(queries[:n])
    started = time.perf_counter()
    with ThreadPoolExecutor(c) as pool:
        # each thread runs its share back to back, like one client
        shares = [batch[i::c] for i in range(c)]
        latencies = [ms for got in pool.map(lambda s: [one(q) for q in s], shares) for ms in got]
    return Row("floor: embed + Qdrant hybrid query", c, latencies, time.perf_counter() - started)


# --- the server -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def served(env: dict[str, str]) -> Iterator[str]:
    """`ondata serve` on a loopback port, in its own process; yields the base URL."""
    port = free_port()
    full = {**os.environ, "ONDATA_DATA_DIR": str(DATA_DIR), "ONDATA_LOG_FORMAT": "json", **env}
    command = [str(Path(sys.executable).with_name("ondata")), "serve", "--port", str(port)]
    log = (DATA_DIR / "serve.log").open("ab")
    process = subprocess.Popen(command, env=full, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, process)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def _wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = DATA_DIR / "serve.log"
            raise SystemExit(f"ondata serve exited ({process.returncode}); see {log}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit("ondata serve was not ready within 180 s")


def search_body(query: str) -> dict[str, Any]:
    return {"index_name": INDEX, "query": query, "top_n_documents": TOP_N}


def chat_body(query: str, *, stream: bool = False) -> dict[str, Any]:
    source = {"type": "ondata", "parameters": {"index_name": INDEX, "top_n_documents": TOP_N}}
    return {
        "messages": [{"role": "user", "content": query}],
        "data_sources": [source],
        "stream": stream,
    }


async def load(
    url: str, path: str, bodies: Sequence[dict[str, Any]], clients: int, what: str
) -> Row:
    """`clients` concurrent clients, each sending its share of `bodies` back to back."""
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as http:
        shares = [bodies[i::clients] for i in range(clients)]
        started = time.perf_counter()
        results = await asyncio.gather(*(_client(http, path, share) for share in shares))
        wall = time.perf_counter() - started
    latencies = [ms for got, _ in results for ms in got]
    return Row(what, clients, latencies, wall, errors=sum(e for _, e in results))


async def _client(
    http: httpx.AsyncClient, path: str, bodies: Sequence[dict[str, Any]]
) -> tuple[list[float], int]:
    latencies, errors = [], 0
    for body in bodies:
        started = time.perf_counter()
        response = await http.post(path, json=body)
        latencies.append((time.perf_counter() - started) * 1000)
        errors += response.status_code != 200
    return latencies, errors


async def http_rows(url: str, pool: Pool, clients: Sequence[int], requests: int) -> list[Row]:
    """/v1/search, then extractive chat completions, at each client count."""
    await load(url, "/v1/search", [search_body(q) for q in pool.take(WARMUP)], 1, "warm-up")
    await load(url, "/v1/chat/completions", [chat_body(q) for q in pool.take(WARMUP)], 1, "-")
    rows = []
    for c in clients:
        bodies = [search_body(q) for q in pool.take(requests)]
        rows.append(await load(url, "/v1/search", bodies, c, "/v1/search (hybrid)"))
    for c in clients:
        bodies = [chat_body(q) for q in pool.take(requests)]
        rows.append(await load(url, "/v1/chat/completions", bodies, c, "chat, extractive"))
    return rows


# --- streaming overhead over a chat model ------------------------------------------------------


async def first_byte_ms(
    http: httpx.AsyncClient, body: dict[str, Any], phases: dict[str, list[float]]
) -> float:
    """Time to the first byte of a streamed response body (then reads the rest); the
    server's own phases (Server-Timing: retrieve, generate to first content) go to `phases`."""
    started = time.perf_counter()
    async with http.stream("POST", "/v1/chat/completions", json=body) as response:
        first = None
        async for _ in response.aiter_raw():
            first = first or (time.perf_counter() - started) * 1000
        if response.status_code != 200 or first is None:
            raise SystemExit(f"streamed request failed: HTTP {response.status_code}")
    for name, value in SERVER_TIMING.findall(response.headers.get("server-timing", "")):
        phases.setdefault(name, []).append(float(value))
    return first


async def model_own_ms(fake: FakeOpenAIServer, query: str) -> tuple[float, float]:
    """The chat model's own times, from this process: a complete (intent) reply, and the
    first content delta of a streamed reply."""
    import openai

    messages: Any = [{"role": "user", "content": query}]
    async with openai.AsyncOpenAI(base_url=fake.base_url, api_key="k") as client:
        started = time.perf_counter()
        await client.chat.completions.create(model=CHAT_MODEL, messages=messages)
        complete = (time.perf_counter() - started) * 1000
        started = time.perf_counter()
        stream = await client.chat.completions.create(
            model=CHAT_MODEL, messages=messages, stream=True
        )
        ttft = 0.0
        async for chunk in stream:
            if not ttft and chunk.choices and chunk.choices[0].delta.content:
                ttft = (time.perf_counter() - started) * 1000
    return complete, ttft


async def stream_rows(
    pool: Pool, ttft_s: float, requests: int, server_env: dict[str, str], *, token_s: float
) -> list[Row]:
    """Streamed grounded answers through the fake chat model (one client), and its own times."""
    with FakeOpenAIServer() as fake:
        fake.script(delay_s=ttft_s, chunk_delay_s=token_s, times=10**6, endpoint="chat")
        env = {
            **server_env,
            "ONDATA_CHAT__PROVIDER": "compatible",
            "ONDATA_CHAT__BASE_URL": fake.base_url,
            "ONDATA_CHAT__MODEL": CHAT_MODEL,
            "ONDATA_CHAT__API_KEY": fake.api_key,
            "ONDATA_CHAT__MAX_RETRIES": "0",
        }
        phases: dict[str, list[float]] = {}
        with served(env) as url:
            await _first_bytes(url, pool.take(WARMUP // 2), {})
            started = time.perf_counter()
            ttfb = await _first_bytes(url, pool.take(requests), phases)
            wall = time.perf_counter() - started
        own = [await model_own_ms(fake, q) for q in pool.take(requests)]
    return [
        Row("chat model, streamed: first byte", 1, ttfb, wall),
        Row("model alone: intent reply, complete", 1, [a for a, _ in own], None),
        Row("model alone: answer, first token", 1, [b for _, b in own], None),
        *(Row(f"  server-timing: {name}", 1, ms, None) for name, ms in phases.items()),
    ]


async def _first_bytes(
    url: str, queries: Sequence[str], phases: dict[str, list[float]]
) -> list[float]:
    async with httpx.AsyncClient(base_url=url, timeout=120) as http:
        return [await first_byte_ms(http, chat_body(q, stream=True), phases) for q in queries]


# --- report -----------------------------------------------------------------------------------


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def verdicts(rows: list[Row], streamed: list[Row]) -> list[str]:
    def find(what: str, clients: int) -> Row | None:
        return next((r for r in rows if r.what.startswith(what) and r.clients == clients), None)

    lines = []
    floor, search, chat = find("floor", 4), find("/v1/search", 4), find("chat, extractive", 4)
    if floor and search:
        ok = search.p(95) <= 2 * floor.p(95)
        lines.append(
            f"search p95 at 4 clients {search.p(95):.1f} ms <= 2 x floor p95 at 4 "
            f"{2 * floor.p(95):.1f} ms: {'met' if ok else 'MISSED'}"
        )
    if chat:
        ok = chat.p(95) <= 100
        lines.append(
            f"extractive chat p95 at 4 clients {chat.p(95):.1f} ms <= 100 ms: "
            f"{'met' if ok else 'MISSED'}"
        )
    if streamed:
        ttfb, rewrite, first = streamed[:3]
        # the model's own time at its median: its jitter is not ours to count
        model = rewrite.p(50) + first.p(50)
        for q in (50, 95):
            over = ttfb.p(q) - model
            lines.append(
                f"first streamed byte p{q} {ttfb.p(q):.1f} ms - model's own p50 (intent "
                f"{rewrite.p(50):.1f} + first token {first.p(50):.1f}) = {over:.1f} ms "
                f"<= 30 ms: {'met' if over <= 30 else 'MISSED'}"
            )
    return lines


def print_table(
    facts: dict[str, Any],
    rows: list[Row],
    streamed: list[Row],
    loads: list[str],
    env: dict[str, str],
) -> None:
    print(
        f"\nSciFact: {facts['documents']} abstracts, {facts['chunks']} chunks; "
        f"{os.cpu_count()} CPUs; {' '.join(f'{k}={v}' for k, v in env.items()) or 'defaults'}; "
        f"load average (1/5/15 min) {' -> '.join(loads)}"
    )
    print(f"{'what':<36} {'clients':>7} {'n':>5} {'p50 ms':>8} {'p95 ms':>8} {'req/s':>7}")
    for row in [*rows, *streamed]:
        print(row.line())
    print()
    for line in verdicts(rows, streamed):
        print(line)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=80, help="requests per measured line")
    parser.add_argument("--clients", default="1,4,16", help="concurrent clients, comma-separated")
    parser.add_argument("--ttft-ms", type=float, default=100.0, help="the fake model's TTFT")
    parser.add_argument(
        "--token-ms", type=float, default=20.0, help="the fake model's time between tokens"
    )
    parser.add_argument("--stream-requests", type=int, default=30)
    parser.add_argument("--rebuild", action="store_true", help="rebuild the SciFact index")
    parser.add_argument(
        "--embedding-threads", type=int, help="ONDATA_EMBEDDING__THREADS for the server and floor"
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    clients = [int(c) for c in args.clients.split(",")]
    facts = ensure_index(args.rebuild)
    pool = Pool(load_queries())
    loads = [load_average()]
    env = {}
    if args.embedding_threads:
        env["ONDATA_EMBEDDING__THREADS"] = str(args.embedding_threads)
    floor = measure_floor(pool.take(args.requests), clients, args.requests, env)
    with served(env) as url:
        rows = asyncio.run(http_rows(url, pool, clients, args.requests))
    loads.append(load_average())
    streamed = asyncio.run(
        stream_rows(
            pool, args.ttft_ms / 1000, args.stream_requests, env, token_s=args.token_ms / 1000
        )
    )
    loads.append(load_average())
    print_table(facts, [*floor, *rows], streamed, loads, env)


if __name__ == "__main__":
    main()
