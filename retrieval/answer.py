"""Grounded answers: intent -> search -> prompt -> model -> verified citations.

Streaming contract (``AnswerService.stream``), the same as Azure "On Your Data":

1. ``AnswerContext`` first: intent, and the *candidate* citations -- every document given
   to the model, in prompt order, so ``citations[k-1]`` is ``[dock]`` -- plus, when asked,
   all_retrieved. Send it as the first chunk's ``delta.context``.
2. ``AnswerDelta`` events: content as the model writes it, markers in prompt numbering
   (indexes into the candidate list above). Markers that point at no document are dropped
   on the fly. A reply that is the in_scope refusal comes out as exactly the refusal text.
3. ``AnswerDone`` last: the verified ``Answer`` exactly as ``answer()`` would return it
   (cited documents only, compact numbering, usage). Streaming clients that want the
   compact form use it; the SSE route may ignore it except for usage.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from core.models import Answer, Citation, ScoredChunk
from core.settings import ChatSettings
from retrieval.chat import ChatMessage, ChatModel, ExtractiveAnswerer
from retrieval.index import MetadataFilter, SearchMode
from retrieval.search import DEFAULT_STRICTNESS, DEFAULT_TOP_N, Searcher

NOT_FOUND_MESSAGE = (
    "The requested information is not available in the retrieved data. "
    "Please try another query or topic."
)


@dataclass(frozen=True)
class AnswerRequest:
    """Everything one grounded chat request carries (the OYD data_sources parameters + sampling).

    ``messages`` is the conversation as the caller sent it (system turns are kept as extra
    instructions after the grounding rules). Raises InvalidRequestError on construction when
    a parameter is out of range or there is no user turn.
    """

    messages: tuple[ChatMessage, ...]
    index_name: str
    top_n_documents: int = DEFAULT_TOP_N
    strictness: int = DEFAULT_STRICTNESS
    in_scope: bool = True
    role_information: str | None = None
    mode: SearchMode = "hybrid"
    filter: MetadataFilter | None = None
    max_search_queries: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()
    user: str | None = None
    include_all_retrieved: bool = False


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
        raise NotImplementedError

    def stream(self, request: AnswerRequest) -> AsyncIterator[AnswerEvent]:
        """AnswerContext, then AnswerDelta*, then AnswerDone (see the module docstring)."""
        raise NotImplementedError

    async def aclose(self) -> None:
        """Close the chat model's client, if any."""
        raise NotImplementedError
