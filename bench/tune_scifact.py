"""Tune retrieval defaults on SciFact's TRAIN qrels (never test), one lever family at a time.

Stages, each cached so that a grid costs queries, not ingestion:
  A. chunking: the corpus goes through the real ingestion pipeline once per (chunk_size,
     chunk_overlap), into the evaluation index cache (<data_dir>/eval-cache) that
     `ondata eval retrieval` reuses;
  B. BM25: per (k1, b, avg_len) the stage-A points are copied with their dense vectors and
     re-encoded sparse vectors into a scratch Qdrant Edge shard (no re-embedding);
  C. fusion: every train query runs once dense and once BM25 (300 chunks deep) against each
     index; fusions (RRF with k and weights, DBSF, min-max and z-score convex combinations)
     are computed from those two lists, at chunk level then best chunk per document (MaxP).
     The in-engine RRF / DBSF are run too, to check that the Python fusion matches Qdrant's.

Prints one JSON line per (configuration, fusion) with train nDCG@10 and Recall@100. Run
`--split test` only to report a configuration already chosen on train. The grid run for the
current defaults, and its results, are in docs/evaluation.md.

Usage (as a module: a script in bench/ would import bench/ingest.py as `ingest`):
       .venv/bin/python -m bench.tune_scifact [--data-dir DIR] [--grid full|quick]
       [--chunking 200:32,128:24] [--bm25 1.2:0.75:256,0.9:0.4:80] [--split train]
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import qdrant_edge as edge

from core.settings import ChunkingSettings, Settings, configure_offline_environment

configure_offline_environment()

from core.models import Chunk  # noqa: E402
from evaluation import metrics  # noqa: E402
from evaluation.cache import INDEX_NAME, corpus_index  # noqa: E402
from evaluation.datasets import BeirDataset, load_beir  # noqa: E402
from retrieval.embedders import Embedder, make_embedder  # noqa: E402
from retrieval.index import DENSE, IndexedChunk, IndexQuery, QdrantEdgeIndex  # noqa: E402
from retrieval.sparse import Bm25Encoder  # noqa: E402

SCIFACT = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "scifact"
DEPTH = 300
Hits = list[tuple[str, str, float]]  # (chunk_id, doc_id, score), best first
Fusion = Callable[[Hits, Hits], dict[str, float]]


@dataclass(frozen=True)
class Runs:
    """Per query: the dense and BM25 chunk lists, and the in-engine fused ones."""

    dense: dict[str, Hits]
    sparse: dict[str, Hits]
    rrf: dict[str, Hits]
    dbsf: dict[str, Hits]


# --- stage A: chunking through the real pipeline -------------------------------------------


def chunked_index(
    base: Settings, dataset: BeirDataset, size: int, overlap: int, embedder: Embedder
) -> Path:
    settings = base.model_copy(
        update={"chunking": ChunkingSettings(chunk_size=size, chunk_overlap=overlap)}
    )
    built = corpus_index(
        settings,
        dataset=dataset.name,
        corpus_hash=dataset.corpus_hash(),
        records=dataset.iter_corpus(),
        embedder=embedder,
    )
    how = f"built in {built.seconds:.0f}s" if built.built else "cached"
    print(f"# chunking {size}/{overlap}: {built.chunks} chunks ({how})", file=sys.stderr)
    return built.settings.data_dir / "indexes" / INDEX_NAME


# --- stage B: BM25 variants without re-embedding -------------------------------------------


def points(path: Path) -> Iterator[tuple[Chunk, np.ndarray]]:
    shard = edge.EdgeShard.load(str(path))
    offset = None
    try:
        while True:
            request = edge.ScrollRequest(
                offset=offset, limit=1024, with_payload=True, with_vector=True
            )
            records, offset = shard.scroll(request)
            for record in records:
                payload = {k: v for k, v in (record.payload or {}).items() if k != "_bool_terms"}
                vector = record.vector[DENSE]  # type: ignore[index]
                yield Chunk.model_validate(payload), np.asarray(vector, dtype=np.float32)
            if offset is None:
                return
    finally:
        shard.close()


def sparse_variant(source: Path, target: Path, encoder: Bm25Encoder) -> QdrantEdgeIndex:
    shutil.rmtree(target, ignore_errors=True)
    items = [
        IndexedChunk(chunk, dense, encoder.encode_document(chunk.embed_text))
        for chunk, dense in points(source)
    ]
    index = QdrantEdgeIndex.open(target, dimension=items[0].dense.shape[0])
    for start in range(0, len(items), 1024):
        index.upsert(items[start : start + 1024])
    return index


# --- stage C: queries and fusion -----------------------------------------------------------


def run_queries(
    index: QdrantEdgeIndex, dataset: BeirDataset, qvecs: dict[str, np.ndarray], encoder: Bm25Encoder
) -> Runs:
    runs = Runs({}, {}, {}, {})
    for qid, text in dataset.queries.items():
        sparse = encoder.encode_query(text)
        for mode, fusion, out in (
            ("vector", "rrf", runs.dense),
            ("keyword", "rrf", runs.sparse),
            ("hybrid", "rrf", runs.rrf),
            ("hybrid", "dbsf", runs.dbsf),
        ):
            hits = index.query(
                IndexQuery(
                    mode=mode,
                    limit=DEPTH,
                    dense=qvecs[qid],  # type: ignore[arg-type]
                    sparse=sparse,
                    fusion=fusion,  # type: ignore[arg-type]
                    prefetch_limit=DEPTH,
                )
            )
            out[qid] = [(h.chunk.chunk_id, h.chunk.doc_id, h.score) for h in hits]
    return runs


def rrf(k: float, w_dense: float = 1.0, w_sparse: float = 1.0) -> Fusion:
    def fuse(dense: Hits, sparse: Hits) -> dict[str, float]:
        return _sum_chunks(
            [
                (dense, [w_dense / (k + r + 1) for r in range(len(dense))]),
                (sparse, [w_sparse / (k + r + 1) for r in range(len(sparse))]),
            ]
        )

    return fuse


def _dbsf_norm(scores: Sequence[float]) -> list[float]:
    if not scores:
        return []
    mean = float(np.mean(scores))
    std = float(np.std(scores))
    low, high = mean - 3 * std, mean + 3 * std
    return [(s - low) / (high - low) if high > low else 0.5 for s in scores]


def _minmax(scores: Sequence[float]) -> list[float]:
    if not scores:
        return []
    low, high = min(scores), max(scores)
    return [(s - low) / (high - low) if high > low else 1.0 for s in scores]


def _zscore(scores: Sequence[float]) -> list[float]:
    if not scores:
        return []
    mean, std = float(np.mean(scores)), float(np.std(scores)) or 1.0
    return [(s - mean) / std for s in scores]


def convex(normalise: Callable[[Sequence[float]], list[float]], alpha: float) -> Fusion:
    """alpha * dense + (1 - alpha) * bm25, each normalised over its own list; absent: its floor."""

    def fuse(dense: Hits, sparse: Hits) -> dict[str, float]:
        d = [alpha * x for x in normalise([s for _, _, s in dense])]
        s = [(1 - alpha) * x for x in normalise([s for _, _, s in sparse])]
        return _sum_chunks(
            [(dense, d), (sparse, s)], floors=(min(d, default=0.0), min(s, default=0.0))
        )

    return fuse


def _sum_chunks(
    lists: Sequence[tuple[Hits, Sequence[float]]], floors: Sequence[float] | None = None
) -> dict[str, float]:
    """Fused score per chunk (a chunk absent from a list gets that list's floor), then MaxP."""
    doc_of: dict[str, str] = {}
    values: list[dict[str, float]] = []
    for hits, scores in lists:
        values.append({cid: v for (cid, _, _), v in zip(hits, scores, strict=True)})
        doc_of.update((cid, doc) for cid, doc, _ in hits)
    floor = floors or [0.0] * len(lists)
    best: dict[str, float] = {}
    for cid, doc in doc_of.items():
        fused = sum(v.get(cid, f) for v, f in zip(values, floor, strict=True))
        best[doc] = max(best.get(doc, -math.inf), fused)
    return best


def doc_level(fuse: Fusion) -> Fusion:
    """Fuse document lists (each document's best chunk per side) instead of chunk lists."""

    def fused(dense: Hits, sparse: Hits) -> dict[str, float]:
        return fuse(_maxp(dense), _maxp(sparse))

    return fused


def _maxp(hits: Hits) -> Hits:
    """Each document once, with its best chunk's score (the document stands in for the chunk)."""
    seen: dict[str, float] = {}
    for _, doc, value in hits:
        seen.setdefault(doc, value)
    return [(doc, doc, value) for doc, value in seen.items()]


def ranking(scores: dict[str, float], depth: int = 100) -> list[str]:
    return [d for d, _ in sorted(scores.items(), key=lambda x: -x[1])[:depth]]


def score(dataset: BeirDataset, rankings: dict[str, list[str]]) -> tuple[float, float]:
    per_query = metrics.retrieval_metrics(dataset.qrels, rankings, k=10)
    means = metrics.mean_by_metric(per_query)
    return float(means["ndcg@10"] or 0.0), float(means["recall@100"] or 0.0)


def quick_grid() -> dict[str, Fusion]:
    """The contenders of the full grid's first run (RRF, DBSF, doc-level min-max)."""
    grid: dict[str, Fusion] = {"rrf k=60 w_dense=0.5": rrf(60)}
    for alpha in (0.4, 0.5, 0.6):
        grid[f"dbsf-convex a={alpha}"] = convex(_dbsf_norm, alpha)
        grid[f"doc minmax-convex a={alpha}"] = doc_level(convex(_minmax, alpha))
    return grid


def fusion_grid() -> dict[str, Fusion]:
    grid: dict[str, Fusion] = {}
    for k in (10, 30, 60, 100):
        for w in (0.3, 0.4, 0.5, 0.6, 0.7):
            grid[f"rrf k={k} w_dense={w}"] = rrf(k, 2 * w, 2 * (1 - w))
    for alpha in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8):
        grid[f"dbsf-convex a={alpha}"] = convex(_dbsf_norm, alpha)
        grid[f"minmax-convex a={alpha}"] = convex(_minmax, alpha)
        grid[f"zscore-convex a={alpha}"] = convex(_zscore, alpha)
        grid[f"doc minmax-convex a={alpha}"] = doc_level(convex(_minmax, alpha))
    return grid


