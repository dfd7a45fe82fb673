"""Chat models: the factory, the extractive answerer, the remote adapters over a loopback server."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from core.errors import ConfigurationError
from core.models import Chunk, ScoredChunk
from core.settings import ChatSettings
from retrieval.chat import (
    EXTRACTIVE_MODEL_NAME,
    AzureOpenAIChatModel,
    ExtractiveAnswerer,
    OpenAIChatModel,
    make_chat_model,
)
from retrieval.embedders import Embedder
from tests.unit.retrieval_corpus import bundled_embedder


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return bundled_embedder()


def _doc(n: int, content: str) -> ScoredChunk:
    chunk = Chunk(
        chunk_id=f"c{n}",
        doc_id=f"d{n}",
        chunk_index=0,
        content=content,
        embed_text=content,
        title=f"T{n}",
        content_hash=f"h{n}",
    )
    return ScoredChunk(chunk=chunk, score=0.5)


async def test_extractive_answerer_cites_each_sentence_by_document_position(
    embedder: Embedder,
) -> None:
    docs = [
        _doc(1, "The cafeteria opens at eight in the morning. It serves soup on Fridays."),
        _doc(2, "Hotels may be booked up to 180 euros per night in capital cities."),
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
        _doc(1, sentence),
        _doc(2, sentence),
        _doc(3, "Employees receive 25 days of paid vacation each year."),
    ]
    result = ExtractiveAnswerer(embedder, max_sentences=3).compose("How much vacation?", docs)
    assert result.content == "Employees receive 25 days of paid vacation per year [doc1]."


def test_extractive_answerer_has_nothing_to_say_without_sentences(embedder: Embedder) -> None:
    assert ExtractiveAnswerer(embedder).compose("anything?", []).content == ""
    assert ExtractiveAnswerer(embedder).compose("anything?", [_doc(1, "Too short.")]).content == ""


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
