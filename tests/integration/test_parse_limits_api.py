"""One upload batch holding a ZIP bomb with forged headers and a file that needs more memory
than the parser processes may use: each fails alone with a clear error, the rest is indexed.
The real app under uvicorn, its queue consumer, real parsers in memory-limited workers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from api.app import create_app
from core.settings import IngestSettings, JobsSettings, Settings
from tests.integration.api_support import serve_in_thread, wait_job
from tests.support.bombs import forged_docx, forged_epub, memory_hog_docx

MEMORY_MB = 1024  # a warm parser worker holds ~0.5 GB; the hog needs well over 1 GB
HOTELS = b"# Travel\n\nEmployees may book hotels up to 180 euros per night in capitals.\n"
CAFE = b"The cafeteria opens at eight in the morning and serves vegetarian meals.\n"


@pytest.fixture(scope="module")
def http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    root = tmp_path_factory.mktemp("parse_limits_api")
    ingest = IngestSettings(
        parse_memory_mb=MEMORY_MB,
        file_timeout_s=180,
        max_compression_ratio=100_000,  # let the honest hog reach the parser
    )
    jobs = JobsSettings(heartbeat_s=0.2, stale_after_s=3, poll_s=0.05, busy_retry_s=0.1)
    settings = Settings(data_dir=root / "data", ingest=ingest, jobs=jobs)
    with serve_in_thread(create_app(settings)) as url, httpx.Client(base_url=url, timeout=60) as c:
        yield c


def _wait(http: httpx.Client, job_id: str) -> dict[str, Any]:
    return wait_job(http, job_id, timeout_s=400)


def test_bomb_and_memory_hog_fail_alone_and_the_batch_goes_on(http: httpx.Client) -> None:
    assert http.post("/v1/indexes", json={"name": "limits"}).status_code == 201
    files = [
        ("hotels.md", HOTELS),
        ("book.epub", forged_epub(real_mb=30)),
        ("memo.docx", forged_docx(real_mb=30)),
        ("huge.docx", memory_hog_docx(xml_mb=100)),
        ("cafe.txt", CAFE),
    ]
    parts = [("files", (name, data, "application/octet-stream")) for name, data in files]
    accepted = http.post("/v1/indexes/limits/documents", files=parts)
    assert accepted.status_code == 202, accepted.text
    job = _wait(http, accepted.json()["job_id"])
    assert job["status"] == "partially_succeeded", job
    assert job["progress"]["indexed"] == 2
    errors = {e["source"].rsplit("/", 1)[-1]: e["error"] for e in job["errors"]}
    assert set(errors) == {"book.epub", "memo.docx", "huge.docx"}
    assert "'OEBPS/content.xhtml' declares 4600 bytes but inflates to" in errors["book.epub"]
    assert "'word/document.xml' declares 4600 bytes but inflates to" in errors["memo.docx"]
    assert errors["huge.docx"] == (
        f"parsing exceeds the memory limit ({MEMORY_MB} MB, ingest.parse_memory_mb)"
    )
    docs = {
        d["filename"]: d["status"] for d in http.get("/v1/indexes/limits/documents").json()["data"]
    }
    assert docs["hotels.md"] == docs["cafe.txt"] == "indexed"
    # the pool replaced the worker that ran out: the next upload parses normally
    again = http.post(
        "/v1/indexes/limits/documents", files=[("files", ("later.md", HOTELS, "text/markdown"))]
    )
    assert _wait(http, again.json()["job_id"])["status"] == "succeeded"
