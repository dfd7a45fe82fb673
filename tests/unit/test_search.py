"""Search on a real Qdrant Edge index with the bundled embedder: modes, strictness, filters."""

from __future__ import annotations

import pytest

from core.errors import IndexNotFoundError, InvalidRequestError
from core.models import Chunk, ScoredChunk
from retrieval.embedders import Embedder
from retrieval.index import MetadataFilter, QdrantEdgeIndex, SearchMode
from retrieval.search import Searcher, SearchRequest, SearchResult, _Hit, deduplicated, with_acl
from tests.unit.retrieval_corpus import make_searcher

MODES: list[SearchMode] = ["vector", "keyword", "hybrid"]
PUBLIC = MetadataFilter(acl_groups=())


@pytest.fixture(scope="module")
def index(handbook_index: QdrantEdgeIndex) -> QdrantEdgeIndex:
    return handbook_index


@pytest.fixture(scope="module")
def searcher(embedder: Embedder, index: QdrantEdgeIndex) -> Searcher:
    return make_searcher(embedder, index)


async def _search(searcher: Searcher, *queries: str, **kw: object) -> SearchResult:
    args: dict[str, object] = {"filter": PUBLIC}
    args.update(kw)
    return await searcher.search(SearchRequest(queries=queries, index_name="handbook", **args))  # type: ignore[arg-type]


def _ids(result: SearchResult) -> list[str]:
    return [d.chunk.chunk_id for d in result.documents]


@pytest.mark.parametrize("mode", MODES)
async def test_search_finds_the_relevant_chunk_first_in_every_mode(
    searcher: Searcher, mode: SearchMode
) -> None:
    result = await _search(searcher, "How many days of paid vacation do employees get?", mode=mode)
    assert _ids(result)[0] in {"vacation", "vacation-copy"}
    assert result.queries == ("How many days of paid vacation do employees get?",)


@pytest.mark.parametrize("mode", MODES)
async def test_search_returns_duplicate_and_near_duplicate_chunks_once(
    searcher: Searcher, mode: SearchMode
) -> None:
    result = await _search(
        searcher,
        "vacation days and hotel price per night",
        mode=mode,
        strictness=1,
        top_n_documents=20,
    )
    every = [d.chunk.chunk_id for d in result.all_retrieved]
    assert len({"vacation", "vacation-copy"} & set(every)) == 1
    assert len({"hotels", "hotels-near"} & set(every)) == 1
    assert len(every) == len(set(every))


async def test_search_strictness_cuts_unrelated_hits_with_reason_score(searcher: Searcher) -> None:
    result = await _search(
        searcher, "What is the weather like on Mars?", mode="vector", strictness=3
    )
    assert result.documents == ()
    assert result.all_retrieved
    assert {d.filter_reason for d in result.all_retrieved} == {"score"}
    lenient = await _search(
        searcher, "What is the weather like on Mars?", mode="vector", strictness=1
    )
    assert lenient.documents


@pytest.mark.parametrize("mode", MODES)
async def test_search_keeps_fewer_hits_as_strictness_rises(
    searcher: Searcher, mode: SearchMode
) -> None:
    counts = []
    for strictness in range(1, 6):
        result = await _search(
            searcher, "hotel price per night", mode=mode, strictness=strictness, top_n_documents=20
        )
        counts.append(len(result.documents))
        assert result.documents[0].chunk.chunk_id in {"hotels", "hotels-near"}
    assert counts == sorted(counts, reverse=True)
    assert counts[0] > counts[-1]


async def test_search_marks_hits_beyond_top_n_as_rerank(searcher: Searcher) -> None:
    result = await _search(
        searcher, "travel policy hotels trains", mode="hybrid", strictness=1, top_n_documents=2
    )
    assert len(result.documents) == 2
    beyond = [d for d in result.all_retrieved if d.filter_reason == "rerank"]
    assert beyond
    assert all(d.filter_reason is None for d in result.all_retrieved[:2])


