"""Domain models shared by ingestion, retrieval and the API (frozen pydantic)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class Element(_Frozen):
    """One structural piece of a parsed document (a paragraph, a title, a table...)."""

    text: str
    category: str = "NarrativeText"
    page: int | None = None
    section_path: tuple[str, ...] = ()
    is_table: bool = False


class Document(_Frozen):
    """A source document after parsing: identity, provenance and its elements."""

    doc_id: str
    source: str
    title: str
    filepath: str | None = None
    url: str | None = None
    content_hash: str
    elements: tuple[Element, ...] = ()
    acl_groups: tuple[str, ...] = ()
    metadata: dict[str, Any] = Field(default_factory=dict)


class Chunk(_Frozen):
    """A retrievable unit with everything a citation needs."""

    chunk_id: str
    doc_id: str
    chunk_index: int
    content: str
    embed_text: str
    title: str
    filepath: str | None = None
    url: str | None = None
    page: int | None = None
    section: str | None = None
    content_hash: str
    acl_groups: tuple[str, ...] = ()
    metadata: dict[str, Any] = Field(default_factory=dict)


class SparseVector(_Frozen):
    """BM25 term weights; IDF is applied by Qdrant at query time."""

    indices: tuple[int, ...]
    values: tuple[float, ...]


class ScoredChunk(_Frozen):
    """A chunk returned by a search, with its score and why it was cut (if it was)."""

    chunk: Chunk
    score: float
    original_search_score: float | None = None
    rerank_score: float | None = None
    filter_reason: str | None = None
    dense_score: float | None = None
    """Cosine of the chunk's dense vector with the query's, when the search asked for it."""
    sentence_vectors: str | None = Field(default=None, exclude=True, repr=False)
    """Stored sentence vectors (retrieval/sentences.py), when the search asked for them."""


class Citation(_Frozen):
    """A retrieved chunk that the answer cites."""

    content: str
    title: str | None = None
    url: str | None = None
    filepath: str | None = None
    chunk_id: str
    doc_id: str
    page: int | None = None


class Answer(_Frozen):
    """A grounded answer: text with [docN] markers; citations[N-1] is the N-th document given
    to the model (every one, in prompt order, cited or not)."""

    content: str
    citations: tuple[Citation, ...] = ()
    intent: tuple[str, ...] = ()
    all_retrieved: tuple[ScoredChunk, ...] = ()
    model: str
    removed_markers: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