def evaluate(
    dataset: BeirDataset, runs: Runs, label: str, grid: dict[str, Fusion]
) -> list[tuple[str, float, float]]:
    rows: list[tuple[str, float, float]] = []
    for name, lists in (
        ("vector", runs.dense),
        ("keyword", runs.sparse),
        ("engine rrf k=60", runs.rrf),
        ("engine dbsf", runs.dbsf),
    ):
        best = {q: {doc: v for _, doc, v in _maxp(h)} for q, h in lists.items()}
        rows.append((name, *score(dataset, {q: ranking(b) for q, b in best.items()})))
    for name, fuse in grid.items():
        rankings = {q: ranking(fuse(runs.dense[q], runs.sparse[q])) for q in dataset.queries}
        rows.append((name, *score(dataset, rankings)))
    for name, ndcg, recall in rows:
        print(
            json.dumps(
                {
                    "config": label,
                    "method": name,
                    "ndcg@10": round(ndcg, 4),
                    "recall@100": round(recall, 4),
                }
            )
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", type=Path, default=SCIFACT, help="any BEIR folder")
    parser.add_argument("--data-dir", type=Path, default=Path(".ondata"))
    parser.add_argument("--chunking", default="200:32")
    parser.add_argument("--bm25", default="1.2:0.75:256")
    parser.add_argument("--split", default="train", help="train (tuning); test only to report")
    parser.add_argument("--grid", choices=("full", "quick"), default="full")
    args = parser.parse_args()
    dataset = load_beir(args.dataset, split=args.split)
    base = Settings(data_dir=args.data_dir)
    embedder = make_embedder(base.embedding)
    qvecs = {qid: embedder.embed_query(text) for qid, text in dataset.queries.items()}
    scratch = args.data_dir / "tune-scratch"
    for chunking, bm25 in itertools.product(args.chunking.split(","), args.bm25.split(",")):
        size, overlap = (int(x) for x in chunking.split(":"))
        k1, b, avg_len = (float(x) for x in bm25.split(":"))
        source = chunked_index(base, dataset, size, overlap, embedder)
        encoder = Bm25Encoder(k1=k1, b=b, avg_len=avg_len)
        started = time.perf_counter()
        index = sparse_variant(source, scratch / "variant", encoder)
        try:
            runs = run_queries(index, dataset, qvecs, encoder)
        finally:
            index.close()
        print(
            f"# {chunking} bm25 {bm25}: variant + queries {time.perf_counter() - started:.0f}s",
            file=sys.stderr,
        )
        grid = fusion_grid() if args.grid == "full" else quick_grid()
        evaluate(dataset, runs, f"chunk={chunking} bm25={bm25} split={args.split}", grid)
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
