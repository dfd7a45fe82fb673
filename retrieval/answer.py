"""Grounded answers: intent -> search -> prompt -> model -> verified citations.

Streaming contract (``AnswerService.stream``), the same as Azure "On Your Data", in every
path (chat model, extractive, refusal):

1. ``AnswerContext`` first: intent, and the *candidate* citations -- every document given
   to the model, in prompt order, so ``citations[k-1]`` is ``[dock]`` -- plus, when asked,
   all_retrieved. Send it as the first chunk's ``delta.context``.
2. ``AnswerDelta`` events: the answer text in prompt numbering (markers index the candidate
   list above). It is the streamed form of the complete answer: renumbered compactly with
   ``verify_citations`` it is exactly ``answer().content`` -- markers that point at no
   document dropped, the in_scope refusal as exactly the refusal text, the refusal too when
   nothing else is left.
3. ``AnswerDone`` last: the verified ``Answer`` exactly as ``answer()`` would return it
   (cited documents only, compact numbering, usage). Streaming clients that want the
   compact form use it; the SSE route may ignore it except for usage.

Non-streaming answers always use compact numbering (``[doc1]`` is ``citations[0]``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import aclosing
from dataclasses import dataclass, replace

from core.errors import InvalidRequestError
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
from retrieval.index import MetadataFilter, SearchMode
from retrieval.intent import DEFAULT_MAX_QUERIES, heuristic_queries, rewritten_queries
from retrieval.prompts import BuiltPrompt, build_messages, count_tokens
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
    role information after the grounding rules). ``acl_groups``, when not None, restricts the
    search to chunks those groups may read (on top of ``filter``). Raises InvalidRequestError
    on construction when a parameter is out of range or there is no user turn.
    """

    messages: tuple[ChatMessage, ...]
    index_name: str
    top_n_documents: int = DEFAULT_TOP_N
    strictness: int = DEFAULT_STRICTNESS
    in_scope: bool = True
    role_information: str | None = None
    mode: SearchMode = "hybrid"
    filter: MetadataFilter | None = None
    acl_groups: tuple[str, ...] | None = None
    max_search_queries: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()
    user: str | None = None
    include_all_retrieved: bool = False

    def __post_init__(self) -> None:
        if not any(m.role == "user" and m.content.strip() for m in self.messages):
            raise InvalidRequestError(
                "messages must contain a non-empty user turn", param="messages"
            )
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
            top_n_documents=self.top_n_documents,
            strictness=self.strictness,
            filter=with_acl(self.filter, self.acl_groups),
        )

    @property
    def params(self) -> ChatParams:
        return ChatParams(
            temperature=self.temperature,
            top_p=self.top_p,
            max_tokens=self.max_tokens,
            stop=self.stop,
            user=self.user,
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

    @property
    def prompt_tokens(self) -> int:
        return self.intent_tokens[0] + (self.prompt.prompt_tokens if self.prompt else 0)


class AnswerService:
    """Built once in the lifespan; answers grounded requests with a chat model or extractively."""

    def __init__(
        self,
        *,
        searcher: Searcher,
        model: ChatModel | ExtractiveAnswerer,
        chat_settings: ChatSettings,
    ) -> None:
        self._searcher = searcher
        self._model = model
        self._chat_settings = chat_settings

    @property
    def chat_model(self) -> ChatModel | None:
        """The remote chat model (for requests without data_sources), or None if extractive."""
        return None if isinstance(self._model, ExtractiveAnswerer) else self._model

    @property
    def model_name(self) -> str:
        return self._model.name

    async def answer(self, request: AnswerRequest) -> Answer:
        """A complete grounded answer."""
        with phase("retrieve"):
            grounding = await self._ground(request)
        with phase("generate"):
            result = await self._complete_text(request, grounding)
            return self._answer(request, grounding, result.content, result)

    async def stream(self, request: AnswerRequest) -> AsyncIterator[AnswerEvent]:
        """AnswerContext, then AnswerDelta*, then AnswerDone (see the module docstring)."""
        with phase("retrieve"):
            grounding = await self._ground(request)
        yield AnswerContext(
            intent=grounding.intent,
            citations=tuple(citation_of(d) for d in grounding.documents),
            all_retrieved=grounding.search.all_retrieved if request.include_all_retrieved else (),
            model=self.model_name,
        )
        text = _StreamedText(document_count=len(grounding.documents), in_scope=request.in_scope)
        if _must_refuse(request, grounding) or isinstance(self._model, ExtractiveAnswerer):
            result = await self._complete_text(request, grounding)
            yield AnswerDelta(text.feed(result.content) + text.flush())
            yield AnswerDone(self._answer(request, grounding, result.content, result))
            return
        raw: list[str] = []
        async for piece in self._stream_text(request, grounding, text, raw):
            yield AnswerDelta(piece)
        content = "".join(raw)  # the stream reports no usage: _answer counts the tokens
        unreported = ChatResult(content, self.model_name)
        yield AnswerDone(self._answer(request, grounding, content, unreported))

    async def _complete_text(self, request: AnswerRequest, grounding: _Grounding) -> ChatResult:
        """The unverified answer text once grounded: the refusal, or a complete generation."""
        if _must_refuse(request, grounding):
            return ChatResult(NOT_FOUND_MESSAGE, self.model_name)
        return await self._generate(request, grounding)

    async def aclose(self) -> None:
        """Close the chat model's client, if any."""
        if self.chat_model is not None:
            await self.chat_model.aclose()

    async def _ground(self, request: AnswerRequest) -> _Grounding:
        intent, tokens = await self._intent(request)
        search_request = request.search_request(intent)
        if isinstance(self._model, ExtractiveAnswerer):
            search_request = replace(search_request, with_sentence_vectors=True)
        search = await self._searcher.search(search_request)
        if isinstance(self._model, ExtractiveAnswerer):
            return _Grounding(intent, search, search.documents, None, tokens)
        prompt = build_messages(
            messages=request.messages,
            documents=search.documents,
            role_information=request.role_information,
            in_scope=request.in_scope,
            model=self._model.name,
            context_window=self._chat_settings.context_window,
            response_tokens=request.max_tokens or self._chat_settings.max_response_tokens,
        )
        return _Grounding(intent, search, prompt.documents, prompt, tokens)

    async def _intent(self, request: AnswerRequest) -> tuple[tuple[str, ...], tuple[int, int]]:
        if isinstance(self._model, ExtractiveAnswerer):
            return heuristic_queries(request.messages), (0, 0)
        queries, prompt, completion = await rewritten_queries(
            self._model,
            request.messages,
            max_queries=request.max_search_queries or DEFAULT_MAX_QUERIES,
        )
        return queries, (prompt, completion)

    async def _generate(self, request: AnswerRequest, grounding: _Grounding) -> ChatResult:
        if isinstance(self._model, ExtractiveAnswerer):
            return await asyncio.to_thread(self._extract, request, grounding)
        assert grounding.prompt is not None
        return await self._model.complete(grounding.prompt.messages, params=self._params(request))

    def _extract(self, request: AnswerRequest, grounding: _Grounding) -> ChatResult:
        """The extractive answer (blocking; the question's vector is cached by the search)."""
        assert isinstance(self._model, ExtractiveAnswerer)
        question = grounding.intent[0]
        return self._model.compose(
            question,
            grounding.documents,
            self._searcher.embed_query(question),
            strictness=request.strictness,
        )

    async def _stream_text(
        self,
        request: AnswerRequest,
        grounding: _Grounding,
        text: _StreamedText,
        raw: list[str],
    ) -> AsyncIterator[str]:
        """The model's deltas in their streamed form (`_StreamedText`); `raw` gets them as is."""
        assert grounding.prompt is not None
        assert not isinstance(self._model, ExtractiveAnswerer)
        stream = self._model.stream(grounding.prompt.messages, params=self._params(request))
        async with aclosing(stream) as deltas:
            async for delta in deltas:
                raw.append(delta)
                out = text.feed(delta)
                if out:
                    yield out
        tail = text.flush()
        if tail:
            yield tail

    def _params(self, request: AnswerRequest) -> ChatParams:
        """The request's sampling parameters, the response reserve as the default max_tokens."""
        max_tokens = request.max_tokens or self._chat_settings.max_response_tokens
        return replace(request.params, max_tokens=max_tokens)

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


class _StreamedText:
    """What the stream shows of an answer's text, so that it matches the complete answer.

    Markers naming no document are dropped (prompt numbering kept), then the refusal gate;
    the refusal sentence comes out when the text turns out empty (as `_answer` decides).
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
        self._held = "" if enabled else None
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
