"""The loopback OpenAI fake, driven by the official openai clients (so other tests can trust it)."""

from __future__ import annotations

import numpy as np
import openai
import pytest
from openai import AzureOpenAI, OpenAI

from tests.fakes.openai_server import (
    NO_ANSWER,
    FakeOpenAIServer,
    documents_in,
    fake_chat_reply,
    fake_embedding,
)

PROMPT = (
    "Answer only from the documents and cite them as [docN].\n"
    "[doc1] Vacation policy\nEmployees get 25 days of paid vacation. Unused days expire.\n"
    "[doc2] Expenses\nReceipts are required for every claim."
)


def _client(fake: FakeOpenAIServer, **options: object) -> OpenAI:
    options = {"max_retries": 0, "timeout": 5.0, **options}
    return OpenAI(base_url=fake.base_url, api_key=fake.api_key, **options)  # type: ignore[arg-type]


def _ask(client: OpenAI, content: str = PROMPT) -> str:
    response = client.chat.completions.create(
        model="fake-chat", messages=[{"role": "user", "content": content}]
    )
    return response.choices[0].message.content or ""


def test_fake_chat_reply_quotes_and_cites_doc1(openai_fake: FakeOpenAIServer) -> None:
    assert _ask(_client(openai_fake)) == "Employees get 25 days of paid vacation. [doc1]"


def test_fake_chat_without_documents_says_no_answer(openai_fake: FakeOpenAIServer) -> None:
    assert _ask(_client(openai_fake), "What is the capital of France?") == NO_ANSWER


def test_fake_documents_skip_example_markers_in_instructions() -> None:
    documents = documents_in("Cite like [doc1].\n[doc1] Title\nThe real passage is here.")
    assert documents[1].endswith("The real passage is here.")


def test_fake_chat_reply_uses_lowest_numbered_document() -> None:
    messages = [{"role": "system", "content": "[doc2] Second one. [doc3] Third."}]
    assert fake_chat_reply(messages) == "Second one. [doc2]"


def test_fake_stream_matches_non_streamed_text(openai_fake: FakeOpenAIServer) -> None:
    stream = _client(openai_fake).chat.completions.create(
        model="fake-chat",
        messages=[{"role": "user", "content": PROMPT}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == _ask(_client(openai_fake))
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens > 0


def test_fake_scripted_reply_is_used_once(openai_fake: FakeOpenAIServer) -> None:
    openai_fake.reply("Scripted answer [doc2].")
    client = _client(openai_fake)
    assert _ask(client) == "Scripted answer [doc2]."
    assert _ask(client).endswith("[doc1]")


def test_fake_429_with_retry_after_is_retried_by_the_client(openai_fake: FakeOpenAIServer) -> None:
    openai_fake.script(status=429, times=2, retry_after=0.05)
    assert _ask(_client(openai_fake, max_retries=2)).endswith("[doc1]")
    assert len(openai_fake.requests_to("chat")) == 3
    assert openai_fake.pending_scripts == 0


def test_fake_429_reaches_the_caller_with_headers(openai_fake: FakeOpenAIServer) -> None:
    openai_fake.script(status=429, retry_after=7, message="Slow down")
    with pytest.raises(openai.RateLimitError) as caught:
        _ask(_client(openai_fake))
    assert caught.value.response.headers["retry-after"] == "7"
    assert "Slow down" in str(caught.value)


def test_fake_500_becomes_internal_server_error(openai_fake: FakeOpenAIServer) -> None:
    openai_fake.script(status=500)
    with pytest.raises(openai.InternalServerError):
        _ask(_client(openai_fake))


def test_fake_slow_answer_times_the_client_out(openai_fake: FakeOpenAIServer) -> None:
    openai_fake.script(delay_s=1.0)
    with pytest.raises(openai.APITimeoutError):
        _ask(_client(openai_fake, timeout=0.2))


def test_fake_script_for_one_endpoint_leaves_others_alone(openai_fake: FakeOpenAIServer) -> None:
    openai_fake.script(status=500, endpoint="embeddings")
    client = _client(openai_fake)
    assert _ask(client).endswith("[doc1]")
    with pytest.raises(openai.InternalServerError):
        client.embeddings.create(model="fake-embedding", input=["x"])


def test_fake_records_request_bodies(openai_fake: FakeOpenAIServer) -> None:
    _ask(_client(openai_fake), "hello [doc1] World.")
    request = openai_fake.last_request
    assert request.path == "/v1/chat/completions"
    assert request.body["messages"][0]["content"] == "hello [doc1] World."
    assert request.headers["authorization"] == f"Bearer {openai_fake.api_key}"


def test_fake_lists_models(openai_fake: FakeOpenAIServer) -> None:
    ids = {model.id for model in _client(openai_fake).models.list()}
    assert ids == {"fake-chat", "fake-embedding"}


def test_fake_embeddings_honour_dimensions_and_similarity(openai_fake: FakeOpenAIServer) -> None:
    texts = ["cats sleep all day", "the cats sleep a lot", "tax returns are due in april"]
    response = _client(openai_fake).embeddings.create(
        model="fake-embedding", input=texts, dimensions=32
    )
    vectors = np.array([row.embedding for row in response.data])
    assert vectors.shape == (3, 32)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]
    assert np.allclose(vectors[0], fake_embedding(texts[0], 32), atol=1e-6)


def test_fake_serves_azure_deployment_paths(openai_fake: FakeOpenAIServer) -> None:
    client = AzureOpenAI(
        azure_endpoint=openai_fake.azure_endpoint,
        api_key=openai_fake.api_key,
        api_version="2024-10-21",
        max_retries=0,
    )
    response = client.chat.completions.create(
        model="my-gpt", messages=[{"role": "user", "content": PROMPT}]
    )
    assert response.choices[0].message.content == "Employees get 25 days of paid vacation. [doc1]"
    client.embeddings.create(model="my-embedding", input="hello")
    chat, embeddings = openai_fake.requests
    assert chat.path == "/openai/deployments/my-gpt/chat/completions"
    assert chat.deployment == "my-gpt"
    assert chat.query["api-version"] == "2024-10-21"
    assert chat.headers["api-key"] == openai_fake.api_key
    assert embeddings.deployment == "my-embedding"


def test_fake_rejects_a_wrong_key_when_keys_are_required(openai_fake: FakeOpenAIServer) -> None:
    openai_fake.require_api_key = True
    with pytest.raises(openai.AuthenticationError):
        _ask(OpenAI(base_url=openai_fake.base_url, api_key="wrong", max_retries=0))
    assert _ask(_client(openai_fake)).endswith("[doc1]")


def test_fake_first_sentence_skips_a_title_line() -> None:
    assert fake_chat_reply([{"role": "user", "content": "[doc1] Title\nBody one. Body two."}]) == (
        "Body one. [doc1]"
    )


def test_fake_serves_the_azure_v1_path(openai_fake: FakeOpenAIServer) -> None:
    client = OpenAI(base_url=f"{openai_fake.azure_endpoint}/openai/v1", api_key="k", max_retries=0)
    assert _ask(client).endswith("[doc1]")
    assert openai_fake.last_request.path == "/openai/v1/chat/completions"
