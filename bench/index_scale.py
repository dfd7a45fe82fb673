"""The embedded index at scale: 100k to 1M chunks through the real Qdrant Edge adapter.

Builds one index of N chunks step by step (100k, 200k, 500k, 1M, up to --chunks) and, at each
size, reports what an operator sizes a machine by: upsert rate, optimise time, disk bytes per
chunk, the serving process's RSS and cold start, p50/p95 of vector / keyword / hybrid top-10
from 1 and 4 threads (and their throughput), unfiltered and ACL-filtered, and query p95
*during* the optimise of the size's last ingestion batch (its last 10%, what `maintain()`
lets pile up) and during a 10k-document delete, beside the same queries' idle p95 (the
anchors, same run: before the optimise, on the shard the queries see meanwhile, and after).
During the optimise queries arrive open-loop at half the rate the shard serves them idle (one
every 20 ms at least), so the figure measures the optimise and not an overloaded queue.
Optimises run the product's way (`index.optimize_apart_from`: in a child process on a copy).

The chunks are real: SciFact documents chunked by ingest's Chunker, embedded once by the
bundled model (chunk vectors and the int8 sentence vectors of the payload, from one forward
pass, exactly as ingestion stores them) and BM25-encoded; they are then reused with fresh ids,
each dense vector with a small perturbation (cosine ~0.97 to its source), so the vector and
payload distributions are real while the model is not re-run. Documents have 5 chunks each and
1-3 of 20 ACL groups; the ACL-filtered queries are a user in 2 groups (~20% of the chunks).
Queries are SciFact's test questions, embedded by the same model.

Each size's latency figures come from a fresh process that opens the index (cold start), so
its RSS is the serving process's, not the builder's. RSS is split into anonymous memory (what
the process needs) and file-backed pages (the kernel's mmap cache of vectors and payload,
reclaimable under memory pressure).

Usage:
    .venv/bin/python -m bench.index_scale --chunks 1000000 [--json] [--dir DIR] [--base 4000]
With --json the last line is {"results": [{...}, ...]}, one object per size.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from core.models import Chunk, Document, Element, SparseVector
from core.settings import Settings, configure_offline_environment
from ingest.chunking import Chunker
from ingest.jobs import SYNC_DELETE_PAGE
from retrieval.embedders import SpanEmbedder, make_embedder
from retrieval.index import IndexedChunk, IndexQuery, MetadataFilter, QdrantEdgeIndex, SearchMode
from retrieval.sentences import content_spans, encode_sentence_vectors
from retrieval.sparse import Bm25Encoder

ROOT = Path(__file__).resolve().parents[1]
SCIFACT = ROOT.parent / "shared" / "datasets" / "scifact"
SMOKE = ROOT / "data" / "eval" / "smoke"
CACHE = ROOT / "bench" / "results" / "index_scale"
STEPS = (100_000, 200_000, 500_000, 1_000_000)
DIM = 384
CHUNKS_PER_DOC = 5
GROUPS = 20
USER_GROUPS = ("g3", "g11")
NOISE = 0.25  # norm of the perturbation added to each unit vector before renormalising
BATCH = 1_000
DELETE_DOCS = 10_000
INTERVAL_S = 0.02  # one query every 20 ms while a delete runs; at least that during an optimise
LOAD = 0.5  # during an optimise, queries arrive at this share of what the shard serves idle
LAST_BATCH = 0.10  # each size's last ingestion batch, optimised while queries run
MODES: tuple[SearchMode, ...] = ("vector", "keyword", "hybrid")


# --- the base chunks: real text, vectors and payloads -------------------------------------


@dataclass
class Base:
    chunks: list[Chunk]
    dense: npt.NDArray[np.float32]
    sparse: list[SparseVector]
    sentences: list[str | None]
    queries: list[tuple[npt.NDArray[np.float32], SparseVector]]

    def plain(self) -> dict[str, Any]:
        """Builtins and arrays only, so the cache loads whatever module runs this one."""
        return {
            "chunks": [c.model_dump(mode="json") for c in self.chunks],
            "dense": self.dense,
            "sparse": [s.model_dump() for s in self.sparse],
            "sentences": self.sentences,
            "queries": [(d, s.model_dump()) for d, s in self.queries],
        }

    @classmethod
    def from_plain(cls, data: dict[str, Any]) -> Base:
        return cls(
            chunks=[Chunk.model_validate(c) for c in data["chunks"]],
            dense=data["dense"],
            sparse=[SparseVector.model_validate(s) for s in data["sparse"]],
            sentences=data["sentences"],
            queries=[(d, SparseVector.model_validate(s)) for d, s in data["queries"]],
        )


def _records(path: Path, limit: int) -> Iterator[tuple[str, str, str]]:
    with (path / "corpus.jsonl").open(encoding="utf-8") as lines:
        for n, line in enumerate(lines):
            if n >= limit:
                return
            row = json.loads(line)
            yield str(row["_id"]), str(row.get("title") or ""), str(row["text"])


def _questions(path: Path, limit: int) -> list[str]:
    with (path / "queries.jsonl").open(encoding="utf-8") as lines:
        return [str(json.loads(line)["text"]) for line in lines][:limit]


def build_base(n_docs: int) -> Base:
    """Chunk, embed and encode the first n_docs corpus documents (cached under bench/results)."""
    source = SCIFACT if SCIFACT.is_dir() else SMOKE
    cache = CACHE / f"base-{source.name}-{n_docs}.pkl"
    if cache.is_file():
        with cache.open("rb") as f:
            return Base.from_plain(pickle.load(f))
    settings = Settings()
    chunker = Chunker(
        chunk_size=settings.chunking.chunk_size, chunk_overlap=settings.chunking.chunk_overlap
    )
    chunks: list[Chunk] = []
    for doc_id, title, text in _records(source, n_docs):
        doc = Document(
            doc_id=doc_id,
            source=f"{source.name}/{doc_id}.txt",
            title=title or doc_id,
            filepath=f"{source.name}/{doc_id}.txt",
            content_hash=doc_id,
            elements=(Element(text=text),),
        )
        chunks.extend(chunker.chunk(doc))
    embedder = make_embedder(settings.embedding)
    assert isinstance(embedder, SpanEmbedder)
    started = time.perf_counter()
    texts = [c.embed_text for c in chunks]
    spans = [content_spans(c.embed_text, c.content) for c in chunks]
    dense, pooled = embedder.embed_spans(texts, spans)
    print(
        f"# base: {len(chunks)} chunks of {source.name} embedded in "
        f"{time.perf_counter() - started:.0f} s",
        file=sys.stderr,
    )
    bm25 = Bm25Encoder()
    questions = _questions(source, 300)
    base = Base(
        chunks=chunks,
        dense=np.asarray(dense, dtype=np.float32),
        sparse=[bm25.encode_document(t) for t in texts],
        sentences=[encode_sentence_vectors(p) if len(p) else None for p in pooled],
        queries=[(embedder.embed_query(q), bm25.encode_query(q)) for q in questions],
    )
    CACHE.mkdir(parents=True, exist_ok=True)
    with cache.open("wb") as f:
        pickle.dump(base.plain(), f)
    return base


def doc_groups(doc: int) -> tuple[str, ...]:
    """1-3 of the GROUPS ACL groups, fixed per document number."""
    state = (doc * 2654435761) % 2**32
    count = 1 + state % 3
    return tuple(sorted({f"g{(state >> (5 * k)) % GROUPS}" for k in range(1, count + 1)}))


def synthetic(base: Base, start: int, stop: int) -> list[IndexedChunk]:
    """Chunks start..stop-1: base chunk i % len(base), a fresh id, a perturbed dense vector."""
    rng = np.random.default_rng(start)
    n = len(base.chunks)
    rows = np.arange(start, stop) % n
    dense = base.dense[rows] + rng.standard_normal((stop - start, DIM)).astype(np.float32) * (
        NOISE / np.sqrt(DIM)
    )
    dense /= np.linalg.norm(dense, axis=1, keepdims=True)
    items = []
    for k, i in enumerate(range(start, stop)):
        source = base.chunks[rows[k]]
        doc = i // CHUNKS_PER_DOC
        chunk = source.model_copy(
            update={
                "chunk_id": f"c{i}",
                "doc_id": f"doc{doc}",
                "chunk_index": i % CHUNKS_PER_DOC,
                "filepath": f"store/{doc % 997}/doc{doc}.pdf",
                "acl_groups": doc_groups(doc),
            }
        )
        items.append(
            IndexedChunk(
                chunk=chunk,
                dense=dense[k],
                sparse=base.sparse[rows[k]],
                sentence_vectors=base.sentences[rows[k]],
            )
        )
    return items


# --- measuring ----------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else 0.0


def requests(
    base: Base, mode: SearchMode, flt: MetadataFilter | None, count: int
) -> list[IndexQuery]:
    queries = [base.queries[i % len(base.queries)] for i in range(count)]
    return [
        IndexQuery(mode=mode, limit=10, dense=d, sparse=s, filter=flt, fusion="dbsf")
        for d, s in queries
    ]


def latencies(index: QdrantEdgeIndex, batch: list[IndexQuery], threads: int) -> list[float]:
    """Milliseconds per query, the batch spread over `threads` threads."""

    def one(request: IndexQuery) -> float:
        started = time.perf_counter()
        index.query(request)
        return 1000 * (time.perf_counter() - started)

    if threads == 1:
        return [one(r) for r in batch]
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(one, batch))


def while_running(
    index: QdrantEdgeIndex,
    batch: list[IndexQuery],
    work: Callable[[], object],
    interval: float = INTERVAL_S,
) -> tuple[float, list[float]]:
    """Run `work` in a thread; meanwhile send a query every `interval` seconds until it ends.

    Open loop: each query's latency runs from when it was due, not from when this thread got
    round to sending it, so a stall (the engine holding a lock, or the GIL) counts in full
    instead of silently thinning the samples.
    """
    done = threading.Event()
    took: list[float] = []
    ended: list[float] = []

    def run() -> None:
        started = time.perf_counter()
        try:
            work()
        finally:
            ended.append(time.perf_counter())
            took.append(ended[0] - started)
            done.set()

    thread = threading.Thread(target=run)
    origin = time.perf_counter()
    thread.start()
    ms: list[float] = []
    k = 0
    while True:
        due = origin + k * interval
        if done.is_set() and due > ended[0]:
            break  # every query that fell due while the work ran has been sent
        wait = due - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        index.query(batch[k % len(batch)])
        ms.append(1000 * (time.perf_counter() - due))
        k += 1
    thread.join()
    return took[0], ms


def memory() -> dict[str, int]:
    """VmRSS, RssAnon, RssFile and VmHWM of this process, in bytes."""
    fields: dict[str, int] = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
            fields[key] = int(value.split()[0]) * 1024
    return fields


def disk_bytes(path: Path) -> int:
    """Bytes the directory's files occupy on disk (allocated blocks, so sparse files count true)."""
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            total += os.stat(os.path.join(folder, name)).st_blocks * 512
    return total


