"""Grounded answers: intent -> search -> prompt -> model -> verified citations.

One numbering everywhere, as in Azure "On Your Data": ``[docN]`` is the N-th document given
to the model (the search's documents after strictness, in the prompt's order), and an answer's
``citations`` are those documents in that order, so ``[docN]`` is ``citations[N-1]``, streamed
or not. Markers naming no such document are removed (retrieval/citations.py).

Streaming contract (``AnswerService.stream``), in every path (chat model, extractive,
refusal): ``AnswerContext`` first, as soon as the search is done (intent, the citations,
all_retrieved when asked); then ``AnswerDelta`` events as the model's tokens arrive; then
``AnswerDone`` with the ``Answer`` (usage). Joined, the deltas are exactly ``answer()``'s
content for the same reply: markers naming no document dropped as they complete (a marker
split across tokens is held back until it does), the in_scope refusal as exactly the
refusal text (a start that may still become it is held back), the refusal too when nothing
else is left.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from contextlib import aclosing
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
    StreamingMarkerFilter,
    citation_of,
    could_become_refusal,
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

    @property
    def citations(self) -> tuple[Citation, ...]:
        """The documents given to the model, in order: [docN] is citations[N-1]."""
        return tuple(citation_of(d) for d in self.documents)


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

    def stream(self, request: AnswerRequest, grounding: _Grounding) -> AsyncGenerator[str, None]:
        """The same unverified text in pieces, as it is generated."""
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
        return await self._model.complete(grounding.prompt.messages, params=self._params(request))

    async def stream(
        self, request: AnswerRequest, grounding: _Grounding
    ) -> AsyncGenerator[str, None]:
        assert grounding.prompt is not None
        deltas = self._model.stream(grounding.prompt.messages, params=self._params(request))
        async with aclosing(deltas):
            async for delta in deltas:
                yield delta

    def _params(self, request: AnswerRequest) -> ChatParams:
        """The request's parameters, the response reserve as the default max_tokens."""
        max_tokens = request.max_tokens or self._chat_settings.max_response_tokens
        return replace(request.params, max_tokens=max_tokens)


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

    async def stream(
        self, request: AnswerRequest, grounding: _Grounding
    ) -> AsyncGenerator[str, None]:
        # the quoted sentences are chosen together: the text comes in one piece
        yield (await self.generate(request, grounding)).content


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
        """AnswerContext, then AnswerDelta*, then AnswerDone (see the module docstring)."""
        with phase("retrieve"):
            grounding = await self._answerer.ground(request, self._searcher)
        yield AnswerContext(
            intent=grounding.intent,
            citations=grounding.citations,
            all_retrieved=_all_retrieved(request, grounding),
            model=self.model_name,
        )
        text = _StreamedText(document_count=len(grounding.documents), in_scope=request.in_scope)
        raw: list[str] = []
        async with aclosing(self._text_stream(request, grounding)) as pieces:
            async for piece in pieces:
                raw.append(piece)
                if out := text.feed(piece):
                    yield AnswerDelta(out)
        if tail := text.flush():
            yield AnswerDelta(tail)
        content = "".join(raw)  # a stream reports no usage: _answer counts the tokens
        unreported = ChatResult(content, self.model_name)
        yield AnswerDone(self._answer(request, grounding, content, unreported))

    async def _complete_text(self, request: AnswerRequest, grounding: _Grounding) -> ChatResult:
        """The unverified answer text once grounded: the refusal, or a complete generation."""
        if _must_refuse(request, grounding):
            return ChatResult(NOT_FOUND_MESSAGE, self.model_name)
        return await self._answerer.generate(request, grounding)

    async def _text_stream(
        self, request: AnswerRequest, grounding: _Grounding
    ) -> AsyncGenerator[str, None]:
        """`_complete_text` in pieces as they are generated."""
        if _must_refuse(request, grounding):
            yield NOT_FOUND_MESSAGE
            return
        async with aclosing(self._answerer.stream(request, grounding)) as pieces:
            async for piece in pieces:
                yield piece

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
            citations=verified.citations,
            intent=grounding.intent,
            all_retrieved=_all_retrieved(request, grounding),
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


def _all_retrieved(request: AnswerRequest, grounding: _Grounding) -> tuple[ScoredChunk, ...]:
    return grounding.search.all_retrieved if request.include_all_retrieved else ()


class _StreamedText:
    """What the stream shows of an answer's text, so that it matches the complete answer.

    Markers naming no document are dropped, then the refusal gate; the refusal sentence comes
    out when the text turns out empty (as `AnswerService._answer` decides).
    """

    def __init__(self, *, document_count: int, in_scope: bool) -> None:
        self._markers = StreamingMarkerFilter(document_count)
        self._gate = _RefusalGate(enabled=in_scope)
        self._emitted = False

    def feed(self, delta: str) -> str:
        out = self._gate.feed(self._markers.feed(delta))
        self._emitted = self._emitted or bool(out)
        return out

    def flush(self) -> str:
        out = self._gate.feed(self._markers.flush()) + self._gate.flush()
        return out if out or self._emitted else NOT_FOUND_MESSAGE


class _RefusalGate:
    """Holds back streamed text while it may still be the refusal sentence; emits that exactly."""

    def __init__(self, *, enabled: bool) -> None:
        self._held: str | None = "" if enabled else None
        self._refused = False

    def feed(self, delta: str) -> str:
        if self._refused:
            return ""
        if self._held is None:
            return delta
        self._held += delta
        if is_refusal(self._held):
            self._refused = True
            return NOT_FOUND_MESSAGE
        if could_become_refusal(self._held):
            return ""
        out, self._held = self._held, None
        return out

    def flush(self) -> str:
        out, self._held = ("" if self._refused else self._held or ""), None
        return out


def _must_refuse(request: AnswerRequest, grounding: _Grounding) -> bool:
    """Nothing survived strictness: in_scope refuses; extractive cannot answer without text."""
    if grounding.documents:
        return False
    return request.in_scope or grounding.prompt is None


def _check(name: str, value: float | None, low: float, high: float) -> None:
    if value is not None and not low <= value <= high:
        raise InvalidRequestError(f"{name} must be between {low} and {high}", param=name)
