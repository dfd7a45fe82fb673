"""What reranking adds to a query: in-process search latency with and without a reranker.

Prints, for an index of the first --docs SciFact abstracts (built once through the ingestion
pipeline into bench/results/rerank-data/), p50/p95 over --queries SciFact queries (each asked
once, after a warm-up) of:
  1. the anchors: keyword and hybrid search without reranking (Searcher.search, top 5);
  2. semantic / vector_semantic_hybrid (the same, 50 candidates reranked) with
     - remote: RemoteReranker against the loopback fake rerank server of tests/fakes (so it
       measures the adapter's HTTP round trip and JSON, not a model: a real endpoint adds its
       own inference time),
     - local tiny: LocalReranker on the 2-layer random cross-encoder the tests use, on torch
       and on its ONNX Runtime export (rerank.runtime);
  3. each reranker's call alone on 50 candidates, and that of LocalReranker on a cross-encoder
     the size of cross-encoder/ms-marco-MiniLM-L6-v2 (the bundled all-MiniLM-L6-v2 encoder
     under a random one-label head: the real model's compute, meaningless scores), on torch
     and on ONNX Runtime, on --slow-queries queries only.
Larger rerankers cost more: bge-reranker-base has 12 layers of width 768 (about 8x the
MiniLM-L6 compute per pair), so run it on a GPU endpoint (TEI, vLLM) rather than in-process.
Usage: .venv/bin/python -m bench.rerank [--docs 600] [--queries 40] [--candidates 50]
       [--slow-queries 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import numpy as np

from core.settings import RerankSettings, Settings, configure_offline_environment

configure_offline_environment()

from ingest.service import open_pipeline  # noqa: E402
from ingest.sources import document_from_record  # noqa: E402
from retrieval.embedders import make_embedder  # noqa: E402
from retrieval.index import SearchMode, open_index  # noqa: E402
from retrieval.onnx_export import bundled_model_dir  # noqa: E402
from retrieval.rerank import LocalReranker, RemoteReranker, Reranker  # noqa: E402
from retrieval.search import Searcher, SearchRequest  # noqa: E402
from retrieval.sparse import Bm25Encoder  # noqa: E402
from tests.fakes.rerank_server import FakeRerankServer  # noqa: E402
from tests.support.tiny_reranker import save_tiny_cross_encoder  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATASET = ROOT.parent / "shared" / "datasets" / "scifact"
DATA_DIR = ROOT / "bench" / "results" / "rerank-data"
INDEX = "scifact"
WARMUP = 5
RUNTIMES = ("torch", "onnx")  # the local adapter on either engine (rerank.runtime)


def ensure_index(docs: int) -> dict[str, int]:
    """The first `docs` SciFact abstracts in an index under DATA_DIR (built once per size)."""
    built = DATA_DIR / "built.json"
    if built.exists() and json.loads(built.read_text())["documents"] == docs:
        facts: dict[str, int] = json.loads(built.read_text())
        return facts
    shutil.rmtree(DATA_DIR, ignore_errors=True)
    DATA_DIR.mkdir(parents=True)
    with (DATASET / "corpus.jsonl").open(encoding="utf-8") as fh:
        records = [json.loads(line) for _, line in zip(range(docs), fh, strict=False)]
    documents = [document_from_record(r["_id"], title=r["title"], text=r["text"]) for r in records]
    with open_pipeline(Settings(data_dir=DATA_DIR), INDEX) as pipeline:
        report = pipeline.ingest_documents(documents)
    facts = {"documents": report.documents_ingested, "chunks": report.chunks_written}
    built.write_text(json.dumps(facts))
    return facts


def queries(n: int) -> list[str]:
    with (DATASET / "queries.jsonl").open(encoding="utf-8") as fh:
        return [json.loads(line)["text"] for _, line in zip(range(n + WARMUP), fh, strict=False)]


def save_minilm_cross_encoder(path: Path) -> Path:
    """The bundled MiniLM-L6 encoder under a random one-label head (ms-marco-MiniLM-L6 size)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    source = str(bundled_model_dir())
    model = AutoModelForSequenceClassification.from_pretrained(
        source, num_labels=1, local_files_only=True
    )
    model.save_pretrained(str(path))
    AutoTokenizer.from_pretrained(source, local_files_only=True).save_pretrained(str(path))
    return path


async def timed(
    one: Callable[[str], Awaitable[object]], asked: Sequence[str], *, warmup: int = WARMUP
) -> list[float]:
    """Milliseconds per call after `warmup` calls (each query asked once)."""
    for query in asked[:warmup]:
        await one(query)
    out = []
    for query in asked[warmup:]:
        began = time.perf_counter()
        await one(query)
        out.append((time.perf_counter() - began) * 1000)
    return out


