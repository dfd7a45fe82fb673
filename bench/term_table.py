"""What a BM25 term table costs to build (retrieval/term_statistics.py), beside its anchor.

`CorpusBm25.refresh` rebuilds an index's term table by reading every chunk's text: each small
index after every write, a large one (past 20,000 chunks) once it has grown or shrunk by the
tolerance. This measures that work on N chunks made from the texts of a cached evaluation
shard (copies under new document ids, a document to every two chunks), with the anchor
measured in the same run: Qdrant's own BM25 tokenizer over the same texts, which the build
cannot avoid. Prints one JSON line. Usage:
    .venv/bin/python -m bench.term_table --chunks 200000 \
        --shard <data_dir>/eval-cache/scifact-<key>/indexes/corpus
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from collections.abc import Iterator
from pathlib import Path

from bench.scifact_levers import load_corpus
from core.settings import configure_offline_environment
from retrieval.sparse import Bm25Encoder
from retrieval.term_statistics import TermTable


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shard", type=Path, required=True)
    parser.add_argument("--chunks", type=int, default=200_000)
    args = parser.parse_args()
    configure_offline_environment()
    texts = load_corpus(args.shard).texts
    encoder = Bm25Encoder()

    def chunks() -> Iterator[tuple[int, str]]:
        for i in range(args.chunks):
            yield i // 2, texts[i % len(texts)]

    started = time.perf_counter()
    for _, text in chunks():
        encoder.term_counts(text)
    tokenized = time.perf_counter() - started
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    table = TermTable.build((str(doc), encoder.term_counts(text).indices) for doc, text in chunks())
    built = time.perf_counter() - started
    data = table.to_bytes()
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "chunks": table.chunks,
                "documents": table.documents,
                "terms": len(table.terms),
                "tokenizer_only_s": round(tokenized, 2),
                "build_s": round(built, 2),
                "build_us_per_chunk": round(built / table.chunks * 1e6, 1),
                "table_bytes": len(data),
                "peak_rss_growth_mb": round(max(0, rss_after - rss_before) / 1024, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
