"""Chat history over HTTP: the real app under uvicorn with a chat model (the loopback fake),
API keys for two readers and an admin, and the official openai client.

Covers recording (grounded and plain, streamed and not, body field or header), reading with
citations and intent, per-key isolation, rename/delete, feedback and the admin review.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from openai import OpenAI

from api.app import create_app
from core.db import make_engine
from core.keys import KeyStore
from core.settings import Settings
from tests.fakes.openai_server import CHAT_MODEL, FakeOpenAIServer
from tests.integration.api_support import INDEX, build_index, serve_in_thread

QUESTION = "How much may employees spend on hotels in capital cities?"
CONVERSATION_HEADER = "x-ondata-conversation-id"
MESSAGE_HEADER = "x-ondata-message-id"


@dataclass(frozen=True)
class Keys:
    alice: str
    bob: str
    admin: str


@dataclass(frozen=True)
class Server:
    url: str
    keys: Keys


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, openai_fake_server: FakeOpenAIServer
) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("conversations_api")
    chat = openai_fake_server.chat_settings(timeout_s=5.0)
    settings = Settings(data_dir=root / "ondata", chat=chat)
    build_index(settings, root / "docs")
    engine = make_engine(settings.resolved_database_url)
    store = KeyStore(engine)
    keys = Keys(
        alice=store.create(role="reader", groups=None, name="alice").key,
        bob=store.create(role="reader", groups=None, name="bob").key,
        admin=store.create(role="admin", groups=None, name="admin").key,
    )
    engine.dispose()
    with serve_in_thread(create_app(settings)) as url:
        yield Server(url, keys)


def _http(server: Server, key: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=60, headers={"authorization": f"Bearer {key}"})


@pytest.fixture
def alice(server: Server, openai_fake: FakeOpenAIServer) -> Iterator[httpx.Client]:
    with _http(server, server.keys.alice) as c:
        yield c


@pytest.fixture
def bob(server: Server, openai_fake: FakeOpenAIServer) -> Iterator[httpx.Client]:
    with _http(server, server.keys.bob) as c:
        yield c


@pytest.fixture
def admin(server: Server) -> Iterator[httpx.Client]:
    with _http(server, server.keys.admin) as c:
        yield c


@pytest.fixture
def alice_openai(server: Server, openai_fake: FakeOpenAIServer) -> Iterator[OpenAI]:
    with OpenAI(base_url=f"{server.url}/v1", api_key=server.keys.alice, max_retries=0) as c:
        yield c


def _grounded(**extra: Any) -> dict[str, Any]:
    return {"data_sources": [{"type": "ondata", "parameters": {"index_name": INDEX}}], **extra}


def _ask(question: str = QUESTION) -> list[dict[str, str]]:
    return [{"role": "user", "content": question}]


def _chat(client: httpx.Client, conversation_id: str, question: str = QUESTION) -> httpx.Response:
    body = {"messages": _ask(question), **_grounded(conversation_id=conversation_id)}
    response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    return response


def _read(client: httpx.Client, conversation_id: str) -> dict[str, Any]:
    response = client.get(f"/v1/conversations/{conversation_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    return error


def test_history_records_a_grounded_answer_with_its_citations(
    alice_openai: OpenAI, alice: httpx.Client
) -> None:
    raw = alice_openai.chat.completions.with_raw_response.create(
        model="ignored",
        messages=_ask(),  # type: ignore[arg-type]
        extra_body=_grounded(conversation_id="trip-1"),
    )
    completion = raw.parse()
    assert raw.headers[CONVERSATION_HEADER] == "trip-1"
    assert raw.headers[MESSAGE_HEADER] == completion.id
    context = (completion.choices[0].message.model_extra or {})["context"]
    assert context["citations"], "the fake cites [doc1]: the test needs a cited answer"

    stored = _read(alice, "trip-1")
    assert stored["title"] == QUESTION
    question, answer = stored["messages"]
    assert (question["role"], question["content"], question["context"]) == ("user", QUESTION, None)
    assert answer["id"] == completion.id
    assert answer["content"] == completion.choices[0].message.content
    assert answer["context"]["citations"] == context["citations"]  # every key, nulls too
    assert json.loads(answer["context"]["intent"]) == json.loads(context["intent"])
    assert (answer["index_name"], answer["model"]) == (INDEX, CHAT_MODEL)
    assert answer["feedback"] is None


def test_history_records_a_streamed_answer_when_the_stream_ends(
    alice_openai: OpenAI, alice: httpx.Client
) -> None:
    with alice_openai.chat.completions.with_streaming_response.create(
        model="ignored",
        messages=_ask(),  # type: ignore[arg-type]
        stream=True,
        extra_body=_grounded(),
        extra_headers={CONVERSATION_HEADER: "trip-stream"},
    ) as response:
        assert response.headers[CONVERSATION_HEADER] == "trip-stream"
        chunks = list(response.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    streamed_ids = {c.id for c in chunks}
    candidates = (chunks[0].choices[0].delta.model_extra or {})["context"]["citations"]

    question, answer = _read(alice, "trip-stream")["messages"]
    assert question["content"] == QUESTION
    assert streamed_ids == {answer["id"]}
    assert answer["content"] == text
    cited = {c["chunk_id"] for c in answer["context"]["citations"]}
    assert cited, "the stored answer keeps the citations it verified"
    assert cited <= {c["chunk_id"] for c in candidates}


def test_history_records_plain_chat_streamed_and_not(
    alice: httpx.Client, openai_fake: FakeOpenAIServer
) -> None:
    openai_fake.reply("Plain answer one.")
    response = alice.post(
        "/v1/chat/completions",
        json={"messages": _ask("hello"), "conversation_id": "plain"},
    )
    assert response.status_code == 200, response.text
    openai_fake.reply("Plain answer two.")
    body = {"messages": _ask("again"), "stream": True, "conversation_id": "plain"}
    with alice.stream("POST", "/v1/chat/completions", json=body) as streamed:
        assert streamed.status_code == 200
        assert b"[DONE]" in b"".join(streamed.iter_bytes())
    messages = _read(alice, "plain")["messages"]
    assert [(m["role"], m["content"]) for m in messages] == [
        ("user", "hello"),
        ("assistant", "Plain answer one."),
        ("user", "again"),
        ("assistant", "Plain answer two."),
    ]
    assert messages[1]["context"] is None  # no data source, nothing cited


def test_history_without_a_conversation_id_stores_nothing(alice: httpx.Client) -> None:
    before = alice.get("/v1/conversations").json()["data"]
    response = alice.post("/v1/chat/completions", json={"messages": _ask(), **_grounded()})
    assert response.status_code == 200
    assert CONVERSATION_HEADER not in response.headers
    assert alice.get("/v1/conversations").json()["data"] == before


def test_history_conversation_id_must_be_well_formed_and_agree(alice: httpx.Client) -> None:
    bad = alice.post(
        "/v1/chat/completions", json={"messages": _ask(), **_grounded(conversation_id="../x")}
    )
    assert _error(bad, 400)["param"] == "conversation_id"
    mismatch = alice.post(
        "/v1/chat/completions",
        json={"messages": _ask(), **_grounded(conversation_id="a")},
        headers={CONVERSATION_HEADER: "b"},
    )
    assert "differ" in _error(mismatch, 400)["message"]


def test_history_is_private_to_each_key(alice: httpx.Client, bob: httpx.Client) -> None:
    _chat(alice, "private")
    _chat(bob, "bob-only", "Where do visitors get badges?")
    assert _error(bob.get("/v1/conversations/private"), 404)["code"] == "conversation_not_found"
    assert "private" not in {c["id"] for c in bob.get("/v1/conversations").json()["data"]}
    assert "bob-only" not in {c["id"] for c in alice.get("/v1/conversations").json()["data"]}
    _error(bob.patch("/v1/conversations/private", json={"title": "mine"}), 404)
    _error(bob.delete("/v1/conversations/private"), 404)
    # The same id names a separate conversation for another key.
    _chat(bob, "private", "When does the cafeteria open?")
    assert len(_read(alice, "private")["messages"]) == 2
    assert _read(bob, "private")["messages"][0]["content"] == "When does the cafeteria open?"


def test_history_list_rename_create_and_delete(alice: httpx.Client) -> None:
    _chat(alice, "to-rename")
    listed = alice.get("/v1/conversations", params={"limit": 1}).json()
    assert listed["object"] == "list"
    assert [c["id"] for c in listed["data"]] == ["to-rename"]
    assert listed["data"][0]["message_count"] == 2
    assert "messages" not in listed["data"][0]

    renamed = alice.patch("/v1/conversations/to-rename", json={"title": "Hotels"})
    assert (renamed.status_code, renamed.json()["title"]) == (200, "Hotels")
    _error(alice.patch("/v1/conversations/to-rename", json={"title": "x" * 201}), 400)
    _error(alice.patch("/v1/conversations/to-rename", json={"name": "typo"}), 400)

    created = alice.post("/v1/conversations", json={"title": "Empty"})
    assert created.status_code == 201
    new_id = created.json()["id"]
    assert _read(alice, new_id)["messages"] == []
    _error(alice.post("/v1/conversations", json={"id": new_id}), 409)

    deleted = alice.delete("/v1/conversations/to-rename")
    assert deleted.json() == {"id": "to-rename", "object": "conversation.deleted", "deleted": True}
    _error(alice.get("/v1/conversations/to-rename"), 404)


def test_feedback_on_an_answer_and_the_admin_review(
    alice: httpx.Client, bob: httpx.Client, admin: httpx.Client
) -> None:
    answer_id = _chat(alice, "rated").headers[MESSAGE_HEADER]
    question_id = _read(alice, "rated")["messages"][0]["id"]
    url = f"/v1/conversations/rated/messages/{answer_id}/feedback"
    verdict = {"rating": "down", "categories": ["wrong_citation"], "comment": "doc1 is trains"}

    given = alice.put(url, json=verdict)
    assert given.status_code == 200, given.text
    assert {k: given.json()[k] for k in verdict} == verdict
    assert _read(alice, "rated")["messages"][1]["feedback"]["categories"] == ["wrong_citation"]

    _error(alice.put(url, json={"rating": "up", "categories": ["inaccurate"]}), 400)
    _error(alice.put(url, json={"rating": "down", "categories": ["rude"]}), 400)
    _error(alice.put(url, json={"rating": "meh"}), 400)
    question_url = f"/v1/conversations/rated/messages/{question_id}/feedback"
    _error(alice.put(question_url, json={"rating": "up"}), 400)
    _error(bob.put(url, json={"rating": "up"}), 404)
    _error(alice.put("/v1/conversations/rated/messages/msg-x/feedback", json={"rating": "up"}), 404)

    _error(alice.get("/v1/feedback"), 403)
    review = admin.get("/v1/feedback", params={"rating": "down", "category": "wrong_citation"})
    assert review.status_code == 200, review.text
    entry = next(f for f in review.json()["data"] if f["message_id"] == answer_id)
    assert entry["conversation_id"] == "rated"
    assert entry["comment"] == "doc1 is trains"
    assert entry["message_content"] == _read(alice, "rated")["messages"][1]["content"]
    assert entry["owner"] != ""

    withdrawn = alice.delete(url)
    assert withdrawn.json() == {
        "object": "feedback.deleted",
        "message_id": answer_id,
        "deleted": True,
    }
    assert _read(alice, "rated")["messages"][1]["feedback"] is None


def test_history_needs_a_key(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as anonymous:
        _error(anonymous.get("/v1/conversations"), 401)
