"""Cross-group probes: no chunk of a document outside the caller's ACL groups reaches any path.

Two groups (hr, eng) each own a document with a unique secret; a public document is readable
by all. Every probe asks the question that retrieves the other group's secret, at the loosest
settings (strictness 1, top 20, all_retrieved_documents), and checks the raw response, and
with a chat model what the model was sent, for the other group's markers. Positive controls
show the same probe does return the secret to a caller in that group, so the checks can fail.
Two apps: the extractive answerer, and the loopback fake chat model (tests/fakes).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.app import create_app
from core.db import make_engine
from core.keys import KeyStore
from core.settings import ApiSettings, Settings
from ingest.parsers import doc_id_for
from ingest.service import open_pipeline, parser_for
from ingest.sources import source_files
from tests.fakes.openai_server import FakeOpenAIServer
from tests.integration.api_support import serve_in_thread

INDEX = "acl"
GROUPS_HEADER = "X-Ondata-Groups"
USER_HEADER = "X-Ondata-User"
DOCUMENTS = {
    "hr": (
        "salaries.md",
        "# Salary bands\n\nThe salary band code for senior engineers is ZEBRA-7731.\n"
        "Salary bands are reviewed every March by the compensation committee.\n",
    ),
    "eng": (
        "servers.md",
        "# Server rooms\n\nThe server room door code is KOALA-4410.\n"
        "Server rooms are inspected every Monday by the facilities team.\n",
    ),
    "": (
        "cafeteria.txt",
        "The cafeteria opens at eight in the morning and serves vegetarian meals every day.\n",
    ),
}
QUESTIONS = {
    "hr": "What is the salary band code for senior engineers?",
    "eng": "What is the server room door code?",
}
SECRETS = {"hr": ["ZEBRA-7731", "compensation committee"], "eng": ["KOALA-4410", "facilities team"]}
AZURE = "/openai/deployments/d/chat/completions?api-version=2024-10-21"


@dataclass(frozen=True)
class App:
    url: str
    keys: dict[str, str]  # "hr", "eng", "public", "admin"
    markers: dict[str, list[str]]  # group -> strings that only its document can produce


def _ingest(settings: Settings, root: Path) -> dict[str, list[str]]:
    markers: dict[str, list[str]] = {}
    with open_pipeline(settings, INDEX) as pipeline:
        for group, (name, text) in DOCUMENTS.items():
            folder = root / (group or "public")
            folder.mkdir(parents=True)
            (folder / name).write_text(text, encoding="utf-8")
            acl = [group] if group else []
            files = source_files([folder], doc_id_for=doc_id_for, acl_groups=acl)
            report = pipeline.ingest_files(files, parse=parser_for(settings))
            assert report.documents_ingested == 1, report
            if group:
                markers[group] = [*SECRETS[group], name, files[0].doc_id]
    return markers


def _keys(settings: Settings) -> dict[str, str]:
    engine = make_engine(settings.resolved_database_url)
    store = KeyStore(engine)
    keys = {
        "hr": store.create(role="reader", groups=["hr"]).key,
        "eng": store.create(role="reader", groups=["eng"]).key,
        "public": store.create(role="reader").key,
        "admin": store.create(role="admin").key,
    }
    engine.dispose()
    return keys


def _serve(settings: Settings, root: Path) -> Iterator[App]:
    markers = _ingest(settings, root / "docs")
    keys = _keys(settings)
    with serve_in_thread(create_app(settings)) as url:
        yield App(url=url, keys=keys, markers=markers)


@pytest.fixture(scope="module")
def extractive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    """The default answerer; a gateway's groups header is trusted here."""
    root = tmp_path_factory.mktemp("acl_extractive")
    api = ApiSettings(trusted_groups_header=GROUPS_HEADER, trusted_user_header=USER_HEADER)
    yield from _serve(Settings(data_dir=root / "ondata", api=api), root)


@pytest.fixture(scope="module")
def with_model(
    tmp_path_factory: pytest.TempPathFactory, openai_fake_server: FakeOpenAIServer
) -> Iterator[App]:
    """A chat model (the loopback fake); no groups header configured."""
    root = tmp_path_factory.mktemp("acl_model")
    chat = openai_fake_server.chat_settings()
    yield from _serve(Settings(data_dir=root / "ondata", chat=chat), root)


@pytest.fixture(params=["extractive", "with_model"])
def app(request: pytest.FixtureRequest, openai_fake: FakeOpenAIServer) -> App:
    made: App = request.getfixturevalue(request.param)
    return made


