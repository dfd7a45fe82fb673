"""What the fuzzing and the security probe of issue 10 found, one test each, over HTTP on the
real app: offsets past 64 bits, a content part whose type is not a string, the OpenAPI
document's error statuses, /docs without a CDN, invisible characters in stored names, and the
last admin key."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
from typer.testing import CliRunner

from api.app import create_app
from api.cli import register
from api.routes.playground import CONTENT_SECURITY_POLICY
from core.access import ROLES
from core.db import make_engine
from core.keys import KeyStore
from core.settings import ApiSettings, JobsSettings, Settings
from tests.integration.api_support import serve_in_thread

HUGE = "1171909604771281363795968"  # the offset the fuzzer sent: past SQLite's 64-bit integers
BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u200b\ufeff\x85"


@dataclass(frozen=True)
class Server:
    http: httpx.Client
    keys: dict[str, str]
    settings: Settings

    def auth(self, role: str) -> dict[str, str]:
        return {"authorization": f"Bearer {self.keys[role]}"}


def _settings(root: Path, **api: Any) -> Settings:
    # no consumer thread: these tests look at what the API answers, not at ingestion
    jobs = JobsSettings(embedded_workers=0)
    return Settings(data_dir=root / "ondata", jobs=jobs, api=ApiSettings(**api))


def _key_store(settings: Settings) -> KeyStore:
    return KeyStore(make_engine(settings.resolved_database_url))


@contextmanager
def _serve(settings: Settings) -> Iterator[Server]:
    store = _key_store(settings)
    keys = {role: store.create(role=role).key for role in ROLES}
    with serve_in_thread(create_app(settings)) as url, httpx.Client(base_url=url) as http:
        yield Server(http, keys, settings)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with _serve(_settings(tmp_path_factory.mktemp("hardening"))) as s:
        yield s


def _assert_error(response: httpx.Response, status: int, *, param: str | None = None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    if param is not None:
        assert error["param"] == param
    return dict(error)


# ---- the two 500s the fuzzer found --------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/v1/conversations", "/v1/feedback", "/v1/indexes/default/documents"]
)
def test_list_offset_past_64_bits_is_400(server: Server, path: str) -> None:
    response = server.http.get(path, params={"offset": HUGE}, headers=server.auth("admin"))
    error = _assert_error(response, 400, param="query.offset")
    assert "less than or equal to" in error["message"]


def test_chat_content_part_with_a_non_string_type_is_400(server: Server) -> None:
    for part_type in ({}, [], None, 3):
        body = {"messages": [{"role": "user", "content": [{"type": part_type, "text": "hi"}]}]}
        response = server.http.post(
            "/v1/chat/completions", json=body, headers=server.auth("reader")
        )
        error = _assert_error(response, 400, param="messages.0.content")
        assert "string type" in error["message"]
        assert error["type"] == "invalid_request_error"


@pytest.mark.parametrize("field", ["requests_per_minute", "tokens_per_minute"])
def test_key_limit_past_32_bits_is_400(server: Server, field: str) -> None:
    body = {"role": "reader", field: 9223372036854775808}  # what the fuzzer sent
    response = server.http.post("/v1/keys", json=body, headers=server.auth("admin"))
    _assert_error(response, 400, param=field)


def test_job_refresh_interval_past_a_year_is_400(server: Server) -> None:
    body = {
        "index_name": "default",
        "sources": [{"type": "url", "url": "http://127.0.0.1:9/"}],
        "refresh_interval_s": 10**15,  # now + that is past the last date Python can hold
    }
    response = server.http.post("/v1/ingestion/jobs", json=body, headers=server.auth("admin"))
    _assert_error(response, 400, param="refresh_interval_s")


# ---- the OpenAPI document declares what each route answers ---------------------------------


def _operations(document: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            yield f"{method.upper()} {path}", operation


def test_openapi_declares_each_error_status_with_the_error_body(server: Server) -> None:
    document = server.http.get("/openapi.json").json()
    error_ref = {"$ref": "#/components/schemas/ErrorBody"}
    keyed = 0
    for name, operation in _operations(document):
        statuses = operation["responses"]
        assert "422" not in statuses, name  # validation errors answer 400
        if "requestBody" in operation:
            assert "413" in statuses, name
        if name.startswith(("GET /healthz", "GET /readyz")):
            continue
        keyed += 1
        assert {"400", "401", "429"} <= set(statuses), name
        for status, response in statuses.items():
            if int(status) >= 400:
                assert response["content"]["application/json"]["schema"] == error_ref, name
    assert keyed >= 30
    assert "HTTPValidationError" not in document["components"]["schemas"]
    error = document["components"]["schemas"]["ErrorDetail"]
    assert set(error["properties"]) == {"message", "type", "param", "code"}
    paths = document["paths"]
    chat = paths["/v1/chat/completions"]["post"]["responses"]
    assert {"403", "404", "502", "503", "504"} <= set(chat)
    assert "text/event-stream" in chat["200"]["content"]
    assert chat["429"]["headers"]["Retry-After"]["schema"]["type"] == "integer"
    assert {"404", "409"} <= set(paths["/v1/keys/{key_id}"]["delete"]["responses"])
    assert "415" in paths["/v1/indexes/{name}/documents"]["post"]["responses"]
    assert "409" in paths["/v1/conversations"]["post"]["responses"]


# ---- Swagger UI: off by default, and never from a CDN --------------------------------------


def test_docs_are_off_by_default_and_the_document_is_served(server: Server) -> None:
    assert server.http.get("/docs").status_code == 404
    assert server.http.get("/redoc").status_code == 404
    assert server.http.get("/openapi.json").json()["info"]["title"] == "ondata"


def test_docs_when_turned_on_load_only_from_this_origin(tmp_path: Path) -> None:
    with _serve(_settings(tmp_path, docs=True)) as s:
        page = s.http.get("/docs")
        assert page.status_code == 200
        assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert "<script>" not in page.text  # no inline script: the policy would block it
        sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        assert sources
        assert all(src.startswith("/docs/") for src in sources), sources
        for src in sources:
            asset = s.http.get(src)
            assert asset.status_code == 200, src
            assert asset.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        init = s.http.get("/docs/init.js").text
        assert '"/openapi.json"' in init
        assert s.http.get("/redoc").status_code == 404


# ---- invisible characters in stored names --------------------------------------------------


def test_upload_file_name_keeps_no_bidi_or_control_characters(server: Server) -> None:
    admin = server.auth("admin")
    created = server.http.post("/v1/indexes", json={"name": "names"}, headers=admin)
    assert created.status_code == 201, created.text
    sent = f"inv{BIDI}oice\u202egpj.txt"
    files = [("files", (sent, b"The invoice is due in thirty days.\n", "text/plain"))]
    response = server.http.post("/v1/indexes/names/documents", files=files, headers=admin)
    assert response.status_code == 202, response.text
    stored = response.json()["documents"][0]["filename"]
    assert stored == "invoicegpj.txt"
    assert stored.isprintable()


def test_conversation_title_keeps_no_bidi_or_control_characters(server: Server) -> None:
    body = {"title": f"Q3 {BIDI}report\u202etxt.exe"}
    created = server.http.post("/v1/conversations", json=body, headers=server.auth("reader"))
    assert created.status_code == 201, created.text
    assert created.json()["title"] == "Q3 reporttxt.exe"
    path = f"/v1/conversations/{created.json()['id']}"
    renamed = server.http.patch(
        path, json={"title": "\u2067x\u2069"}, headers=server.auth("reader")
    )
    assert renamed.json()["title"] == "x"


def test_key_name_keeps_no_terminal_escapes(server: Server) -> None:
    body = {"role": "reader", "name": "ci\x1b[2Jbot\u202e"}
    created = server.http.post("/v1/keys", json=body, headers=server.auth("admin"))
    assert created.status_code == 200, created.text
    assert created.json()["name"] == "ci[2Jbot"


# ---- the last admin key --------------------------------------------------------------------


def test_revoking_the_last_admin_key_is_409_until_another_exists(tmp_path: Path) -> None:
    with _serve(_settings(tmp_path)) as s:
        admin_id = s.keys["admin"].split("_")[1]
        refused = s.http.delete(f"/v1/keys/{admin_id}", headers=s.auth("admin"))
        error = _assert_error(refused, 409, param="key_id")
        assert error["code"] == "last_admin_key"
        assert "ondata keys create --role admin" in error["message"]
        assert s.http.get("/v1/keys", headers=s.auth("admin")).status_code == 200
        other = s.http.post("/v1/keys", json={"role": "admin"}, headers=s.auth("admin")).json()
        revoked = s.http.delete(f"/v1/keys/{admin_id}", headers=s.auth("admin"))
        assert revoked.status_code == 200, revoked.text
        last = s.http.delete(f"/v1/keys/{other['id']}", headers={"api-key": other["key"]})
        assert _assert_error(last, 409)["code"] == "last_admin_key"


def test_revoking_the_last_admin_key_is_allowed_with_an_operator_key(tmp_path: Path) -> None:
    with _serve(_settings(tmp_path, api_key="operator-secret")) as s:
        admin_id = s.keys["admin"].split("_")[1]
        revoked = s.http.delete(f"/v1/keys/{admin_id}", headers=s.auth("admin"))
        assert revoked.status_code == 200, revoked.text
        assert s.http.get("/v1/keys", headers=s.auth("admin")).status_code == 401
        listed = s.http.get("/v1/keys", headers={"authorization": "Bearer operator-secret"})
        assert listed.status_code == 200


def _cli() -> typer.Typer:
    cli = typer.Typer()
    register(cli)
    return cli


def test_keys_cli_refuses_to_revoke_the_last_admin_key(tmp_path: Path) -> None:
    env = {"ONDATA_DATA_DIR": str(tmp_path / "ondata")}
    runner, cli_app = CliRunner(), _cli()
    made = runner.invoke(cli_app, ["keys", "create", "--role", "admin", "--json"], env=env)
    prefix = json.loads(made.output.strip().splitlines()[-1])["prefix"]
    refused = runner.invoke(cli_app, ["keys", "revoke", prefix], env=env)
    assert refused.exit_code == 2
    assert "last admin key" in refused.output
    operator = {**env, "ONDATA_API__API_KEY": "operator-secret"}
    assert runner.invoke(cli_app, ["keys", "revoke", prefix], env=operator).exit_code == 0
