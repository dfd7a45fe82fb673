"""What the VectorIndex protocol speaks: modes, requests, indexed chunks, metadata filters."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt

from core.models import Chunk, ScoredChunk, SparseVector

SearchMode = Literal["vector", "keyword", "hybrid"]
FusionMethod = Literal["rrf", "dbsf"]

DENSE = "dense"
SPARSE = "sparse"
CHUNK_NAMESPACE = uuid.UUID("6f1d3c52-7a0e-5b8e-9c41-0d2b9e5a7c13")
"""Namespace of the point ids; fixed forever, or existing points lose their identity."""
SENTENCE_VECTORS = "_sentence_vectors"
"""Payload key of the chunk's sentence vectors (retrieval/sentences.py); only fetched on request."""
BOOL_TERMS = "_bool_terms"
"""Payload key holding ``"<path>=true|false"`` for boolean metadata (see filters.bool_terms)."""
INDEXED_KEYWORDS = ("doc_id", "acl_groups", "filepath")
_BLOB_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")

FilterValue = str | int | bool | list[str] | list[int]


@dataclass(frozen=True)
class IndexedChunk:
    """A chunk with its dense and sparse vectors, ready to upsert."""

    chunk: Chunk
    dense: npt.NDArray[np.float32]
    sparse: SparseVector
    sentence_vectors: str | None = None


@dataclass(frozen=True)
class MetadataFilter:
    """Equality / membership conditions, all of which must hold.

    `equals` maps a payload key to a value or a list of accepted values;
    `acl_groups`, when not None, keeps only chunks whose acl_groups intersect it
    (chunks without groups are public and always kept).
    """

    equals: dict[str, FilterValue] = field(default_factory=dict)
    acl_groups: tuple[str, ...] | None = None


@dataclass(frozen=True)
class IndexQuery:
    """One retrieval request against the index.

    `rrf_k` is the RRF rank constant (score = sum of 1/(k + rank)); unused by DBSF.
    `with_dense_score` fills each hit's `dense_score` (cosine with `dense`, whatever the mode);
    `with_sentence_vectors` returns the stored sentence vectors (large; off by default).
    """

    mode: SearchMode
    limit: int
    dense: npt.NDArray[np.float32] | None = None
    sparse: SparseVector | None = None
    filter: MetadataFilter | None = None
    fusion: FusionMethod = "rrf"
    prefetch_limit: int = 100
    rrf_k: int = 60
    with_dense_score: bool = False
    with_sentence_vectors: bool = False


class VectorIndex(Protocol):
    """Stores chunks with dense + sparse vectors and answers vector/keyword/hybrid queries."""

    def upsert(self, items: Sequence[IndexedChunk]) -> None:
        """Insert or replace points (point id derives from chunk_id)."""
        ...

    def delete(self, *, doc_id: str, keep_chunk_ids: Sequence[str] = ()) -> int:
        """Remove a document's chunks except those listed; returns how many were removed."""
        ...

    def delete_documents(self, doc_ids: Sequence[str]) -> int:
        """Remove every chunk of these documents in one write; returns how many were removed.

        What a folder sync or a bulk delete uses: one engine flush for the lot, where a
        `delete` per document pays one each (at 1M chunks ~the whole cost).
        """
        ...

    def query(self, request: IndexQuery) -> list[ScoredChunk]:
        """Best chunks first."""
        ...

    def count(self, *, doc_id: str | None = None) -> int:
        """Number of chunks, in all or for one document."""
        ...

    def maintain(self) -> bool:
        """Upkeep after a batch of writes (blocking); returns whether it did anything.

        Qdrant Edge builds its vector indexes here once enough points are not in one yet; a
        Qdrant server optimises in the background, so its adapter does nothing.
        """
        ...

    def scan_payload(self, keys: Sequence[str]) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every point's id with the named payload fields (page by page; any order)."""
        ...

    def update_sparse(self, vectors: Sequence[tuple[str, SparseVector]]) -> None:
        """Replace the sparse vectors of existing points by id; dense vectors and payload stay."""
        ...

    def read_metadata(self) -> dict[str, Any]:
        """The index's own small JSON metadata (e.g. its BM25 statistics); {} when none."""
        ...

    def write_metadata(self, values: dict[str, Any]) -> None:
        """Merge top-level keys into the index's metadata, durably."""
        ...

    def read_blob(self, name: str) -> bytes | None:
        """A named blob of the index's own data (e.g. its BM25 term table); None when none."""
        ...

    def write_blob(self, name: str, data: bytes) -> None:
        """Replace a named blob, durably; readers see the old one or the new one whole."""
        ...

    def close(self) -> None:
        """Make writes durable and release the engine's resources (idempotent)."""
        ...

    def drop(self) -> None:
        """Delete the index and all its data, closing it first."""
        ...


def check_blob_name(name: str) -> str:
    """A blob name (lower-case letters, digits and '-'): ours, never a caller's, so a bad one is
    a programming error."""
    if not _BLOB_NAME.fullmatch(name):
        raise ValueError(f"invalid blob name {name!r}")
    return name
