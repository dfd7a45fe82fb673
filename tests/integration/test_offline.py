"""Ingest (a file of each parser family) and search run with the outside world cut off."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# One file per parser family that could reach for the network (spaCy model, telemetry,
# tiktoken encodings, the embedding model): PDF, DOCX, HTML, Markdown, CSV.
FORMATS = (
    "fake-memo.pdf",
    "trustee-handbook-chapter4.docx",
    "example-steelJIS-datasheet.html",
    "simple-table.md",
    "stanley-cups.csv",
)


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO / "tests" / "support" / "offline_run.py"), *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_offline_ingest_and_search_make_no_outbound_connection(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONDATA_")}
    # Unset the offline switches: the product must set them itself, not rely on the caller.
    for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "DO_NOT_TRACK", "TIKTOKEN_CACHE_DIR"):
        env.pop(key, None)
    env["ONDATA_DATA_DIR"] = str(tmp_path / "data")
    env["PYTHONPATH"] = str(REPO)

    docs = tmp_path / "docs"
    docs.mkdir()
    for name in FORMATS:
        shutil.copy(REPO / "data" / "samples" / name, docs / name)
    ingest = _run(["ingest", str(docs), "--index", "offline", "--json"], env)
    assert ingest.returncode == 0, ingest.stderr[-2000:]
    assert "BLOCKED-NETWORK-ATTEMPTS" not in ingest.stderr, ingest.stderr[-2000:]
    report = json.loads(ingest.stdout.strip().splitlines()[-1])
    assert report["documents_ingested"] == len(FORMATS)
    assert report["documents_failed"] == []

    search = _run(["search", "table", "--index", "offline", "--mode", "hybrid", "--json"], env)
    assert search.returncode == 0, search.stderr[-2000:]
    assert "BLOCKED-NETWORK-ATTEMPTS" not in search.stderr, search.stderr[-2000:]
    results = json.loads(search.stdout.strip().splitlines()[-1])["results"]
    assert results
    assert {"doc_id", "chunk_id", "score", "title", "filepath", "content"} <= set(results[0])
