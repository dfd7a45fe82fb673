"""Chat models: the factory, the extractive answerer, the remote adapters over a loopback server."""

from __future__ import annotations

import socket

import pytest
from pydantic import SecretStr

from core.errors import (
    ChatModelError,
    ChatModelRateLimitError,
    ChatModelTimeoutError,
    ConfigurationError,
)
from core.settings import ChatSettings
from retrieval.chat import (
    EXTRACTIVE_MODEL_NAME,
    AzureOpenAIChatModel,
    ChatMessage,
    ChatModel,
    ChatParams,
    ExtractiveAnswerer,
    OpenAIChatModel,
    lexical_overlap,
    make_chat_model,
)
from retrieval.embedders import Embedder
from retrieval.evidence import OUTSIDE_SUPPORT_NOTE, SENTENCE_FLOOR
from tests.fakes.openai_server import FakeOpenAIServer
from tests.unit.retrieval_corpus import scored_doc


async def test_extractive_answerer_cites_each_sentence_by_document_position(
    embedder: Embedder,
) -> None:
    docs = [
        scored_doc(1, "The cafeteria opens at eight in the morning. It serves soup on Fridays."),
        scored_doc(2, "Hotels may be booked up to 180 euros per night in capital cities."),
    ]
    result = await ExtractiveAnswerer(embedder).answer(
        "What is the hotel price limit per night?", docs
    )
    assert result.content.startswith(
        "Hotels may be booked up to 180 euros per night in capital cities [doc2]."
    )
    assert "soup" not in result.content
    assert result.model == EXTRACTIVE_MODEL_NAME


def test_extractive_answerer_skips_repeated_sentences(embedder: Embedder) -> None:
    sentence = "Employees receive 25 days of paid vacation per year."
    docs = [
        scored_doc(1, sentence),
        scored_doc(2, sentence),
        scored_doc(3, "Employees receive 25 days of paid vacation each year."),
    ]
    result = ExtractiveAnswerer(embedder, max_sentences=3).compose("How much vacation?", docs)
    assert result.content == "Employees receive 25 days of paid vacation per year [doc1]."


def test_extractive_answerer_has_nothing_to_say_without_sentences(embedder: Embedder) -> None:
    assert ExtractiveAnswerer(embedder).compose("anything?", []).content == ""
    too_short = [scored_doc(1, "Too short.")]
    assert ExtractiveAnswerer(embedder).compose("anything?", too_short).content == ""


def test_extractive_answerer_with_many_sentences_embeds_the_ones_sharing_query_terms(
    embedder: Embedder,
) -> None:
    filler = " ".join(f"Room {i} on floor {i} has a window and a desk." for i in range(20))
    docs = [
        scored_doc(1, f"{filler} Staff eat lunch at noon in the canteen downstairs."),
        scored_doc(2, "The cafeteria opens at eight and serves breakfast until ten."),
    ]
    answerer = ExtractiveAnswerer(embedder, max_scored=2, relative_score=0.99)
    result = answerer.compose("When does the cafeteria open?", docs)
    assert result.content == "The cafeteria opens at eight and serves breakfast until ten [doc2]."


def test_extractive_answer_puts_the_answer_first_and_the_rest_in_reading_order(
    embedder: Embedder,
) -> None:
    docs = [
        scored_doc(
            1,
            "Many Bibles were printed in France much later. Guyard de Moulin prepared the "
            "first French version of the Scriptures around 1294. He was a Catholic priest.",
        ),
        scored_doc(2, "Lefevre published a French translation of the New Testament in 1523."),
    ]
    result = ExtractiveAnswerer(embedder).compose("When did the first French Bible appear?", docs)
    assert "1294" in result.content.split(" [doc")[0]
    assert result.content.index("Many Bibles") < result.content.index("Lefevre")


def test_extractive_answer_refuses_a_negated_question_its_best_sentence_does_not_negate(
    embedder: Embedder,
) -> None:
    docs = [
        scored_doc(1, "The Court held that Austria was entitled to restrict university places.")
    ]
    question = "What was Austria not entitled to restrict?"
    answerer = ExtractiveAnswerer(embedder)
    assert answerer.compose(question, docs, strictness=3).content == ""
    assert answerer.compose(question, docs, strictness=2).content.endswith("[doc1].")


