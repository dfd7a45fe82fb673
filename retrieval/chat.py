"""Chat models behind one protocol: OpenAI, Azure OpenAI, any OpenAI-compatible server, extractive.

Every remote adapter talks through the official ``openai`` async clients, which time out after
``chat.timeout_s`` and retry 408/409/429/5xx and timeouts up to ``chat.max_retries`` times with
exponential backoff (honouring Retry-After up to a minute). What still fails becomes
ChatModelRateLimitError (429, with retry_after), ChatModelTimeoutError (504) or
ChatModelError (502).
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
from collections import Counter, OrderedDict
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np
import openai

from core.errors import (
    ChatModelError,
    ChatModelRateLimitError,
    ChatModelTimeoutError,
    ConfigurationError,
)
from core.models import ScoredChunk
from core.settings import ChatSettings
from retrieval.embedders import Embedder, Vectors
from retrieval.evidence import (
    OUTSIDE_SUPPORT_NOTE,
    SENTENCE_FLOOR,
    Answerability,
    answerability,
    fits_kind,
    question_kind,
    sentence_scores,
    term_coverage,
    term_weights,
)
from retrieval.rerank import retry_after_s
from retrieval.sentences import (
    MIN_WORDS,
    Sentence,
    decode_sentence_vectors,
    is_legacy,
    legacy_sentence_spans,
    split_sentences,
)
from retrieval.sparse import Bm25Encoder

logger = logging.getLogger(__name__)

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
    options: Mapping[str, Any] = field(default_factory=dict)
    """Other chat-completions fields (seed, presence_penalty...), sent to the model as they are."""


@dataclass(frozen=True)
class ChatResult:
    """A complete reply with its token usage as the model reported it (0: not reported)."""

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

    def stream(
        self, messages: Sequence[ChatMessage], *, params: ChatParams
    ) -> AsyncGenerator[str, None]:
        """Content deltas as they arrive (an async generator: close it to stop early)."""
        ...

    async def aclose(self) -> None:
        """Close the underlying HTTP client."""
        ...


class OpenAIChatModel:
    """OpenAI, or any server with its chat-completions API (vLLM, Ollama, llama.cpp, LM Studio)."""

    def __init__(self, client: openai.AsyncOpenAI, *, model: str) -> None:
        self._client = client
        self._model = model

    @property
    def name(self) -> str:
        return self._model

    async def complete(self, messages: Sequence[ChatMessage], *, params: ChatParams) -> ChatResult:
        try:
            response = await self._client.chat.completions.create(
                **self._request(messages, params), stream=False
            )
        except openai.OpenAIError as exc:
            raise translated(exc, model=self._model) from exc
        if not response.choices:
            raise ChatModelError(f"chat model {self._model} returned no choices")
        choice, usage = response.choices[0], response.usage
        return ChatResult(
            content=choice.message.content or "",
            model=response.model or self._model,
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
            finish_reason=choice.finish_reason or "stop",
        )

    async def stream(
        self, messages: Sequence[ChatMessage], *, params: ChatParams
    ) -> AsyncGenerator[str, None]:
        try:
            chunks = await self._client.chat.completions.create(
                **self._request(messages, params), stream=True
            )
            async for chunk in chunks:
                if chunk.choices and chunk.choices[0].delta.content:
                    yield chunk.choices[0].delta.content
        except openai.OpenAIError as exc:
            raise translated(exc, model=self._model) from exc

    async def aclose(self) -> None:
        await self._client.close()

    def _request(self, messages: Sequence[ChatMessage], params: ChatParams) -> dict[str, Any]:
        request: dict[str, Any] = {
            "model": self._model,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
        }
        optional = {
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_tokens": params.max_tokens,
            "stop": list(params.stop) or None,
            "user": params.user,
        }
        request.update({key: value for key, value in optional.items() if value is not None})
        if params.options:
            # extra_body: sent as given, whichever of them this openai version knows by name
            request["extra_body"] = dict(params.options)
        return request


class AzureOpenAIChatModel(OpenAIChatModel):
    """An Azure OpenAI deployment (endpoint, deployment, api-version set on the client)."""

    def __init__(self, client: openai.AsyncAzureOpenAI, *, deployment: str) -> None:
        super().__init__(client, model=deployment)


def translated(exc: openai.OpenAIError, *, model: str) -> ChatModelError:
    """The domain error for what the openai client raised (after its own retries)."""
    if isinstance(exc, openai.APITimeoutError):
        return ChatModelTimeoutError(f"chat model {model} did not answer in time")
    if isinstance(exc, openai.RateLimitError):
        return ChatModelRateLimitError(
            f"chat model {model} is rate limiting requests",
            retry_after=retry_after_s(exc.response.headers),
        )
    if isinstance(exc, openai.APIStatusError):
        return ChatModelError(
            f"chat model {model} failed with HTTP {exc.status_code}: {exc.message}"
        )
    if isinstance(exc, openai.APIConnectionError):
        return ChatModelError(f"chat model {model} could not be reached: {exc}")
    return ChatModelError(f"chat model {model} failed: {exc}")


# --- the extractive answerer -------------------------------------------------------------

_MAX_SENTENCE_CHARS = 600


@dataclass(frozen=True)
class _Sentence:
    doc: int
    text: str
    vector: Vectors | None = None
    """Stored at ingestion (retrieval/sentences.py); None: embed it now."""
    position: int = 0
    """Reading order over all the documents (document rank, then place in the chunk)."""


class _VectorCache:
    """A bounded LRU of sentence embeddings; chunks come back often, their sentences too."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[str, Vectors] = OrderedDict()
        self._lock = threading.Lock()

    def embed(self, embedder: Embedder, texts: Sequence[str]) -> Vectors:
        with self._lock:
            found = {t: self._items[t] for t in texts if t in self._items}
            for text in found:
                self._items.move_to_end(text)
        missing = [t for t in dict.fromkeys(texts) if t not in found]
        if missing:
            found.update(zip(missing, embedder.embed(missing), strict=True))
            with self._lock:
                self._items.update((t, found[t]) for t in missing)
                while len(self._items) > self._size:
                    self._items.popitem(last=False)
        return np.stack([found[t] for t in texts])


