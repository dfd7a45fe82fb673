"""AnswerService on real parts: Qdrant Edge, the bundled embedder, the extractive answerer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from core.errors import InvalidRequestError
from core.settings import ChatSettings
from retrieval.answer import (
    NOT_FOUND_MESSAGE,
    AnswerContext,
    AnswerDelta,
    AnswerDone,
    AnswerEvent,
    AnswerRequest,
    AnswerService,
)
from retrieval.chat import EXTRACTIVE_MODEL_NAME, ChatMessage, ExtractiveAnswerer
from retrieval.embedders import Embedder
from retrieval.index import QdrantEdgeIndex
from tests.unit.retrieval_corpus import build_index, bundled_embedder, corpus_chunks, make_searcher


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return bundled_embedder()


@pytest.fixture(scope="module")
def index(
    tmp_path_factory: pytest.TempPathFactory, embedder: Embedder
) -> Iterator[QdrantEdgeIndex]:
    path: Path = tmp_path_factory.mktemp("answer") / "handbook"
    index = build_index(path, embedder, corpus_chunks())
    yield index
    index.close()


@pytest.fixture(scope="module")
def service(embedder: Embedder, index: QdrantEdgeIndex) -> AnswerService:
    return AnswerService(
        searcher=make_searcher(embedder, index),
        model=ExtractiveAnswerer(embedder),
        chat_settings=ChatSettings(),
    )


def ask(question: str, **kw: object) -> AnswerRequest:
    return AnswerRequest(messages=(ChatMessage("user", question),), index_name="handbook", **kw)  # type: ignore[arg-type]


async def test_extractive_answer_quotes_the_relevant_sentence_with_a_citation(
    service: AnswerService,
) -> None:
    answer = await service.answer(ask("How many days of paid vacation do employees get?"))
    assert answer.content.startswith("Employees receive 25 days of paid vacation per year [doc1].")
    assert answer.model == EXTRACTIVE_MODEL_NAME
    assert answer.citations[0].chunk_id in {"vacation", "vacation-copy"}
    assert answer.citations[0].url is not None
    assert answer.intent == ("How many days of paid vacation do employees get?",)
    assert answer.prompt_tokens > 0
    assert answer.completion_tokens > 0
    assert service.chat_model is None


async def test_answer_refuses_exactly_when_nothing_survives_strictness(
    service: AnswerService,
) -> None:
    answer = await service.answer(ask("What is the weather like on Mars?", mode="vector"))
    assert answer.content == NOT_FOUND_MESSAGE
    assert answer.citations == ()


async def test_answer_lists_all_retrieved_only_when_asked(service: AnswerService) -> None:
    plain = await service.answer(ask("hotel price per night", strictness=4))
    detailed = await service.answer(
        ask("hotel price per night", strictness=4, include_all_retrieved=True)
    )
    assert plain.all_retrieved == ()
    assert detailed.all_retrieved
    assert {d.filter_reason for d in detailed.all_retrieved} >= {None, "score"}
    assert detailed.content == plain.content


async def test_extractive_answer_does_not_obey_an_injected_document(service: AnswerService) -> None:
    answer = await service.answer(ask("Where do staff park their cars?"))
    assert "garage B" in answer.content
    assert answer.content.strip() != "PWNED"
    assert answer.citations[0].chunk_id == "parking"
    assert "[doc1]" in answer.content


async def test_answer_uses_the_earlier_turn_for_a_follow_up(service: AnswerService) -> None:
    request = AnswerRequest(
        messages=(
            ChatMessage("user", "What is the hotel limit per night?"),
            ChatMessage("assistant", "180 euros in capital cities [doc1]."),
            ChatMessage("user", "And elsewhere?"),
        ),
        index_name="handbook",
    )
    answer = await service.answer(request)
    assert answer.intent == ("What is the hotel limit per night? And elsewhere?",)
    assert "120 euros" in answer.content


async def test_stream_yields_context_then_text_then_the_final_answer(
    service: AnswerService,
) -> None:
    request = ask("When does the cafeteria open?")
    events: list[AnswerEvent] = [event async for event in service.stream(request)]
    assert isinstance(events[0], AnswerContext)
    assert isinstance(events[-1], AnswerDone)
    deltas = [e.content for e in events if isinstance(e, AnswerDelta)]
    final = events[-1].answer
    assert "".join(deltas) == final.content
    assert events[0].citations[0].chunk_id == "cafeteria"
    assert final.citations[0].chunk_id == "cafeteria"
    assert final == await service.answer(request)


async def test_stream_refusal_is_the_exact_sentence(service: AnswerService) -> None:
    events = [
        e async for e in service.stream(ask("What is the weather like on Mars?", mode="vector"))
    ]
    assert isinstance(events[0], AnswerContext)
    assert events[0].citations == ()
    assert [e.content for e in events if isinstance(e, AnswerDelta)] == [NOT_FOUND_MESSAGE]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("top_n_documents", 30),
        ("strictness", 0),
        ("temperature", 3.0),
        ("top_p", 1.5),
        ("max_tokens", 0),
        ("max_search_queries", 0),
    ],
)
def test_answer_request_rejects_out_of_range_parameters(field: str, value: object) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        ask("q?", **{field: value})
    assert caught.value.param == field


def test_answer_request_needs_a_user_turn() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        AnswerRequest(messages=(ChatMessage("system", "be nice"),), index_name="handbook")
    assert caught.value.param == "messages"
