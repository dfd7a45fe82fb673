"""Search over one index: vector / keyword / hybrid, filters, strictness, de-duplication.

Each query over-fetches ``top_n_documents * overfetch`` hits; the hits of all queries are
merged (best score per chunk), near-duplicates are dropped, then strictness and top-n cut.

Strictness (1..5, default 3) is a relevance cut-off on a *relevance* that means the same
whatever the scale of the raw score, defined per mode:

* vector: relevance = cosine similarity of chunk and query (vectors are L2-normalised).
* hybrid: relevance = the same cosine, computed from each fused hit's stored dense vector,
  which the fused query returns with it (fused RRF/DBSF scores are rank-based and say nothing
  absolute).
* keyword: relevance = BM25 score / the query's best BM25 score (BM25 has no absolute scale,
  so only the relative rule applies).

A hit is kept when ``relevance >= ABSOLUTE[s]`` (vector and hybrid only) and
``relevance >= RELATIVE[s] * best relevance of its query``:

====  ==========================  ==========================
 s    ABSOLUTE (cosine)           RELATIVE (share of the best)
====  ==========================  ==========================
 1    0.00  (keep all retrieved)  0.00
 2    0.10                        0.50
 3    0.20                        0.65
 4    0.30                        0.80
 5    0.40                        0.90
====  ==========================  ==========================

The absolute floors suit the bundled MiniLM embedder, where unrelated text scores near 0.0-0.15
and a passage on the topic 0.3 or more. The best hit always passes the relative rule; failing
the absolute one means nothing relevant was found (the in_scope refusal). Hits cut by
strictness carry ``filter_reason="score"``; hits that pass but fall beyond top_n carry
``filter_reason="rerank"`` (OYD's names). ``ScoredChunk.score`` and ``original_search_score``
hold the raw index score (cosine, BM25 or fused); ``rerank_score`` is None.

Reranking (``SearchRequest.rerank``: OYD's ``semantic`` = keyword candidates reranked,
``vector_semantic_hybrid`` = hybrid candidates reranked): each query's first
``rerank_candidates`` hits (default 50) are scored by the reranker in one call per query;
they are ranked by that score, which ``rerank_score`` carries (a relevance in 0..1, see
retrieval/rerank.py), and strictness keeps a hit when ``rerank_score >= RERANK_FLOOR[s]``
(0 / 0.01 / 0.05 / 0.2 / 0.5 for s = 1..5; no relative rule, since a cross-encoder's score is
already absolute). The floors are sigmoid probabilities of a cross-encoder's logit (0.05 is a
logit of about -3; unrelated passages score well below 0.01 on MS MARCO-style rerankers); they
were not calibrated here (no reranker weights ship in a package). With no reranker configured
a reranked request runs as ``FALLBACK_MODE`` (hybrid) unreranked, and its result says so
(``SearchResult.fell_back``) so that the API can tell the caller.
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np

from core.access import meet
from core.errors import ConfigurationError, InvalidRequestError
from core.metrics import embedding_timer, phase
from core.models import ScoredChunk, SparseVector
from core.settings import RetrievalSettings, Settings
from retrieval.catalog import IndexCatalog
from retrieval.embedders import Embedder, Vectors
from retrieval.index import FusionMethod, IndexQuery, MetadataFilter, SearchMode, VectorIndex
from retrieval.rerank import Reranker, make_reranker
from retrieval.sparse import Bm25Encoder

MAX_TOP_N = 20
DEFAULT_TOP_N = 5
DEFAULT_STRICTNESS = 3
MAX_QUERIES = 10
QUERY_CACHE_SIZE = 512
ABSOLUTE = {1: 0.0, 2: 0.10, 3: 0.20, 4: 0.30, 5: 0.40}
RELATIVE = {1: 0.0, 2: 0.50, 3: 0.65, 4: 0.80, 5: 0.90}
NEAR_DUPLICATE_JACCARD = 0.9
RERANK_FLOOR = {1: 0.0, 2: 0.01, 3: 0.05, 4: 0.20, 5: 0.50}
DEFAULT_RERANK_CANDIDATES = 50
FALLBACK_MODE: SearchMode = "hybrid"
"""What a reranked request runs as when no reranker is configured: our best-measured mode."""
QUERY_TYPES: dict[str, tuple[SearchMode, bool]] = {
    "simple": ("keyword", False),
    "vector": ("vector", False),
    "vector_simple_hybrid": ("hybrid", False),
    "semantic": ("keyword", True),
    "vector_semantic_hybrid": ("hybrid", True),
}
"""OYD query_type -> (search mode, rerank)."""
_MODES = ("vector", "keyword", "hybrid")


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
    with_sentence_vectors: bool = False
    """Return the chunks' stored sentence vectors (for the extractive answerer)."""
    rerank: bool = False
    """Rerank each query's candidates with the configured reranker (see the module docstring)."""

    def __post_init__(self) -> None:
        queries = tuple(q.strip() for q in self.queries if q.strip())
        if not queries:
            raise InvalidRequestError("the search query is empty", param="query")
        if len(queries) > MAX_QUERIES:
            raise InvalidRequestError(f"at most {MAX_QUERIES} queries", param="query")
        object.__setattr__(self, "queries", queries)
        _check_range("top_n_documents", self.top_n_documents, 1, MAX_TOP_N)
        _check_range("strictness", self.strictness, 1, 5)
        if self.mode not in _MODES:
            raise InvalidRequestError(f"mode must be one of {', '.join(_MODES)}", param="mode")