# --- the serving process: cold start, latency matrix, deletes -------------------------------


def serve(path: Path, base_docs: int, queries: int, delete_from: int) -> dict[str, Any]:
    base = build_base(base_docs)
    acl = MetadataFilter(acl_groups=USER_GROUPS)
    probe = requests(base, "hybrid", acl, 1)[0]
    started = time.perf_counter()
    index = QdrantEdgeIndex.open(path, dimension=DIM)  # reads and deletes only: no optimise
    opened = time.perf_counter() - started
    index.query(probe)
    out: dict[str, Any] = {
        "open_s": opened,
        "cold_start_s": time.perf_counter() - started,
        "chunks": index.count(),
        # searched in parallel, one core each (index.segments; the appendable one included)
        "segments": index.segment_count(),
    }
    for mode in MODES:
        for label, flt in (("", None), ("_acl", acl)):
            batch = requests(base, mode, flt, queries)
            latencies(index, batch[:20], 1)  # warm the pages this mode touches
            for threads in (1, 4):
                started = time.perf_counter()
                ms = latencies(index, batch, threads)
                key = f"{mode}{label}_t{threads}"
                out[f"{key}_p50_ms"] = statistics.median(ms)
                out[f"{key}_p95_ms"] = percentile(ms, 0.95)
                # throughput: with `threads` clients always waiting, their mean latency is
                # threads / throughput (Little's law), whatever the percentiles' spread
                out[f"{key}_qps"] = len(batch) / (time.perf_counter() - started)
    out["hybrid_p95_ms"] = out["hybrid_t4_p95_ms"]
    out["hybrid_acl_p95_ms"] = out["hybrid_acl_t4_p95_ms"]
    out |= {f"{k.lower()}_bytes": v for k, v in memory().items()}
    out["rss_bytes"] = out["vmrss_bytes"]

    hybrid = requests(base, "hybrid", acl, queries)
    idle = latencies(index, hybrid, 1)
    doomed = [f"doc{d}" for d in range(delete_from, delete_from + DELETE_DOCS)]

    def delete_all() -> None:  # as a folder sync does: SYNC_DELETE_PAGE documents per write
        for start in range(0, len(doomed), SYNC_DELETE_PAGE):
            index.delete_documents(doomed[start : start + SYNC_DELETE_PAGE])

    took, during = while_running(index, hybrid, delete_all)
    single = [f"doc{d}" for d in range(delete_from + DELETE_DOCS, delete_from + DELETE_DOCS + 50)]
    started = time.perf_counter()
    for doc_id in single:  # the anchor: one document per call, as DELETE .../documents/{id}
        index.delete(doc_id=doc_id)
    out |= {
        "delete_one_ms": 1000 * (time.perf_counter() - started) / len(single),
        "delete_docs": len(doomed),
        "delete_s": took,
        "idle_hybrid_acl_t1_p95_ms": percentile(idle, 0.95),
        "p95_during_delete_ms": percentile(during, 0.95),
        "queries_during_delete": len(during),
        "chunks_after_delete": index.count(),
    }
    index.close()
    return out


