"""The real app over HTTP with the official openai clients, default (extractive) answerer.

One app per module: uvicorn on a loopback port, a three-document index built with the real
parsers, ONNX embedder and Qdrant Edge.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
import typer
from openai import AsyncOpenAI, AzureOpenAI, OpenAI
from typer.testing import CliRunner

from api.app import create_app
from api.cli import register
from core.settings import ApiSettings, Settings
from tests.integration.api_support import INDEX, build_index, serve_in_thread

NOT_FOUND = (
    "The requested information is not available in the retrieved data. "
    "Please try another query or topic."
)
HOTEL_QUESTION = "How much may employees spend on hotels in capital cities?"
MARKER = re.compile(r"\[doc(\d+)\]")


@pytest.fixture(scope="module")
def api_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    root = tmp_path_factory.mktemp("chat_api")
    settings = Settings(
        data_dir=root / "ondata", api=ApiSettings(max_request_bytes=64 * 1024, max_messages=20)
    )
    build_index(settings, root / "docs")
    return settings


@pytest.fixture(scope="module")
def base_url(api_settings: Settings) -> Iterator[str]:
    with serve_in_thread(create_app(api_settings)) as url:
        yield url


@pytest.fixture(scope="module")
def client(base_url: str) -> Iterator[OpenAI]:
    with OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0) as c:
        yield c


@pytest.fixture(scope="module")
def http(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=60) as c:
        yield c


def _sources(**parameters: Any) -> dict[str, Any]:
    return {"data_sources": [{"type": "ondata", "parameters": {"index_name": INDEX, **parameters}}]}


def _ask(question: str = HOTEL_QUESTION) -> list[dict[str, str]]:
    return [{"role": "user", "content": question}]


def _context(message: Any) -> dict[str, Any]:
    context = (message.model_extra or {}).get("context")
    assert isinstance(context, dict), f"no context on {message!r}"
    return context


def _assert_grounded(content: str, context: dict[str, Any]) -> None:
    citations = context["citations"]
    numbers = {int(n) for n in MARKER.findall(content)}
    assert numbers, content
    assert numbers <= set(range(1, len(citations) + 1)), (content, len(citations))
    assert any("travel" in (c.get("filepath") or "") for c in citations), citations
    assert all(c["chunk_id"] and c["content"] for c in citations)
    intent = json.loads(context["intent"])
    assert isinstance(intent, list)
    assert intent
    assert all(isinstance(q, str) for q in intent)


def test_chat_completion_answers_with_citations_sync(client: OpenAI) -> None:
    completion = client.chat.completions.create(
        model="anything",
        messages=_ask(),
        extra_body=_sources(),  # type: ignore[arg-type]
    )
    message = completion.choices[0].message
    assert completion.object == "chat.completion"
    assert completion.choices[0].finish_reason == "stop"
    assert message.role == "assistant"
    assert "180" in (message.content or "")
    _assert_grounded(message.content or "", _context(message))
    assert completion.model == "ondata-extractive"
    assert completion.usage is not None
    assert completion.usage.total_tokens == (
        completion.usage.prompt_tokens + completion.usage.completion_tokens
    )


def test_chat_completion_streams_context_first_then_content_sync(client: OpenAI) -> None:
    stream = client.chat.completions.create(
        model="anything",
        messages=_ask(),  # type: ignore[arg-type]
        stream=True,
        stream_options={"include_usage": True},
        extra_body=_sources(),
    )
    chunks = list(stream)
    first = chunks[0].choices[0].delta
    context = _context(first)
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    _assert_grounded(content, context)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop"
    assert finishes.count("stop") == 1
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert len({c.id for c in chunks}) == 1


TWO_SECTIONS = (
    "What is the hotel limit outside capital cities, and when is first class train travel allowed?"
)


@pytest.mark.parametrize(
    "question",
    [HOTEL_QUESTION, TWO_SECTIONS],
)
def test_streamed_and_complete_answers_number_citations_alike(
    client: OpenAI, question: str
) -> None:
    sources = _sources(include_contexts=["citations", "intent", "all_retrieved_documents"])
    complete = (
        client.chat.completions.create(
            model="m",
            messages=_ask(question),
            extra_body=sources,  # type: ignore[arg-type]
        )
        .choices[0]
        .message
    )
    chunks = list(
        client.chat.completions.create(
            model="m",
            messages=_ask(question),
            stream=True,
            extra_body=sources,  # type: ignore[arg-type]
        )
    )
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    context = _context(chunks[0].choices[0].delta)
    citations = context["citations"]
    assert (streamed, citations) == (complete.content, _context(complete)["citations"])
    # citations are the documents the answer was given (kept by strictness), in rank order,
    # and each quoted sentence's [docN] is the chunk it comes from: citations[N-1]
    given = [d["chunk_id"] for d in context["all_retrieved_documents"] if not d["filter_reason"]]
    assert [c["chunk_id"] for c in citations] == given
    quotes = re.findall(r"([^.!?]*?)\s*\[doc(\d+)\]", streamed)
    assert quotes
    for sentence, n in quotes:
        assert " ".join(sentence.split()[-4:]) in " ".join(citations[int(n) - 1]["content"].split())


async def test_chat_completion_answers_with_citations_async(base_url: str) -> None:
    async with AsyncOpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0) as c:
        completion = await c.chat.completions.create(
            model="m",
            messages=_ask(),
            extra_body=_sources(),  # type: ignore[arg-type]
        )
    message = completion.choices[0].message
    _assert_grounded(message.content or "", _context(message))


async def test_chat_completion_streams_async(base_url: str) -> None:
    async with AsyncOpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0) as c:
        stream = await c.chat.completions.create(
            model="m",
            messages=_ask(),
            stream=True,
            extra_body=_sources(),  # type: ignore[arg-type]
        )
        chunks = [chunk async for chunk in stream]
    context = _context(chunks[0].choices[0].delta)
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    _assert_grounded(content, context)


def test_azure_client_with_azure_search_data_source(base_url: str) -> None:
    azure = AzureOpenAI(
        azure_endpoint=base_url, api_version="2024-10-21", api_key="azure-key", max_retries=0
    )
    source = {
        "type": "azure_search",
        "parameters": {
            "endpoint": "https://example.search.windows.net",
            "index_name": INDEX,
            "authentication": {"type": "api_key", "key": "ignored"},
            "query_type": "vector_simple_hybrid",
            "top_n_documents": 3,
            "in_scope": True,
            "strictness": 3,
            "role_information": "You answer questions about company policy.",
        },
    }
    with azure:
        completion = azure.chat.completions.create(
            model="my-deployment",
            messages=_ask(),
            extra_body={"data_sources": [source]},  # type: ignore[arg-type]
        )
        stream = azure.chat.completions.create(
            model="my-deployment",
            messages=_ask(),  # type: ignore[arg-type]
            stream=True,
            extra_body={"data_sources": [source]},
        )
        chunks = list(stream)
    message = completion.choices[0].message
    _assert_grounded(message.content or "", _context(message))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    _assert_grounded(streamed, _context(chunks[0].choices[0].delta))


def test_all_retrieved_documents_when_asked(client: OpenAI) -> None:
    completion = client.chat.completions.create(
        model="m",
        messages=_ask(),  # type: ignore[arg-type]
        extra_body=_sources(
            include_contexts=["citations", "intent", "all_retrieved_documents"],
            top_n_documents=1,
            strictness=1,
        ),
    )
    context = _context(completion.choices[0].message)
    retrieved = context["all_retrieved_documents"]
    assert len(retrieved) > 1
    assert all(d["search_queries"] == json.loads(context["intent"]) for d in retrieved)
    assert all(d["data_source_index"] == 0 for d in retrieved)
    kept = [d for d in retrieved if d.get("filter_reason") is None]
    assert len(kept) == 1
    assert {d.get("filter_reason") for d in retrieved} - {None} <= {"score", "rerank"}


def test_text_content_parts_are_joined(client: OpenAI) -> None:
    parts = [
        {"type": "text", "text": "How much may employees spend "},
        {"type": "text", "text": "on hotels in capital cities?"},
    ]
    completion = client.chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": parts}],
        extra_body=_sources(),  # type: ignore[list-item, misc]
    )
    assert "180" in (completion.choices[0].message.content or "")


def test_include_contexts_limits_the_context(client: OpenAI) -> None:
    completion = client.chat.completions.create(
        model="m",
        messages=_ask(),
        extra_body=_sources(include_contexts=["citations"]),  # type: ignore[arg-type]
    )
    context = _context(completion.choices[0].message)
    assert context["citations"]
    assert "intent" not in context
    assert "all_retrieved_documents" not in context


def test_filter_restricts_citations_to_matching_documents(client: OpenAI) -> None:
    completion = client.chat.completions.create(
        model="m",
        messages=_ask("When does the cafeteria open?"),  # type: ignore[arg-type]
        extra_body=_sources(filter="search.in(title, 'Security')", strictness=1),
    )
    citations = _context(completion.choices[0].message)["citations"]
    assert citations
    assert {c["title"] for c in citations} == {"Security"}


def test_out_of_scope_question_gets_the_refusal(client: OpenAI) -> None:
    completion = client.chat.completions.create(
        model="m",
        messages=_ask("What is the boiling point of tungsten in kelvin?"),  # type: ignore[arg-type]
        extra_body=_sources(strictness=5),
    )
    message = completion.choices[0].message
    assert message.content == NOT_FOUND
    assert _context(message)["citations"] == []


def test_search_endpoint_returns_ranked_chunks(http: httpx.Client) -> None:
    response = http.post(
        "/v1/search",
        json={
            "index_name": INDEX,
            "query": "red badge visitors",
            "top_n_documents": 2,
            "query_type": "simple",
        },
    )
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert 1 <= len(results) <= 2
    assert "badge" in results[0]["content"]
    assert results[0]["filepath"].endswith("security.md")
    assert results == sorted(results, key=lambda r: r["score"], reverse=True)


def test_models_health_and_readiness(client: OpenAI, http: httpx.Client) -> None:
    assert [m.id for m in client.models.list()] == ["ondata-extractive"]
    assert client.models.retrieve("ondata-extractive").id == "ondata-extractive"
    assert http.get("/healthz").json() == {"status": "ok"}
    ready = http.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"


def test_chat_without_data_sources_needs_a_chat_model(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="m", messages=_ask())  # type: ignore[arg-type]
    assert caught.value.code == "chat_model_not_configured"
    assert caught.value.param == "data_sources"


# ---- bad input: 4xx with an OpenAI-shaped body, never 500 ---------------------------------

BAD_REQUESTS: list[tuple[str, Any, int, str | None]] = [
    ("empty messages", {"messages": [], **_sources()}, 400, "messages"),
    ("n > 1", {"messages": _ask(), "n": 2, **_sources()}, 400, "n"),
    (
        "bad role",
        {"messages": [{"role": "robot", "content": "hi"}], **_sources()},
        400,
        "messages.0.role",
    ),
    ("unknown field", {"messages": _ask(), "bogus": 1, **_sources()}, 400, "bogus"),
    (
        "top_n too big",
        {"messages": _ask(), **_sources(top_n_documents=21)},
        400,
        "data_sources.0.parameters.top_n_documents",
    ),
    (
        "strictness 0",
        {"messages": _ask(), **_sources(strictness=0)},
        400,
        "data_sources.0.parameters.strictness",
    ),
    (
        "bad query_type",
        {"messages": _ask(), **_sources(query_type="fuzzy")},
        400,
        "data_sources.0.parameters.query_type",
    ),
    (
        "two data sources",
        {
            "messages": _ask(),
            "data_sources": [{"type": "ondata", "parameters": {"index_name": INDEX}}] * 2,
        },
        400,
        "data_sources",
    ),
    (
        "unknown source type",
        {
            "messages": _ask(),
            "data_sources": [{"type": "pinecone", "parameters": {"index_name": INDEX}}],
        },
        400,
        "data_sources.0.type",
    ),
    (
        "bad filter",
        {"messages": _ask(), **_sources(filter="title eq")},
        400,
        "data_sources.0.parameters.filter",
    ),
    (
        "unknown index",
        {
            "messages": _ask(),
            "data_sources": [{"type": "ondata", "parameters": {"index_name": "nope"}}],
        },
        404,
        "index_name",
    ),
    (
        "no user turn",
        {"messages": [{"role": "system", "content": "be nice"}], **_sources()},
        400,
        None,
    ),
    ("too many messages", {"messages": _ask() * 21, **_sources()}, 413, "messages"),
    ("not an object", [1, 2, 3], 400, None),
    ("temperature 3", {"messages": _ask(), "temperature": 3, **_sources()}, 400, "temperature"),
    (
        "image content",
        {
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "http://x/y.png"}}],
                }
            ],
            **_sources(),
        },
        400,
        "messages.0.content",
    ),
]


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [pytest.param(b, s, p, id=name) for name, b, s, p in BAD_REQUESTS],
)
def test_bad_requests_get_openai_shaped_4xx(
    http: httpx.Client, body: Any, status: int, param: str | None
) -> None:
    for stream in (False, True):
        payload = {**body, "stream": True} if stream and isinstance(body, dict) else body
        response = http.post("/v1/chat/completions", json=payload)
        assert response.status_code == status, response.text
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert error["message"]
        assert error["type"] in {"invalid_request_error", "not_found_error"}
        if param is not None:
            assert error["param"] == param


ERRORS_IN_WORDS: list[tuple[str, dict[str, Any], str, str | None, str]] = [
    (
        "only a system turn",
        {"json": {"messages": [{"role": "system", "content": "be nice"}], **_sources()}},
        "missing_user_message",
        "messages",
        "no user message",
    ),
    (
        "text/plain body",
        {"content": b"What is the hotel limit?", "headers": {"content-type": "text/plain"}},
        "invalid_body",
        None,
        "not text/plain",
    ),
    (
        "JSON sent as text/plain",
        {
            "content": json.dumps({"messages": _ask(), **_sources()}),
            "headers": {"content-type": "text/plain"},
        },
        "invalid_body",
        None,
        "application/json",
    ),
    (
        "malformed JSON",
        {"content": b'{"messages": [', "headers": {"content-type": "application/json"}},
        "invalid_json",
        None,
        "not valid JSON",
    ),
    ("a JSON list", {"json": [1, 2]}, "invalid_body", None, "must be a JSON object"),
    (
        "empty messages",
        {"json": {"messages": [], **_sources()}},
        "invalid_value",
        "messages",
        "messages: must not be empty",
    ),
    (
        "no messages",
        {"json": _sources()},
        "missing_required_parameter",
        "messages",
        "messages is required",
    ),
    (
        "wrong role",
        {"json": {"messages": [{"role": "robot", "content": "hi"}], **_sources()}},
        "invalid_value",
        "messages.0.role",
        "must be 'system', 'developer', 'user' or 'assistant', not 'robot'",
    ),
    (
        "misspelt field",
        {"json": {"messages": _ask(), "temprature": 1, **_sources()}},
        "unknown_parameter",
        "temprature",
        "Unrecognized request argument supplied: temprature",
    ),
    (
        "n > 1",
        {"json": {"messages": _ask(), "n": 2, **_sources()}},
        "invalid_value",
        "n",
        "only n=1 is supported",
    ),
]


@pytest.mark.parametrize(
    ("request_kw", "code", "param", "words"),
    [pytest.param(kw, c, p, w, id=name) for name, kw, c, p, w in ERRORS_IN_WORDS],
)
def test_errors_have_a_stable_code_and_say_what_is_wrong(
    http: httpx.Client, request_kw: dict[str, Any], code: str, param: str | None, words: str
) -> None:
    response = http.post("/v1/chat/completions", **request_kw)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["code"], error["param"], error["type"]) == (code, param, "invalid_request_error")
    assert words in error["message"]
    assert "Input should" not in error["message"]
    assert "Extra inputs" not in error["message"]


AZURE_PATH = "/openai/deployments/gpt-4o/chat/completions"


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("", "missing_api_version"),
        ("?api-version=", "missing_api_version"),
        ("?api-version=nonsense", "unsupported_api_version"),
        ("?api-version=2024-13-01", "unsupported_api_version"),
        ("?api-version=2021-01-01", "unsupported_api_version"),
        ("?api-version=2024-10-21-beta", "unsupported_api_version"),
    ],
)
def test_azure_route_refuses_a_missing_or_unknown_api_version(
    http: httpx.Client, query: str, code: str
) -> None:
    response = http.post(AZURE_PATH + query, json={"messages": _ask(), **_sources()})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["code"], error["param"]) == (code, "api-version")
    azure_words = (
        "Missing required query parameter"
        if code == "missing_api_version"
        else ("API version not supported")
    )
    assert error["message"].startswith(azure_words)


@pytest.mark.parametrize(
    "version", ["2023-05-15", "2024-02-01", "2024-10-21", "2025-04-01-preview", "2027-01-01"]
)
def test_azure_route_accepts_azure_api_versions(http: httpx.Client, version: str) -> None:
    response = http.post(
        f"{AZURE_PATH}?api-version={version}", json={"messages": _ask(), **_sources()}
    )
    assert response.status_code == 200, response.text
    assert response.json()["model"] == "ondata-extractive"


def test_citations_carry_every_key_null_when_unknown(http: httpx.Client) -> None:
    for stream in (False, True):
        body = {"messages": _ask(), "stream": stream, **_sources()}
        response = http.post("/v1/chat/completions", json=body)
        if stream:
            first = json.loads(response.text.split("\n\n")[0].removeprefix("data: "))
            citations = first["choices"][0]["delta"]["context"]["citations"]
        else:
            citations = response.json()["choices"][0]["message"]["context"]["citations"]
        assert citations
        for citation in citations:
            assert set(citation) == {
                "content",
                "title",
                "url",
                "filepath",
                "chunk_id",
                "doc_id",
                "page",
            }
            assert citation["url"] is None  # files have no URL: null, as Azure's samples expect
    search = http.post("/v1/search", json={"index_name": INDEX, "query": "hotel"}).json()
    assert all("url" in r and "page" in r for r in search["results"])


@pytest.mark.parametrize(
    ("content", "content_type", "status"),
    [
        (b'{"messages": [', "application/json", 400),
        (b"", "application/json", 400),
        (b"\xff\xfe not utf-8", "application/json", 400),
        (b"messages=hi", "application/x-www-form-urlencoded", 400),
        (
            b'{"messages": [{"role": "user", "content": "' + b"x" * 70_000 + b'"}]}',
            "application/json",
            413,
        ),
    ],
    ids=["truncated json", "empty body", "not utf-8", "form body", "oversized"],
)
def test_malformed_bodies_get_4xx(
    http: httpx.Client, content: bytes, content_type: str, status: int
) -> None:
    response = http.post(
        "/v1/chat/completions", content=content, headers={"content-type": content_type}
    )
    assert response.status_code == status, response.text
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_unknown_route_and_method_are_openai_shaped(http: httpx.Client) -> None:
    missing = http.get("/v1/nothing-here")
    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "not_found_error"
    wrong = http.get("/v1/chat/completions")
    assert wrong.status_code == 405
    assert wrong.json()["error"]["code"] == "method_not_allowed"


def test_search_rejects_bad_input(http: httpx.Client) -> None:
    bad_filter = http.post("/v1/search", json={"index_name": INDEX, "query": "x", "filter": "a or"})
    assert bad_filter.status_code == 400
    assert bad_filter.json()["error"]["param"] == "filter"
    unknown = http.post("/v1/search", json={"index_name": "nope", "query": "x"})
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "index_not_found"
    empty = http.post("/v1/search", json={"index_name": INDEX, "query": ""})
    assert empty.status_code == 400


def test_chunked_oversized_body_is_rejected(http: httpx.Client) -> None:
    def body() -> Iterator[bytes]:
        yield b'{"messages": [{"role": "user", "content": "'
        for _ in range(20):
            yield b"y" * 8192
        yield b'"}]}'

    response = http.post(
        "/v1/chat/completions", content=body(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "request_too_large"


# ---- ondata ask --url (the CLI through the running server) ------------------------------


def _ask_url(base_url: str, *args: str) -> str:
    cli = typer.Typer()
    register(cli)
    argv = ["ask", HOTEL_QUESTION, "--index", INDEX, "--url", base_url, *args]
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code == 0, result.output
    return result.output


def test_ask_url_prints_answer_and_citations(base_url: str) -> None:
    answer, _, citations = _ask_url(base_url).partition("Citations:")
    assert "180" in answer
    assert "travel.md" in citations
    streamed, _, streamed_citations = _ask_url(base_url, "--stream").partition("Citations:")
    assert "180" in streamed
    assert "travel.md" in streamed_citations


def test_ask_url_json_is_the_servers_completion(base_url: str) -> None:
    completion = json.loads(_ask_url(base_url, "--json"))
    message = completion["choices"][0]["message"]
    _assert_grounded(message["content"], message["context"])
