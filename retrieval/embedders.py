"""Embedders turn text into dense vectors: ONNX (default), sentence-transformers, OpenAI-compatible.

`make_embedder(settings.embedding)` builds one. The two local backends run the bundled
all-MiniLM-L6-v2 and produce interchangeable vectors (cosine > 0.99999), so they share a name.
`load_word_piece_tokenizer()` / `word_piece_count()` count tokens the way that model sees them,
for chunkers that must stay under its 256-token window.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from core.errors import (
    ConfigurationError,
    EmbeddingError,
    EmbeddingModelError,
    EmbeddingRateLimitError,
)
from core.settings import EmbeddingSettings
from retrieval.onnx_export import (
    BUNDLED_ALIASES,
    BUNDLED_MODEL,
    MANIFEST_FILE,
    ensure_onnx_model,
    mean_pool,
    model_file,
    resolve_model_dir,
)

if TYPE_CHECKING:
    import onnxruntime
    import openai
    import tokenizers
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)

Vectors = npt.NDArray[np.float32]

ONNX_RUN_ROWS = 8
"""Rows per ONNX Runtime run. On this 2-core box 1,040 SciFact chunks embed at 35.5 chunks/s
in runs of 64 rows (padding <= 25%) and at 40.9-41.6 in runs of 4-8 rows (padding <= 5%): the
activations of a small run stay in cache. Callers still hand over texts in `batch_size` lots."""
ONNX_RUN_PADDING = 0.05

MAX_SEQ_LENGTH = 256
"""The bundled model's window in word pieces, [CLS] and [SEP] included."""