# --- the builder ---------------------------------------------------------------------------


def step(index: QdrantEdgeIndex, base: Base, start: int, stop: int, queries: int) -> dict[str, Any]:
    """Upsert chunks start..stop-1 (fresh ids) and optimise: the bulk, then a last batch.

    The bulk is upserted and optimised with nothing else running (the build's own time); the
    last LAST_BATCH of the size is then upserted as one ingestion batch and optimised while
    queries arrive at half the rate the shard serves them idle, one at a time (every
    INTERVAL_S at least): what `maintain()` does after an ingestion run, which
    optimises once unindexed vectors reach 10% of the index.
    """
    last = min(stop - start, int(LAST_BATCH * stop))
    middle = stop - last
    started = time.perf_counter()
    for lo in range(start, middle, BATCH):
        index.upsert(synthetic(base, lo, min(middle, lo + BATCH)))
    upsert_s = time.perf_counter() - started
    started = time.perf_counter()
    index.optimize()
    optimise_s = time.perf_counter() - started
    started = time.perf_counter()
    for lo in range(middle, stop, BATCH):
        index.upsert(synthetic(base, lo, min(stop, lo + BATCH)))
    upsert_s += time.perf_counter() - started
    hybrid = requests(base, "hybrid", None, queries)
    latencies(index, hybrid[:20], 1)
    # two anchors: the shard as queries see it while the optimise runs (the batch's points
    # not yet in an HNSW graph), and the optimised shard after
    before = latencies(index, hybrid, 1)
    # open loop below saturation: past it (each query taking longer than the interval) the
    # queue grows whatever the optimise does, and p95 measures the queue, not the optimise
    interval = max(INTERVAL_S, statistics.fmean(before) / 1000 / LOAD)
    index.last_optimize = {}
    batch_s, during = while_running(index, hybrid, index.optimize, interval)
    idle = latencies(index, hybrid, 1)
    # the optimise apart's phases, and each phase's queries (query k fell due k intervals in)
    phases = {f"batch_{k}": v for k, v in index.last_optimize.items()}
    if phases:
        copied = phases["batch_copy_s"]
        optimized = copied + phases["batch_child_s"]
        spans = {"copy": (0.0, copied), "child": (copied, optimized), "swap": (optimized, 1e9)}
        for phase, (begin, end) in spans.items():
            ms = [m for k, m in enumerate(during) if begin <= k * interval < end]
            phases[f"p95_during_{phase}_ms"] = percentile(ms, 0.95)
    return {
        "upserted": stop - start,
        "upsert_s": upsert_s,
        "upsert_per_s": (stop - start) / upsert_s if stop > start else 0.0,
        "optimise_s": optimise_s,
        "batch_chunks": last,
        "batch_optimise_s": batch_s,
        "queries_during_optimise": len(during),
        "optimise_query_interval_ms": 1000 * interval,
        "p95_during_optimise_ms": percentile(during, 0.95),
        "p50_during_optimise_ms": statistics.median(during),
        "p99_during_optimise_ms": percentile(during, 0.99),
        "idle_before_optimise_hybrid_t1_p95_ms": percentile(before, 0.95),
        "idle_hybrid_t1_p95_ms": percentile(idle, 0.95),
        "builder_vmhwm_bytes": memory()["VmHWM"],
    } | phases


