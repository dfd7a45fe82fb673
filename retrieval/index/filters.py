"""Filter rules both adapters share: where a key lives in the payload, boolean metadata terms."""

from __future__ import annotations

from typing import Any

from core.models import Chunk

_CHUNK_FIELDS = frozenset(Chunk.model_fields) - {"metadata"}


def payload_key(key: str) -> str:
    """Where a filter key lives in the payload (Chunk fields top-level, the rest in metadata)."""
    if key in _CHUNK_FIELDS or key.startswith("metadata."):
        return key
    return f"metadata.{key}"


def bool_terms(metadata: dict[str, Any]) -> list[str]:
    # qdrant-edge-py 0.9.0 turns MatchValue(True) into the integer 1, so boolean equality
    # never matches; boolean metadata is also indexed as keyword terms, in both adapters so
    # that payloads stay identical between Edge and a server.
    return [bool_term(f"metadata.{k}", v) for k, v in metadata.items() if isinstance(v, bool)]


def bool_term(path: str, value: bool) -> str:
    return f"{path}={'true' if value else 'false'}"