class Embedder(Protocol):
    """Maps texts to L2-normalised float32 vectors of a fixed dimension."""

    @property
    def name(self) -> str: ...

    @property
    def dimension(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> Vectors:
        """Embed documents (chunks); one row per text, in order."""
        ...

    def embed_query(self, text: str) -> Vectors:
        """Embed one search query; a 1-D vector."""
        ...


@runtime_checkable
class SpanEmbedder(Protocol):
    """An embedder that can also pool its token states over character spans of each text.

    Local models can; a remote `/v1/embeddings` endpoint cannot (it returns pooled vectors).
    """

    def embed_spans(
        self, texts: Sequence[str], spans: Sequence[Sequence[tuple[int, int]]]
    ) -> tuple[Vectors, list[Vectors]]:
        """Text vectors, and per text one unit vector per (start, end) character span:
        the mean of the token states inside the span, zeros where the model saw none of it
        (truncated away). Text vectors equal what `embed` returns."""
        ...


def make_embedder(settings: EmbeddingSettings) -> Embedder:
    """Build the configured embedder (loads the model or the HTTP client once)."""
    if settings.precision != "fp32" and settings.backend != "onnx":
        raise ConfigurationError(
            f"embedding.precision={settings.precision} needs embedding.backend=onnx "
            f"(not {settings.backend})",
            param="embedding.precision",
        )
    if settings.backend == "openai":
        return OpenAIEmbedder.from_settings(settings)
    common: dict[str, Any] = {
        "batch_size": settings.batch_size,
        "max_seq_length": settings.max_seq_length,
        "threads": settings.threads,
    }
    embedder: Embedder
    if settings.backend == "sentence-transformers":
        embedder = SentenceTransformerEmbedder.load(settings.model, **common)
    else:
        embedder = OnnxEmbedder.load(settings.model, precision=settings.precision, **common)
    if settings.dimensions not in (None, embedder.dimension):
        raise ConfigurationError(
            f"embedding.dimensions={settings.dimensions} but {settings.model} produces "
            f"{embedder.dimension}-d vectors; unset ONDATA_EMBEDDING__DIMENSIONS",
            param="embedding.dimensions",
        )
    return embedder


# --- shared helpers ----------------------------------------------------------------------------


def embed_unique(
    texts: Sequence[str], encode: Callable[[list[str]], Vectors], dimension: Callable[[], int]
) -> Vectors:
    """Encode each distinct text once and scatter the rows back into input order."""
    if not texts:
        return np.empty((0, dimension()), dtype=np.float32)
    unique = list(dict.fromkeys(texts))
    vectors = encode(unique)
    if len(unique) == len(texts):
        return vectors
    row = {text: i for i, text in enumerate(unique)}
    return vectors[[row[text] for text in texts]]


def l2_normalize(vectors: npt.NDArray[Any]) -> Vectors:
    """Rows scaled to unit length (zero rows stay zero), as float32."""
    array = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    return np.asarray(array / np.clip(norms, 1e-12, None), dtype=np.float32)


def available_cores() -> int:
    """CPU cores this process may run on (honours affinity / cpusets)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def model_max_seq_length(model_dir: Path, requested: int) -> int:
    """The requested window, capped by the model's position embeddings."""
    config = json.loads((model_dir / "config.json").read_text())
    return min(requested, int(config.get("max_position_embeddings", requested)))


# --- word pieces -------------------------------------------------------------------------------


class WordPieceTokenizer:
    """The local model's fast tokenizer: counts word pieces and builds truncated model inputs."""

    def __init__(self, counter: tokenizers.Tokenizer, encoder: tokenizers.Tokenizer) -> None:
        self._counter = counter
        self._encoder = encoder
        truncation = encoder.truncation or {}
        self._max_seq_length = int(truncation.get("max_length", MAX_SEQ_LENGTH))
        self._special_tokens = len(encoder.encode("").ids)

    @classmethod
    def from_dir(
        cls, model_dir: Path, *, max_seq_length: int = MAX_SEQ_LENGTH
    ) -> WordPieceTokenizer:
        from tokenizers import Tokenizer

        path = str(model_dir / "tokenizer.json")
        counter, encoder = Tokenizer.from_file(path), Tokenizer.from_file(path)
        counter.no_truncation()
        counter.no_padding()
        encoder.enable_truncation(max_length=model_max_seq_length(model_dir, max_seq_length))
        # Padding is per batch, done after sorting by length (OnnxEmbedder._run_batch).
        encoder.no_padding()
        return cls(counter, encoder)

    @property
    def max_seq_length(self) -> int:
        """The model window in word pieces, special tokens included (256 for the bundled model)."""
        return self._max_seq_length

    @property
    def content_limit(self) -> int:
        """Word pieces of text that fit in one window: max_seq_length minus [CLS]/[SEP]."""
        return self._max_seq_length - self._special_tokens

    def count(self, texts: Sequence[str]) -> list[int]:
        """Word pieces per text, special tokens excluded and never truncated."""
        encodings = self._counter.encode_batch(list(texts), add_special_tokens=False)
        return [len(encoding.ids) for encoding in encodings]

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Model input ids per text: special tokens added, truncated to max_seq_length."""
        return [encoding.ids for encoding in self._encoder.encode_batch(list(texts))]

    def encode_with_offsets(
        self, texts: Sequence[str]
    ) -> list[tuple[list[int], list[tuple[int, int]]]]:
        """As `encode`, with each token's (start, end) character offsets ((0, 0): special)."""
        return [(e.ids, e.offsets) for e in self._encoder.encode_batch(list(texts))]


@functools.cache
def load_word_piece_tokenizer(
    model: str = BUNDLED_MODEL, max_seq_length: int = MAX_SEQ_LENGTH
) -> WordPieceTokenizer:
    """The (cached) tokenizer of a local embedding model; no model weights are loaded."""
    return WordPieceTokenizer.from_dir(resolve_model_dir(model), max_seq_length=max_seq_length)


def word_piece_count(texts: Sequence[str], *, model: str = BUNDLED_MODEL) -> list[int]:
    """Word pieces per text as the bundled model counts them (no special tokens, no truncation)."""
    return load_word_piece_tokenizer(model).count(texts)


# --- ONNX Runtime (default) --------------------------------------------------------------------


class _TextEmbedder:
    """`embed` / `embed_query` for adapters that encode a list of distinct texts (`_encode`)."""

    @property
    def dimension(self) -> int:
        raise NotImplementedError

    def embed(self, texts: Sequence[str]) -> Vectors:
        return embed_unique(texts, self._encode, lambda: self.dimension)

    def embed_query(self, text: str) -> Vectors:
        return self.embed([text]).reshape(-1)

    def _encode(self, texts: list[str]) -> Vectors:
        raise NotImplementedError


class _LocalEmbedder(_TextEmbedder):
    """A model in this process: its name and dimension are known once loaded."""

    _name: str
    _dimension: int

    @property
    def name(self) -> str:
        return self._name

    @property
    def dimension(self) -> int:
        return self._dimension


class OnnxEmbedder(_LocalEmbedder):
    """The bundled sentence-transformers model exported to ONNX, run on ONNX Runtime."""

    def __init__(
        self,
        session: onnxruntime.InferenceSession,
        tokenizer: WordPieceTokenizer,
        *,
        name: str,
        dimension: int,
        batch_size: int = 64,
    ) -> None:
        self._session = session
        self._tokenizer = tokenizer
        self._name = name
        self._dimension = dimension
        self._batch_size = batch_size
        self._inputs = {model_input.name for model_input in session.get_inputs()}

    @classmethod
    def load(
        cls,
        model: str = BUNDLED_MODEL,
        *,
        batch_size: int = 64,
        max_seq_length: int = MAX_SEQ_LENGTH,
        threads: int | None = None,
        export_dir: Path | None = None,
        precision: str = "fp32",
    ) -> OnnxEmbedder:
        """Open the exported model (exporting it first if the install step did not); precision
        int8 opens its quantised copy, under a name of its own (`<model>-int8`)."""
        import onnxruntime as ort

        directory = ensure_onnx_model(
            resolve_model_dir(model), export_dir=export_dir, precision=precision
        )
        manifest = json.loads((directory / MANIFEST_FILE).read_text())
        path = directory / model_file(precision)
        try:
            session = ort.InferenceSession(
                str(path),
                sess_options=_session_options(threads),
                providers=["CPUExecutionProvider"],
            )
        except Exception as exc:  # onnxruntime raises its own untyped Fail/InvalidGraph errors
            raise EmbeddingModelError(f"cannot load {path}: {exc}") from exc
        tokenizer = WordPieceTokenizer.from_dir(directory, max_seq_length=max_seq_length)
        name = _local_name(model) + ("-int8" if precision == "int8" else "")
        return cls(
            session,
            tokenizer,
            name=name,
            dimension=int(manifest["hidden_size"]),
            batch_size=batch_size,
        )

    @property
    def tokenizer(self) -> WordPieceTokenizer:
        return self._tokenizer

    def _encode(self, texts: list[str]) -> Vectors:
        ids = self._tokenizer.encode(texts)
        vectors = np.empty((len(texts), self._dimension), dtype=np.float32)
        for rows in self._runs([len(row) for row in ids]):
            vectors[rows] = self._run_batch([ids[i] for i in rows])
        return vectors

    def embed_spans(
        self, texts: Sequence[str], spans: Sequence[Sequence[tuple[int, int]]]
    ) -> tuple[Vectors, list[Vectors]]:
        encoded = self._tokenizer.encode_with_offsets(texts)
        vectors = np.empty((len(texts), self._dimension), dtype=np.float32)
        pooled: list[Vectors] = [np.empty((0, self._dimension), dtype=np.float32)] * len(texts)
        for rows in self._runs([len(ids) for ids, _ in encoded]):
            feed, hidden = self._forward([encoded[i][0] for i in rows])
            vectors[rows] = mean_pool(hidden, feed["attention_mask"])
            for j, i in enumerate(rows):
                pooled[i] = span_pool(hidden[j], encoded[i][1], spans[i])
        return vectors, pooled

    def _runs(self, lengths: list[int]) -> list[list[int]]:
        """Rows per ONNX Runtime run: few, of near-equal length (see ONNX_RUN_ROWS)."""
        rows = min(self._batch_size, ONNX_RUN_ROWS)
        return length_batches(lengths, rows, max_padding=ONNX_RUN_PADDING)

    def _run_batch(self, batch: list[list[int]]) -> Vectors:
        feed, hidden = self._forward(batch)
        return mean_pool(hidden, feed["attention_mask"])

    def _forward(
        self, batch: list[list[int]]
    ) -> tuple[dict[str, npt.NDArray[np.int64]], npt.NDArray[np.float32]]:
        feed = _pad(batch)
        try:
            hidden = self._session.run(None, {k: feed[k] for k in feed.keys() & self._inputs})[0]
        except Exception as exc:  # onnxruntime's errors have no common Python base class
            raise EmbeddingError(f"ONNX Runtime failed on a batch of {len(batch)}: {exc}") from exc
        return feed, hidden


def span_pool(
    hidden: npt.NDArray[np.float32],
    offsets: Sequence[tuple[int, int]],
    spans: Sequence[tuple[int, int]],
) -> Vectors:
    """One unit vector per character span: mean of the token states inside it (else zeros).

    `hidden` is one padded row of token states; `offsets` covers its real tokens, specials as
    (0, 0). A token belongs to a span when its characters lie within it.
    """
    starts = np.array([s for s, _ in offsets])
    ends = np.array([e for _, e in offsets])
    real = ends > starts
    out = np.zeros((len(spans), hidden.shape[-1]), dtype=np.float32)
    for k, (start, end) in enumerate(spans):
        inside = np.flatnonzero(real & (starts >= start) & (ends <= end))
        if inside.size:
            out[k] = hidden[inside].mean(axis=0)
    return l2_normalize(out)


def length_batches(
    lengths: Sequence[int], batch_size: int, *, max_padding: float = 0.25
) -> list[list[int]]:
    """Row indexes grouped into batches of similar length, shortest first.

    Every row of a batch is padded to its longest, so a batch closes when the next row would
    make padding more than `max_padding` of the real tokens (or at `batch_size` rows): a few
    long texts among short ones (sentences, chunks) no longer multiply the work.
    """
    batches: list[list[int]] = []
    batch: list[int] = []
    tokens = 0
    for i in sorted(range(len(lengths)), key=lengths.__getitem__):
        width = lengths[i]
        padded = (len(batch) + 1) * width
        if batch and (len(batch) == batch_size or padded > (tokens + width) * (1 + max_padding)):
            batches.append(batch)
            batch, tokens = [], 0
        batch.append(i)
        tokens += width
    return [*batches, batch] if batch else batches


def _pad(batch: list[list[int]]) -> dict[str, npt.NDArray[np.int64]]:
    width = max(len(row) for row in batch)
    input_ids = np.zeros((len(batch), width), dtype=np.int64)
    attention_mask = np.zeros((len(batch), width), dtype=np.int64)
    for i, row in enumerate(batch):
        input_ids[i, : len(row)] = row
        attention_mask[i, : len(row)] = 1
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "token_type_ids": np.zeros_like(input_ids),
    }