def test_extractive_answer_out_of_scope_quotes_below_the_floor_and_says_so(
    embedder: Embedder,
) -> None:
    docs = [scored_doc(1, "The cafeteria opens at eight and serves soup on Fridays.")]
    question = "Who cleans the office kitchen?"
    answerer = ExtractiveAnswerer(embedder)
    assert answerer.compose(question, docs, strictness=3).content == ""
    quoted = answerer.compose(question, docs, strictness=3, in_scope=False).content
    assert quoted == (
        f"{OUTSIDE_SUPPORT_NOTE} The cafeteria opens at eight and serves soup on Fridays [doc1]."
    )
    supported = answerer.compose("When does the cafeteria open?", docs, in_scope=False)
    assert not supported.content.startswith(OUTSIDE_SUPPORT_NOTE)


def test_lexical_overlap_weighs_rare_shared_terms_and_short_sentences() -> None:
    shared = [{1, 2}, {1}, {1}, set()]
    scores = lexical_overlap(shared, [10, 10, 40, 5])
    assert scores[0] > scores[1] > scores[2] > scores[3] == 0.0


def test_make_chat_model_builds_each_provider(embedder: Embedder) -> None:
    assert isinstance(make_chat_model(ChatSettings(), embedder=embedder), ExtractiveAnswerer)
    local = make_chat_model(
        ChatSettings(provider="compatible", base_url="http://127.0.0.1:9/v1", model="llama3.1"),
        embedder=embedder,
    )
    assert isinstance(local, OpenAIChatModel)
    assert local.name == "llama3.1"
    azure = make_chat_model(
        ChatSettings(
            provider="azure",
            azure_endpoint="https://example.openai.azure.com",
            azure_deployment="gpt4o-prod",
            api_key=SecretStr("k"),
        ),
        embedder=embedder,
    )
    assert isinstance(azure, AzureOpenAIChatModel)
    assert azure.name == "gpt4o-prod"


def test_make_chat_model_says_what_to_set(embedder: Embedder) -> None:
    with pytest.raises(ConfigurationError, match="ONDATA_CHAT__API_KEY"):
        make_chat_model(ChatSettings(provider="openai"), embedder=embedder)
    with pytest.raises(ConfigurationError, match="ONDATA_CHAT__API_KEY"):
        make_chat_model(
            ChatSettings(provider="azure", azure_endpoint="https://example.openai.azure.com"),
            embedder=embedder,
        )


# --- remote adapters against the loopback OpenAI-compatible fake -------------------------

QUESTION = (ChatMessage("system", "rules"), ChatMessage("user", "How much for hotels?"))


def _compatible(fake: FakeOpenAIServer, embedder: Embedder, **kw: object) -> ChatModel:
    args: dict[str, object] = {
        "provider": "compatible",
        "base_url": fake.base_url,
        "model": "llama3.1",
    }
    args.update(kw)
    model = make_chat_model(ChatSettings(**args), embedder=embedder)  # type: ignore[arg-type]
    assert isinstance(model, OpenAIChatModel)
    return model


async def test_openai_chat_model_completes_and_passes_parameters(
    openai_fake: FakeOpenAIServer, embedder: Embedder
) -> None:
    openai_fake.reply("Hotels cost 180 euros [doc1].")
    model = _compatible(openai_fake, embedder)
    params = ChatParams(temperature=0.2, top_p=0.9, max_tokens=50, stop=("END",), user="u1")
    result = await model.complete(QUESTION, params=params)
    await model.aclose()
    assert result.content == "Hotels cost 180 euros [doc1]."
    assert (result.model, result.finish_reason) == ("llama3.1", "stop")
    assert result.prompt_tokens > 0
    assert result.completion_tokens == 5  # the fake reports words as tokens
    sent = openai_fake.last_request
    assert sent.path == "/v1/chat/completions"
    assert sent.body["messages"] == [
        {"role": "system", "content": "rules"},
        {"role": "user", "content": "How much for hotels?"},
    ]
    assert (sent.body["temperature"], sent.body["top_p"], sent.body["max_tokens"]) == (0.2, 0.9, 50)
    assert (sent.body["stop"], sent.body["user"], sent.body["model"]) == (["END"], "u1", "llama3.1")


async def test_openai_chat_model_streams_deltas(
    openai_fake: FakeOpenAIServer, embedder: Embedder
) -> None:
    openai_fake.reply("Hotels cost 180 euros [doc1].")
    model = _compatible(openai_fake, embedder)
    deltas = [d async for d in model.stream(QUESTION, params=ChatParams())]
    await model.aclose()
    assert len(deltas) > 1
    assert "".join(deltas) == "Hotels cost 180 euros [doc1]."
    assert openai_fake.last_request.body["stream"] is True


