"""Keys and roles over HTTP on the real app: missing/wrong/revoked keys (401), role escalation
and index-scope probes (403), key management, per-key limits (429), never a 500."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import typer
from openai import AzureOpenAI, OpenAI
from typer.testing import CliRunner

from api.app import create_app
from api.auth import open_bind_refusal
from api.cli import register
from core.db import make_engine
from core.keys import KeyStore
from core.settings import ApiSettings, Settings
from tests.integration.api_support import INDEX, build_index, serve_in_thread

QUESTION = "How much may employees spend on hotels in capital cities?"


def _cli() -> typer.Typer:
    cli = typer.Typer()
    register(cli)
    return cli


@dataclass(frozen=True)
class Keys:
    admin: str
    contributor: str
    reader: str
    scoped_elsewhere: str
    revoked: str
    revoked_id: str
    two_per_minute: str
    few_tokens: str
    scoped_admin: str


@dataclass(frozen=True)
class Server:
    url: str
    keys: Keys


def _make_keys(settings: Settings) -> Keys:
    engine = make_engine(settings.resolved_database_url)
    store = KeyStore(engine)
    revoked = store.create(role="reader")
    store.revoke(revoked.info.id)
    keys = Keys(
        admin=store.create(role="admin").key,
        contributor=store.create(role="contributor").key,
        reader=store.create(role="reader").key,
        scoped_elsewhere=store.create(role="admin", indexes=["other"]).key,
        revoked=revoked.key,
        revoked_id=revoked.info.id,
        two_per_minute=store.create(role="reader", requests_per_minute=2).key,
        few_tokens=store.create(role="reader", tokens_per_minute=40).key,
        scoped_admin=store.create(role="admin", indexes=[INDEX], groups=["hr"]).key,
    )
    engine.dispose()
    return keys


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("auth_api")
    settings = Settings(data_dir=root / "ondata")
    build_index(settings, root / "docs")
    keys = _make_keys(settings)
    with serve_in_thread(create_app(settings)) as url:
        yield Server(url, keys)


@pytest.fixture(scope="module")
def http(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


def _bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def _chat_body(index: str = INDEX, **extra: Any) -> dict[str, Any]:
    return {
        "messages": [{"role": "user", "content": QUESTION}],
        "data_sources": [{"type": "ondata", "parameters": {"index_name": index}}],
        **extra,
    }


def _search_body(index: str = INDEX) -> dict[str, Any]:
    return {"index_name": index, "query": QUESTION}


CALLS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("POST", "/v1/search", _search_body()),
    ("POST", "/v1/chat/completions", _chat_body()),
    ("POST", "/openai/deployments/d/chat/completions?api-version=2024-10-21", _chat_body()),
    ("GET", "/v1/models", None),
    ("GET", "/v1/keys", None),
    ("POST", "/v1/keys", {"role": "reader"}),
]


def _assert_error(response: httpx.Response, status: int, type_: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["type"] == type_
    assert error["message"]


@pytest.mark.parametrize(("method", "path", "body"), CALLS)
def test_auth_missing_key_is_401(
    http: httpx.Client, method: str, path: str, body: dict[str, Any] | None
) -> None:
    response = http.request(method, path, json=body)
    _assert_error(response, 401, "authentication_error")
    assert "Missing API key" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    "headers",
    [
        {"authorization": "Bearer od_000000000000_notarealsecret"},
        {"api-key": "od_000000000000_notarealsecret"},
        {"authorization": "Bearer sk-something-else"},
        {"authorization": "Bearer " + "x" * 4000},
        {"api-key": "\u00e9t\u00e9-key"},
        {"authorization": "Basic dXNlcjpwYXNz"},
        {"authorization": "Bearer"},
    ],
)
@pytest.mark.parametrize(("method", "path", "body"), CALLS[:2])
def test_auth_wrong_key_is_401(
    http: httpx.Client,
    headers: dict[str, str],
    method: str,
    path: str,
    body: dict[str, Any] | None,
) -> None:
    encoded = {k: v.encode() for k, v in headers.items()}
    response = http.request(method, path, json=body, headers=encoded)  # type: ignore[arg-type]
    _assert_error(response, 401, "authentication_error")


def test_auth_wrong_key_of_a_real_key_with_a_changed_character_is_401(
    http: httpx.Client, server: Server
) -> None:
    key = server.keys.reader
    mangled = key[:-1] + ("A" if key[-1] != "A" else "B")
    assert http.get("/v1/models", headers=_bearer(key)).status_code == 200
    _assert_error(http.get("/v1/models", headers=_bearer(mangled)), 401, "authentication_error")


@pytest.mark.parametrize(("method", "path", "body"), CALLS)
def test_auth_revoked_key_is_401(
    http: httpx.Client, server: Server, method: str, path: str, body: dict[str, Any] | None
) -> None:
    response = http.request(method, path, json=body, headers=_bearer(server.keys.revoked))
    _assert_error(response, 401, "authentication_error")
    assert "revoked" in response.json()["error"]["message"]


def test_auth_key_revoked_through_the_api_stops_working(http: httpx.Client, server: Server) -> None:
    created = http.post("/v1/keys", json={"role": "reader"}, headers=_bearer(server.keys.admin))
    assert created.status_code == 200, created.text
    key, key_id = created.json()["key"], created.json()["id"]
    assert http.post("/v1/search", json=_search_body(), headers=_bearer(key)).status_code == 200
    revoked = http.delete(f"/v1/keys/{key_id}", headers=_bearer(server.keys.admin))
    assert revoked.status_code == 200
    assert revoked.json()["revoked"] is True
    after = http.post("/v1/search", json=_search_body(), headers=_bearer(key))
    _assert_error(after, 401, "authentication_error")


def test_auth_openai_and_azure_clients_send_keys_their_way(server: Server) -> None:
    extra = {"data_sources": [{"type": "ondata", "parameters": {"index_name": INDEX}}]}
    ask = [{"role": "user", "content": QUESTION}]
    key = server.keys.reader
    with OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0) as c:
        reply = c.chat.completions.create(model="m", messages=ask, extra_body=extra)  # type: ignore[arg-type]
    assert "180" in (reply.choices[0].message.content or "")
    azure = AzureOpenAI(
        azure_endpoint=server.url, api_version="2024-10-21", api_key=key, max_retries=0
    )
    with azure:
        reply = azure.chat.completions.create(model="d", messages=ask, extra_body=extra)  # type: ignore[arg-type]
    assert "180" in (reply.choices[0].message.content or "")
    bad = OpenAI(base_url=f"{server.url}/v1", api_key="wrong", max_retries=0)
    with bad, pytest.raises(openai.AuthenticationError):
        bad.models.list()


@pytest.mark.parametrize("role", ["reader", "contributor"])
@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/keys", {"role": "admin"}),
        ("POST", "/v1/keys", {"role": "reader"}),
        ("GET", "/v1/keys", None),
        ("DELETE", "/v1/keys/000000000000", None),
    ],
)
def test_auth_only_admins_manage_keys(
    http: httpx.Client,
    server: Server,
    role: str,
    method: str,
    path: str,
    body: dict[str, Any] | None,
) -> None:
    key = getattr(server.keys, role)
    response = http.request(method, path, json=body, headers=_bearer(key))
    _assert_error(response, 403, "permission_error")
    assert "admin" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/search", _search_body()),
        ("POST", "/v1/chat/completions", _chat_body()),
        ("POST", "/v1/chat/completions", _chat_body(stream=True)),
        ("POST", "/openai/deployments/d/chat/completions?api-version=2024-10-21", _chat_body()),
    ],
)
def test_auth_key_scoped_to_another_index_is_403(
    http: httpx.Client, server: Server, method: str, path: str, body: dict[str, Any]
) -> None:
    response = http.request(method, path, json=body, headers=_bearer(server.keys.scoped_elsewhere))
    _assert_error(response, 403, "permission_error")
    assert INDEX in response.json()["error"]["message"]


def test_auth_scoped_key_reaches_its_own_index(http: httpx.Client, server: Server) -> None:
    # the key is scoped to "other", which does not exist: past the scope check, a 404
    response = http.post(
        "/v1/search", json=_search_body("other"), headers=_bearer(server.keys.scoped_elsewhere)
    )
    _assert_error(response, 404, "not_found_error")


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"role": "reader", "indexes": ["other"]}, "indexes"),
        ({"role": "reader", "indexes": [INDEX, "other"]}, "indexes"),
        ({"role": "reader", "groups": ["eng"]}, "groups"),
        ({"role": "reader", "groups": ["*"]}, "groups"),
        ({"role": "admin"}, "groups"),
    ],
)
def test_auth_scoped_admin_cannot_mint_a_broader_key(
    http: httpx.Client, server: Server, body: dict[str, Any], param: str
) -> None:
    response = http.post("/v1/keys", json=body, headers=_bearer(server.keys.scoped_admin))
    _assert_error(response, 403, "permission_error")
    assert response.json()["error"]["param"] == param


def test_auth_scoped_admin_mints_keys_inside_its_scope(http: httpx.Client, server: Server) -> None:
    body = {"role": "reader", "groups": ["hr"]}
    response = http.post("/v1/keys", json=body, headers=_bearer(server.keys.scoped_admin))
    assert response.status_code == 200, response.text
    created = response.json()
    assert created["indexes"] == [INDEX]
    assert created["groups"] == ["hr"]
    listed = http.get("/v1/keys", headers=_bearer(server.keys.scoped_admin)).json()["data"]
    ids = {k["id"] for k in listed}
    assert created["id"] in ids
    assert all(k["indexes"] == [INDEX] for k in listed)
    assert all("key" not in k for k in listed)
    everything = http.get("/v1/keys", headers=_bearer(server.keys.admin)).json()["data"]
    admin_id = next(k["id"] for k in everything if k["role"] == "admin" and k["indexes"] is None)
    refused = http.delete(f"/v1/keys/{admin_id}", headers=_bearer(server.keys.scoped_admin))
    _assert_error(refused, 403, "permission_error")


@pytest.mark.parametrize(
    "body",
    [{"role": "root"}, {"role": "reader", "extra": 1}, {"role": "reader", "groups": "hr"}, {}],
)
def test_auth_bad_key_requests_are_400(
    http: httpx.Client, server: Server, body: dict[str, Any]
) -> None:
    response = http.post("/v1/keys", json=body, headers=_bearer(server.keys.admin))
    _assert_error(response, 400, "invalid_request_error")


def test_auth_revoking_an_unknown_key_is_404(http: httpx.Client, server: Server) -> None:
    response = http.delete("/v1/keys/ffffffffffff", headers=_bearer(server.keys.admin))
    _assert_error(response, 404, "not_found_error")


def test_auth_requests_per_minute_answer_429_with_retry_after(
    http: httpx.Client, server: Server
) -> None:
    headers = _bearer(server.keys.two_per_minute)
    statuses = [http.get("/v1/models", headers=headers).status_code for _ in range(2)]
    refused = http.get("/v1/models", headers=headers)
    assert statuses == [200, 200]
    _assert_error(refused, 429, "rate_limit_error")
    assert 1 <= int(refused.headers["retry-after"]) <= 30
    # another key is not affected
    assert http.get("/v1/models", headers=_bearer(server.keys.reader)).status_code == 200


def test_auth_tokens_per_minute_answer_429(http: httpx.Client, server: Server) -> None:
    headers = _bearer(server.keys.few_tokens)
    first = http.post("/v1/chat/completions", json=_chat_body(), headers=headers)
    assert first.status_code == 200, first.text
    refused = http.post("/v1/chat/completions", json=_chat_body(), headers=headers)
    _assert_error(refused, 429, "rate_limit_error")
    assert "tokens per minute" in refused.json()["error"]["message"]
    assert int(refused.headers["retry-after"]) >= 1


def test_auth_open_endpoints_need_no_key(http: httpx.Client) -> None:
    assert http.get("/healthz").status_code == 200
    assert http.get("/metrics").status_code == 200


def test_auth_off_without_keys_on_loopback_until_a_key_is_made(
    tmp_path: Path,
) -> None:
    settings = Settings(data_dir=tmp_path / "ondata")
    with serve_in_thread(create_app(settings)) as url, httpx.Client(base_url=url) as http:
        assert http.get("/v1/models").status_code == 200
        # auth is off: a stray key (OpenAI clients always send one) is ignored
        assert http.get("/v1/models", headers=_bearer("unused")).status_code == 200
        created = http.post("/v1/keys", json={"role": "admin"})
        assert created.status_code == 200, created.text
        _assert_error(http.get("/v1/models"), 401, "authentication_error")
        stray = http.get("/v1/models", headers=_bearer("unused"))
        _assert_error(stray, 401, "authentication_error")
        assert http.get("/v1/models", headers=_bearer(created.json()["key"])).status_code == 200


def test_auth_required_setting_turns_auth_on_without_keys(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "ondata", api=ApiSettings(auth_required=True))
    with serve_in_thread(create_app(settings)) as url, httpx.Client(base_url=url) as http:
        _assert_error(http.get("/v1/models"), 401, "authentication_error")
        _assert_error(http.post("/v1/keys", json={"role": "admin"}), 401, "authentication_error")


def test_serve_refuses_a_public_bind_with_auth_off(tmp_path: Path) -> None:
    env = {"ONDATA_DATA_DIR": str(tmp_path / "ondata")}
    result = CliRunner().invoke(_cli(), ["serve", "--host", "0.0.0.0"], env=env)
    assert result.exit_code == 2
    assert "refusing to listen on 0.0.0.0 with auth off" in result.output
    assert "ondata keys create" in result.output


def test_open_bind_refusal_rules(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'k.db'}")
    keys = KeyStore(engine)
    assert open_bind_refusal(ApiSettings(host="127.0.0.1"), keys) is None
    assert open_bind_refusal(ApiSettings(host="::1"), keys) is None
    assert open_bind_refusal(ApiSettings(host="localhost"), keys) is None
    assert open_bind_refusal(ApiSettings(host="0.0.0.0"), keys) is not None
    assert open_bind_refusal(ApiSettings(host="10.1.2.3"), keys) is not None
    assert open_bind_refusal(ApiSettings(host="0.0.0.0", auth_required=True), keys) is None
    assert open_bind_refusal(ApiSettings(host="0.0.0.0", api_key="s3cret"), keys) is None  # type: ignore[arg-type]
    keys.create(role="admin")
    assert open_bind_refusal(ApiSettings(host="0.0.0.0"), keys) is None
    engine.dispose()


def test_keys_cli_create_list_revoke(tmp_path: Path) -> None:
    import json

    env = {"ONDATA_DATA_DIR": str(tmp_path / "ondata")}
    runner, cli_app = CliRunner(), _cli()
    made = runner.invoke(
        cli_app,
        ["keys", "create", "--role", "reader", "--groups", "hr,eng", "--indexes", "x,y", "--json"],
        env=env,
    )
    assert made.exit_code == 0, made.output
    created = json.loads(made.output.strip().splitlines()[-1])
    assert created["key"].startswith("od_")
    assert created["groups"] == ["hr", "eng"]
    assert created["indexes"] == ["x", "y"]
    listed = runner.invoke(cli_app, ["keys", "list", "--json"], env=env)
    assert [k["id"] for k in json.loads(listed.output)] == [created["id"]]
    assert created["key"] not in listed.output
    revoked = runner.invoke(cli_app, ["keys", "revoke", created["prefix"]], env=env)
    assert revoked.exit_code == 0
    assert "revoked" in revoked.output
    assert json.loads(runner.invoke(cli_app, ["keys", "list", "--json"], env=env).output) == []
    bad = runner.invoke(cli_app, ["keys", "create", "--role", "root"], env=env)
    assert bad.exit_code == 2
    assert "role must be one of" in bad.output


UPLOAD = {"files": ("note.txt", b"Reader uploads must be refused.", "text/plain")}


@pytest.mark.parametrize(
    ("role", "method", "path", "json_body", "files"),
    [
        ("reader", "POST", "/v1/indexes", {"name": "fresh"}, None),
        ("contributor", "POST", "/v1/indexes", {"name": "fresh"}, None),
        ("contributor", "DELETE", f"/v1/indexes/{INDEX}", None, None),
        ("reader", "POST", f"/v1/indexes/{INDEX}/documents", None, UPLOAD),
        ("reader", "GET", f"/v1/indexes/{INDEX}/documents", None, None),
        ("reader", "DELETE", f"/v1/indexes/{INDEX}/documents/travel-md", None, None),
        (
            "reader",
            "POST",
            "/v1/ingestion/jobs",
            {"index_name": INDEX, "sources": [{"url": "http://127.0.0.1:9/x"}]},
            None,
        ),
        ("reader", "GET", "/v1/ingestion/jobs", None, None),
        ("reader", "GET", "/v1/feedback", None, None),
        ("scoped_elsewhere", "POST", f"/v1/indexes/{INDEX}/documents", None, UPLOAD),
        ("scoped_elsewhere", "GET", f"/v1/indexes/{INDEX}", None, None),
        ("scoped_elsewhere", "DELETE", f"/v1/indexes/{INDEX}", None, None),
        ("scoped_elsewhere", "POST", "/v1/indexes", {"name": INDEX}, None),
    ],
)
def test_auth_role_escalation_on_index_document_and_job_routes_is_403(
    http: httpx.Client,
    server: Server,
    role: str,
    method: str,
    path: str,
    json_body: dict[str, Any] | None,
    files: dict[str, Any] | None,
) -> None:
    headers = _bearer(getattr(server.keys, role))
    response = http.request(method, path, json=json_body, files=files, headers=headers)
    _assert_error(response, 403, "permission_error")
    # the index is untouched
    assert http.get(f"/v1/indexes/{INDEX}", headers=_bearer(server.keys.admin)).status_code == 200


def test_auth_scoped_admin_lists_only_its_indexes(http: httpx.Client, server: Server) -> None:
    everything = http.get("/v1/indexes", headers=_bearer(server.keys.admin))
    assert INDEX in {i["name"] for i in everything.json()["data"]}
    scoped = http.get("/v1/indexes", headers=_bearer(server.keys.scoped_elsewhere))
    assert scoped.status_code == 200
    assert INDEX not in {i["name"] for i in scoped.json()["data"]}


@pytest.mark.parametrize("path", ["/metrics", "/v1/indexes"])
def test_auth_contributor_cannot_make_the_server_fetch_itself(
    http: httpx.Client, server: Server, path: str
) -> None:
    """The SSRF of the security probe: a URL job at the server's own loopback address. With
    no jobs.url_allow (the default) it is a 400 at submission and no job exists."""
    headers = _bearer(server.keys.contributor)
    body = {"index_name": INDEX, "sources": [{"type": "url", "url": f"{server.url}{path}"}]}
    response = http.post("/v1/ingestion/jobs", json=body, headers=headers)
    _assert_error(response, 400, "invalid_request_error")
    assert response.json()["error"]["code"] == "address_not_allowed"
    jobs = http.get("/v1/ingestion/jobs", params={"index_name": INDEX}, headers=headers)
    assert not any(s.get("url") for j in jobs.json()["data"] for s in j["sources"])