def _session_options(threads: int | None) -> onnxruntime.SessionOptions:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or available_cores()
    # One graph node at a time: the ops are big matmuls that already use every intra-op thread.
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Idle worker threads must not spin: the box is shared with parsing and the API.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return options


def _local_name(model: str) -> str:
    """Both local backends compute the same vectors, so they share a name."""
    return BUNDLED_MODEL if model in BUNDLED_ALIASES else model


# --- sentence-transformers (fallback) ----------------------------------------------------------


class SentenceTransformerEmbedder(_LocalEmbedder):
    """The bundled model on sentence-transformers + torch (slower; a fallback and a reference)."""

    def __init__(self, model: SentenceTransformer, *, name: str, batch_size: int = 64) -> None:
        self._model = model
        self._name = name
        self._batch_size = batch_size
        self._dimension = int(model.get_embedding_dimension() or 0)

    @classmethod
    def load(
        cls,
        model: str = BUNDLED_MODEL,
        *,
        batch_size: int = 64,
        max_seq_length: int = MAX_SEQ_LENGTH,
        threads: int | None = None,
    ) -> SentenceTransformerEmbedder:
        """Load from the local model directory (never a hub name)."""
        from sentence_transformers import SentenceTransformer

        model_dir = resolve_model_dir(model)
        if threads:
            import torch

            torch.set_num_threads(threads)
        loaded = SentenceTransformer(str(model_dir), device="cpu", local_files_only=True)
        loaded.max_seq_length = model_max_seq_length(model_dir, max_seq_length)
        return cls(loaded, name=_local_name(model), batch_size=batch_size)

    def _encode(self, texts: list[str]) -> Vectors:
        vectors = self._model.encode(
            texts,
            batch_size=self._batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)