async def test_chat_model_rate_limit_becomes_429_with_retry_after(
    openai_fake: FakeOpenAIServer, embedder: Embedder
) -> None:
    openai_fake.script(status=429, retry_after=7, times=3)
    model = _compatible(openai_fake, embedder, max_retries=0)
    with pytest.raises(ChatModelRateLimitError) as caught:
        await model.complete(QUESTION, params=ChatParams())
    await model.aclose()
    assert caught.value.status_code == 429
    assert caught.value.retry_after == 7.0
    assert len(openai_fake.requests_to("chat")) == 1


async def test_chat_model_retries_429_and_503_then_succeeds(
    openai_fake: FakeOpenAIServer, embedder: Embedder
) -> None:
    openai_fake.script(status=429, retry_after=0.01)
    openai_fake.script(status=503, retry_after=0.01)
    openai_fake.reply("ok")
    model = _compatible(openai_fake, embedder, max_retries=2)
    result = await model.complete(QUESTION, params=ChatParams())
    await model.aclose()
    assert result.content == "ok"
    assert len(openai_fake.requests_to("chat")) == 3


async def test_chat_model_server_error_becomes_502_after_bounded_retries(
    openai_fake: FakeOpenAIServer, embedder: Embedder
) -> None:
    openai_fake.script(status=503, retry_after=0.01, times=5)
    model = _compatible(openai_fake, embedder, max_retries=1)
    with pytest.raises(ChatModelError) as caught:
        await model.complete(QUESTION, params=ChatParams())
    await model.aclose()
    assert type(caught.value) is ChatModelError
    assert caught.value.status_code == 502
    assert len(openai_fake.requests_to("chat")) == 2


async def test_chat_model_stream_failure_is_translated(
    openai_fake: FakeOpenAIServer, embedder: Embedder
) -> None:
    openai_fake.script(status=500)
    model = _compatible(openai_fake, embedder, max_retries=0)
    with pytest.raises(ChatModelError) as caught:
        _ = [d async for d in model.stream(QUESTION, params=ChatParams())]
    await model.aclose()
    assert caught.value.status_code == 502


async def test_slow_chat_model_becomes_504(
    openai_fake: FakeOpenAIServer, embedder: Embedder
) -> None:
    openai_fake.script(delay_s=1.5)
    model = _compatible(openai_fake, embedder, timeout_s=0.3, max_retries=0)
    with pytest.raises(ChatModelTimeoutError) as caught:
        await model.complete(QUESTION, params=ChatParams())
    await model.aclose()
    assert caught.value.status_code == 504


async def test_unreachable_chat_model_becomes_502(embedder: Embedder) -> None:
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    model = make_chat_model(
        ChatSettings(provider="compatible", base_url=f"http://127.0.0.1:{port}/v1", max_retries=0),
        embedder=embedder,
    )
    with pytest.raises(ChatModelError) as caught:
        await model.complete(QUESTION, params=ChatParams())  # type: ignore[union-attr]
    assert caught.value.status_code == 502


async def test_azure_chat_model_calls_the_deployment_route(
    openai_fake: FakeOpenAIServer, embedder: Embedder
) -> None:
    openai_fake.reply("From Azure [doc1].")
    model = make_chat_model(
        ChatSettings(
            provider="azure",
            azure_endpoint=openai_fake.azure_endpoint,
            azure_deployment="gpt4o-prod",
            api_version="2024-10-21",
            api_key=SecretStr("azure-key"),
        ),
        embedder=embedder,
    )
    assert isinstance(model, AzureOpenAIChatModel)
    result = await model.complete(QUESTION, params=ChatParams())
    await model.aclose()
    assert result.content == "From Azure [doc1]."
    sent = openai_fake.last_request
    assert sent.path == "/openai/deployments/gpt4o-prod/chat/completions"
    assert sent.query == {"api-version": "2024-10-21"}
    assert sent.headers["api-key"] == "azure-key"


def test_extractive_answerer_quotes_nothing_below_the_strictness_floor(
    embedder: Embedder,
) -> None:
    docs = [scored_doc(1, "The cafeteria opens at eight and serves soup on Fridays.")]
    question = "Who cleans the office kitchen?"  # on topic-ish: cosine 0.24
    answerer = ExtractiveAnswerer(embedder)
    assert answerer.compose(question, docs, strictness=1).content.endswith("[doc1].")
    assert answerer.compose(question, docs, strictness=3).content == ""
    assert SENTENCE_FLOOR[1] < SENTENCE_FLOOR[3] < SENTENCE_FLOOR[5]
