"""The real app with a chat model: the loopback OpenAI-compatible fake stands in for the model.

Covers the grounded path through the model, requests without data_sources passed straight to
it, upstream failures (429 -> 429 with Retry-After, 500 -> 502, slow -> 504, streamed or not)
and the API key check.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai import AsyncOpenAI, AzureOpenAI, OpenAI

from api.app import create_app
from core.settings import ApiSettings, Settings
from retrieval.citations import NOT_FOUND_MESSAGE
from tests.fakes.openai_server import CHAT_MODEL, FakeOpenAIServer
from tests.integration.api_support import INDEX, build_index, serve_in_thread

API_KEY = "sk-ondata-test"
QUESTION = "How much may employees spend on hotels in capital cities?"
ROLE = "You are the travel desk assistant."


@pytest.fixture(scope="module")
def base_url(
    tmp_path_factory: pytest.TempPathFactory, openai_fake_server: FakeOpenAIServer
) -> Iterator[str]:
    root = tmp_path_factory.mktemp("chat_model_api")
    chat = openai_fake_server.chat_settings(timeout_s=1.0)
    settings = Settings(data_dir=root / "ondata", chat=chat, api=ApiSettings(api_key=API_KEY))  # type: ignore[arg-type]
    build_index(settings, root / "docs")
    with serve_in_thread(create_app(settings)) as url:
        yield url


@pytest.fixture
def client(base_url: str, openai_fake: FakeOpenAIServer) -> Iterator[OpenAI]:
    with OpenAI(base_url=f"{base_url}/v1", api_key=API_KEY, max_retries=0) as c:
        yield c


@pytest.fixture
def http(base_url: str, openai_fake: FakeOpenAIServer) -> Iterator[httpx.Client]:
    headers = {"authorization": f"Bearer {API_KEY}"}
    with httpx.Client(base_url=base_url, timeout=30, headers=headers) as c:
        yield c


def _sources(**parameters: Any) -> dict[str, Any]:
    return {"data_sources": [{"type": "ondata", "parameters": {"index_name": INDEX, **parameters}}]}


def _ask(question: str = QUESTION) -> list[dict[str, str]]:
    return [{"role": "user", "content": question}]


def _context(message: Any) -> dict[str, Any]:
    context = (message.model_extra or {}).get("context")
    assert isinstance(context, dict), message
    return context


def _answer_prompt(fake: FakeOpenAIServer) -> str:
    """The text of the last chat request the model got (the grounded prompt)."""
    messages = fake.requests_to("chat")[-1].body["messages"]
    return "\n".join(m["content"] for m in messages)


def test_grounded_answer_comes_from_the_chat_model(
    client: OpenAI, openai_fake: FakeOpenAIServer
) -> None:
    completion = client.chat.completions.create(
        model="ignored",
        messages=_ask(),  # type: ignore[arg-type]
        temperature=0.2,
        extra_body=_sources(role_information=ROLE),
    )
    message = completion.choices[0].message
    context = _context(message)
    assert completion.model == CHAT_MODEL
    assert message.content == (
        "Employees may book hotels up to 180 euros per night in capital cities. [doc1]"
    )
    assert [c["filepath"] for c in context["citations"]] == ["travel.md"]
    assert json.loads(context["intent"])
    prompt = _answer_prompt(openai_fake)
    assert ROLE in prompt
    assert "180 euros" in prompt
    assert openai_fake.requests_to("chat")[-1].body["temperature"] == 0.2
    assert completion.usage is not None
    assert completion.usage.prompt_tokens > 0
    assert completion.usage.completion_tokens > 0


async def test_grounded_stream_through_the_chat_model_async(
    base_url: str, openai_fake: FakeOpenAIServer
) -> None:
    async with AsyncOpenAI(base_url=f"{base_url}/v1", api_key=API_KEY, max_retries=0) as c:
        stream = await c.chat.completions.create(
            model="m",
            messages=_ask(),  # type: ignore[arg-type]
            stream=True,
            extra_body=_sources(),
        )
        chunks = [chunk async for chunk in stream]
    citations = _context(chunks[0].choices[0].delta)["citations"]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.endswith("[doc1]")
    assert "180 euros" in text
    assert [c["filepath"] for c in citations] == ["travel.md"]
    assert {c.model for c in chunks} == {CHAT_MODEL}


@pytest.mark.parametrize(
    ("reply", "content"),
    [
        (
            " Trains [doc9] are first class [doc2] . Hotels [doc1, doc2] cost 180 [doc1] ",
            "Trains are first class [doc2] . Hotels [doc1][doc2] cost 180 [doc1]",
        ),
        (
            "[doc1] The requested information is not available in the retrieved data.",
            NOT_FOUND_MESSAGE,
        ),
        ("[doc7]", NOT_FOUND_MESSAGE),
    ],
)
def test_streamed_and_complete_answers_number_citations_alike(
    client: OpenAI, openai_fake: FakeOpenAIServer, reply: str, content: str
) -> None:
    for _ in range(2):  # the rewrite, then the answer; once streamed, once complete
        openai_fake.reply('["hotel and train rules"]')
        openai_fake.reply(reply)
    ask = {"model": "m", "messages": _ask(), "extra_body": _sources(strictness=1)}
    chunks = list(client.chat.completions.create(stream=True, **ask))  # type: ignore[call-overload]
    complete = client.chat.completions.create(**ask).choices[0].message  # type: ignore[call-overload]
    citations = _context(chunks[0].choices[0].delta)["citations"]
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert (streamed, citations) == (complete.content, _context(complete)["citations"])
    assert streamed == content
    # [docN] is the prompt's N-th document, which is citations[N-1] (all of them, in order)
    prompt = _answer_prompt(openai_fake)
    assert prompt.count("<document label=") == len(citations) > 2
    for n, citation in enumerate(citations, start=1):
        label = prompt.index(f'<document label="[doc{n}]"')
        assert prompt.index(citation["content"].split("\n")[0], label) > label


def test_grounded_stream_forwards_the_models_tokens_as_they_arrive(
    client: OpenAI, openai_fake: FakeOpenAIServer
) -> None:
    reply = "Hotels cost at most 180 euros [doc1] in capital cities, 120 elsewhere [doc2][doc9]."
    openai_fake.reply('["hotel limit"]')
    openai_fake.script(reply=reply, endpoint="chat", chunk_delay_s=0.1)
    stream = client.chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": QUESTION}],
        stream=True,
        extra_body=_sources(strictness=1),
    )
    arrivals: list[tuple[float, str]] = []
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append((time.monotonic(), chunk.choices[0].delta.content))
    assert openai_fake.requests_to("chat")[-1].body.get("stream") is True
    (model_finished,) = openai_fake.stream_ends
    # the first words reached the client while the model was still generating the rest
    assert arrivals[0][0] < model_finished
    assert len([t for t, _ in arrivals if t < model_finished]) > 1
    text = "".join(piece for _, piece in arrivals)
    assert text == "Hotels cost at most 180 euros [doc1] in capital cities, 120 elsewhere [doc2]."


def test_azure_client_gets_grounded_answers_from_the_chat_model(base_url: str) -> None:
    source = {"type": "azure_search", "parameters": {"index_name": INDEX, "query_type": "vector"}}
    with AzureOpenAI(
        azure_endpoint=base_url, api_version="2024-10-21", api_key=API_KEY, max_retries=0
    ) as azure:
        completion = azure.chat.completions.create(
            model="gpt-4o",
            messages=_ask(),  # type: ignore[arg-type]
            extra_body={"data_sources": [source]},
        )
    message = completion.choices[0].message
    assert (message.content or "").endswith("[doc1]")
    assert _context(message)["citations"][0]["filepath"] == "travel.md"


def test_without_data_sources_the_request_goes_straight_to_the_model(
    client: OpenAI, openai_fake: FakeOpenAIServer
) -> None:
    openai_fake.reply("Hello from the model.")
    completion = client.chat.completions.create(
        model="x",
        messages=[{"role": "system", "content": "Be brief."}, *_ask("Say hello")],  # type: ignore[list-item]
        max_tokens=20,
        stop=["END"],
        user="u-1",
    )
    assert completion.choices[0].message.content == "Hello from the model."
    sent = openai_fake.last_request.body
    assert sent["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Say hello"},
    ]
    assert sent["max_tokens"] == 20
    assert sent["stop"] == ["END"]
    assert sent["user"] == "u-1"
    assert "context" not in (completion.choices[0].message.model_extra or {})


def test_without_data_sources_streaming_relays_the_model(
    client: OpenAI, openai_fake: FakeOpenAIServer
) -> None:
    openai_fake.reply("One two three four.")
    chunks = list(
        client.chat.completions.create(
            model="x",
            messages=_ask("Count"),  # type: ignore[arg-type]
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "One two three four."
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens > 0


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("grounded", [False, True])
def test_upstream_rate_limit_is_429_with_retry_after(
    http: httpx.Client, openai_fake: FakeOpenAIServer, stream: bool, grounded: bool
) -> None:
    openai_fake.script(status=429, retry_after=7, endpoint="chat")
    body = {"messages": _ask(), "stream": stream, **(_sources() if grounded else {})}
    response = http.post("/v1/chat/completions", json=body)
    assert response.status_code == 429, response.text
    assert response.headers["retry-after"] == "7"
    assert response.json()["error"]["code"] == "rate_limited"


@pytest.mark.parametrize("stream", [False, True])
def test_upstream_server_error_is_502(
    client: OpenAI, openai_fake: FakeOpenAIServer, stream: bool
) -> None:
    openai_fake.script(status=500, endpoint="chat")
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(
            model="m",
            messages=_ask(),  # type: ignore[arg-type]
            stream=stream,
            extra_body=_sources(),
        )
    assert caught.value.status_code == 502
    assert caught.value.type == "upstream_error"
    assert caught.value.code == "chat_model_failed"


@pytest.mark.parametrize("stream", [False, True])
def test_slow_upstream_is_504(client: OpenAI, openai_fake: FakeOpenAIServer, stream: bool) -> None:
    openai_fake.script(delay_s=2.5, endpoint="chat")
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(
            model="m",
            messages=_ask("Say hello"),  # type: ignore[arg-type]
            stream=stream,
        )
    assert caught.value.status_code == 504
    assert caught.value.code == "chat_model_timeout"


def test_rate_limit_reaches_the_openai_client_as_rate_limit_error(
    client: OpenAI, openai_fake: FakeOpenAIServer
) -> None:
    openai_fake.script(status=429, retry_after=2, endpoint="chat")
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="m", messages=_ask(), extra_body=_sources())  # type: ignore[arg-type]
    assert caught.value.response.headers["retry-after"] == "2"


def test_models_lists_the_chat_model(client: OpenAI) -> None:
    assert [m.id for m in client.models.list()] == [CHAT_MODEL]


def test_api_key_is_required_when_configured(base_url: str) -> None:
    with httpx.Client(base_url=base_url, timeout=30) as anonymous:
        missing = anonymous.post("/v1/chat/completions", json={"messages": _ask()})
        wrong = anonymous.get("/v1/models", headers={"authorization": "Bearer nope"})
        azure_header = anonymous.get("/v1/models", headers={"api-key": API_KEY})
        health = anonymous.get("/healthz")
    assert missing.status_code == 401
    assert missing.json()["error"]["type"] == "authentication_error"
    assert wrong.status_code == 401
    assert azure_header.status_code == 200
    assert health.status_code == 200
    with (
        OpenAI(base_url=f"{base_url}/v1", api_key="wrong", max_retries=0) as bad,
        pytest.raises(openai.AuthenticationError),
    ):
        bad.models.list()