@dataclass(frozen=True)
class SearchResult:
    """Kept chunks (best first, at most top_n) and every retrieved chunk with why it was cut."""

    documents: tuple[ScoredChunk, ...]
    all_retrieved: tuple[ScoredChunk, ...]
    queries: tuple[str, ...]
    fell_back: bool = False
    """The request asked to rerank, no reranker is configured: it ran as FALLBACK_MODE."""


@dataclass(frozen=True)
class _Hit:
    """A retrieved chunk with its rank key (0..1 for keyword/hybrid) and strictness verdict."""

    scored: ScoredChunk
    rank: float
    passes: bool
    relevance: float = 0.0
    """What strictness judged (cosine, share of the best BM25, or the reranker's score)."""


class Searcher:
    """Embeds queries, asks the index, merges, de-duplicates and applies strictness / top-n.

    Built once (in the app lifespan) and shared; safe to use from several tasks at once.
    Hybrid fuses with DBSF by default: on SciFact train it beat RRF by 0.015 nDCG@10 and
    matched the best tuned convex combination (bench/tune_scifact.py, docs/evaluation.md).
    """

    def __init__(
        self,
        *,
        embedder: Embedder,
        sparse: SparseQueryEncoder,
        indexes: IndexProvider,
        retrieval: RetrievalSettings | None = None,
        overfetch: int = 4,
        reranker: Reranker | None = None,
        rerank_candidates: int = DEFAULT_RERANK_CANDIDATES,
    ) -> None:
        self._reranker = reranker
        self._rerank_candidates = rerank_candidates
        self._embedder = embedder
        self._sparse = sparse
        self._indexes = indexes
        ranking = retrieval or RetrievalSettings()
        self._fusion: FusionMethod = ranking.fusion
        self._rrf_k = ranking.rrf_k
        self._prefetch_limit = ranking.candidates
        self._overfetch = overfetch
        self._query_vectors: OrderedDict[str, Vectors] = OrderedDict()
        self._cache_lock = threading.Lock()

    @classmethod
    def from_settings(
        cls, settings: Settings, *, embedder: Embedder, catalog: IndexCatalog
    ) -> Searcher:
        """The one way the server and the CLI build a searcher: BM25 queries, the catalog's
        indexes for this embedder, the configured reranker and the `retrieval` section."""
        rerank = settings.rerank
        return cls(
            embedder=embedder,
            sparse=Bm25Encoder(),
            indexes=catalog.querying(embedder.name, embedder.dimension),
            reranker=make_reranker(rerank),
            rerank_candidates=rerank.candidates,
            retrieval=settings.retrieval,
        )

    def embed_query(self, text: str) -> Vectors:
        """The query's dense vector, remembered for the next few hundred queries (blocking).

        The extractive answerer scores sentences against the same query, and repeated
        questions are common, so this saves the dominant cost of a query.
        """
        return self.embed_queries([text])[0]

    def embed_queries(self, texts: Sequence[str]) -> list[Vectors]:
        """Dense vectors of several queries: cached ones reused, the rest in one model run."""
        with self._cache_lock:
            found = {t: self._query_vectors[t] for t in texts if t in self._query_vectors}
            for text in found:
                self._query_vectors.move_to_end(text)
        missing = [t for t in dict.fromkeys(texts) if t not in found]
        if missing:
            with embedding_timer("query"):
                found.update(zip(missing, self._embedder.embed(missing), strict=True))
            with self._cache_lock:
                self._query_vectors.update((t, found[t]) for t in missing)
                while len(self._query_vectors) > QUERY_CACHE_SIZE:
                    self._query_vectors.popitem(last=False)
        return [found[t] for t in texts]

    @property
    def reranker(self) -> Reranker | None:
        """The configured reranker (None: reranked requests fall back, see the module doc)."""
        return self._reranker

    async def search(self, request: SearchRequest) -> SearchResult:
        """Run every query, merge (best score per chunk), cut, and return."""
        if request.rerank and self._reranker is None:
            fallback = replace(request, mode=FALLBACK_MODE, rerank=False)
            return replace(await self.search(fallback), fell_back=True)
        if request.rerank:
            return await self._search_reranked(request)
        # one worker-thread hop for the whole search: each hop costs a GIL hand-over, which
        # showed in the tail latency under load
        return await asyncio.to_thread(self.search_blocking, request)

    async def _search_reranked(self, request: SearchRequest) -> SearchResult:
        candidates = await asyncio.to_thread(self.candidates, request)
        with phase("rerank"):
            runs = await self._reranked(request, candidates)
        hits = deduplicated(merged(runs))
        kept, every = cut(hits, top_n=request.top_n_documents)
        return SearchResult(documents=kept, all_retrieved=every, queries=request.queries)

    def candidates(self, request: SearchRequest) -> list[list[ScoredChunk]]:
        """Each query's first `rerank_candidates` hits in the request's mode (blocking)."""
        index = self._indexes(request.index_name)
        dense: list[Vectors | None] = [None] * len(request.queries)
        if request.mode != "keyword":
            dense = list(self.embed_queries(request.queries))
        return [
            index.query(
                self._index_query(request, request.mode, vector, self._sparse_of(q, request))
            )
            for q, vector in zip(request.queries, dense, strict=True)
        ]

    async def _reranked(
        self, request: SearchRequest, candidates: Sequence[Sequence[ScoredChunk]]
    ) -> list[list[_Hit]]:
        """Each query's candidates scored by the reranker (the queries concurrently)."""
        assert self._reranker is not None
        scores = await asyncio.gather(
            *(
                self._reranker.rerank(query, [h.chunk.embed_text for h in hits])
                for query, hits in zip(request.queries, candidates, strict=True)
            )
        )
        return [
            reranked(hits, s, strictness=request.strictness)
            for hits, s in zip(candidates, scores, strict=True)
        ]

    async def rank_reranked(
        self,
        index_name: str,
        query: str,
        *,
        mode: SearchMode = "hybrid",
        limit: int = 100,
        filter: MetadataFilter | None = None,
    ) -> list[ScoredChunk]:
        """`rank`, its first `rerank_candidates` chunks reordered by the reranker (what
        evaluation measures for the semantic query types). Raises ConfigurationError
        when no reranker is configured."""
        if self._reranker is None:
            raise ConfigurationError("reranking needs a reranker: set ONDATA_RERANK__BACKEND")
        depth = max(limit, self._rerank_candidates)
        ranking = await asyncio.to_thread(
            self.rank, index_name, query, mode=mode, limit=depth, filter=filter
        )
        head, tail = ranking[: self._rerank_candidates], ranking[self._rerank_candidates :]
        with phase("rerank"):
            scores = await self._reranker.rerank(query, [c.chunk.embed_text for c in head])
        hits = [h.scored for h in _ranked(reranked(head, scores, strictness=1))]
        return [*hits, *tail][:limit]

    def search_blocking(self, request: SearchRequest) -> SearchResult:
        """The body of `search` (blocking)."""
        index = self._indexes(request.index_name)
        queries = request.queries
        dense: list[Vectors | None] = [None] * len(queries)
        if request.mode != "keyword":
            # one model run for all the intent's queries, not one each
            dense = list(self.embed_queries(queries))
        runs = [
            self.run_query(index, q, request, dense=v) for q, v in zip(queries, dense, strict=True)
        ]
        hits = deduplicated(merged(runs))
        kept, every = cut(hits, top_n=request.top_n_documents)
        return SearchResult(documents=kept, all_retrieved=every, queries=request.queries)

    def run_query(
        self,
        index: VectorIndex,
        query: str,
        request: SearchRequest,
        *,
        dense: Vectors | None = None,
    ) -> list[_Hit]:
        """One query against the index (blocking), with each hit's strictness verdict.

        `dense`, when given, is the query's vector (else it is embedded here)."""
        if dense is None and request.mode != "keyword":
            dense = self.embed_query(query)
        sparse = self._sparse_of(query, request)
        hits = index.query(self._index_query(request, request.mode, dense, sparse))
        strictness = request.strictness
        if request.mode == "keyword":
            return _judged(hits, _relative(hits), absolute=None, strictness=strictness)
        if request.mode == "vector":
            return _judged(
                hits, [h.score for h in hits], absolute=ABSOLUTE[strictness], strictness=strictness
            )
        # every hybrid hit comes back with its cosine to the query (see _index_query)
        cosines = [h.dense_score if h.dense_score is not None else 0.0 for h in hits]
        judged = _judged(hits, cosines, absolute=ABSOLUTE[strictness], strictness=strictness)
        best = max((h.score for h in hits), default=0.0) or 1.0
        # fused scores rank hybrid hits (cosine only decides strictness)
        return [replace(j, rank=j.scored.score / best) for j in judged]

    def rank(
        self,
        index_name: str,
        query: str,
        *,
        mode: SearchMode = "hybrid",
        limit: int = 100,
        filter: MetadataFilter | None = None,
    ) -> list[ScoredChunk]:
        """The index's ranking of one query, `limit` chunks deep, best first (blocking).

        No strictness, no top-n cap, no de-duplication: the ranking that `search` cuts, which
        is what evaluation measures (nDCG@10, Recall@100). Same embedder, BM25 encoder and
        fusion as `search`; hybrid prefetches max(prefetch_limit, limit) per side.
        """
        index = self._indexes(index_name)
        dense = self._embedder.embed_query(query) if mode != "keyword" else None
        sparse = self._sparse.encode_query(query) if mode != "vector" else None
        request = IndexQuery(
            mode=mode,
            limit=limit,
            dense=dense,
            sparse=sparse,
            filter=filter,
            fusion=self._fusion,
            rrf_k=self._rrf_k,
            prefetch_limit=self._prefetch_limit,
        )
        return index.query(request)

    def _sparse_of(self, query: str, request: SearchRequest) -> SparseVector | None:
        return self._sparse.encode_query(query) if request.mode != "vector" else None

    def _index_query(
        self,
        request: SearchRequest,
        mode: SearchMode,
        dense: np.ndarray | None,
        sparse: SparseVector | None,
    ) -> IndexQuery:
        return IndexQuery(
            mode=mode,
            limit=(
                self._rerank_candidates
                if request.rerank
                else request.top_n_documents * self._overfetch
            ),
            dense=dense,
            sparse=sparse,
            filter=request.filter,
            fusion=self._fusion,
            rrf_k=self._rrf_k,
            prefetch_limit=self._prefetch_limit,
            with_dense_score=mode == "hybrid" and not request.rerank,
            with_sentence_vectors=request.with_sentence_vectors,
        )