def sizes(target: int) -> list[int]:
    return [s for s in STEPS if s < target] + [target]


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    base = build_base(args.base)
    sparse_nnz = statistics.fmean(len(s.indices) for s in base.sparse)
    vector_bytes = DIM * 4 + sparse_nnz * 8  # float32 dense + (u32 index, f32 weight) pairs
    path = args.dir / "index"
    shutil.rmtree(path, ignore_errors=True)
    results: list[dict[str, Any]] = []
    written = 0  # next fresh chunk number
    for size in sizes(args.chunks):
        index = QdrantEdgeIndex.open(
            path, dimension=DIM, optimize_apart_from=args.optimize_apart_from
        )
        missing = size - index.count()
        row = step(index, base, written, written + missing, args.queries)
        written += missing
        row["chunks"] = index.count()
        row["optimized_apart"] = size >= args.optimize_apart_from
        index.close()
        on_disk = disk_bytes(path)
        row |= {
            "disk_bytes": on_disk,
            "disk_bytes_per_chunk": on_disk / row["chunks"],
            "vector_bytes_per_chunk": vector_bytes,
            "disk_beyond_vectors_per_chunk": on_disk / row["chunks"] - vector_bytes,
        }
        child = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.index_scale",
                "--serve",
                str(path),
                "--base",
                str(args.base),
                "--queries",
                str(args.queries),
                "--delete-from",
                str((written - size) // CHUNKS_PER_DOC),
            ],
            check=True,
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        row |= {k: v for k, v in json.loads(child.stdout.splitlines()[-1]).items() if k != "chunks"}
        results.append(row)
        print_row(row)
    return results