class ExtractiveAnswerer:
    """The embedded default: answers with the retrieved sentences that answer the question.

    Not a ChatModel (it cannot chat without documents); AnswerService uses it when no chat
    model is configured. Candidate sentences are scored by retrieval/evidence.py (cosine with
    the question, the question's IDF-weighted terms, the chunk's rank, the kind of answer
    asked for); the best comes first, then up to ``max_sentences - 1`` more -- scoring at
    least ``SENTENCE_FLOOR[strictness]`` and ``relative_score`` times the best cosine,
    without near-repeats -- in reading order, each cited ``[docN]`` with N its document's
    position in ``documents``. When the evidence does not answer the question
    (`evidence.Answerability`) the answer is empty, which an in_scope request turns into the
    refusal; out of scope it quotes the closest sentences after `OUTSIDE_SUPPORT_NOTE`.

    Sentence vectors normally come stored with the chunks (retrieval/sentences.py). Sentences
    without one are embedded now, at most ``max_scored`` of them: those sharing the most query
    terms (BM25 tokens, IDF over the candidates, normalised by sentence length).
    """

    def __init__(
        self,
        embedder: Embedder,
        *,
        max_sentences: int = 3,
        max_candidates: int = 64,
        max_scored: int = 12,
        relative_score: float = 0.5,
        cache_size: int = 20_000,
    ) -> None:
        self._embedder = embedder
        self._max_sentences = max_sentences
        self._max_candidates = max_candidates
        self._max_scored = max_scored
        self._terms = Bm25Encoder()
        self._relative_score = relative_score
        self._cache = _VectorCache(cache_size)

    @property
    def name(self) -> str:
        return EXTRACTIVE_MODEL_NAME

    async def answer(
        self,
        question: str,
        documents: Sequence[ScoredChunk],
        *,
        question_vector: Vectors | None = None,
        strictness: int = 3,
        in_scope: bool = True,
    ) -> ChatResult:
        """An answer from documents labelled [doc1].. in that order ("" if no sentence fits).

        `question_vector`, when given, is the question's embedding (saves embedding it again).
        """
        return await asyncio.to_thread(
            self.compose,
            question,
            documents,
            question_vector,
            strictness=strictness,
            in_scope=in_scope,
        )

    def compose(
        self,
        question: str,
        documents: Sequence[ScoredChunk],
        question_vector: Vectors | None = None,
        *,
        strictness: int = 3,
        in_scope: bool = True,
    ) -> ChatResult:
        """The blocking body of `answer`."""
        found = candidate_sentences(
            documents, limit=self._max_candidates, dimension=self._embedder.dimension
        )
        stored = [c for c in found if c.vector is not None]
        candidates = stored + self._lexical_best(question, [c for c in found if c.vector is None])
        if not candidates:
            return ChatResult(content="", model=self.name)
        query = self._embedder.embed_query(question) if question_vector is None else question_vector
        scored = self._scored(question, candidates, query)
        verdict = scored.verdict(question, [d.chunk.content for d in documents])
        if verdict.answerable(strictness):
            quoted = _quoted(self._pick(scored, SENTENCE_FLOOR[strictness]))
            return ChatResult(content=quoted, model=self.name)
        if in_scope:
            return ChatResult(content="", model=self.name)
        # out of scope: the closest sentences whatever their cosine, said to be no clear answer
        quoted = _quoted(self._pick(scored, -1.0))
        return ChatResult(content=f"{OUTSIDE_SUPPORT_NOTE} {quoted}", model=self.name)

    def _scored(self, question: str, candidates: list[_Sentence], query: Vectors) -> _Scored:
        """Every candidate's cosine, combined score and kind check (retrieval/evidence.py)."""
        cosines = self._cosines(candidates, query)
        terms = [set(self._terms.encode_query(c.text).indices) for c in candidates]
        weights = term_weights(set(self._terms.encode_query(question).indices), terms)
        kind = question_kind(question)
        fits = [fits_kind(c.text, kind, question) for c in candidates]
        ranks = [c.doc for c in candidates]
        coverage = term_coverage(weights, terms)
        scores = sentence_scores(cosines, coverage, fits, ranks)
        return _Scored(candidates, cosines, coverage, scores, fits)

    def _cosines(self, candidates: Sequence[_Sentence], query: Vectors) -> np.ndarray:
        """Cosine with the question: stored vectors as they are, the rest embedded now."""
        rows = [c.vector for c in candidates if c.vector is not None]
        unscored = [c.text for c in candidates if c.vector is None]
        if unscored:
            rows.extend(self._cache.embed(self._embedder, unscored))
        return np.asarray(np.stack(rows) @ query, dtype=np.float32).reshape(len(candidates))

    def _lexical_best(self, question: str, candidates: list[_Sentence]) -> list[_Sentence]:
        """The `max_scored` candidates sharing the most query terms, in document order."""
        if len(candidates) <= self._max_scored:
            return candidates
        query = set(self._terms.encode_query(question).indices)
        terms = [set(self._terms.encode_query(c.text).indices) & query for c in candidates]
        overlap = lexical_overlap(terms, [len(c.text.split()) for c in candidates])
        best = sorted(range(len(candidates)), key=lambda i: (-overlap[i], i))
        return [candidates[i] for i in sorted(best[: self._max_scored])]

    def _pick(self, scored: _Scored, min_cosine: float) -> list[_Sentence]:
        """The best sentence, then the next best above the floors, in reading order."""
        order = scored.order
        best = scored.candidates[order[0]]
        floor = max(min_cosine, self._relative_score * float(scored.cosines[order[0]]))
        rest: list[_Sentence] = []
        for index in order[1:]:
            sentence = scored.candidates[index]
            if len(rest) + 1 == self._max_sentences:
                break
            if scored.cosines[index] < floor:
                continue
            if not any(_near_same(sentence.text, p.text) for p in [best, *rest]):
                rest.append(sentence)
        return [best, *sorted(rest, key=lambda s: s.position)]


