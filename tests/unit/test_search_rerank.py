"""Reranked search (OYD semantic, vector_semantic_hybrid) on the real handbook index, the
reranker a RemoteReranker talking to the loopback fake (scores: query-word overlap)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from core.errors import ConfigurationError, RerankerError
from retrieval.embedders import Embedder
from retrieval.index import MetadataFilter, QdrantEdgeIndex, SearchMode
from retrieval.rerank import RemoteReranker
from retrieval.search import RERANK_FLOOR, Searcher, SearchRequest, SearchResult
from retrieval.sparse import Bm25Encoder
from tests.fakes.rerank_server import FakeRerankServer, overlap_score
from tests.unit.retrieval_corpus import make_searcher, provider

PUBLIC = MetadataFilter(acl_groups=())


@pytest.fixture
async def reranker(rerank_fake: FakeRerankServer) -> AsyncIterator[RemoteReranker]:
    remote = RemoteReranker.from_settings(rerank_fake.settings(max_retries=0))
    yield remote
    await remote.aclose()


@pytest.fixture
def searcher(
    embedder: Embedder, handbook_index: QdrantEdgeIndex, reranker: RemoteReranker
) -> Searcher:
    indexes = provider({"handbook": handbook_index})
    return Searcher(embedder=embedder, sparse=Bm25Encoder(), indexes=indexes, reranker=reranker)


async def _search(searcher: Searcher, *queries: str, **kw: object) -> SearchResult:
    args: dict[str, object] = {"filter": PUBLIC, "rerank": True}
    args.update(kw)
    return await searcher.search(SearchRequest(queries=queries, index_name="handbook", **args))  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["keyword", "hybrid"])
async def test_reranked_search_orders_by_the_rerankers_score(
    searcher: Searcher, rerank_fake: FakeRerankServer, mode: SearchMode
) -> None:
    query = "when does the cafeteria open in the morning"
    result = await _search(searcher, query, mode=mode, strictness=1, top_n_documents=20)
    assert result.documents[0].chunk.chunk_id == "cafeteria"
    scores = [d.rerank_score for d in result.documents]
    assert scores == sorted(scores, reverse=True)  # type: ignore[type-var]
    for doc in result.all_retrieved:
        assert doc.rerank_score == pytest.approx(overlap_score(query, doc.chunk.embed_text))
        assert doc.original_search_score == doc.score
    sent = rerank_fake.requests
    assert len(sent) == 1
    assert sent[0].body["query"] == query
    assert not result.fell_back


async def test_reranked_search_applies_the_rerank_floor(searcher: Searcher) -> None:
    query = "hotel price per night in capital cities"
    loose = await _search(searcher, query, mode="hybrid", strictness=1, top_n_documents=20)
    strict = await _search(searcher, query, mode="hybrid", strictness=5, top_n_documents=20)
    assert all(d.rerank_score is not None for d in strict.documents)
    assert all(d.rerank_score >= RERANK_FLOOR[5] for d in strict.documents)  # type: ignore[operator]
    cut = [d for d in strict.all_retrieved if d.filter_reason == "score"]
    assert cut
    assert all(d.rerank_score < RERANK_FLOOR[5] for d in cut)  # type: ignore[operator]
    assert len(strict.documents) < len(loose.documents)


async def test_reranked_search_reranks_each_query_once_and_merges(
    searcher: Searcher, rerank_fake: FakeRerankServer
) -> None:
    result = await _search(searcher, "cafeteria hours", "train travel class", strictness=1)
    assert sorted(r.body["query"] for r in rerank_fake.requests) == [
        "cafeteria hours",
        "train travel class",
    ]
    ids = [d.chunk.chunk_id for d in result.documents]
    assert {"cafeteria", "trains"} <= set(ids)


async def test_reranked_search_reranks_at_most_the_candidates(
    embedder: Embedder,
    handbook_index: QdrantEdgeIndex,
    reranker: RemoteReranker,
    rerank_fake: FakeRerankServer,
) -> None:
    indexes = provider({"handbook": handbook_index})
    searcher = Searcher(
        embedder=embedder,
        sparse=Bm25Encoder(),
        indexes=indexes,
        reranker=reranker,
        rerank_candidates=3,
    )
    result = await _search(searcher, "travel policy hotels trains", mode="hybrid", strictness=1)
    assert len(rerank_fake.last_request.body["documents"]) == 3
    assert len(result.all_retrieved) <= 3


async def test_reranked_search_fails_with_the_rerankers_error(
    searcher: Searcher, rerank_fake: FakeRerankServer
) -> None:
    rerank_fake.script(status=503)
    with pytest.raises(RerankerError) as raised:
        await _search(searcher, "cafeteria")
    assert raised.value.status_code == 502


async def test_without_a_reranker_reranked_search_falls_back_to_hybrid(
    embedder: Embedder, handbook_index: QdrantEdgeIndex
) -> None:
    plain = make_searcher(embedder, handbook_index)
    assert plain.reranker is None
    asked = await _search(plain, "cafeteria opening hours", mode="keyword")
    hybrid = await _search(plain, "cafeteria opening hours", mode="hybrid", rerank=False)
    assert asked.fell_back
    assert not hybrid.fell_back
    assert [d.chunk.chunk_id for d in asked.documents] == [
        d.chunk.chunk_id for d in hybrid.documents
    ]
    assert all(d.rerank_score is None for d in asked.all_retrieved)


async def test_rank_reranked_reorders_the_head_of_the_ranking(searcher: Searcher) -> None:
    query = "breakfast in the hotel allowance"
    candidates = searcher.rank("handbook", query, mode="keyword", limit=50)
    ranked = await searcher.rank_reranked("handbook", query, mode="keyword", limit=5)
    assert len(ranked) == min(5, len(candidates))
    assert {c.chunk.chunk_id for c in ranked} <= {c.chunk.chunk_id for c in candidates}
    scores = [c.rerank_score for c in ranked]
    assert scores == sorted(scores, reverse=True)  # type: ignore[type-var]
    assert ranked[0].rerank_score == pytest.approx(overlap_score(query, ranked[0].chunk.embed_text))


async def test_rank_reranked_needs_a_reranker(
    embedder: Embedder, handbook_index: QdrantEdgeIndex
) -> None:
    with pytest.raises(ConfigurationError, match="ONDATA_RERANK__BACKEND"):
        await make_searcher(embedder, handbook_index).rank_reranked("handbook", "x")
