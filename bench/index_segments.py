"""One segment or one per core: the same shard's query latency both ways, in one process.

Qdrant Edge runs one query at a time on a shard (two threads querying one shard reach the
throughput of one), and inside a query it searches the shard's segments in parallel on its
search pool, one core each. This builds the same N chunks twice through the
real adapter (the scale benchmark's chunks: SciFact text, sparse and sentence vectors, dense
vectors perturbed; bench/index_scale.py): once optimised into one segment (`segments=1`), once
in `--segments` rounds of N / segments chunks, each optimised as it comes (`segments=S`, what
`maintain()` does as an ingestion goes on), then opens each in turn and measures top-10 p50 /
p95 of hybrid, vector and keyword search with the ACL filter and unfiltered hybrid from one
thread (with the process's CPU seconds per wall second: how many cores a query used) and the
ACL-filtered hybrid from 4 threads, after one warm pass, for two rounds.

Usage:
    .venv/bin/python -m bench.index_segments --chunks 1000000 [--segments 2] [--dir DIR]
At 1M chunks the two builds take ~40 minutes on this 2-core machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from bench.index_scale import (
    BATCH,
    DIM,
    USER_GROUPS,
    build_base,
    latencies,
    percentile,
    requests,
    synthetic,
)
from core.settings import configure_offline_environment
from retrieval.index import MetadataFilter, QdrantEdgeIndex


def build(path: Path, base_docs: int, chunks: int, segments: int) -> None:
    """`chunks` chunks in `segments` rounds, each optimised in place as it comes."""
    base = build_base(base_docs)
    index = QdrantEdgeIndex.open(path, dimension=DIM, optimize_apart_from=None, segments=segments)
    per = chunks // segments
    for part in range(segments):
        started = time.perf_counter()
        for start in range(part * per, (part + 1) * per, BATCH):
            index.upsert(synthetic(base, start, min(start + BATCH, (part + 1) * per)))
        upserted = time.perf_counter()
        index.optimize()
        print(
            f"# segments={segments} round {part + 1}: upsert {upserted - started:.0f} s, "
            f"optimise {time.perf_counter() - upserted:.0f} s",
            flush=True,
        )
    index.close()


def measure(path: Path, base_docs: int, segments: int, queries: int) -> str:
    base = build_base(base_docs)
    acl = MetadataFilter(acl_groups=USER_GROUPS)
    cells = {
        "hybrid ACL": requests(base, "hybrid", acl, queries),
        "vector ACL": requests(base, "vector", acl, queries),
        "keyword ACL": requests(base, "keyword", acl, queries),
        "hybrid": requests(base, "hybrid", None, queries),
    }
    index = QdrantEdgeIndex.open(path, dimension=DIM, segments=segments)
    for batch in cells.values():
        latencies(index, batch, 1)  # one warm pass over the pages these queries touch
    lines = [f"segments={segments} ({index.segment_count()} with the appendable one):"]
    for name, batch in cells.items():
        cpu_before, started = os.times(), time.perf_counter()
        ms = latencies(index, batch, 1)
        wall, cpu_after = time.perf_counter() - started, os.times()
        cpu = (cpu_after.user + cpu_after.system) - (cpu_before.user + cpu_before.system)
        lines.append(
            f"  {name:12s} 1 thread  p50 {statistics.median(ms):6.2f} p95 "
            f"{percentile(ms, 0.95):6.2f} ms, {cpu / wall:.2f} CPU s per s"
        )
    started = time.perf_counter()
    ms = latencies(index, cells["hybrid ACL"], 4)
    rate = len(cells["hybrid ACL"]) / (time.perf_counter() - started)
    lines.append(
        f"  {'hybrid ACL':12s} 4 threads p50 {statistics.median(ms):6.2f} p95 "
        f"{percentile(ms, 0.95):6.2f} ms, {rate:.0f} queries/s"
    )
    index.close()
    return "\n".join(lines)


def main() -> None:
    configure_offline_environment()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=1_000_000)
    parser.add_argument("--segments", type=int, default=2, help="the other shard's segments")
    parser.add_argument("--dir", type=Path, default=None, help="where both shards are built")
    parser.add_argument("--base", type=int, default=2_000, help="corpus documents to embed")
    parser.add_argument("--queries", type=int, default=300, help="queries per cell")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as root:
        shards = {1: Path(root) / "one", args.segments: Path(root) / f"s{args.segments}"}
        for segments, path in shards.items():
            build(path, args.base, args.chunks, segments)
        for round_ in (1, 2):
            for segments, path in shards.items():
                print(
                    f"round {round_}, {args.chunks:,} chunks, "
                    + measure(path, args.base, segments, args.queries),
                    flush=True,
                )


if __name__ == "__main__":
    main()