@dataclass(frozen=True)
class _Scored:
    """Candidates with their cosines, combined scores and kind checks (aligned)."""

    candidates: list[_Sentence]
    cosines: np.ndarray
    coverage: np.ndarray
    scores: np.ndarray
    fits: list[bool]

    @property
    def order(self) -> list[int]:
        return [int(i) for i in np.argsort(-self.scores, kind="stable")]

    def verdict(self, question: str, passages: Sequence[str]) -> Answerability:
        """Answerability of the question by the best sentence and all the passages."""
        first, *others = self.order
        margin = float(self.scores[first] - self.scores[others[0]]) if others else 1.0
        return answerability(
            question,
            passages=passages,
            best=self.candidates[first].text,
            cosine=float(self.cosines[first]),
            coverage=float(self.coverage[first]),
            margin=margin,
            kind_fits=self.fits[first],
        )


def lexical_overlap(shared: Sequence[set[int]], lengths: Sequence[int]) -> list[float]:
    """Per sentence: IDF (over these sentences) of the query terms it shares, / sqrt(words)."""
    frequency = Counter(term for terms in shared for term in terms)
    n = len(shared)
    return [
        sum(math.log(1 + n / frequency[t]) for t in terms) / math.sqrt(max(length, 1))
        for terms, length in zip(shared, lengths, strict=True)
    ]