def with_acl(flt: MetadataFilter | None, groups: Sequence[str] | None) -> MetadataFilter | None:
    """The filter restricted to chunks readable with `groups`, a caller's
    `Scope.as_filter()` (None: no restriction).

    A filter that already names acl_groups keeps only the groups both allow (core.access
    `meet`, as `Scope.narrow`), so a caller's own `acl_groups` filter narrows its access and
    can never widen it.
    """
    if groups is None:
        return flt
    allowed = meet(flt.acl_groups if flt else None, groups)
    return MetadataFilter(equals=dict(flt.equals) if flt else {}, acl_groups=allowed)


def merged(runs: Sequence[Sequence[_Hit]]) -> list[_Hit]:
    """One hit per chunk (its best rank; kept if any query kept it), best first."""
    best: dict[str, _Hit] = {}
    for run in runs:
        for hit in run:
            seen = best.get(hit.scored.chunk.chunk_id)
            if seen is None or hit.rank > seen.rank:
                passes = hit.passes or (seen is not None and seen.passes)
                best[hit.scored.chunk.chunk_id] = replace(hit, passes=passes)
            elif hit.passes and not seen.passes:
                best[hit.scored.chunk.chunk_id] = replace(seen, passes=True)
    return _ranked(best.values())


def deduplicated(hits: Sequence[_Hit]) -> list[_Hit]:
    """Drop a hit whose text repeats a better one (same hash, or near-identical words).

    Of two copies the one that passes strictness wins, then the better ranked; the result
    stays in rank order.
    """
    kept: list[_Hit] = []
    hashes: set[str] = set()
    words: list[set[str]] = []
    for hit in sorted(_ranked(hits), key=lambda h: h.passes, reverse=True):
        chunk = hit.scored.chunk
        if chunk.content_hash in hashes:
            continue
        bag = set(chunk.content.lower().split())
        if any(_near_same(bag, w) for w in words):
            continue
        hashes.add(chunk.content_hash)
        words.append(bag)
        kept.append(hit)
    return _ranked(kept)


