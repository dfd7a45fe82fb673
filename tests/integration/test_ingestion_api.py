"""Indexes, uploads, documents and ingestion jobs over HTTP: the real app under uvicorn with
its in-process Huey consumer (SQLite queue), real parsers, ONNX embedder and Qdrant Edge.
URL sources come from a loopback HTTP server. Each test uses its own index."""

from __future__ import annotations

import io
import threading
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest

from api.app import create_app
from core import jobs
from core.db import Store, make_engine
from core.job_specs import SourcesSpec
from core.settings import IngestSettings, JobsSettings, Settings
from tests.integration.api_support import serve_in_thread, wait_job

KB = 1024
HOTELS = b"# Travel\n\nEmployees may book hotels up to 180 euros per night in capitals.\n"
CAFE = b"The cafeteria opens at eight in the morning and serves vegetarian meals.\n"
BADGES = b"# Security\n\nVisitors wear a red badge and are escorted at all times.\n"


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ingestion_api")


@pytest.fixture(scope="module")
def settings(root: Path) -> Settings:
    (root / "shared").mkdir()
    jobs_cfg = JobsSettings(
        heartbeat_s=0.2,
        stale_after_s=3,
        poll_s=0.05,
        busy_retry_s=0.1,
        embedded_workers=2,
        batch_documents=2,
        source_roots=(root / "shared",),
        min_refresh_interval_s=1,
        max_upload_file_bytes=64 * KB,
        max_upload_bytes=150 * KB,
        max_upload_files=4,
        max_url_bytes=4 * KB,
        url_allow=("127.0.0.1",),  # the loopback site below; nothing else internal
    )
    ingest = IngestSettings(max_unpacked_bytes=5 * KB * KB)
    return Settings(data_dir=root / "data", jobs=jobs_cfg, ingest=ingest)


