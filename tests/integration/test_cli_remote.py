"""The CLI beside a running server: keys for --url, uploads through `ingest --url`, and the
clear error a local command gets while the server holds the embedded index."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import typer
from typer.testing import CliRunner

from api.app import create_app
from api.cli import register as register_api
from core.db import make_engine
from core.keys import KeyStore
from core.settings import Settings
from ingest.cli import register as register_ingest
from retrieval.cli import register as register_search
from tests.integration.api_support import DOCUMENTS, INDEX, build_index, serve_in_thread

QUESTION = "How much may employees spend on hotels in capital cities?"


@dataclass(frozen=True)
class Server:
    url: str
    admin_key: str
    data_dir: str
    docs: Path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("cli_remote")
    settings = Settings(data_dir=root / "ondata")
    build_index(settings, root / "docs")
    engine = make_engine(settings.resolved_database_url)
    admin_key = KeyStore(engine).create(role="admin").key
    engine.dispose()
    with serve_in_thread(create_app(settings)) as url:
        yield Server(url, admin_key, str(settings.data_dir), root / "docs")


def ondata(*argv: str, data_dir: str, **env: str) -> tuple[int, str]:
    """Run `ondata argv` in-process with only the given ONDATA_ variables set."""
    cli = typer.Typer()
    for register in (register_api, register_ingest, register_search):
        register(cli)
    unset: dict[str, str | None] = {"ONDATA_CLIENT__API_KEY": None, "ONDATA_API__API_KEY": None}
    result = CliRunner().invoke(cli, list(argv), env={**unset, "ONDATA_DATA_DIR": data_dir, **env})
    return result.exit_code, result.output


def test_ask_url_without_a_key_says_how_to_pass_one(server: Server, tmp_path: Path) -> None:
    code, output = ondata(
        "ask", QUESTION, "--index", INDEX, "--url", server.url, data_dir=str(tmp_path)
    )
    assert code == 1
    assert "needs an API key" in output
    assert "--api-key" in output
    assert "ONDATA_CLIENT__API_KEY" in output


def test_ask_url_with_a_wrong_key_says_it_was_rejected(server: Server, tmp_path: Path) -> None:
    argv = ("ask", QUESTION, "--index", INDEX, "--url", server.url, "--api-key", "od_wrong")
    code, output = ondata(*argv, data_dir=str(tmp_path))
    assert code == 1
    assert "rejected the API key" in output


def test_ask_url_sends_the_api_key_option(server: Server, tmp_path: Path) -> None:
    argv = ("ask", QUESTION, "--index", INDEX, "--url", server.url, "--api-key", server.admin_key)
    code, output = ondata(*argv, data_dir=str(tmp_path))
    assert code == 0, output
    assert "180" in output


def test_ask_url_takes_the_key_from_the_client_setting(server: Server, tmp_path: Path) -> None:
    code, output = ondata(
        "ask",
        QUESTION,
        "--index",
        INDEX,
        "--url",
        server.url,
        data_dir=str(tmp_path),
        ONDATA_CLIENT__API_KEY=server.admin_key,
    )
    assert code == 0, output
    assert "Citations:" in output


def test_search_url_searches_through_the_server(server: Server, tmp_path: Path) -> None:
    argv = ("search", "hotels in capital cities", "--index", INDEX, "--url", server.url)
    code, output = ondata(*argv, data_dir=str(tmp_path))
    assert code == 1
    assert "needs an API key" in output
    code, output = ondata(*argv, "--json", "--api-key", server.admin_key, data_dir=str(tmp_path))
    assert code == 0, output
    results = json.loads(output)["results"]
    assert results[0]["filepath"] == "travel.md"
    assert "180 euros" in results[0]["content"]
    code, output = ondata(*argv, "--mode", "keyword", data_dir=str(tmp_path), **_key(server))
    assert code == 0, output
    assert output.startswith("1. [")


def _key(server: Server) -> dict[str, str]:
    return {"ONDATA_CLIENT__API_KEY": server.admin_key}


def _write_docs(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in DOCUMENTS.items():
        (folder / name).write_text(text, encoding="utf-8")


def test_ingest_url_uploads_through_the_server_and_reports_per_file(
    server: Server, tmp_path: Path
) -> None:
    docs = tmp_path / "docs"
    _write_docs(docs)
    stray = tmp_path / "notes.xyz"
    stray.write_text("plain text under an unknown extension\n", encoding="utf-8")
    base = ("ingest", str(docs), "--index", "uploaded", "--url", server.url)
    key = ("--api-key", server.admin_key)

    code, output = ondata(*base, *key, data_dir=str(tmp_path))
    assert code == 0, output
    assert f"ingested {len(DOCUMENTS)}, unchanged 0, failed 0" in output

    code, output = ondata(*base, str(stray), *key, "--json", data_dir=str(tmp_path))
    assert code == 1, output
    report = json.loads(output.splitlines()[-1])
    assert set(report) == {
        "documents_ingested",
        "documents_unchanged",
        "documents_failed",
        "chunks_written",
        "seconds",
    }
    assert report["documents_unchanged"] == len(DOCUMENTS)
    assert report["documents_failed"] == [
        {"source": str(stray), "error": report["documents_failed"][0]["error"]}
    ]
    assert "unsupported file type .xyz" in report["documents_failed"][0]["error"]
    listed = httpx.get(
        f"{server.url}/v1/indexes/uploaded/documents",
        headers={"Authorization": f"Bearer {server.admin_key}"},
    ).json()
    assert sorted(d["filename"] for d in listed["data"]) == sorted(DOCUMENTS)


def test_ingest_url_without_a_key_fails_with_the_key_hint(server: Server, tmp_path: Path) -> None:
    _write_docs(tmp_path / "docs")
    argv = ("ingest", str(tmp_path / "docs"), "--url", server.url)
    code, output = ondata(*argv, data_dir=str(tmp_path))
    assert code == 2
    assert "needs an API key" in output
    assert "--api-key" in output


def test_local_commands_on_an_index_the_server_holds_say_what_to_do(server: Server) -> None:
    # the server opens an index on first use: search it through the API first
    searched = httpx.post(
        f"{server.url}/v1/search",
        json={"index_name": INDEX, "query": "hotels"},
        headers={"Authorization": f"Bearer {server.admin_key}"},
    )
    assert searched.status_code == 200, searched.text
    for argv, status in (
        (("search", "hotels", "--index", INDEX), 1),
        (("ingest", str(server.docs), "--index", INDEX), 2),
        (("ask", QUESTION, "--index", INDEX), 1),
        (("documents", "delete", "some-doc", "--index", INDEX), 1),
    ):
        code, output = ondata(*argv, data_dir=server.data_dir)
        assert code == status, output
        assert "open in another process" in output
        assert "`ondata serve`" in output
        assert "--url" in output
        assert "WouldBlock" not in output