def cut(
    hits: Sequence[_Hit], *, top_n: int
) -> tuple[tuple[ScoredChunk, ...], tuple[ScoredChunk, ...]]:
    """(kept: passing hits up to top_n; all: every hit, the cut ones with a filter_reason)."""
    kept: list[ScoredChunk] = []
    every: list[ScoredChunk] = []
    for hit in hits:
        if not hit.passes:
            every.append(hit.scored.model_copy(update={"filter_reason": "score"}))
        elif len(kept) >= top_n:
            every.append(hit.scored.model_copy(update={"filter_reason": "rerank"}))
        else:
            kept.append(hit.scored)
            every.append(hit.scored)
    return tuple(kept), tuple(every)


def _judged(
    hits: Sequence[ScoredChunk],
    relevance: Sequence[float],
    *,
    absolute: float | None,
    strictness: int,
) -> list[_Hit]:
    """Each hit's verdict; rank by cosine when `absolute` applies, else by share of the best."""
    if not hits:
        return []
    floor = max(absolute or 0.0, RELATIVE[strictness] * max(relevance))
    best_score = max(h.score for h in hits) or 1.0
    return [
        _Hit(
            scored=h.model_copy(update={"original_search_score": h.score}),
            rank=r if absolute is not None else h.score / best_score,
            passes=r >= floor,
            relevance=r,
        )
        for h, r in zip(hits, relevance, strict=True)
    ]