def line(what: str, ms: Sequence[float], anchor: Sequence[float] | None = None) -> str:
    p50, p95 = float(np.percentile(ms, 50)), float(np.percentile(ms, 95))
    added = f"{p50 - float(np.percentile(anchor, 50)):>+9.1f}" if anchor is not None else " " * 9
    return f"{what:<64} {p50:>8.1f} {p95:>8.1f} {added}"


async def measure(fresh: Callable[[], Searcher], asked: list[str], label: str) -> None:
    """Reranked search in both semantic modes beside the same search unreranked, each loop on
    a fresh Searcher (its query-vector cache would otherwise favour the second loop)."""
    modes: tuple[tuple[str, SearchMode], ...] = (
        ("semantic", "keyword"),
        ("vector_semantic_hybrid", "hybrid"),
    )
    for query_type, mode in modes:
        ms = await timed(_searching(fresh(), mode, rerank=True), asked)
        anchor = await timed(_searching(fresh(), mode), asked)
        show(line(f"{query_type}, {label}", ms, anchor))


async def call_alone(
    reranker: Reranker, searcher: Searcher, asked: list[str], label: str, candidates: int
) -> None:
    """The reranker's call on one query's `candidates` hybrid hits (the first query's)."""
    texts = [c.chunk.embed_text for c in searcher.rank(INDEX, asked[0], limit=candidates)]
    warmup = min(WARMUP, len(asked) // 2)
    alone = await timed(lambda q: reranker.rerank(q, texts), asked, warmup=warmup)
    show(line(f"  rerank call alone, {len(texts)} candidates, {label}", alone))


def show(row: str) -> None:
    print(row, flush=True)


def _searching(
    searcher: Searcher, mode: SearchMode, *, rerank: bool = False
) -> Callable[[str], Awaitable[object]]:
    def one(query: str) -> Awaitable[object]:
        request = SearchRequest(queries=(query,), index_name=INDEX, mode=mode, rerank=rerank)
        return searcher.search(request)

    return one


async def run(args: argparse.Namespace, models: Path) -> None:
    settings = Settings(data_dir=DATA_DIR)
    embedder = make_embedder(settings.embedding)
    index = open_index(settings, INDEX, dimension=embedder.dimension)
    asked = queries(args.queries)

    def searcher(reranker: Reranker | None) -> Searcher:
        return Searcher(
            embedder=embedder,
            sparse=Bm25Encoder(),
            indexes=lambda _name: index,
            reranker=reranker,
            rerank_candidates=args.candidates,
        )

    plain = searcher(None)
    for mode in ("keyword", "hybrid"):
        ms = await timed(_searching(plain, mode), asked)
        show(line(f"{mode} search, no rerank (anchor)", ms))
    with FakeRerankServer() as fake:
        remote = RemoteReranker.from_settings(
            RerankSettings(backend="remote", base_url=fake.base_url)
        )
        await measure(lambda: searcher(remote), asked, "remote (loopback fake)")
        await call_alone(remote, plain, asked, "remote (loopback fake)", args.candidates)
        await remote.aclose()
    tiny_dir = save_tiny_cross_encoder(models / "tiny")
    for runtime in RUNTIMES:
        tiny = LocalReranker.load(tiny_dir, runtime=runtime, export_dir=models / f"tiny-{runtime}")
        label = f"local tiny (2x32), {runtime}"
        await measure(lambda: searcher(tiny), asked, label)  # noqa: B023 (awaited here)
        await call_alone(tiny, plain, asked, label, args.candidates)
    # a real-size model costs much more per call on a small CPU: only its call, on a few queries
    minilm_dir = save_minilm_cross_encoder(models / "minilm")
    few = asked[: args.slow_queries + 1]
    for runtime in RUNTIMES:
        export = models / f"minilm-{runtime}"
        minilm = LocalReranker.load(minilm_dir, runtime=runtime, export_dir=export)
        label = f"local MiniLM-L6 size (6x384), {runtime}"
        await call_alone(minilm, plain, few, label, args.candidates)
    index.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=600)
    parser.add_argument("--queries", type=int, default=40)
    parser.add_argument("--candidates", type=int, default=50)
    parser.add_argument("--slow-queries", type=int, default=4, help="for the MiniLM-size model")
    args = parser.parse_args()
    if not DATASET.is_dir():
        sys.exit(f"{DATASET} is absent: this bench needs the SciFact corpus and queries")
    facts = ensure_index(args.docs)
    print(
        f"index: {facts['documents']} SciFact abstracts, {facts['chunks']} chunks; "
        f"{args.queries} queries ({WARMUP} more to warm up), {args.candidates} candidates, top 5"
    )
    print(f"{'':<64} {'p50 ms':>8} {'p95 ms':>8} {'added':>9}")
    with tempfile.TemporaryDirectory() as models:
        asyncio.run(run(args, Path(models)))
    print("load average:", " ".join(Path("/proc/loadavg").read_text().split()[:3]))


if __name__ == "__main__":
    main()
