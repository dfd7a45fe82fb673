"""The VectorIndex protocol and its adapters: Qdrant Edge in-process, Qdrant server/cluster."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np
import numpy.typing as npt

from core.models import Chunk, ScoredChunk, SparseVector

SearchMode = Literal["vector", "keyword", "hybrid"]
FusionMethod = Literal["rrf", "dbsf"]


@dataclass(frozen=True)
class IndexedChunk:
    """A chunk with its dense and sparse vectors, ready to upsert."""

    chunk: Chunk
    dense: npt.NDArray[np.float32]
    sparse: SparseVector


@dataclass(frozen=True)
class MetadataFilter:
    """Equality / membership conditions, all of which must hold.

    `equals` maps a payload key to a value or a list of accepted values;
    `acl_groups`, when not None, keeps only chunks whose acl_groups intersect it
    (chunks without groups are public and always kept).
    """

    equals: dict[str, str | int | bool | list[str] | list[int]] = field(default_factory=dict)
    acl_groups: tuple[str, ...] | None = None


@dataclass(frozen=True)
class IndexQuery:
    """One retrieval request against the index."""

    mode: SearchMode
    limit: int
    dense: npt.NDArray[np.float32] | None = None
    sparse: SparseVector | None = None
    filter: MetadataFilter | None = None
    fusion: FusionMethod = "rrf"
    prefetch_limit: int = 100


class VectorIndex(Protocol):
    """Stores chunks with dense + sparse vectors and answers vector/keyword/hybrid queries."""

    def upsert(self, items: Sequence[IndexedChunk]) -> None:
        """Insert or replace points (point id derives from chunk_id)."""
        ...

    def delete(self, *, doc_id: str, keep_chunk_ids: Sequence[str] = ()) -> int:
        """Remove a document's chunks except those listed; returns how many were removed."""
        ...

    def query(self, request: IndexQuery) -> list[ScoredChunk]:
        """Best chunks first."""
        ...

    def count(self, *, doc_id: str | None = None) -> int:
        """Number of chunks, in all or for one document."""
        ...