def _parameters(**extra: Any) -> dict[str, Any]:
    return {
        "index_name": INDEX,
        "strictness": 1,
        "top_n_documents": 20,
        "include_contexts": ["citations", "intent", "all_retrieved_documents"],
        **extra,
    }


def _chat(question: str, *, stream: bool = False, **parameters: Any) -> dict[str, Any]:
    return {
        "messages": [{"role": "user", "content": question}],
        "data_sources": [{"type": "ondata", "parameters": _parameters(**parameters)}],
        "stream": stream,
    }


def _search(question: str) -> dict[str, Any]:
    return {"index_name": INDEX, "query": question, "strictness": 1, "top_n_documents": 20}


PROBES: dict[str, tuple[str, Any]] = {
    "search": ("/v1/search", _search),
    "chat": ("/v1/chat/completions", lambda q: _chat(q)),
    "chat-stream": ("/v1/chat/completions", lambda q: _chat(q, stream=True)),
    "azure": (AZURE, lambda q: _chat(q)),
    "azure-stream": (AZURE, lambda q: _chat(q, stream=True)),
    "keyword": ("/v1/chat/completions", lambda q: _chat(q, query_type="simple")),
}


def _probe(app: App, probe: str, question: str, headers: dict[str, str]) -> str:
    path, body = PROBES[probe]
    with httpx.Client(base_url=app.url, timeout=60) as http:
        response = http.post(path, json=body(question), headers=headers)
    assert response.status_code == 200, response.text
    return response.text


def _leaks(text: str, markers: list[str]) -> list[str]:
    return [m for m in markers if m in text]


def _sent_to_model(fake: FakeOpenAIServer) -> str:
    return json.dumps([r.body for r in fake.requests_to("chat")])


def _bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


@pytest.mark.parametrize("probe", list(PROBES))
@pytest.mark.parametrize(("caller", "other"), [("hr", "eng"), ("eng", "hr")])
def test_acl_no_chunk_of_another_group_reaches_any_path(
    app: App, openai_fake: FakeOpenAIServer, probe: str, caller: str, other: str
) -> None:
    text = _probe(app, probe, QUESTIONS[other], _bearer(app.keys[caller]))
    assert _leaks(text, app.markers[other]) == []
    assert _leaks(_sent_to_model(openai_fake), app.markers[other]) == []


@pytest.mark.parametrize("probe", ["search", "chat", "chat-stream", "azure"])
@pytest.mark.parametrize("group", ["hr", "eng"])
def test_acl_the_same_probe_reaches_a_member_of_the_group(app: App, probe: str, group: str) -> None:
    text = _probe(app, probe, QUESTIONS[group], _bearer(app.keys[group]))
    assert SECRETS[group][0] in text


@pytest.mark.parametrize("probe", list(PROBES))
def test_acl_a_key_without_groups_reads_public_documents_only(
    app: App, openai_fake: FakeOpenAIServer, probe: str
) -> None:
    for group in ("hr", "eng"):
        text = _probe(app, probe, QUESTIONS[group], _bearer(app.keys["public"]))
        assert _leaks(text, app.markers[group]) == []
    assert _leaks(_sent_to_model(openai_fake), app.markers["hr"] + app.markers["eng"]) == []
    cafeteria = _probe(app, probe, "When does the cafeteria open?", _bearer(app.keys["public"]))
    assert "cafeteria" in cafeteria


def test_acl_an_admin_key_reads_every_group(app: App) -> None:
    for group in ("hr", "eng"):
        text = _probe(app, "search", QUESTIONS[group], _bearer(app.keys["admin"]))
        assert SECRETS[group][0] in text


@pytest.mark.parametrize(
    "flt",
    [
        "acl_groups/any(g: search.in(g, 'hr'))",
        "acl_groups/any(g: search.in(g, 'hr,eng'))",
        '{"acl_groups": ["hr"]}',
        "doc_id eq '{hr_doc}'",
        '{"doc_id": "{hr_doc}"}',
    ],
)
@pytest.mark.parametrize("probe", ["search", "chat"])
def test_acl_a_filter_cannot_widen_access(
    app: App, openai_fake: FakeOpenAIServer, flt: str, probe: str
) -> None:
    flt = flt.replace("{hr_doc}", app.markers["hr"][-1])
    path = PROBES[probe][0]
    body = PROBES[probe][1](QUESTIONS["hr"])
    if probe == "search":
        body["filter"] = flt
    else:
        body["data_sources"][0]["parameters"]["filter"] = flt
    with httpx.Client(base_url=app.url, timeout=60) as http:
        response = http.post(path, json=body, headers=_bearer(app.keys["eng"]))
    assert response.status_code == 200, response.text
    assert _leaks(response.text, app.markers["hr"]) == []
    assert _leaks(_sent_to_model(openai_fake), app.markers["hr"]) == []


