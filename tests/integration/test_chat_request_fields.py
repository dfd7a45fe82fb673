"""Every field of OpenAI's chat-completions request, sent by the official client, is accepted:
ignored by the extractive answerer, passed on to a configured chat model (the loopback fake
records what reached it). Tools next to data_sources are refused with Azure OYD's message.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest
from openai import AzureOpenAI, OpenAI

from api.app import create_app
from api.convert import AZURE_FUNCTIONS_REFUSAL, MODEL_OPTIONS, PLAIN_MODEL_OPTIONS
from core.settings import Settings
from tests.fakes.openai_server import CHAT_MODEL, FakeOpenAIServer
from tests.integration.api_support import INDEX, build_index, serve_in_thread

QUESTION = "How much may employees spend on hotels in capital cities?"
TOOL = {
    "type": "function",
    "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}},
}
FUNCTION = {"name": "lookup", "parameters": {"type": "object", "properties": {}}}
# every optional field of openai-python's completion_create_params, with a plausible value
EVERY_FIELD: dict[str, Any] = {
    "audio": {"voice": "alloy", "format": "wav"},
    "frequency_penalty": 0.5,
    "function_call": "none",
    "functions": [FUNCTION],
    "logit_bias": {"50256": -100},
    "logprobs": True,
    "max_completion_tokens": 300,
    "max_tokens": 300,
    "metadata": {"app": "ondata-tests"},
    "modalities": ["text"],
    "moderation": {"model": "omni-moderation-latest"},
    "n": 1,
    "parallel_tool_calls": False,
    "prediction": {"type": "content", "content": "Hotels cost"},
    "presence_penalty": 0.25,
    "prompt_cache_key": "handbook-questions",
    "prompt_cache_options": {"mode": "implicit", "ttl": "30m"},
    "prompt_cache_retention": "24h",
    "reasoning_effort": "low",
    "response_format": {"type": "text"},
    "safety_identifier": "user-7f3a",
    "seed": 42,
    "service_tier": "auto",
    "stop": ["\n\n\n\n"],
    "store": False,
    "temperature": 0.2,
    "tool_choice": "none",
    "tools": [TOOL],
    "top_logprobs": 2,
    "top_p": 0.9,
    "user": "user-7f3a",
    "verbosity": "low",
    "web_search_options": {"search_context_size": "low"},
}
STREAM_OPTIONS = {"include_usage": True, "include_obfuscation": False}
AZURE_ONLY = {"user_security_context": {"application_name": "tests", "end_user_id": "u-1"}}


def _sources() -> dict[str, Any]:
    return {"data_sources": [{"type": "ondata", "parameters": {"index_name": INDEX}}]}


def _ask() -> list[dict[str, str]]:
    return [{"role": "user", "content": QUESTION}]


def _served(factory: pytest.TempPathFactory, name: str, **settings: Any) -> Iterator[str]:
    root = factory.mktemp(name)
    configured = Settings(data_dir=root / "ondata", **settings)
    build_index(configured, root / "docs")
    with serve_in_thread(create_app(configured)) as url:
        yield url


@pytest.fixture(scope="module")
def extractive_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from _served(tmp_path_factory, "fields_extractive")


@pytest.fixture(scope="module")
def model_url(
    tmp_path_factory: pytest.TempPathFactory, openai_fake_server: FakeOpenAIServer
) -> Iterator[str]:
    yield from _served(tmp_path_factory, "fields_model", chat=openai_fake_server.chat_settings())


def _sent(fake: FakeOpenAIServer, names: tuple[str, ...]) -> dict[str, Any]:
    """What the chat model's last request held of `names`, and what it should have held."""
    sent = fake.requests_to("chat")[-1].body
    assert {name: sent.get(name) for name in names} == {name: EVERY_FIELD[name] for name in names}
    return dict(sent)


def _ask_with_every_field(base_url: str, *, stream: bool, grounded: bool) -> tuple[str, str]:
    """(text, model) of an answer to a request carrying every field, through the openai client."""
    extra_body = {**(_sources() if grounded else {}), **AZURE_ONLY}
    fields: dict[str, Any] = {**EVERY_FIELD, "stream": stream, "extra_body": extra_body}
    if stream:
        fields["stream_options"] = STREAM_OPTIONS
    with OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0) as client:
        reply: Any = client.chat.completions.create(model="m", messages=_ask(), **fields)  # type: ignore[arg-type]
        if not stream:
            return reply.choices[0].message.content or "", reply.model
        chunks = list(reply)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return text, chunks[0].model


@pytest.mark.parametrize("stream", [False, True])
def test_extractive_answerer_accepts_every_field(extractive_url: str, stream: bool) -> None:
    text, model = _ask_with_every_field(extractive_url, stream=stream, grounded=True)
    assert "180" in text
    assert "[doc1]" in text
    assert model == "ondata-extractive"


def test_azure_client_sends_every_field_to_the_extractive_answerer(extractive_url: str) -> None:
    with AzureOpenAI(
        azure_endpoint=extractive_url, api_version="2024-10-21", api_key="unused", max_retries=0
    ) as azure:
        completion = azure.chat.completions.create(
            model="gpt-4o",
            messages=_ask(),  # type: ignore[arg-type]
            extra_body={**_sources(), **AZURE_ONLY},
            **EVERY_FIELD,
        )
    assert "180" in (completion.choices[0].message.content or "")


@pytest.mark.parametrize("stream", [False, True])
def test_chat_model_gets_the_fields_of_a_grounded_request(
    model_url: str, openai_fake: FakeOpenAIServer, stream: bool
) -> None:
    _, model = _ask_with_every_field(model_url, stream=stream, grounded=True)
    sent = _sent(openai_fake, MODEL_OPTIONS)
    assert (sent["temperature"], sent["top_p"], sent["seed"]) == (0.2, 0.9, 42)
    # a grounded reply is text with citations: no tools, audio, log probabilities or format
    for name in ("tools", "functions", "audio", "logprobs", "response_format", "n"):
        assert name not in sent, name
    assert model == CHAT_MODEL


def test_chat_model_gets_the_fields_of_a_plain_request(
    model_url: str, openai_fake: FakeOpenAIServer
) -> None:
    _, model = _ask_with_every_field(model_url, stream=False, grounded=False)
    sent = _sent(openai_fake, PLAIN_MODEL_OPTIONS)
    assert "user_security_context" not in sent
    assert model == CHAT_MODEL


@pytest.mark.parametrize("grounded", [True, False])
@pytest.mark.parametrize(
    "fields",
    [{"tools": [TOOL]}, {"tools": [TOOL], "tool_choice": "auto"}, {"functions": [FUNCTION]}],
)
def test_tools_the_model_may_call_are_refused(
    model_url: str, fields: dict[str, Any], grounded: bool
) -> None:
    client = OpenAI(base_url=f"{model_url}/v1", api_key="unused", max_retries=0)
    with client, pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="m",
            messages=_ask(),  # type: ignore[arg-type]
            extra_body=_sources() if grounded else None,
            **fields,
        )
    error = caught.value.body
    assert isinstance(error, dict)
    assert error["code"] == "unsupported_parameter"
    assert error["message"].startswith(AZURE_FUNCTIONS_REFUSAL)
    assert error["param"] == next(iter(fields))
