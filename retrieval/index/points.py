"""Helpers both adapters share: point ids and payloads, hits back to ScoredChunks, checks."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import numpy.typing as npt

from core.errors import IndexBackendError, InvalidRequestError, OndataError
from core.models import Chunk, ScoredChunk
from retrieval.index.filters import bool_terms
from retrieval.index.types import (
    BOOL_TERMS,
    CHUNK_NAMESPACE,
    DENSE,
    SENTENCE_VECTORS,
    IndexedChunk,
    IndexQuery,
)

SCROLL_PAGE = 1024
DELETE_PAGE = 256
"""Document ids per delete-by-filter operation in `delete_documents`."""
EMBED_PREFIX = "_embed_prefix"
"""Payload key of what `embed_text` holds before `content` (the heading line)."""
_INTERNAL = (BOOL_TERMS, SENTENCE_VECTORS)

# --- shared, pure helpers -------------------------------------------------------------------


def point_id(chunk_id: str) -> str:
    """The Qdrant point id of a chunk: a UUID derived from chunk_id, stable across processes."""
    return str(uuid.uuid5(CHUNK_NAMESPACE, chunk_id))


def chunk_payload(item: IndexedChunk) -> dict[str, Any]:
    """The payload stored with a chunk's point.

    `embed_text` is the chunk's heading line followed by its `content`; only the heading
    (`EMBED_PREFIX`) is stored, which saves a second copy of the text on every point
    (~0.7 KB per chunk, ~20% of the payload). `payload_fields` puts it back together.
    """
    payload = item.chunk.model_dump(mode="json")
    embed_text, content = payload["embed_text"], payload["content"]
    if embed_text.endswith(content):
        del payload["embed_text"]
        payload[EMBED_PREFIX] = embed_text[: len(embed_text) - len(content)]
    payload[BOOL_TERMS] = bool_terms(item.chunk.metadata)
    if item.sentence_vectors:
        payload[SENTENCE_VECTORS] = item.sentence_vectors
    return payload


def payload_fields(payload: dict[str, Any]) -> dict[str, Any]:
    """A stored payload with `embed_text` rebuilt from its prefix and `content` when it holds
    both (payloads written before the prefix form hold `embed_text` itself)."""
    if EMBED_PREFIX not in payload:
        return payload
    fields = dict(payload)
    prefix = fields.pop(EMBED_PREFIX)
    if "content" in fields:
        fields["embed_text"] = f"{prefix}{fields['content']}"
    return fields


def stored_keys(keys: Sequence[str]) -> list[str]:
    """The stored payload keys to fetch for the named chunk fields (embed_text is two)."""
    if "embed_text" not in keys:
        return list(keys)
    return list(dict.fromkeys([*keys, EMBED_PREFIX, "content"]))


def scored_chunk(
    payload: dict[str, Any] | None,
    score: float,
    *,
    vector: Any = None,
    request: IndexQuery | None = None,
) -> ScoredChunk:
    """Rebuild a ScoredChunk from a hit's payload (and its dense vector, when fetched)."""
    if payload is None:
        raise IndexBackendError("index returned a hit without payload")
    fields = {k: v for k, v in payload_fields(payload).items() if k not in _INTERNAL}
    return ScoredChunk(
        chunk=Chunk.model_validate(fields),
        score=float(score),
        dense_score=_dense_score(vector, request),
        sentence_vectors=payload.get(SENTENCE_VECTORS),
    )


def _dense_score(vector: Any, request: IndexQuery | None) -> float | None:
    """Cosine of a hit's stored dense vector with the query's (None when not fetched)."""
    if request is None or not request.with_dense_score or request.dense is None:
        return None
    stored = vector.get(DENSE) if isinstance(vector, dict) else None
    if stored is None:
        return None
    a = np.asarray(stored, dtype=np.float32)
    b = np.asarray(request.dense, dtype=np.float32).ravel()
    return float(a @ b / max(float(np.linalg.norm(a) * np.linalg.norm(b)), 1e-12))


def check_request(request: IndexQuery) -> None:
    if request.limit < 1:
        raise InvalidRequestError("limit must be at least 1", param="limit")
    if request.mode in ("vector", "hybrid") and request.dense is None:
        raise InvalidRequestError(f"{request.mode} search needs a dense query vector")
    if request.mode in ("keyword", "hybrid") and request.sparse is None:
        raise InvalidRequestError(f"{request.mode} search needs a sparse query vector")


def check_dimensions(items: Sequence[IndexedChunk], dimension: int) -> None:
    for item in items:
        if item.dense.shape != (dimension,):
            raise InvalidRequestError(
                f"chunk {item.chunk.chunk_id!r} has a dense vector of shape {item.dense.shape}; "
                f"this index holds {dimension}-d vectors"
            )


def dense_list(vector: npt.NDArray[np.float32] | None) -> list[float]:
    assert vector is not None  # checked by check_request
    return [float(x) for x in np.asarray(vector, dtype=np.float32).ravel()]


@contextmanager
def backend_errors(backend: str, action: str) -> Iterator[None]:
    """Translate whatever the engine raises into IndexBackendError (ours pass through)."""
    try:
        yield
    except OndataError:
        raise
    except Exception as exc:  # qdrant-edge raises bare Exception; the client many kinds
        raise IndexBackendError(f"{backend} failed to {action}: {exc}") from exc
