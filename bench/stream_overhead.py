"""Streaming overhead of a grounded answer through a chat model, on the tests' small index.

The streaming lines of bench/query.py (first streamed byte minus the fake chat model's own
time: the intent rewrite plus the answer's first token) in seconds, without the SciFact
index: the handbook of tests/integration/api_support.py is built into a temporary folder and
`ondata serve` answers from it. The fake model answers `--ttft-ms` late and takes `--token-ms`
a token, streamed or not, so a server that waited for the model's whole reply before its
first byte shows the generation time as overhead.
Usage: .venv/bin/python -m bench.stream_overhead [--requests 30] [--ttft-ms 100] [--token-ms 20]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

from bench import query
from core.settings import Settings
from tests.integration.api_support import INDEX, build_index

TOPICS = ("hotel limit", "train class", "vacation days", "badge colour", "cafeteria hours")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--ttft-ms", type=float, default=100.0)
    parser.add_argument("--token-ms", type=float, default=20.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ondata-stream-") as tmp:
        root = Path(tmp)
        build_index(Settings(data_dir=root / "ondata"), root / "docs")
        # bench.query serves and asks its module's data folder and index: point them here
        query.DATA_DIR, query.INDEX = root / "ondata", INDEX
        count = args.requests + query.WARMUP
        questions = [
            f"What is the rule on {TOPICS[i % len(TOPICS)]} ({i})?" for i in range(count * 2)
        ]
        rows = asyncio.run(
            query.stream_rows(
                query.Pool(questions),
                args.ttft_ms / 1000,
                args.requests,
                {},
                token_s=args.token_ms / 1000,
            )
        )
    print(f"load average (1/5/15 min) {query.load_average()}")
    for row in rows:
        print(row.line())
    for line in query.verdicts([], rows):
        print(line)


if __name__ == "__main__":
    main()