# --- OpenAI-compatible /v1/embeddings ----------------------------------------------------------


class OpenAIEmbedder(_TextEmbedder):
    """Any OpenAI-compatible /v1/embeddings: OpenAI, Azure OpenAI, TEI, vLLM, Ollama."""

    def __init__(
        self,
        client: openai.OpenAI,
        *,
        model: str,
        dimensions: int | None = None,
        batch_size: int = 64,
    ) -> None:
        self._client = client
        self._model = model
        self._dimensions = dimensions
        self._batch_size = batch_size
        self._learnt_dimension: int | None = dimensions

    @classmethod
    def from_settings(cls, settings: EmbeddingSettings) -> OpenAIEmbedder:
        """A sync client for settings.base_url (default api.openai.com) with its retry policy."""
        import openai

        api_key = settings.api_key.get_secret_value() if settings.api_key else "unused"
        client = openai.OpenAI(
            api_key=api_key,
            base_url=settings.base_url or "https://api.openai.com/v1",
            timeout=settings.timeout_s,
            max_retries=settings.max_retries,
        )
        return cls(
            client,
            model=settings.model,
            dimensions=settings.dimensions,
            batch_size=settings.batch_size,
        )

    @property
    def name(self) -> str:
        suffix = f"@{self._dimensions}" if self._dimensions else ""
        return f"openai:{self._model}{suffix}"

    @property
    def dimension(self) -> int:
        """settings.dimensions, or learnt from the first response (probing once if needed)."""
        if self._learnt_dimension is None:
            self._request(["dimension probe"])
        assert self._learnt_dimension is not None
        return self._learnt_dimension

    def close(self) -> None:
        self._client.close()

    def _encode(self, texts: list[str]) -> Vectors:
        batches = [
            self._request(texts[start : start + self._batch_size])
            for start in range(0, len(texts), self._batch_size)
        ]
        return np.concatenate(batches)

    def _request(self, batch: list[str]) -> Vectors:
        import openai

        extra: dict[str, Any] = {"dimensions": self._dimensions} if self._dimensions else {}
        try:
            response = self._client.embeddings.create(input=batch, model=self._model, **extra)
        except openai.OpenAIError as exc:
            raise _translate_openai_error(exc, str(self._client.base_url)) from exc
        except ValueError as exc:  # the client raises it for a response without data
            raise EmbeddingError(f"embedding backend sent an unusable response: {exc}") from exc
        rows = sorted(response.data, key=lambda item: item.index)
        return self._check(batch, [row.embedding for row in rows])

    def _check(self, batch: list[str], rows: list[Any]) -> Vectors:
        if len(rows) != len(batch):
            raise EmbeddingError(
                f"embedding backend returned {len(rows)} vectors for {len(batch)} texts"
            )
        vectors = np.asarray(rows, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] == 0:
            raise EmbeddingError(f"embedding backend returned vectors of shape {vectors.shape}")
        if self._learnt_dimension is None:
            self._learnt_dimension = int(vectors.shape[1])
        elif vectors.shape[1] != self._learnt_dimension:
            raise EmbeddingError(
                f"embedding backend returned {vectors.shape[1]}-d vectors, "
                f"expected {self._learnt_dimension}"
            )
        return l2_normalize(vectors)


def _translate_openai_error(exc: Exception, base_url: str) -> EmbeddingError:
    import openai

    if isinstance(exc, openai.APITimeoutError):
        return EmbeddingError(f"embedding backend at {base_url} did not answer in time")
    if isinstance(exc, openai.APIConnectionError):
        return EmbeddingError(f"cannot reach the embedding backend at {base_url}: {exc}")
    if isinstance(exc, openai.APIStatusError):
        upstream = _upstream_message(exc)
        message = f"embedding backend at {base_url} answered HTTP {exc.status_code}: {upstream}"
        if exc.status_code == 429:
            return EmbeddingRateLimitError(message, retry_after=_retry_after(exc))
        return EmbeddingError(message)
    return EmbeddingError(f"embedding backend at {base_url} failed: {exc}")


def _upstream_message(exc: Any) -> str:
    body = exc.body
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])
    return str(exc.message)


def _retry_after(exc: Any) -> float | None:
    try:
        return float(exc.response.headers["retry-after"])
    except (KeyError, ValueError):
        return None