def print_row(row: dict[str, Any]) -> None:
    mb = 1024 * 1024
    print(
        f"\n== {row['chunks']:,} chunks: upsert {row['upsert_per_s']:,.0f}/s, "
        f"optimise {row['optimise_s']:.1f} s, disk {row['disk_bytes_per_chunk']:,.0f} B/chunk "
        f"({row['disk_beyond_vectors_per_chunk']:,.0f} beyond the vectors' "
        f"{row['vector_bytes_per_chunk']:,.0f}), cold start {row['cold_start_s']:.2f} s, "
        f"{row['segments']} segments",
        flush=True,
    )
    print(
        f"   serving RSS {row['rss_bytes'] / mb:,.0f} MB (anon {row['rssanon_bytes'] / mb:,.0f}, "
        f"file-backed {row['rssfile_bytes'] / mb:,.0f}); builder peak "
        f"{row['builder_vmhwm_bytes'] / mb:,.0f} MB"
    )
    print(
        f"   {'top-10':16s} {'1 thread p50/p95':>20s} {'4 threads p50/p95':>20s} "
        f"{'queries/s 1 / 4 threads':>24s}"
    )
    for mode in MODES:
        for label in ("", "_acl"):
            key = f"{mode}{label}"
            cells = [
                f"{row[f'{key}_t{t}_p50_ms']:8.2f} /{row[f'{key}_t{t}_p95_ms']:8.2f}"
                for t in (1, 4)
            ]
            name = f"{mode}{' ACL' if label else ''}"
            rates = f"{row[f'{key}_t1_qps']:,.0f} / {row[f'{key}_t4_qps']:,.0f}"
            print(f"   {name:16s} {cells[0]:>20s} {cells[1]:>20s}  ms {rates:>20s}")
    print(
        f"   optimising the last {row['batch_chunks']:,} chunks took "
        f"{row['batch_optimise_s']:.1f} s{' (apart)' if row['optimized_apart'] else ''}; "
        f"hybrid p95 meanwhile {row['p95_during_optimise_ms']:.2f} ms "
        f"(p50 {row['p50_during_optimise_ms']:.2f}, p99 {row['p99_during_optimise_ms']:.2f}; "
        f"{row['queries_during_optimise']} queries, one every "
        f"{row['optimise_query_interval_ms']:.0f} ms) vs idle "
        f"{row['idle_before_optimise_hybrid_t1_p95_ms']:.2f} before, "
        f"{row['idle_hybrid_t1_p95_ms']:.2f} after; "
        f"during a {row['delete_docs']:,}-document delete ({row['delete_s']:.1f} s) "
        f"{row['p95_during_delete_ms']:.2f} ms (ACL) vs idle "
        f"{row['idle_hybrid_acl_t1_p95_ms']:.2f}; "
        f"one document per call {row['delete_one_ms']:.1f} ms"
    )
    if "batch_copy_s" in row:
        print(
            f"   the optimise apart: copy {row['batch_copy_s']:.1f} s (p95 "
            f"{row['p95_during_copy_ms']:.2f} ms), child {row['batch_child_s']:.1f} s on "
            f"{row['batch_child_cpus']} cores (p95 {row['p95_during_child_ms']:.2f} ms), "
            f"swap {row['batch_swap_s']:.2f} s "
            f"(p95 from it on {row['p95_during_swap_ms']:.2f} ms)"
        )


def main() -> None:
    configure_offline_environment()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=1_000_000)
    parser.add_argument("--json", action="store_true", help="last line: {'results': [...]}")
    parser.add_argument("--dir", type=Path, default=None, help="where the index is built")
    parser.add_argument("--base", type=int, default=2_000, help="corpus documents to embed")
    parser.add_argument("--queries", type=int, default=200, help="queries per latency cell")
    parser.add_argument(
        "--optimize-apart-from",
        type=int,
        default=Settings().index.optimize_apart_from,
        help="points from which optimise runs on a copy in a child process (the product "
        "default, index.optimize_apart_from); a number above --chunks optimises in place",
    )
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--delete-from", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        print(json.dumps(serve(args.serve, args.base, args.queries, args.delete_from)))
        return
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        args.dir = Path(tmp)
        print(
            f"# index_scale: up to {args.chunks:,} chunks, {args.queries} queries per cell, "
            f"qdrant-edge in {tmp}, optimise apart from {args.optimize_apart_from:,} points",
            flush=True,
        )
        results = run(args)
    if args.json:
        print(json.dumps({"results": results}))


if __name__ == "__main__":
    main()