def reranked(
    hits: Sequence[ScoredChunk], scores: Sequence[float], *, strictness: int
) -> list[_Hit]:
    """Hits ranked by their reranker scores, kept when a score reaches RERANK_FLOOR."""
    floor = RERANK_FLOOR[strictness]
    return [
        _Hit(
            scored=h.model_copy(update={"original_search_score": h.score, "rerank_score": s}),
            rank=s,
            passes=s >= floor,
            relevance=s,
        )
        for h, s in zip(hits, scores, strict=True)
    ]


def _relative(hits: Sequence[ScoredChunk]) -> list[float]:
    best = max((h.score for h in hits), default=0.0) or 1.0
    return [h.score / best for h in hits]


def _ranked(hits: Iterable[_Hit]) -> list[_Hit]:
    """Best first; ties (fused scores often tie) go to the higher relevance, then chunk id."""
    by_id = sorted(hits, key=lambda h: h.scored.chunk.chunk_id)
    return sorted(by_id, key=lambda h: (h.rank, h.relevance), reverse=True)


def _near_same(a: set[str], b: set[str]) -> bool:
    """Jaccard(a, b) >= NEAR_DUPLICATE_JACCARD; it runs for every pair of hits on the event
    loop, so bags of too different sizes (Jaccard <= small / large) are ruled out unseen."""
    small, large = sorted((len(a), len(b)))
    if small < NEAR_DUPLICATE_JACCARD * large:
        return False
    if not large:
        return True
    common = len(a & b)
    return common >= NEAR_DUPLICATE_JACCARD * (small + large - common)


def _check_range(name: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise InvalidRequestError(f"{name} must be between {low} and {high}", param=name)
