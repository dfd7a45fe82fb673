"""Chat models behind one protocol: OpenAI, Azure OpenAI, any OpenAI-compatible server, extractive.

Every remote adapter talks through the official ``openai`` async clients; upstream failures
become ChatModelRateLimitError (429, with retry_after), ChatModelTimeoutError (504) or
ChatModelError (502).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from core.models import ScoredChunk
from core.settings import ChatSettings
from retrieval.embedders import Embedder

Role = Literal["system", "user", "assistant"]
EXTRACTIVE_MODEL_NAME = "ondata-extractive"


@dataclass(frozen=True)
class ChatMessage:
    """One conversation turn."""

    role: Role
    content: str


@dataclass(frozen=True)
class ChatParams:
    """Sampling parameters passed through to the model (None: the model's default)."""

    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()
    user: str | None = None


@dataclass(frozen=True)
class ChatResult:
    """A complete reply with its token usage as the model reported it."""

    content: str
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = "stop"


class ChatModel(Protocol):
    """A remote chat-completions model."""

    @property
    def name(self) -> str:
        """The model (or Azure deployment) name, reported as the answer's `model`."""
        ...

    async def complete(self, messages: Sequence[ChatMessage], *, params: ChatParams) -> ChatResult:
        """One complete reply."""
        ...

    def stream(self, messages: Sequence[ChatMessage], *, params: ChatParams) -> AsyncIterator[str]:
        """Content deltas as they arrive (an async generator)."""
        ...

    async def aclose(self) -> None:
        """Close the underlying HTTP client."""
        ...


class ExtractiveAnswerer:
    """The embedded default: answers with the retrieved sentences closest to the question.

    Not a ChatModel (it cannot chat without documents); AnswerService uses it when no chat
    model is configured. Each sentence is cited ``[docN]`` with N its document's position.
    """

    def __init__(self, embedder: Embedder, *, max_sentences: int = 3) -> None:
        self._embedder = embedder
        self._max_sentences = max_sentences

    @property
    def name(self) -> str:
        return EXTRACTIVE_MODEL_NAME

    async def answer(self, question: str, documents: Sequence[ScoredChunk]) -> ChatResult:
        """Compose an answer from documents[0..] labelled [doc1].. in that order."""
        raise NotImplementedError


def make_chat_model(
    settings: ChatSettings, *, embedder: Embedder
) -> ChatModel | ExtractiveAnswerer:
    """The configured chat model, or the extractive answerer when provider is none."""
    raise NotImplementedError