async def test_search_keeps_raw_and_relevance_scores(searcher: Searcher) -> None:
    vector = await _search(searcher, "cafeteria opening hours", mode="vector")
    best = vector.documents[0]
    assert best.chunk.chunk_id == "cafeteria"
    assert best.score == best.original_search_score
    assert 0.3 < best.score <= 1.0
    keyword = await _search(searcher, "cafeteria opening hours", mode="keyword")
    assert keyword.documents[0].original_search_score == keyword.documents[0].score > 1.0
    hybrid = await _search(searcher, "cafeteria opening hours", mode="hybrid")
    assert hybrid.documents[0].chunk.chunk_id == "cafeteria"
    # rerank_score is the reranker's alone (tests/unit/test_search_rerank.py)
    every = [*vector.all_retrieved, *keyword.all_retrieved, *hybrid.all_retrieved]
    assert all(d.rerank_score is None for d in every)


async def test_search_applies_metadata_filters(searcher: Searcher) -> None:
    result = await _search(
        searcher,
        "travel",
        mode="hybrid",
        strictness=1,
        filter=MetadataFilter(equals={"dept": ["travel"]}, acl_groups=()),
    )
    assert result.documents
    assert {d.chunk.metadata["dept"] for d in result.all_retrieved} == {"travel"}


async def test_search_hides_chunks_from_other_acl_groups(searcher: Searcher) -> None:
    query = "When are executive bonuses paid?"
    public = await _search(searcher, query, mode="vector", strictness=1, top_n_documents=20)
    assert "bonus" not in [d.chunk.chunk_id for d in public.all_retrieved]
    board = await _search(searcher, query, mode="vector", filter=with_acl(None, ["board"]))
    assert _ids(board)[0] == "bonus"


async def test_search_merges_several_queries_keeping_each_chunk_once(searcher: Searcher) -> None:
    result = await _search(
        searcher, "paid vacation days", "hotel price per night", "vacation", mode="hybrid"
    )
    ids = _ids(result)
    assert {"hotels", "hotels-near"} & set(ids)
    assert {"vacation", "vacation-copy"} & set(ids)
    assert len(ids) == len(set(ids))
    assert result.queries == ("paid vacation days", "hotel price per night", "vacation")


async def test_search_unknown_index_is_not_found(searcher: Searcher) -> None:
    with pytest.raises(IndexNotFoundError):
        await searcher.search(SearchRequest(queries=("x",), index_name="nope"))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("top_n_documents", 0),
        ("top_n_documents", 21),
        ("strictness", 0),
        ("strictness", 6),
        ("mode", "semantic"),
    ],
)
def test_search_request_rejects_out_of_range_parameters(field: str, value: object) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        SearchRequest(queries=("x",), index_name="handbook", **{field: value})  # type: ignore[arg-type]
    assert caught.value.param == field


def test_search_request_rejects_blank_queries() -> None:
    with pytest.raises(InvalidRequestError):
        SearchRequest(queries=("  ",), index_name="handbook")


def _hit(chunk_id: str, content: str, *, rank: float, passes: bool) -> _Hit:
    chunk = Chunk(
        chunk_id=chunk_id,
        doc_id=chunk_id,
        chunk_index=0,
        content=content,
        embed_text=content,
        title="t",
        content_hash=chunk_id,
    )
    return _Hit(scored=ScoredChunk(chunk=chunk, score=rank), rank=rank, passes=passes)


def test_deduplicated_keeps_the_copy_that_passes_strictness_in_rank_order() -> None:
    text = (
        "Hotels may be booked up to 180 euros per night in capital cities and 120 euros "
        "elsewhere. Breakfast is included in the hotel allowance for every employee."
    )
    hits = [
        _hit("near", text.replace("may", "can"), rank=0.9, passes=False),
        _hit("exact", text, rank=0.8, passes=True),
        _hit("other", "Trains are first class on long journeys", rank=0.85, passes=True),
    ]
    assert [h.scored.chunk.chunk_id for h in deduplicated(hits)] == ["other", "exact"]