def candidate_sentences(
    documents: Sequence[ScoredChunk], *, limit: int, dimension: int = 0
) -> list[_Sentence]:
    """Sentences of the documents worth quoting, in document order, unique, at most `limit`.

    Each carries its stored vector when the chunk has one for it (`dimension` > 0).
    """
    seen: set[str] = set()
    out: list[_Sentence] = []
    for number, scored in enumerate(documents, start=1):
        units = split_sentences(scored.chunk.content)
        for unit, vector in zip(units, _stored_vectors(scored, units, dimension), strict=True):
            text = unit.text[:_MAX_SENTENCE_CHARS]
            key = text.lower()
            if unit.words < MIN_WORDS or key in seen:
                continue
            seen.add(key)
            out.append(_Sentence(doc=number, text=text, vector=vector, position=len(out)))
            if len(out) == limit:
                return out
    return out


def _stored_vectors(
    scored: ScoredChunk, units: Sequence[Sentence], dimension: int
) -> list[Vectors | None]:
    """Per unit, its stored vector; None where there is none (then it is embedded now).

    Rows stored before the current segmenter serve the units whose span did not change.
    """
    data = scored.sentence_vectors
    if not dimension or not data:
        return [None] * len(units)
    rows = list(decode_sentence_vectors(data, dimension))
    if is_legacy(data):
        by_span = dict(zip(legacy_sentence_spans(scored.chunk.content), rows, strict=False))
        found = [by_span.get((u.start, u.end)) for u in units]
    else:
        found = [rows[k] if k < len(rows) else None for k in range(len(units))]
    return [row if row is not None and row.any() else None for row in found]


def _quoted(sentences: Sequence[_Sentence]) -> str:
    return " ".join(_cited(s.text, s.doc) for s in sentences)


def _cited(sentence: str, doc: int) -> str:
    """The sentence with its marker before the final punctuation: "... 25 days [doc1]."."""
    if sentence[-1] in ".!?":
        return f"{sentence[:-1].rstrip()} [doc{doc}]{sentence[-1]}"
    return f"{sentence} [doc{doc}]"


def _near_same(a: str, b: str) -> bool:
    words_a, words_b = set(a.lower().split()), set(b.lower().split())
    return len(words_a & words_b) >= 0.8 * min(len(words_a), len(words_b))


# --- factory -----------------------------------------------------------------------------


def make_chat_model(
    settings: ChatSettings, *, embedder: Embedder
) -> ChatModel | ExtractiveAnswerer:
    """The configured chat model, or the extractive answerer when provider is none."""
    if settings.provider == "none":
        return ExtractiveAnswerer(embedder)
    if settings.provider == "azure":
        return AzureOpenAIChatModel(_azure_client(settings), deployment=_deployment(settings))
    key = settings.api_key.get_secret_value() if settings.api_key else None
    if settings.provider == "openai" and not key and not settings.base_url:
        raise ConfigurationError("chat.provider=openai needs ONDATA_CHAT__API_KEY")
    client = openai.AsyncOpenAI(
        api_key=key or "unused",  # local servers ignore it; the client insists on one
        base_url=settings.base_url,
        timeout=settings.timeout_s,
        max_retries=settings.max_retries,
    )
    return OpenAIChatModel(client, model=settings.model)


def _azure_client(settings: ChatSettings) -> openai.AsyncAzureOpenAI:
    if settings.api_key is None or not settings.azure_endpoint:
        raise ConfigurationError(
            "chat.provider=azure needs ONDATA_CHAT__AZURE_ENDPOINT and ONDATA_CHAT__API_KEY"
        )
    return openai.AsyncAzureOpenAI(
        azure_endpoint=settings.azure_endpoint,
        api_version=settings.api_version,
        api_key=settings.api_key.get_secret_value(),
        timeout=settings.timeout_s,
        max_retries=settings.max_retries,
    )


def _deployment(settings: ChatSettings) -> str:
    return settings.azure_deployment or settings.model
