"""Query latency of the two VectorIndex adapters at ~20k random 384-d chunks.

Compares Qdrant Edge (in-process shard: as written, then after optimize()) with the server
adapter on qdrant-client's local mode (the pure-Python stand-in used by the contract tests),
for vector / keyword / hybrid queries, unfiltered and with three filters:
  metadata equals (~10% of chunks), ACL (public ~20% + one group ~1.6%), one doc_id (20 chunks).
Usage: .venv/bin/python bench/index_latency.py [--points 20000] [--queries 200] [--local-queries 10]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from qdrant_client import QdrantClient

from core.models import Chunk
from retrieval.index import (
    IndexedChunk,
    IndexQuery,
    MetadataFilter,
    QdrantEdgeIndex,
    QdrantServerIndex,
    SearchMode,
    VectorIndex,
)
from retrieval.sparse import Bm25Encoder

DIM = 384
VOCABULARY = 5000
WORDS_PER_CHUNK = 60
FILTERS: dict[str, MetadataFilter | None] = {
    "none": None,
    "dept=d3": MetadataFilter(equals={"dept": "d3"}),
    "acl g7": MetadataFilter(acl_groups=("g7",)),
    "doc_id": MetadataFilter(equals={"doc_id": "doc-42"}),
}


def make_items(n: int, rng: np.random.Generator, bm25: Bm25Encoder) -> list[IndexedChunk]:
    dense = rng.standard_normal((n, DIM)).astype(np.float32)
    dense /= np.linalg.norm(dense, axis=1, keepdims=True)
    words = np.minimum(rng.zipf(1.3, size=(n, WORDS_PER_CHUNK)), VOCABULARY)
    items = []
    for i in range(n):
        text = " ".join(f"w{w}" for w in words[i])
        acl = () if i % 5 == 0 else (f"g{i % 64}",)
        chunk = Chunk(
            chunk_id=f"c{i}",
            doc_id=f"doc-{i // 20}",
            chunk_index=i % 20,
            content=text,
            embed_text=text,
            title=f"Doc {i // 20}",
            content_hash=str(i),
            acl_groups=acl,
            metadata={"dept": f"d{i % 10}"},
        )
        items.append(IndexedChunk(chunk=chunk, dense=dense[i], sparse=bm25.encode_document(text)))
    return items


def make_queries(n: int, rng: np.random.Generator, bm25: Bm25Encoder) -> list[IndexQuery]:
    dense = rng.standard_normal((n, DIM)).astype(np.float32)
    dense /= np.linalg.norm(dense, axis=1, keepdims=True)
    texts = [" ".join(f"w{w}" for w in rng.integers(2, 300, size=4)) for _ in range(n)]
    return [
        IndexQuery(mode="hybrid", limit=10, dense=dense[i], sparse=bm25.encode_query(texts[i]))
        for i in range(n)
    ]


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def latency_row(
    index: VectorIndex, queries: list[IndexQuery], mode: SearchMode, flt_name: str
) -> str:
    flt = FILTERS[flt_name]
    requests = [
        IndexQuery(mode=mode, limit=10, dense=q.dense, sparse=q.sparse, filter=flt) for q in queries
    ]
    index.query(requests[0])  # warm
    ms = sorted(1000 * timed(lambda r=r: index.query(r)) for r in requests)  # type: ignore[misc]
    p95 = ms[int(0.95 * (len(ms) - 1))]
    return f"{mode:8s} {flt_name:8s} p50 {statistics.median(ms):8.2f} ms  p95 {p95:8.2f} ms"


def report(label: str, index: VectorIndex, queries: list[IndexQuery]) -> None:
    print(f"\n== {label}")
    for mode in ("vector", "keyword", "hybrid"):
        for flt_name in FILTERS:
            print("  " + latency_row(index, queries, mode, flt_name))  # type: ignore[arg-type]


def upsert_all(index: VectorIndex, items: list[IndexedChunk], batch: int = 256) -> float:
    return timed(lambda: [index.upsert(items[i : i + batch]) for i in range(0, len(items), batch)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--points", type=int, default=20_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--local-queries", type=int, default=10, help="local mode is slow")
    args = parser.parse_args()
    rng = np.random.default_rng(7)
    bm25 = Bm25Encoder(avg_len=WORDS_PER_CHUNK)
    items = make_items(args.points, rng, bm25)
    queries = make_queries(args.queries, rng, bm25)
    print(f"{args.points} points, {DIM}-d, {args.queries} queries per row, limit 10")
    with tempfile.TemporaryDirectory() as tmp:
        edge = QdrantEdgeIndex.open(Path(tmp) / "edge", dimension=DIM, metadata_keys=("dept",))
        print(f"edge upsert (batches of 256, flushed): {upsert_all(edge, items):.1f} s")
        report("qdrant-edge, as written (no optimize)", edge, queries)
        print(f"\nedge optimize(): {timed(edge.optimize):.1f} s")
        report("qdrant-edge, after optimize()", edge, queries)
        edge.close()
        client = QdrantClient(location=":memory:")
        local = QdrantServerIndex.open(client, collection="bench", dimension=DIM)
        print(f"\nlocal-mode upsert: {upsert_all(local, items):.1f} s")
        report("qdrant-client local mode", local, queries[: args.local_queries])
        local.close()


if __name__ == "__main__":
    main()
