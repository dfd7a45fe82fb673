"""Search over one index: vector / keyword / hybrid, filters, strictness, de-duplication.

Strictness (1..5, default 3) is a relevance cut-off on a normalised score, defined per mode
so that it means the same thing whatever the scale of the raw score:

* vector: the raw score is cosine similarity (embeddings are L2-normalised). A hit is kept
  when ``cosine >= ABS_COSINE[s]`` and ``cosine >= REL_TO_BEST[s] * best_cosine``.
* keyword: BM25 scores have no absolute scale, so only the relative rule applies:
  ``bm25 >= REL_TO_BEST[s] * best_bm25``.
* hybrid: fused scores (RRF or DBSF) are rank-based, so the cut uses the cosine of each hit
  to the query (computed from the same embedder): the vector rule above applies to it, and
  a hit found by keywords only is kept if the lexical evidence is strong (it appears in the
  keyword top-k) -- see ``_hybrid_keep``.

====  ===========  ===========
 s    ABS_COSINE   REL_TO_BEST
====  ===========  ===========
 1    0.00         0.00  (keep everything retrieved)
 2    0.10         0.50
 3    0.20         0.70
 4    0.30         0.80
 5    0.40         0.90
====  ===========  ===========

The best hit of a query always survives the relative rule; it can still fail the absolute
rule (nothing relevant at all), which is how in_scope refusals happen. Chunks cut by
strictness carry ``filter_reason="score"``; chunks that survive strictness but fall beyond
``top_n_documents`` carry ``filter_reason="rerank"`` (OYD's all_retrieved_documents names).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from core.models import ScoredChunk, SparseVector
from retrieval.embedders import Embedder
from retrieval.index import FusionMethod, MetadataFilter, SearchMode, VectorIndex

MAX_TOP_N = 20
DEFAULT_TOP_N = 5
DEFAULT_STRICTNESS = 3


class SparseQueryEncoder(Protocol):
    """Turns a search query into BM25 term weights (retrieval.sparse provides one)."""

    def encode_query(self, text: str) -> SparseVector: ...


IndexProvider = Callable[[str], VectorIndex]
"""Returns the (cached, already open) index for a name; raises IndexNotFoundError if unknown."""


@dataclass(frozen=True)
class SearchRequest:
    """One retrieval: one or more queries (merged), against one index.

    Raises InvalidRequestError on construction when a parameter is out of range.
    """

    queries: tuple[str, ...]
    index_name: str
    mode: SearchMode = "hybrid"
    top_n_documents: int = DEFAULT_TOP_N
    strictness: int = DEFAULT_STRICTNESS
    filter: MetadataFilter | None = None


@dataclass(frozen=True)
class SearchResult:
    """Kept chunks (best first, at most top_n) and every retrieved chunk with why it was cut."""

    documents: tuple[ScoredChunk, ...]
    all_retrieved: tuple[ScoredChunk, ...]
    queries: tuple[str, ...]


class Searcher:
    """Embeds queries, asks the index, merges, de-duplicates and applies strictness / top-n.

    Built once (in the app lifespan) and shared; thread-safe as long as its parts are.
    """

    def __init__(
        self,
        *,
        embedder: Embedder,
        sparse: SparseQueryEncoder,
        indexes: IndexProvider,
        fusion: FusionMethod = "rrf",
        prefetch_limit: int = 100,
        overfetch: int = 4,
    ) -> None:
        self._embedder = embedder
        self._sparse = sparse
        self._indexes = indexes
        self._fusion: FusionMethod = fusion
        self._prefetch_limit = prefetch_limit
        self._overfetch = overfetch

    async def search(self, request: SearchRequest) -> SearchResult:
        """Run every query concurrently, merge (best score per chunk), cut, and return."""
        raise NotImplementedError