@pytest.fixture(scope="module")
def http(settings: Settings) -> Iterator[httpx.Client]:
    with serve_in_thread(create_app(settings)) as url, httpx.Client(base_url=url, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def store(settings: Settings) -> Iterator[Store]:
    store = Store(make_engine(settings.resolved_database_url))
    yield store
    store.engine.dispose()


def _index(http: httpx.Client, name: str, **body: Any) -> dict[str, Any]:
    response = http.post("/v1/indexes", json={"name": name, **body})
    assert response.status_code == 201, response.text
    return dict(response.json())


def _upload(
    http: httpx.Client, index: str, files: list[tuple[str, bytes]], **form: str
) -> httpx.Response:
    parts = [("files", (name, data, "application/octet-stream")) for name, data in files]
    return http.post(f"/v1/indexes/{index}/documents", files=parts, data=form)


def _docs(http: httpx.Client, index: str) -> dict[str, dict[str, Any]]:
    body = http.get(f"/v1/indexes/{index}/documents").json()
    return {d["filename"]: d for d in body["data"]}


def _bomb_docx(unpacked_mb: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("[Content_Types].xml", "<Types/>")
        zf.writestr("word/document.xml", "<w:document/>")
        zf.writestr("word/media/zeros.bin", bytes(unpacked_mb * KB * KB))
    return buffer.getvalue()


def _stored_files(settings: Settings, index: str) -> list[Path]:
    folder = settings.data_dir / "uploads" / index
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


# --- indexes --------------------------------------------------------------------------------


def test_indexes_create_list_update_delete(http: httpx.Client) -> None:
    created = _index(http, "crud", description="HR", chunk_size=128)
    assert (created["chunk_size"], created["description"], created["vector_count"]) == (
        128,
        "HR",
        0,
    )
    assert created["embedding_model"] == "all-MiniLM-L6-v2"
    assert "crud" in [i["name"] for i in http.get("/v1/indexes").json()["data"]]
    patched = http.patch("/v1/indexes/crud", json={"description": "People", "chunk_size": 128})
    assert patched.json()["description"] == "People"
    deleted = http.delete("/v1/indexes/crud")
    assert deleted.json() == {"object": "index.deleted", "name": "crud", "deleted": True}
    assert http.get("/v1/indexes/crud").status_code == 404


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("post", "/v1/indexes", {"name": "fixed"}, 409, "index_exists"),
        ("patch", "/v1/indexes/fixed", {"chunk_size": 300}, 409, "index_setting_immutable"),
        (
            "patch",
            "/v1/indexes/fixed",
            {"embedding_model": "bge-m3"},
            409,
            "index_setting_immutable",
        ),
        (
            "post",
            "/v1/indexes",
            {"name": "m", "embedding_model": "bge-m3"},
            400,
            "invalid_request_error",
        ),
        ("post", "/v1/indexes", {"name": "../x"}, 400, "invalid_value"),
        (
            "post",
            "/v1/indexes",
            {"name": "o", "chunk_size": 64, "chunk_overlap": 64},
            400,
            "invalid_request_error",
        ),
        ("get", "/v1/indexes/nope", None, 404, "index_not_found"),
        ("delete", "/v1/indexes/nope", None, 404, "index_not_found"),
    ],
)
def test_indexes_refuse_bad_requests(
    http: httpx.Client, method: str, path: str, body: Any, status: int, code: str
) -> None:
    if http.get("/v1/indexes/fixed").status_code == 404:
        _index(http, "fixed")
    response = http.request(method, path, json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert code in (error["code"], error["type"]), error
    assert error["message"]


# --- uploads --------------------------------------------------------------------------------


def test_upload_ingests_files_and_reports_each_failure(
    http: httpx.Client, settings: Settings
) -> None:
    _index(http, "up")
    files = [("hotels.md", HOTELS), ("cafe.txt", CAFE), ("bomb.docx", _bomb_docx(20))]
    accepted = _upload(http, "up", files, acl_groups="hr, finance", metadata='{"lang": "en"}')
    assert accepted.status_code == 202, accepted.text
    body = accepted.json()
    assert [d["filename"] for d in body["documents"]] == ["hotels.md", "cafe.txt", "bomb.docx"]
    job = wait_job(http, body["job_id"])
    assert job["status"] == "partially_succeeded"
    assert {k: job["progress"][k] for k in ("total", "indexed", "failed")} == {
        "total": 3,
        "indexed": 2,
        "failed": 1,
    }
    (error,) = job["errors"]
    assert "unpack" in error["error"]
    docs = _docs(http, "up")
    assert docs["hotels.md"]["acl_groups"] == ["hr", "finance"]
    assert docs["hotels.md"]["metadata"]["lang"] == "en"
    assert docs["bomb.docx"]["status"] == "failed"
    index = http.get("/v1/indexes/up").json()
    assert index["vector_count"] == index["chunk_count"] == job["progress"]["chunks_written"] > 0
    hits = http.post("/v1/search", json={"index_name": "up", "query": "hotel price per night"})
    assert hits.json()["results"][0]["doc_id"] == docs["hotels.md"]["doc_id"]


@pytest.mark.parametrize(
    ("files", "form", "status", "code"),
    [
        ([("tool.exe", b"MZ")], {}, 415, "unsupported_file_type"),
        ([("ok.md", b"x"), ("archive.zip", b"PK")], {}, 415, "unsupported_file_type"),
        ([("big.txt", b"a" * 65 * KB)], {}, 413, "file_too_large"),
        ([(f"f{n}.txt", b"x") for n in range(5)], {}, 413, "file_too_large"),
        ([(f"f{n}.txt", b"a" * 60 * KB) for n in range(3)], {}, 413, "request_too_large"),
        ([("a.md", b"x"), ("a.md", b"y")], {}, 400, "invalid_request_error"),
        ([("a.md", b"x")], {"metadata": "{not json"}, 400, "invalid_request_error"),
        ([("a.md", b"x")], {"metadata": "[1, 2]"}, 400, "invalid_request_error"),
        ([("..", b"x")], {}, 400, "invalid_request_error"),
        ([], {}, 400, "missing_required_parameter"),
    ],
)
def test_upload_refuses_bad_input_and_stores_nothing(
    http: httpx.Client,
    settings: Settings,
    files: list[tuple[str, bytes]],
    form: dict[str, str],
    status: int,
    code: str,
) -> None:
    if http.get("/v1/indexes/refuse").status_code == 404:
        _index(http, "refuse")
    response = _upload(http, "refuse", files, **form)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert code in (error["code"], error["type"]), error
    assert _stored_files(settings, "refuse") == []


def test_upload_to_a_missing_index_is_404(http: httpx.Client) -> None:
    response = _upload(http, "missing", [("a.md", b"x")])
    assert response.status_code == 404


def test_upload_sanitises_malicious_names(http: httpx.Client, settings: Settings) -> None:
    _index(http, "names")
    files = [("../../../evil.md", HOTELS), ("..\\..\\win.txt", CAFE), ("a<b>:c|.md", BADGES)]
    accepted = _upload(http, "names", files)
    assert accepted.status_code == 202, accepted.text
    assert [d["filename"] for d in accepted.json()["documents"]] == [
        "evil.md",
        "win.txt",
        "a_b_c.md",
    ]
    wait_job(http, accepted.json()["job_id"])
    stored = _stored_files(settings, "names")
    uploads = (settings.data_dir / "uploads" / "names").resolve()
    assert sorted(p.name for p in stored) == ["a_b_c.md", "evil.md", "win.txt"]
    assert all(p.resolve().parent.parent == uploads for p in stored)
    assert not (settings.data_dir.parent / "evil.md").exists()


def test_concurrent_uploads_of_the_same_file_make_one_document(
    http: httpx.Client, settings: Settings
) -> None:
    _index(http, "same")
    with ThreadPoolExecutor(max_workers=5) as pool:
        responses = list(pool.map(lambda _: _upload(http, "same", [("same.md", HOTELS)]), range(5)))
    assert [r.status_code for r in responses] == [202] * 5
    finished = [wait_job(http, r.json()["job_id"]) for r in responses]
    assert [j["status"] for j in finished] == ["succeeded"] * 5
    assert sum(j["progress"]["indexed"] for j in finished) == 1
    assert sum(j["progress"]["unchanged"] for j in finished) == 4
    docs = http.get("/v1/indexes/same/documents").json()
    assert docs["total"] == 1
    index = http.get("/v1/indexes/same").json()
    assert index["vector_count"] == docs["data"][0]["chunk_count"] > 0
    assert len(_stored_files(settings, "same")) == 1


def test_reupload_replaces_the_document_without_leftover_chunks(http: httpx.Client) -> None:
    _index(http, "replace", chunk_size=32, chunk_overlap=0)
    long_text = b" ".join(b"Sentence number %d about travel rules." % n for n in range(40))
    wait_job(http, _upload(http, "replace", [("doc.txt", long_text)]).json()["job_id"])
    before = http.get("/v1/indexes/replace").json()["vector_count"]
    wait_job(http, _upload(http, "replace", [("doc.txt", CAFE)]).json()["job_id"])
    index = http.get("/v1/indexes/replace").json()
    assert before > index["vector_count"] == index["chunk_count"] == 1


def test_delete_document_removes_chunks_and_file(http: httpx.Client, settings: Settings) -> None:
    _index(http, "del")
    accepted = _upload(http, "del", [("hotels.md", HOTELS), ("cafe.txt", CAFE)]).json()
    wait_job(http, accepted["job_id"])
    doc_id = accepted["documents"][0]["doc_id"]
    assert http.get(f"/v1/indexes/del/documents/{doc_id}").json()["status"] == "indexed"
    deleted = http.delete(f"/v1/indexes/del/documents/{doc_id}").json()
    assert deleted["chunks_removed"] >= 1
    assert http.get(f"/v1/indexes/del/documents/{doc_id}").status_code == 404
    assert http.delete(f"/v1/indexes/del/documents/{doc_id}").status_code == 404
    index = http.get("/v1/indexes/del").json()
    assert index["document_count"] == 1
    assert index["vector_count"] == index["chunk_count"]
    assert [p.name for p in _stored_files(settings, "del")] == ["cafe.txt"]


def test_document_content_serves_the_original_upload(http: httpx.Client) -> None:
    _index(http, "originals")
    accepted = _upload(http, "originals", [("hotels.md", HOTELS)]).json()
    wait_job(http, accepted["job_id"])
    doc_id = accepted["documents"][0]["doc_id"]
    original = http.get(f"/v1/indexes/originals/documents/{doc_id}/content")
    assert original.status_code == 200
    assert original.content == HOTELS
    assert 'filename="hotels.md"' in original.headers["content-disposition"]
    missing = http.get("/v1/indexes/originals/documents/no-such-doc/content")
    assert missing.status_code == 404
    assert missing.json()["error"]["param"] == "doc_id"


# --- folder and URL jobs --------------------------------------------------------------------


def _folder_job(http: httpx.Client, index: str, path: str, **extra: Any) -> dict[str, Any]:
    body = {"index_name": index, "sources": [{"type": "folder", "path": path}], **extra}
    response = http.post("/v1/ingestion/jobs", json=body)
    assert response.status_code == 202, response.text
    return dict(response.json())


def test_folder_job_syncs_new_changed_and_removed_files(http: httpx.Client, root: Path) -> None:
    folder = root / "shared" / "policies"
    (folder / "sub").mkdir(parents=True)
    (folder / "hotels.md").write_bytes(HOTELS)
    (folder / "sub" / "cafe.txt").write_bytes(CAFE)
    (folder / "gone.md").write_bytes(BADGES)
    (folder / "tool.exe").write_bytes(b"MZ")  # not a document type: skipped
    _index(http, "folder")
    first = wait_job(http, _folder_job(http, "folder", "policies", acl_groups=["hr"])["id"])
    assert first["status"] == "succeeded", first
    assert first["progress"]["indexed"] == 3
    (folder / "gone.md").unlink()
    (folder / "hotels.md").write_bytes(HOTELS + b"\nTrains: first class after four hours.\n")
    (folder / "new.md").write_bytes(BADGES)
    second = wait_job(http, _folder_job(http, "folder", str(folder))["id"])
    counts = {k: second["progress"][k] for k in ("indexed", "unchanged", "deleted", "failed")}
    assert counts == {"indexed": 2, "unchanged": 1, "deleted": 1, "failed": 0}
    docs = _docs(http, "folder")
    assert sorted(docs) == ["cafe.txt", "hotels.md", "new.md"]
    index = http.get("/v1/indexes/folder").json()
    assert index["vector_count"] == index["chunk_count"]


@pytest.mark.parametrize("path", ["../", "/etc", "policies/../../", "does-not-exist"])
def test_folder_job_refuses_paths_outside_the_roots(http: httpx.Client, path: str) -> None:
    if http.get("/v1/indexes/roots").status_code == 404:
        _index(http, "roots")
    body = {"index_name": "roots", "sources": [{"type": "folder", "path": path}]}
    response = http.post("/v1/ingestion/jobs", json=body)
    assert response.status_code == 400, response.text


def test_refresh_interval_reruns_the_job_until_cancelled(http: httpx.Client, root: Path) -> None:
    folder = root / "shared" / "refresh"
    folder.mkdir()
    (folder / "a.md").write_bytes(HOTELS)
    _index(http, "refresh")
    job = _folder_job(http, "refresh", "refresh", refresh_interval_s=1)
    second = wait_job(http, job["id"], until=lambda j: j["run"] >= 2 and j["status"] == "succeeded")
    assert second["progress"]["unchanged"] == 1
    cancelled = http.post(f"/v1/ingestion/jobs/{job['id']}/cancel").json()
    assert cancelled["next_run_at"] is None
    final = wait_job(http, job["id"])
    assert final["status"] == "cancelled"
    assert http.delete(f"/v1/ingestion/jobs/{job['id']}").json()["status"] == "cancelled"


class _Site(BaseHTTPRequestHandler):
    pages: ClassVar[dict[str, tuple[str, bytes]]] = {}
    redirects: ClassVar[dict[str, str]] = {}
    requested: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.requested.append(self.path)
        if self.path in self.redirects:
            self.send_response(302)
            self.send_header("Location", self.redirects[self.path])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        page = self.pages.get(self.path)
        if page is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", page[0])
        self.send_header("Content-Length", str(len(page[1])))
        self.end_headers()
        self.wfile.write(page[1])

    def log_message(self, *args: Any) -> None:
        return


@pytest.fixture
def site() -> Iterator[str]:
    _Site.redirects = {}
    _Site.pages = {
        "/": (
            "text/html",
            b"""<html><head><title>Intranet</title></head><body><h1>Intranet</h1>
            <p>Welcome to the intranet home page of the company.</p>
            <a href="/hotels.html">hotels</a> <a href="cafe.txt">cafe</a>
            <a href="/missing">gone</a> <a href="/big.txt">big</a>
            <a href="https://elsewhere.invalid/x">external</a></body></html>""",
        ),
        "/hotels.html": (
            "text/html",
            b"<html><body><h1>Hotels</h1><p>" + HOTELS + b"</p></body></html>",
        ),
        "/cafe.txt": ("text/plain", CAFE),
        "/big.txt": ("text/plain", b"a " * 4 * KB),
    }
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Site)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_url_job_crawls_one_level_and_syncs(http: httpx.Client, site: str) -> None:
    _index(http, "web")
    body = {"index_name": "web", "sources": [{"type": "url", "url": f"{site}/", "crawl_depth": 1}]}
    first = wait_job(http, http.post("/v1/ingestion/jobs", json=body).json()["id"])
    assert first["status"] == "partially_succeeded", first
    assert first["progress"]["indexed"] == 3  # the page, hotels.html, cafe.txt
    (error,) = first["errors"]
    assert error["source"] == f"{site}/big.txt"
    assert "jobs.max_url_bytes" in error["error"]
    urls = {d["source"] for d in http.get("/v1/indexes/web/documents").json()["data"]}
    assert {f"{site}/", f"{site}/hotels.html", f"{site}/cafe.txt"} <= urls
    del _Site.pages["/hotels.html"]  # now 404: its document goes
    second = wait_job(http, http.post("/v1/ingestion/jobs", json=body).json()["id"])
    assert second["progress"]["deleted"] == 1
    assert second["progress"]["unchanged"] == 2
    urls = {d["source"] for d in http.get("/v1/indexes/web/documents").json()["data"]}
    assert f"{site}/hotels.html" not in urls


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.org/a", "not a url"])
def test_url_job_refuses_other_schemes(http: httpx.Client, url: str) -> None:
    if http.get("/v1/indexes/schemes").status_code == 404:
        _index(http, "schemes")
    body = {"index_name": "schemes", "sources": [{"type": "url", "url": url}]}
    assert http.post("/v1/ingestion/jobs", json=body).status_code == 400


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.2:{port}",  # loopback, but not the allow-listed 127.0.0.1
        "[::1]:{port}",
        "2852039166",
        "0251.0376.0251.0376",
        "0xa9.0xfe.0xa9.0xfe",
        "[::ffff:169.254.169.254]",
        "[64:ff9b::a9fe:a9fe]",
        "10.0.0.1",
        "100.64.0.1",
        "[fd00::1]",
        "0.0.0.0:{port}",
    ],
)
def test_url_job_to_an_internal_address_is_refused_at_submission(
    http: httpx.Client, site: str, host: str
) -> None:
    if http.get("/v1/indexes/internal").status_code == 404:
        _index(http, "internal")
    port = site.rsplit(":", 1)[1]
    _Site.requested.clear()
    url = f"http://{host.format(port=port)}/latest/meta-data/"
    body = {"index_name": "internal", "sources": [{"type": "url", "url": url}]}
    response = http.post("/v1/ingestion/jobs", json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "address_not_allowed"
    assert "jobs.url_allow" in error["message"]
    assert _Site.requested == []
    assert http.get("/v1/ingestion/jobs", params={"index_name": "internal"}).json()["data"] == []


def test_url_job_redirects_into_internal_addresses_fail_per_source(
    http: httpx.Client, site: str
) -> None:
    _index(http, "hops")
    port = site.rsplit(":", 1)[1]
    _Site.redirects = {
        "/metadata": "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "/other-loopback": f"http://127.0.0.2:{port}/cafe.txt",
        "/moved": "/cafe.txt",
    }
    _Site.requested.clear()
    sources = [{"type": "url", "url": f"{site}{path}"} for path in _Site.redirects]
    job = http.post("/v1/ingestion/jobs", json={"index_name": "hops", "sources": sources})
    assert job.status_code == 202, job.text
    done = wait_job(http, job.json()["id"])
    assert done["status"] == "partially_succeeded", done
    assert done["progress"]["indexed"] == 1  # /moved, followed to /cafe.txt on the same site
    errors = {e["source"]: e["error"] for e in done["errors"]}
    assert "169.254.169.254 is a link-local address" in errors[f"{site}/metadata"]
    assert "127.0.0.2 is a loopback address" in errors[f"{site}/other-loopback"]
    assert sorted(_Site.requested) == ["/cafe.txt", "/metadata", "/moved", "/other-loopback"]


# --- job records ----------------------------------------------------------------------------


def test_jobs_cancel_queued_and_refuse_finished(http: httpx.Client, store: Store) -> None:
    _index(http, "cancel")
    queued = jobs.create_job(store, index_name="cancel", spec=SourcesSpec())
    cancelled = http.post(f"/v1/ingestion/jobs/{queued.id}/cancel")
    assert cancelled.json()["status"] == "cancelled"
    finished = wait_job(http, _upload(http, "cancel", [("a.md", HOTELS)]).json()["job_id"])
    refused = http.post(f"/v1/ingestion/jobs/{finished['id']}/cancel")
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "job_not_cancellable"
    listed = http.get("/v1/ingestion/jobs", params={"index_name": "cancel"}).json()["data"]
    assert {j["id"] for j in listed} == {queued.id, finished["id"]}
    assert http.get("/v1/ingestion/jobs/nope").json()["error"]["code"] == "job_not_found"


def test_delete_index_removes_documents_jobs_and_files(
    http: httpx.Client, settings: Settings
) -> None:
    _index(http, "drop")
    wait_job(http, _upload(http, "drop", [("a.md", HOTELS)]).json()["job_id"])
    assert http.delete("/v1/indexes/drop").status_code == 200
    assert _stored_files(settings, "drop") == []
    assert not (settings.data_dir / "indexes" / "drop").exists()
    assert http.get("/v1/ingestion/jobs", params={"index_name": "drop"}).json()["data"] == []
    _index(http, "drop")  # the name is free again, and empty
    assert http.get("/v1/indexes/drop/documents").json()["total"] == 0
