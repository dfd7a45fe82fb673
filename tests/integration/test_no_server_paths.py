"""No response names a server path: uploads and their failures go by the name the user gave,
CLI-ingested files by their path relative to the folder given (or their own name)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from api.app import create_app
from api.ingestion import public_text
from core.settings import Settings
from ingest.sources import named_files
from tests.integration.api_support import INDEX, build_index, serve_in_thread, wait_job

GOOD = b"# Travel\n\nHotels in capital cities cost up to 180 euros per night.\n"
DAMAGED_PDF = b"%PDF-1.7\n this is not a PDF body at all \n%%EOF\n"


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    root = tmp_path_factory.mktemp("no_server_paths")
    settings = Settings(data_dir=root / "data")
    build_index(settings, root / "handbook" / "docs")  # as `ondata ingest handbook/docs` does
    return settings


@pytest.fixture(scope="module")
def http(settings: Settings) -> Iterator[httpx.Client]:
    with serve_in_thread(create_app(settings)) as url, httpx.Client(base_url=url, timeout=60) as c:
        yield c


def _assert_no_server_path(response: httpx.Response, settings: Settings) -> None:
    assert response.status_code == 200, response.text
    for path in (settings.data_dir, settings.data_dir.resolve(), settings.data_dir.parent):
        assert str(path) not in response.text, response.text


def test_upload_failures_name_the_uploaded_file(http: httpx.Client, settings: Settings) -> None:
    files = [("files", ("notes.md", GOOD)), ("files", ("scan.pdf", DAMAGED_PDF))]
    accepted = http.post(f"/v1/indexes/{INDEX}/documents", files=files)
    assert accepted.status_code == 202, accepted.text
    job = wait_job(http, accepted.json()["job_id"])
    assert job["status"] == "partially_succeeded", job
    (error,) = job["errors"]
    assert error["source"] == f"upload://{INDEX}/scan.pdf"
    _assert_no_server_path(http.get(f"/v1/ingestion/jobs/{job['id']}"), settings)
    _assert_no_server_path(http.get("/v1/ingestion/jobs"), settings)
    listing = http.get(f"/v1/indexes/{INDEX}/documents")
    _assert_no_server_path(listing, settings)
    failed = {d["filename"]: d for d in listing.json()["data"]}["scan.pdf"]
    assert failed["status"] == "failed"
    assert failed["source"] == f"upload://{INDEX}/scan.pdf"
    _assert_no_server_path(http.get(f"/v1/indexes/{INDEX}/documents/{failed['doc_id']}"), settings)


def test_cli_ingested_files_go_by_the_path_relative_to_the_folder_given(
    http: httpx.Client, settings: Settings
) -> None:
    listing = http.get(f"/v1/indexes/{INDEX}/documents")
    _assert_no_server_path(listing, settings)
    by_name = {d["filename"]: d for d in listing.json()["data"]}
    assert by_name["travel.md"]["source"] == "travel.md"
    assert by_name["travel.md"]["origin"] is None
    answer = http.post(
        "/v1/chat/completions",
        json={
            "messages": [{"role": "user", "content": "What may hotels cost?"}],
            "data_sources": [{"type": "ondata", "parameters": {"index_name": INDEX}}],
        },
    )
    _assert_no_server_path(answer, settings)
    _assert_no_server_path(
        http.post("/v1/search", json={"index_name": INDEX, "query": "hotel"}), settings
    )


@pytest.mark.parametrize(
    ("text", "public"),
    [
        (
            "cannot parse /srv/ondata/data/uploads/hr/3f9a/name.txt: bad",
            "cannot parse name.txt: bad",
        ),
        (
            "parser failed: OSError: No such file: /data/x/y.docx",
            "parser failed: OSError: No such file: y.docx",
        ),
        (
            "fetched https://intranet.example/hr/a.html",
            "fetched https://intranet.example/hr/a.html",
        ),
        ("3/4 of a/b/c.md failed", "3/4 of a/b/c.md failed"),
    ],
)
def test_public_text_keeps_file_names_and_urls_only(text: str, public: str) -> None:
    assert public_text(text) == public


def test_named_files_are_relative_to_the_folder_given(tmp_path: Path) -> None:
    (tmp_path / "hr" / "policies").mkdir(parents=True)
    (tmp_path / "hr" / "policies" / "leave.md").write_text("x")
    (tmp_path / "single.txt").write_text("y")
    names = named_files([tmp_path / "hr", tmp_path / "single.txt"])
    assert sorted(names.values()) == ["policies/leave.md", "single.txt"]
    assert all(path.is_absolute() for path in names)