def test_acl_earlier_turns_do_not_pull_in_another_groups_documents(
    app: App, openai_fake: FakeOpenAIServer
) -> None:
    body = _chat(QUESTIONS["hr"])
    body["messages"] = [
        {"role": "user", "content": "Tell me about ZEBRA codes and salary bands."},
        {"role": "assistant", "content": "I can only answer from your documents."},
        {"role": "user", "content": QUESTIONS["hr"]},
    ]
    with httpx.Client(base_url=app.url, timeout=60) as http:
        response = http.post("/v1/chat/completions", json=body, headers=_bearer(app.keys["eng"]))
    assert response.status_code == 200, response.text
    context = response.json()["choices"][0]["message"]["context"]
    shown = json.dumps([context["citations"], context["all_retrieved_documents"]])
    assert _leaks(shown, app.markers["hr"]) == []
    assert _leaks(response.json()["choices"][0]["message"]["content"], app.markers["hr"][:1]) == []


@pytest.mark.parametrize("probe", ["search", "chat", "chat-stream"])
def test_acl_trusted_header_sets_the_groups_when_configured(extractive: App, probe: str) -> None:
    admin = _bearer(extractive.keys["admin"])
    as_eng = _probe(extractive, probe, QUESTIONS["hr"], {**admin, GROUPS_HEADER: "eng"})
    assert _leaks(as_eng, extractive.markers["hr"]) == []
    as_hr = _probe(extractive, probe, QUESTIONS["hr"], {**admin, GROUPS_HEADER: "hr"})
    assert SECRETS["hr"][0] in as_hr
    nobody = _probe(extractive, probe, QUESTIONS["hr"], {**admin, GROUPS_HEADER: ""})
    assert _leaks(nobody, extractive.markers["hr"]) == []


@pytest.mark.parametrize("probe", ["search", "chat"])
def test_acl_groups_header_is_ignored_unless_configured(
    with_model: App, openai_fake: FakeOpenAIServer, probe: str
) -> None:
    headers = {**_bearer(with_model.keys["eng"]), GROUPS_HEADER: "hr"}
    text = _probe(with_model, probe, QUESTIONS["hr"], headers)
    assert _leaks(text, with_model.markers["hr"]) == []
    assert _leaks(_sent_to_model(openai_fake), with_model.markers["hr"]) == []


def _conversations(app: App, headers: dict[str, str]) -> set[str]:
    with httpx.Client(base_url=app.url, timeout=60) as http:
        response = http.get("/v1/conversations", headers=headers)
    assert response.status_code == 200, response.text
    return {c["id"] for c in response.json()["data"]}


@pytest.mark.parametrize("user_header", [False, True])
def test_acl_gateway_users_do_not_share_history_through_one_key(
    extractive: App, user_header: bool
) -> None:
    """One gateway key, users with different groups: an answer stored for hr is not listed to
    eng (conversations belong to the user, or without a user header to the group set)."""
    admin = _bearer(extractive.keys["admin"])
    hr = {**admin, GROUPS_HEADER: "hr", **({USER_HEADER: "ann"} if user_header else {})}
    eng = {**admin, GROUPS_HEADER: "eng", **({USER_HEADER: "bob"} if user_header else {})}
    conversation = f"hr-{user_header}"
    body = {**_chat(QUESTIONS["hr"]), "conversation_id": conversation}
    with httpx.Client(base_url=extractive.url, timeout=60) as http:
        answered = http.post("/v1/chat/completions", json=body, headers=hr)
        assert answered.status_code == 200, answered.text
        assert SECRETS["hr"][0] in answered.text
        stolen = http.get(f"/v1/conversations/{conversation}", headers=eng)
    assert conversation in _conversations(extractive, hr)
    assert conversation not in _conversations(extractive, eng)
    assert stolen.status_code == 404
    assert _leaks(stolen.text, extractive.markers["hr"]) == []


@pytest.mark.parametrize("value", ["*", "x" * 300, "hr,*"])
def test_acl_a_malformed_groups_header_is_400(extractive: App, value: str) -> None:
    headers = {**_bearer(extractive.keys["admin"]), GROUPS_HEADER: value}
    with httpx.Client(base_url=extractive.url, timeout=60) as http:
        response = http.post("/v1/search", json=_search(QUESTIONS["hr"]), headers=headers)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == GROUPS_HEADER
