"""Grounded answers: intent -> search -> prompt -> model -> verified citations.

One numbering everywhere: ``[doc1]``..``[docN]`` in order of first use in the text, and
``citations[k-1]`` is ``[dock]`` -- exactly the cited documents, in that order.

Streaming contract (``AnswerService.stream``), in every path (chat model, extractive,
refusal): ``AnswerContext`` first (intent, the citations of the answer, all_retrieved when
asked), then ``AnswerDelta`` with the answer text, then ``AnswerDone`` with the ``Answer``
(usage). The stream is the complete answer cut into events, so streamed and non-streamed
clients see the same text and the same citations. The context can only name the cited
documents once the text is known, so the text is generated completely before the context
is sent (the extractive answerer works that way anyway; a chat model's reply is awaited).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from core.access import EVERYTHING, Scope
from core.errors import InvalidRequestError, MissingUserMessageError
from core.metrics import phase
from core.models import Answer, Citation, ScoredChunk
from core.settings import ChatSettings
from retrieval.chat import ChatMessage, ChatModel, ChatParams, ChatResult, ExtractiveAnswerer
from retrieval.citations import (
    NOT_FOUND_MESSAGE,
    is_refusal,
    verify_citations,
)
from retrieval.embedders import Vectors
from retrieval.index import MetadataFilter, SearchMode
from retrieval.intent import DEFAULT_MAX_QUERIES, heuristic_queries, rewritten_queries
from retrieval.prompts import NO_USER_MESSAGE, BuiltPrompt, build_messages, count_tokens
from retrieval.search import (
    DEFAULT_STRICTNESS,
    DEFAULT_TOP_N,
    MAX_QUERIES,
    Searcher,
    SearchRequest,
    SearchResult,
    with_acl,
)

__all__ = [
    "NOT_FOUND_MESSAGE",
    "AnswerContext",
    "AnswerDelta",
    "AnswerDone",
    "AnswerEvent",
    "AnswerRequest",
    "AnswerService",
]


@dataclass(frozen=True)
class AnswerRequest:
    """Everything one grounded chat request carries (the OYD data_sources parameters + sampling).

    ``messages`` is the conversation as the caller sent it (system turns are kept as extra
    role information after the grounding rules). ``scope`` (core/access.py) restricts the
    search to chunks its groups may read, inside the index, on top of ``filter`` (the API sets
    the caller's; in-process callers read everything). Raises InvalidRequestError
    on construction when a parameter is out of range or there is no user turn.
    """

    messages: tuple[ChatMessage, ...]
    index_name: str
    top_n_documents: int = DEFAULT_TOP_N
    strictness: int = DEFAULT_STRICTNESS
    in_scope: bool = True
    role_information: str | None = None
    mode: SearchMode = "hybrid"
    rerank: bool = False
    filter: MetadataFilter | None = None
    scope: Scope = EVERYTHING
    max_search_queries: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()
    user: str | None = None
    include_all_retrieved: bool = False
    options: Mapping[str, Any] = field(default_factory=dict)
    """Other chat-completions fields for the chat model (ChatParams.options)."""

    def __post_init__(self) -> None:
        if not any(m.role == "user" and m.content.strip() for m in self.messages):
            raise MissingUserMessageError(NO_USER_MESSAGE, param="messages")
        _check("max_search_queries", self.max_search_queries, 1, MAX_QUERIES)
        _check("temperature", self.temperature, 0, 2)
        _check("top_p", self.top_p, 0, 1)
        _check("max_tokens", self.max_tokens, 1, 1_000_000)
        # SearchRequest owns the ranges of top_n_documents, strictness and mode
        self.search_request(("probe",))

    def search_request(self, queries: Sequence[str]) -> SearchRequest:
        """The search this request asks for, with these queries."""
        return SearchRequest(
            queries=tuple(queries),
            index_name=self.index_name,
            mode=self.mode,
            rerank=self.rerank,
            top_n_documents=self.top_n_documents,
            strictness=self.strictness,
            filter=with_acl(self.filter, self.scope.as_filter()),
        )

    @property
    def params(self) -> ChatParams:
        return ChatParams(
            temperature=self.temperature,
            top_p=self.top_p,
            max_tokens=self.max_tokens,
            stop=self.stop,
            user=self.user,
            options=self.options,
        )


@dataclass(frozen=True)
class AnswerContext:
    """First stream event: what the answer will be grounded on."""

    intent: tuple[str, ...]
    citations: tuple[Citation, ...]
    all_retrieved: tuple[ScoredChunk, ...]
    model: str


@dataclass(frozen=True)
class AnswerDelta:
    """A piece of the answer text."""

    content: str


@dataclass(frozen=True)
class AnswerDone:
    """Last stream event: the verified answer, with usage."""

    answer: Answer


AnswerEvent = AnswerContext | AnswerDelta | AnswerDone


@dataclass(frozen=True)
class _Grounding:
    """What one request is answered from: intent, search, and (with a chat model) the prompt."""

    intent: tuple[str, ...]
    search: SearchResult
    documents: tuple[ScoredChunk, ...]
    prompt: BuiltPrompt | None
    intent_tokens: tuple[int, int]
    question_vector: Vectors | None = None
    """The first query's embedding, for an answerer that scores sentences with it."""

    @property
    def prompt_tokens(self) -> int:
        return self.intent_tokens[0] + (self.prompt.prompt_tokens if self.prompt else 0)


class Answerer(Protocol):
    """One way of answering grounded requests: a chat model with a prompt, or extractive."""

    @property
    def name(self) -> str:
        """Reported as the answer's model."""
        ...

    @property
    def chat_model(self) -> ChatModel | None:
        """The chat model for requests without data_sources (None: there is none)."""
        ...

    async def ground(self, request: AnswerRequest, searcher: Searcher) -> _Grounding:
        """Intent, search and (for a chat model) the prompt of one request."""
        ...

    async def generate(self, request: AnswerRequest, grounding: _Grounding) -> ChatResult:
        """The unverified answer text from the grounding ("" when nothing answers)."""
        ...


class ChatModelAnswerer:
    """A chat model: rewritten queries, a grounded prompt, the model's reply."""

    def __init__(self, model: ChatModel, *, chat_settings: ChatSettings) -> None:
        self._model = model
        self._chat_settings = chat_settings

    @property
    def name(self) -> str:
        return self._model.name

    @property
    def chat_model(self) -> ChatModel | None:
        return self._model

    async def ground(self, request: AnswerRequest, searcher: Searcher) -> _Grounding:
        intent, prompt_tokens, completion_tokens = await rewritten_queries(
            self._model,
            request.messages,
            max_queries=request.max_search_queries or DEFAULT_MAX_QUERIES,
        )
        search = await searcher.search(request.search_request(intent))
        prompt = build_messages(
            messages=request.messages,
            documents=search.documents,
            role_information=request.role_information,
            in_scope=request.in_scope,
            model=self._model.name,
            context_window=self._chat_settings.context_window,
            response_tokens=request.max_tokens or self._chat_settings.max_response_tokens,
        )
        tokens = (prompt_tokens, completion_tokens)
        return _Grounding(intent, search, prompt.documents, prompt, tokens)

    async def generate(self, request: AnswerRequest, grounding: _Grounding) -> ChatResult:
        assert grounding.prompt is not None  # ground() always builds one
        max_tokens = request.max_tokens or self._chat_settings.max_response_tokens
        params = replace(request.params, max_tokens=max_tokens)
        return await self._model.complete(grounding.prompt.messages, params=params)


class ExtractiveAnswering:
    """The extractive answerer: heuristic queries, sentence vectors, quoted sentences."""

    def __init__(self, answerer: ExtractiveAnswerer) -> None:
        self._answerer = answerer

    @property
    def name(self) -> str:
        return self._answerer.name

    @property
    def chat_model(self) -> ChatModel | None:
        return None

    async def ground(self, request: AnswerRequest, searcher: Searcher) -> _Grounding:
        intent = heuristic_queries(request.messages)
        search_request = replace(request.search_request(intent), with_sentence_vectors=True)
        search = await searcher.search(search_request)
        # the search embedded the question already: its cache hands the vector back
        vector = searcher.embed_query(intent[0])
        return _Grounding(intent, search, search.documents, None, (0, 0), vector)

    async def generate(self, request: AnswerRequest, grounding: _Grounding) -> ChatResult:
        return await self._answerer.answer(
            grounding.intent[0],
            grounding.documents,
            question_vector=grounding.question_vector,
            strictness=request.strictness,
            in_scope=request.in_scope,
        )


def answerer_for(model: ChatModel | ExtractiveAnswerer, *, chat_settings: ChatSettings) -> Answerer:
    """The Answerer around what `make_chat_model` built."""
    if isinstance(model, ExtractiveAnswerer):
        return ExtractiveAnswering(model)
    return ChatModelAnswerer(model, chat_settings=chat_settings)


class AnswerService:
    """Built once in the lifespan; answers grounded requests with its Answerer."""

    def __init__(
        self,
        *,
        searcher: Searcher,
        model: ChatModel | ExtractiveAnswerer,
        chat_settings: ChatSettings,
    ) -> None:
        self._searcher = searcher
        self._answerer = answerer_for(model, chat_settings=chat_settings)

    @property
    def chat_model(self) -> ChatModel | None:
        """The remote chat model (for requests without data_sources), or None if extractive."""
        return self._answerer.chat_model

    @property
    def searcher(self) -> Searcher:
        return self._searcher

    @property
    def model_name(self) -> str:
        return self._answerer.name

    async def answer(self, request: AnswerRequest) -> Answer:
        """A complete grounded answer."""
        with phase("retrieve"):
            grounding = await self._answerer.ground(request, self._searcher)
        with phase("generate"):
            result = await self._complete_text(request, grounding)
            return self._answer(request, grounding, result.content, result)

    async def stream(self, request: AnswerRequest) -> AsyncIterator[AnswerEvent]:
        """AnswerContext, then AnswerDelta, then AnswerDone (see the module docstring)."""
        answer = await self.answer(request)
        yield AnswerContext(
            intent=answer.intent,
            citations=answer.citations,
            all_retrieved=answer.all_retrieved,
            model=answer.model,
        )
        yield AnswerDelta(answer.content)
        yield AnswerDone(answer)

    async def _complete_text(self, request: AnswerRequest, grounding: _Grounding) -> ChatResult:
        """The unverified answer text once grounded: the refusal, or a complete generation."""
        if _must_refuse(request, grounding):
            return ChatResult(NOT_FOUND_MESSAGE, self.model_name)
        return await self._answerer.generate(request, grounding)

    async def aclose(self) -> None:
        """Close the chat model's client, if any."""
        if self.chat_model is not None:
            await self.chat_model.aclose()

    def _answer(
        self, request: AnswerRequest, grounding: _Grounding, text: str, result: ChatResult
    ) -> Answer:
        verified = verify_citations(text, grounding.documents)
        refused = not verified.content or (request.in_scope and is_refusal(verified.content))
        completion = result.completion_tokens or count_tokens(text, model=self.model_name)
        return Answer(
            content=NOT_FOUND_MESSAGE if refused else verified.content,
            citations=() if refused else verified.citations,
            intent=grounding.intent,
            all_retrieved=grounding.search.all_retrieved if request.include_all_retrieved else (),
            model=self.model_name,
            removed_markers=verified.removed_markers,
            prompt_tokens=self._prompt_tokens(grounding, result),
            completion_tokens=grounding.intent_tokens[1] + completion,
        )

    def _prompt_tokens(self, grounding: _Grounding, result: ChatResult) -> int:
        if result.prompt_tokens:
            return grounding.intent_tokens[0] + result.prompt_tokens
        if grounding.prompt is not None:
            return grounding.prompt_tokens
        # extractive: what it read (the query and the documents)
        read = [*grounding.intent, *(d.chunk.content for d in grounding.documents)]
        return sum(count_tokens(text, model=self.model_name) for text in read)


def _must_refuse(request: AnswerRequest, grounding: _Grounding) -> bool:
    """Nothing survived strictness: in_scope refuses; extractive cannot answer without text."""
    if grounding.documents:
        return False
    return request.in_scope or grounding.prompt is None


def _check(name: str, value: float | None, low: float, high: float) -> None:
    if value is not None and not low <= value <= high:
        raise InvalidRequestError(f"{name} must be between {low} and {high}", param=name)
