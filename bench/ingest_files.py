"""Ingesting real files: parsing run ahead of embedding (ingest.parse_ahead) against one after
the other, beside the two stages measured alone, in one run.

For a folder of documents (default: the shared documents, 45 real files of 10 formats) it
prints the seconds of:
  1. parsing alone: every file through the parser pool, one after the other;
  2. ondata end to end with parse_ahead=0 (parse a file, then chunk/embed/upsert it);
  3. ondata end to end with parse_ahead=N (the default 2): the pool parses the next files
     while this process embeds the previous ones.
Each end-to-end run writes a fresh index in its own temporary data dir; the embedder is loaded
once, before any timing. The sum of (1) and embedding is what (2) costs; (3) hides part of (1).
Usage: .venv/bin/python -m bench.ingest_files [FOLDER] [--ahead 2] [--repeat 2]
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

from core.settings import IngestSettings, Settings, configure_offline_environment

configure_offline_environment()

from ingest.service import open_pipeline, parse_source  # noqa: E402
from ingest.sources import source_files  # noqa: E402
from retrieval.embedders import Embedder, make_embedder  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = ROOT.parent / "shared" / "datasets" / "documents"


def doc_id(path: str) -> str:
    return hashlib.sha256(path.encode()).hexdigest()[:16]


def end_to_end(folder: Path, ahead: int, embedder: Embedder) -> tuple[float, int, int]:
    with tempfile.TemporaryDirectory() as data:
        settings = Settings(data_dir=Path(data), ingest=IngestSettings(parse_ahead=ahead))
        files = source_files([folder], doc_id_for=doc_id)
        started = time.perf_counter()
        with open_pipeline(settings, "files", embedder=embedder) as pipeline:
            report = pipeline.ingest_files(
                files, parse=lambda src: parse_source(src, settings=settings)
            )
        return time.perf_counter() - started, report.documents_ingested, report.chunks_written


def parse_only(folder: Path) -> float:
    settings = Settings()
    started = time.perf_counter()
    for src in source_files([folder], doc_id_for=doc_id):
        try:
            parse_source(src, settings=settings)
        except Exception:  # the awkward files fail on purpose; their time counts
            continue
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", type=Path, default=DOCUMENTS)
    parser.add_argument("--ahead", type=int, default=IngestSettings().parse_ahead)
    parser.add_argument("--repeat", type=int, default=2, help="runs per line (median shown)")
    args = parser.parse_args()
    if not args.folder.is_dir():
        sys.exit(f"{args.folder} is not a folder")
    embedder = make_embedder(Settings().embedding)
    embedder.embed(["warm up the model"])
    parse_only(args.folder)  # warm the parser pool's processes
    lines: list[tuple[str, list[float], str]] = []
    parsed = [parse_only(args.folder) for _ in range(args.repeat)]
    lines.append(("parsing alone (parser pool, one file at a time)", parsed, ""))
    for ahead in (0, args.ahead):
        runs = [end_to_end(args.folder, ahead, embedder) for _ in range(args.repeat)]
        docs, chunks = runs[0][1], runs[0][2]
        label = f"ondata end to end, parse_ahead={ahead}"
        lines.append((label, [r[0] for r in runs], f"{docs} documents, {chunks} chunks"))
    print(f"{args.folder}: median of {args.repeat} runs")
    for label, seconds, note in lines:
        print(f"{label:<52} {statistics.median(seconds):7.1f} s  {note}")
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    print(f"load average: {load}")


if __name__ == "__main__":
    main()
