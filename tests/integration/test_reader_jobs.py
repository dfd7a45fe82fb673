"""Reader ingestion jobs over HTTP: the real app (auth on) with its in-process worker runs an
allow-listed llama-index reader; admins only, never a reader outside jobs.reader_allow."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.app import create_app
from core.db import make_engine
from core.keys import KeyStore
from core.settings import JobsSettings, Settings
from tests.integration.api_support import serve_in_thread, wait_job

SIMPLE = "llama_index.core:SimpleDirectoryReader"


@dataclass(frozen=True)
class Server:
    url: str
    admin: dict[str, str]
    contributor: dict[str, str]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("reader_jobs")
    jobs_cfg = JobsSettings(
        heartbeat_s=0.2, poll_s=0.05, busy_retry_s=0.1, embedded_workers=1, reader_allow=(SIMPLE,)
    )
    settings = Settings(data_dir=root / "data", jobs=jobs_cfg)
    engine = make_engine(settings.resolved_database_url)
    keys = KeyStore(engine)
    admin = keys.create(role="admin").key
    contributor = keys.create(role="contributor", groups=None).key
    engine.dispose()
    with serve_in_thread(create_app(settings)) as url:
        headers = {"Authorization": f"Bearer {admin}"}
        created = httpx.post(f"{url}/v1/indexes", json={"name": "readers"}, headers=headers)
        assert created.status_code == 201, created.text
        yield Server(url, headers, {"Authorization": f"Bearer {contributor}"})


def _job(server: Server, folder: Path, *, headers: dict[str, str] | None = None) -> httpx.Response:
    source = {"type": "reader", "reader": SIMPLE, "reader_args": {"input_dir": str(folder)}}
    body = {"index_name": "readers", "sources": [source], "acl_groups": ["staff"]}
    return httpx.post(
        f"{server.url}/v1/ingestion/jobs", json=body, headers=headers or server.admin, timeout=60
    )


def _wait(server: Server, job_id: str) -> dict[str, Any]:
    with httpx.Client(base_url=server.url, headers=server.admin) as http:
        return wait_job(http, job_id)


def _counts(job: dict[str, Any]) -> dict[str, int]:
    return {k: job["progress"][k] for k in ("indexed", "unchanged", "deleted", "failed")}


def test_reader_job_ingests_and_syncs(server: Server, tmp_path: Path) -> None:
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "hotels.md").write_text("# Hotels\n\nHotels cost up to 180 euros per night.\n")
    (folder / "badges.txt").write_text("Visitors wear a red badge at all times.\n")
    response = _job(server, folder)
    assert response.status_code == 202, response.text
    first = _wait(server, response.json()["id"])
    assert first["status"] == "succeeded", first
    assert first["kind"] == "reader"
    assert first["sources"] == [{"type": "reader", "reader": SIMPLE}]  # no arguments shown
    assert _counts(first) == {"indexed": 2, "unchanged": 0, "deleted": 0, "failed": 0}

    (folder / "badges.txt").unlink()
    (folder / "hotels.md").write_text("# Hotels\n\nHotels now cost up to 200 euros.\n")
    (folder / "trains.txt").write_text("First class trains after four hours.\n")
    second = _wait(server, _job(server, folder).json()["id"])
    assert _counts(second) == {"indexed": 2, "unchanged": 0, "deleted": 1, "failed": 0}
    docs = httpx.get(f"{server.url}/v1/indexes/readers/documents", headers=server.admin).json()
    assert sorted(d["title"] for d in docs["data"]) == ["hotels.md", "trains.txt"]
    assert all(d["acl_groups"] == ["staff"] for d in docs["data"])


def test_reader_jobs_are_for_admins_only(server: Server, tmp_path: Path) -> None:
    response = _job(server, tmp_path, headers=server.contributor)
    assert response.status_code == 403
    assert "admin" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    "source",
    [
        {"type": "reader", "reader": "llama_index.readers.database:DatabaseReader"},
        {"type": "reader", "reader": "os:system"},
    ],
)
def test_reader_outside_the_allow_list_is_refused(server: Server, source: dict[str, Any]) -> None:
    body = {"index_name": "readers", "sources": [source]}
    response = httpx.post(f"{server.url}/v1/ingestion/jobs", json=body, headers=server.admin)
    assert response.status_code == 400
    assert "ONDATA_JOBS__READER_ALLOW" in response.json()["error"]["message"]


def test_reader_source_must_be_the_only_source(server: Server, tmp_path: Path) -> None:
    sources = [{"type": "reader", "reader": SIMPLE}, {"type": "url", "url": "https://a.example/"}]
    body = {"index_name": "readers", "sources": sources}
    response = httpx.post(f"{server.url}/v1/ingestion/jobs", json=body, headers=server.admin)
    assert response.status_code == 400
    assert "only source" in response.json()["error"]["message"]
