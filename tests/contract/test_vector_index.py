"""One contract for every VectorIndex adapter: Qdrant Edge on a temp dir, and the server adapter
on qdrant-client's local mode (same API as a server), both driven through the same tests."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import qdrant_edge as edge
from qdrant_client import QdrantClient

from core.errors import (
    ConfigurationError,
    IndexBackendError,
    IndexLockedError,
    InvalidRequestError,
)
from core.models import Chunk
from core.settings import IndexSettings, Settings
from retrieval.index import (
    IndexedChunk,
    IndexQuery,
    MetadataFilter,
    QdrantEdgeIndex,
    QdrantServerIndex,
    SearchMode,
    VectorIndex,
    drop_index,
    edge_index_path,
    open_index,
)
from retrieval.index.edge import _mapped
from retrieval.sparse import Bm25Encoder
from retrieval.term_statistics import TermTable, idf

DIM = 4
BM25 = Bm25Encoder(avg_len=8.0)

OpenIndex = Callable[..., VectorIndex]


def make_chunk(chunk_id: str, doc_id: str, content: str, **fields: object) -> Chunk:
    return Chunk(
        chunk_id=chunk_id,
        doc_id=doc_id,
        chunk_index=0,
        content=content,
        embed_text=content,
        title=doc_id.title(),
        content_hash=f"h-{chunk_id}",
        **fields,  # type: ignore[arg-type]
    )


CAT = make_chunk(
    "cat",
    "animals",
    "Cats purr and sleep in the warm sun",
    metadata={"lang": "en", "year": 2023, "reviewed": True},
)
DOG = make_chunk(
    "dog",
    "animals",
    "Dogs bark loudly at the mailman",
    acl_groups=("staff",),
    metadata={"lang": "en", "year": 2024, "reviewed": False},
)
FISH = make_chunk(
    "fish",
    "ocean",
    "Fish swim in the deep blue ocean",
    acl_groups=("hr",),
    metadata={"lang": "fr", "year": 2024, "tags": ["sea", "wild"]},
)
TAX = make_chunk(
    "tax",
    "finance",
    "Quarterly tax filing deadlines for supplier invoices",
    filepath="finance/tax.pdf",
    url="https://intranet/tax",
    page=3,
    section="Deadlines",
    metadata={"lang": "en", "nested": {"owner": "ops"}},
)
DENSE = {"cat": [1, 0, 0, 0], "dog": [0, 1, 0, 0], "fish": [0, 0, 1, 0], "tax": [0, 0, 0, 1]}
ALL = (CAT, DOG, FISH, TAX)


def indexed(chunk: Chunk, dense: list[float] | None = None) -> IndexedChunk:
    vector = np.asarray(dense or DENSE[chunk.chunk_id], dtype=np.float32)
    return IndexedChunk(chunk=chunk, dense=vector, sparse=BM25.encode_document(chunk.content))


def vector(values: list[float]) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


BACKENDS = ["edge", "server"]


def opener(backend: str, root: Path, opened: list[VectorIndex]) -> OpenIndex:
    """Opens the same index location on each call (reopening works after close)."""

    def _open(dimension: int = DIM, metadata_keys: tuple[str, ...] = ("lang",)) -> VectorIndex:
        index: VectorIndex
        if backend == "edge":
            index = QdrantEdgeIndex.open(
                root / "edge", dimension=dimension, metadata_keys=metadata_keys
            )
        else:
            client = QdrantClient(path=str(root / "local"))
            index = server_index(client, "ondata_test", dimension, metadata_keys)
        opened.append(index)
        return index

    return _open


def server_index(
    client: QdrantClient, collection: str, dimension: int, metadata_keys: tuple[str, ...]
) -> QdrantServerIndex:
    """The server adapter on `client`, which is closed if the index cannot be opened."""
    try:
        return QdrantServerIndex.open(
            client, collection=collection, dimension=dimension, metadata_keys=metadata_keys
        )
    except Exception:
        client.close()
        raise


@pytest.fixture(params=BACKENDS)
def open_test_index(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OpenIndex]:
    """A fresh index location per test, for tests that write."""
    opened: list[VectorIndex] = []
    yield opener(request.param, tmp_path, opened)
    for index in opened:
        index.close()


@pytest.fixture(scope="module", params=BACKENDS)
def index(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[VectorIndex]:
    """The four sample chunks, shared by the read-only tests of one backend."""
    opened: list[VectorIndex] = []
    idx = opener(request.param, tmp_path_factory.mktemp(request.param), opened)()
    idx.upsert([indexed(chunk) for chunk in ALL])
    yield idx
    idx.close()


@pytest.fixture
def fresh(open_test_index: OpenIndex) -> VectorIndex:
    """The four sample chunks in an index of this test's own."""
    idx = open_test_index()
    idx.upsert([indexed(chunk) for chunk in ALL])
    return idx


def ids(hits: list) -> list[str]:  # type: ignore[type-arg]
    return [hit.chunk.chunk_id for hit in hits]


class TestVectorIndexContract:
    def test_index_upsert_then_count_all_and_per_document(self, index: VectorIndex) -> None:
        assert index.count() == 4
        assert index.count(doc_id="animals") == 2
        assert index.count(doc_id="missing") == 0

    def test_index_vector_query_ranks_nearest_first(self, index: VectorIndex) -> None:
        hits = index.query(IndexQuery(mode="vector", limit=4, dense=vector([0.1, 0.9, 0.2, 0])))
        assert ids(hits)[:2] == ["dog", "fish"]
        scores = [hit.score for hit in hits]
        assert scores == sorted(scores, reverse=True)
        assert scores[0] == pytest.approx(0.9 / np.linalg.norm([0.1, 0.9, 0.2]), rel=1e-4)

    def test_index_keyword_query_ranks_matching_terms_first(self, index: VectorIndex) -> None:
        sparse = BM25.encode_query("barking dog")
        hits = index.query(IndexQuery(mode="keyword", limit=4, sparse=sparse))
        assert ids(hits) == ["dog"]
        assert hits[0].score > 0

    def test_index_keyword_query_of_stopwords_finds_nothing(self, index: VectorIndex) -> None:
        hits = index.query(IndexQuery(mode="keyword", limit=4, sparse=BM25.encode_query("the of")))
        assert hits == []

    def test_index_hybrid_rrf_fuses_both_lists_in_engine(self, index: VectorIndex) -> None:
        # dense points at the cat; keywords name the tax chunk: both must surface
        request = IndexQuery(
            mode="hybrid",
            limit=2,
            dense=vector([1, 0, 0, 0.2]),
            sparse=BM25.encode_query("tax invoices"),
            fusion="rrf",
            rrf_k=60,
        )
        hits = index.query(request)
        assert set(ids(hits)) == {"cat", "tax"}
        agreed = index.query(
            IndexQuery(
                mode="hybrid",
                limit=1,
                dense=vector([0, 0, 0, 1]),
                sparse=BM25.encode_query("tax invoices"),
                fusion="rrf",
                rrf_k=60,
            )
        )
        assert ids(agreed) == ["tax"]
        assert agreed[0].score == pytest.approx(2 / 60, rel=1e-4)  # first in both lists

    def test_index_hybrid_dbsf_ranks_agreed_chunk_first(self, index: VectorIndex) -> None:
        request = IndexQuery(
            mode="hybrid",
            limit=4,
            dense=vector([0, 0.2, 1, 0]),
            sparse=BM25.encode_query("deep ocean fish"),
            fusion="dbsf",
        )
        hits = index.query(request)
        assert ids(hits)[0] == "fish"
        assert hits[0].score > 2 / 60  # normalised scores, not reciprocal ranks
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)

    @pytest.mark.parametrize(
        ("equals", "expected"),
        [
            ({"lang": "fr"}, {"fish"}),
            ({"year": [2023, 2024]}, {"cat", "dog", "fish"}),
            ({"year": 2024, "lang": "en"}, {"dog"}),
            ({"reviewed": True}, {"cat"}),
            ({"reviewed": False}, {"dog"}),
            ({"tags": "wild"}, {"fish"}),
            ({"nested.owner": "ops"}, {"tax"}),
            ({"metadata.lang": ["fr"]}, {"fish"}),
            ({"doc_id": ["animals", "finance"]}, {"cat", "dog", "tax"}),
            ({"filepath": "finance/tax.pdf"}, {"tax"}),
            ({"page": 3}, {"tax"}),
        ],
    )
    def test_index_equals_filter_keeps_only_matching_chunks(
        self,
        index: VectorIndex,
        equals: dict,
        expected: set[str],  # type: ignore[type-arg]
    ) -> None:
        flt = MetadataFilter(equals=equals)
        for mode in ("vector", "hybrid"):
            request = IndexQuery(
                mode=mode,
                limit=10,
                dense=vector([1, 1, 1, 1]),  # type: ignore[arg-type]
                sparse=BM25.encode_query("cats dogs fish tax"),
                filter=flt,
            )
            assert set(ids(index.query(request))) == expected

    @pytest.mark.parametrize(
        ("groups", "expected"),
        [
            ((), {"cat", "tax"}),
            (("staff",), {"cat", "tax", "dog"}),
            (("staff", "hr", "other"), {"cat", "tax", "dog", "fish"}),
            (("nobody",), {"cat", "tax"}),
        ],
    )
    def test_index_acl_filter_keeps_public_and_member_chunks(
        self, index: VectorIndex, groups: tuple[str, ...], expected: set[str]
    ) -> None:
        flt = MetadataFilter(acl_groups=groups)
        for mode in ("vector", "keyword", "hybrid"):
            request = IndexQuery(
                mode=mode,
                limit=10,
                dense=vector([1, 1, 1, 1]),  # type: ignore[arg-type]
                sparse=BM25.encode_query("cats dogs fish tax"),
                filter=flt,
            )
            assert set(ids(index.query(request))) == expected

    def test_index_delete_keeps_listed_chunks(self, fresh: VectorIndex) -> None:
        index = fresh
        assert index.delete(doc_id="animals", keep_chunk_ids=["cat"]) == 1
        assert index.count(doc_id="animals") == 1
        assert index.delete(doc_id="animals", keep_chunk_ids=["cat"]) == 0
        assert index.delete(doc_id="animals") == 1
        assert index.delete(doc_id="missing") == 0
        assert index.count() == 2

    def test_index_delete_documents_removes_all_their_chunks_at_once(
        self, fresh: VectorIndex
    ) -> None:
        removed = fresh.delete_documents(["animals", "finance", "animals", "no-such-doc"])
        assert removed == 3
        assert fresh.count() == 1
        assert fresh.count(doc_id="ocean") == 1
        assert fresh.delete_documents([]) == 0
        assert fresh.delete_documents(["animals"]) == 0

    def test_index_reupsert_replaces_without_duplicates(self, fresh: VectorIndex) -> None:
        index = fresh
        changed = CAT.model_copy(update={"content": "Cats nap all afternoon"})
        index.upsert([indexed(changed), indexed(DOG)])
        assert index.count() == 4
        hits = index.query(IndexQuery(mode="vector", limit=1, dense=vector([1, 0, 0, 0])))
        assert hits[0].chunk.content == "Cats nap all afternoon"
        assert (
            index.query(IndexQuery(mode="keyword", limit=4, sparse=BM25.encode_query("purr"))) == []
        )

    def test_index_hit_rebuilds_the_stored_chunk(self, index: VectorIndex) -> None:
        for chunk in ALL:
            request = IndexQuery(mode="vector", limit=1, dense=vector(DENSE[chunk.chunk_id]))
            (hit,) = index.query(request)
            assert hit.chunk == chunk

    def test_index_rebuilds_embed_text_stored_as_its_heading_only(self, fresh: VectorIndex) -> None:
        headed = make_chunk("headed", "manual", "Wear gloves near the press")
        headed = headed.model_copy(update={"embed_text": f"Manual > Safety\n{headed.content}"})
        odd = make_chunk("odd", "manual", "Text the heading does not end with")
        odd = odd.model_copy(update={"embed_text": "Another text altogether"})
        fresh.upsert([indexed(headed, [0, 0, 0, 1]), indexed(odd, [0, 0, 1, 0])])
        manual = MetadataFilter(equals={"doc_id": "manual"})
        request = IndexQuery(mode="vector", limit=5, dense=vector([0, 0, 1, 1]), filter=manual)
        assert sorted(hit.chunk.chunk_id for hit in fresh.query(request)) == ["headed", "odd"]
        for hit in fresh.query(request):
            assert hit.chunk == (headed if hit.chunk.chunk_id == "headed" else odd)
        scanned = {p["embed_text"] for _, p in fresh.scan_payload(["embed_text"])}
        assert {headed.embed_text, odd.embed_text} <= scanned

    @pytest.mark.parametrize("mode", ["vector", "hybrid", "keyword"])
    def test_index_dense_score_is_each_hits_cosine_in_every_mode(
        self, index: VectorIndex, mode: SearchMode
    ) -> None:
        query = vector([0.6, 0.8, 0, 0])
        sparse = BM25.encode_query("cats dogs fish tax")
        request = IndexQuery(mode=mode, limit=4, dense=query, sparse=sparse, with_dense_score=True)
        hits = index.query(request)
        assert hits
        for hit in hits:
            stored = vector(DENSE[hit.chunk.chunk_id])
            assert hit.dense_score == pytest.approx(float(stored @ query), abs=1e-5)
        plain = index.query(IndexQuery(mode="vector", limit=4, dense=query))
        assert all(hit.dense_score is None for hit in plain)

    def test_index_sentence_vectors_only_come_back_when_asked(
        self, open_test_index: OpenIndex
    ) -> None:
        index = open_test_index()
        stored = indexed(CAT)
        index.upsert([IndexedChunk(stored.chunk, stored.dense, stored.sparse, "AQID")])
        request = IndexQuery(mode="vector", limit=1, dense=vector([1, 0, 0, 0]))
        (plain,) = index.query(request)
        assert plain.sentence_vectors is None
        assert plain.chunk == CAT
        (full,) = index.query(replace(request, with_sentence_vectors=True))
        assert full.sentence_vectors == "AQID"
        assert full.chunk == CAT
        assert "sentence_vectors" not in full.model_dump()

    def test_index_maintain_is_safe_after_writes_and_idempotent(
        self, open_test_index: OpenIndex
    ) -> None:
        index = open_test_index()
        index.upsert([indexed(chunk) for chunk in ALL])
        assert index.maintain() is False  # 4 points: nothing worth building
        index.upsert(
            [indexed(make_chunk(f"b{i}", "bulk", f"text {i}"), [0, 0, 1, 1]) for i in range(1_500)]
        )
        index.maintain()
        assert index.maintain() is False  # nothing new since
        hits = index.query(IndexQuery(mode="vector", limit=1, dense=vector([1, 0, 0, 0])))
        assert ids(hits) == ["cat"]
        assert index.count() == 1_504

    def test_index_reopened_sees_its_data(self, open_test_index: OpenIndex) -> None:
        first = open_test_index()
        first.upsert([indexed(chunk) for chunk in ALL])
        first.delete(doc_id="ocean")
        first.close()
        again = open_test_index()
        assert again.count() == 3
        hits = again.query(IndexQuery(mode="keyword", limit=1, sparse=BM25.encode_query("tax")))
        assert hits[0].chunk == TAX

    def test_index_scans_payload_fields_and_updates_sparse_vectors(
        self, fresh: VectorIndex
    ) -> None:
        scanned = dict(fresh.scan_payload(["embed_text"]))
        assert sorted(p["embed_text"] for p in scanned.values()) == sorted(
            c.embed_text for c in ALL
        )
        assert all(set(p) == {"embed_text"} for p in scanned.values())
        tax_point = next(pid for pid, p in scanned.items() if p["embed_text"] == TAX.embed_text)
        # the tax chunk now holds the fish chunk's terms: keyword search follows, vector does not
        fresh.update_sparse([(tax_point, BM25.encode_document(FISH.content))])
        hits = fresh.query(IndexQuery(mode="keyword", limit=4, sparse=BM25.encode_query("ocean")))
        assert set(ids(hits)) == {"fish", "tax"}
        nearest = fresh.query(IndexQuery(mode="vector", limit=1, dense=vector([0, 0, 0, 1])))
        assert nearest[0].chunk == TAX

    def test_index_metadata_merges_and_survives_reopening(self, open_test_index: OpenIndex) -> None:
        first = open_test_index()
        assert first.read_metadata() == {}
        first.write_metadata({"bm25": {"avg_len": 7.5}})
        first.write_metadata({"other": 1})
        first.close()
        assert open_test_index().read_metadata() == {"bm25": {"avg_len": 7.5}, "other": 1}

    def test_index_blobs_replace_whole_and_survive_reopening(
        self, open_test_index: OpenIndex
    ) -> None:
        first = open_test_index()
        assert first.read_blob("bm25-terms") is None
        large = bytes(range(256)) * 10_000  # 2.5 MB: several parts on a server
        first.write_blob("bm25-terms", large)
        assert first.read_blob("bm25-terms") == large
        first.write_blob("bm25-terms", b"short")
        first.write_blob("other", b"")
        assert first.read_blob("bm25-terms") == b"short"
        with pytest.raises(ValueError, match="blob name"):
            first.write_blob("../escape", b"x")
        first.close()
        again = open_test_index()
        assert (again.read_blob("bm25-terms"), again.read_blob("other")) == (b"short", b"")
        again.drop()
        assert open_test_index().read_blob("bm25-terms") is None

    def test_index_keyword_scores_follow_its_term_table(self, open_test_index: OpenIndex) -> None:
        """Both adapters weigh a query term by its table's document IDF over chunk IDF."""
        index = open_test_index()
        index.upsert([indexed(c) for c in ALL])
        query = IndexQuery(mode="keyword", limit=4, sparse=BM25.encode_query("tax"))
        before = {h.chunk.chunk_id: h.score for h in index.query(query)}
        (tax,) = BM25.encode_query("tax").indices
        # "tax" in three chunks of one document of two; four chunks in all
        pairs = [("a", [tax]), ("a", [tax]), ("a", [tax]), ("b", [tax + 1])]
        index.write_blob("bm25-terms", TermTable.build(pairs).to_bytes())
        after = {h.chunk.chunk_id: h.score for h in index.query(query)}
        assert set(after) == set(before) == {"tax"}
        ratio = float(idf(2, 1) / idf(4, 3))
        assert after["tax"] == pytest.approx(before["tax"] * ratio, rel=1e-5)

    def test_index_refuses_another_dimension(self, open_test_index: OpenIndex) -> None:
        open_test_index().close()
        with pytest.raises(ConfigurationError, match="4-d"):
            open_test_index(dimension=8)

    def test_index_rejects_malformed_requests(self, index: VectorIndex) -> None:
        with pytest.raises(InvalidRequestError, match="dense"):
            index.query(IndexQuery(mode="vector", limit=3))
        with pytest.raises(InvalidRequestError, match="sparse"):
            index.query(IndexQuery(mode="hybrid", limit=3, dense=vector([1, 0, 0, 0])))
        with pytest.raises(InvalidRequestError, match="4-d"):
            index.upsert([indexed(CAT, dense=[1.0, 0.0])])
        with pytest.raises(InvalidRequestError, match="limit"):
            index.query(IndexQuery(mode="vector", limit=0, dense=vector([1, 0, 0, 0])))

    def test_index_drop_removes_everything(self, open_test_index: OpenIndex) -> None:
        index = open_test_index()
        index.upsert([indexed(CAT)])
        index.drop()
        assert open_test_index().count() == 0


def test_edge_index_serves_queries_from_threads(tmp_path: Path) -> None:
    index = QdrantEdgeIndex.open(tmp_path / "edge", dimension=DIM)
    index.upsert([indexed(chunk) for chunk in ALL])
    request = IndexQuery(
        mode="hybrid", limit=2, dense=vector([0, 1, 0, 0]), sparse=BM25.encode_query("dogs bark")
    )
    results: list[list[str]] = []

    def worker() -> None:
        results.extend(ids(index.query(request)) for _ in range(20))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 80
    assert all(result[0] == "dog" for result in results)
    index.close()
    with pytest.raises(IndexBackendError, match="closed"):
        index.query(request)


def test_edge_index_second_open_of_one_directory_fails(tmp_path: Path) -> None:
    index = QdrantEdgeIndex.open(tmp_path / "edge", dimension=DIM)
    with pytest.raises(IndexLockedError, match=r"open in another process.*ondata serve") as err:
        QdrantEdgeIndex.open(tmp_path / "edge", dimension=DIM)
    assert err.value.code == "index_locked"
    assert "--url" in err.value.message
    index.close()


def test_open_index_edge_lives_under_data_dir_and_drops(settings: Settings) -> None:
    index = open_index(settings, "handbook", dimension=DIM)
    assert isinstance(index, QdrantEdgeIndex)
    index.upsert([indexed(CAT)])
    index.close()
    path = edge_index_path(settings, "handbook")
    assert path == settings.data_dir / "indexes" / "handbook"
    assert path.is_dir()
    assert drop_index(settings, "handbook") is True
    assert drop_index(settings, "handbook") is False
    assert not path.exists()


@pytest.mark.parametrize("name", ["../escape", "", "a/b", ".hidden", "x" * 129])
def test_open_index_rejects_unsafe_names(settings: Settings, name: str) -> None:
    with pytest.raises(InvalidRequestError, match="index name"):
        open_index(settings, name, dimension=DIM)


def test_open_index_server_unreachable_is_backend_error(settings: Settings) -> None:
    server = settings.model_copy(
        update={"index": IndexSettings(backend="server", url="http://127.0.0.1:9")}
    )
    with pytest.raises(IndexBackendError, match="qdrant"):
        open_index(server, "handbook", dimension=DIM)


def test_edge_index_maintain_builds_the_vector_index_of_a_large_shard(tmp_path: Path) -> None:
    index = QdrantEdgeIndex.open(tmp_path / "big", dimension=384)
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(8_000, 384)).astype(np.float32)  # 12 MB: above Edge's threshold
    sparse = BM25.encode_document("text")
    for start in range(0, len(vectors), 2_000):
        chunks = [make_chunk(f"p{i}", "bulk", f"text {i}") for i in range(start, start + 2_000)]
        index.upsert([IndexedChunk(c, vectors[start + j], sparse) for j, c in enumerate(chunks)])
    unindexed = index._live().info().indexed_vectors_count
    assert index.maintain() is True
    assert index._live().info().indexed_vectors_count == unindexed + 8_000  # dense now indexed
    assert index.maintain() is False
    (hit,) = index.query(IndexQuery(mode="vector", limit=1, dense=vectors[4_321]))
    assert hit.chunk.chunk_id == "p4321"
    index.close()


def test_edge_index_optimized_apart_keeps_the_contract(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The shard swapped in by an optimise apart answers as the one it replaced."""
    index = QdrantEdgeIndex.open(
        tmp_path / "edge", dimension=DIM, metadata_keys=("lang",), optimize_apart_from=0
    )
    index.upsert([indexed(chunk) for chunk in ALL])
    requests = [
        IndexQuery(mode="vector", limit=4, dense=vector([0, 1, 0, 0])),
        IndexQuery(mode="keyword", limit=4, sparse=BM25.encode_query("tax deadlines")),
        IndexQuery(
            mode="hybrid",
            limit=4,
            dense=vector([0, 0, 1, 0]),
            sparse=BM25.encode_query("fish ocean"),
            filter=MetadataFilter(equals={"lang": "fr"}, acl_groups=("hr",)),
        ),
    ]
    before = [ids(index.query(request)) for request in requests]
    with caplog.at_level(logging.INFO, logger="retrieval.index.edge"):
        index.optimize()  # the child process and the swap, whatever it finds to build
    assert "optimized a copy" in caplog.text
    assert [ids(index.query(request)) for request in requests] == before
    assert index.count() == 4
    assert index.delete(doc_id="animals") == 2
    assert index.count() == 2
    (tax,) = index.query(IndexQuery(mode="vector", limit=1, dense=vector([0, 0, 0, 1])))
    assert tax.chunk.page == 3
    assert tax.chunk.section == "Deadlines"
    index.close()


def test_edge_index_keyword_indexes_are_mapped_and_older_ones_rebuilt(tmp_path: Path) -> None:
    """Filtered fields get memory-mapped keyword indexes; one in RAM (from before) is rebuilt."""
    path = tmp_path / "edge"
    index = QdrantEdgeIndex.open(path, dimension=DIM, metadata_keys=("lang",))
    index.upsert([indexed(chunk) for chunk in ALL])
    shard = index._live()
    for key in ("acl_groups", "doc_id", "metadata.lang"):  # as an index made before this had them
        shard.update(edge.UpdateOperation.delete_field_index(key))
        shard.update(edge.UpdateOperation.create_field_index(key, edge.PayloadSchemaType.Keyword))
    assert shard.info().payload_schema["doc_id"].params is None  # in RAM, the engine's default
    index.close()

    index = QdrantEdgeIndex.open(path, dimension=DIM, metadata_keys=("lang",))
    schema = index._live().info().payload_schema
    assert {k for k, info in schema.items() if _mapped(info)} >= {
        "acl_groups",
        "doc_id",
        "filepath",
        "metadata.lang",
    }
    assert schema["doc_id"].points == 4  # rebuilt over every point
    hybrid = IndexQuery(
        mode="hybrid",
        limit=4,
        dense=vector([0, 0, 1, 0]),
        sparse=BM25.encode_query("fish ocean"),
        filter=MetadataFilter(equals={"lang": "fr"}, acl_groups=("hr",)),
    )
    assert ids(index.query(hybrid)) == ["fish"]
    assert index.count(doc_id="animals") == 2
    assert index.delete(doc_id="animals") == 2
    index.close()


def test_edge_index_keeps_its_segments_through_optimises_apart(tmp_path: Path) -> None:
    """`segments` indexed segments survive each optimise (the child's too), smallest merged."""
    # the first two rounds optimise in place, the third apart (in the child)
    index = QdrantEdgeIndex.open(
        tmp_path / "edge", dimension=384, optimize_apart_from=20_000, segments=2
    )
    rng = np.random.default_rng(5)
    vectors = rng.normal(size=(3 * 7_000, 384)).astype(np.float32)  # 10.3 MB a round: indexed
    sparse = BM25.encode_document("text")
    counts = []
    for start in range(0, len(vectors), 7_000):
        chunks = [make_chunk(f"p{i}", "bulk", f"text {i}") for i in range(start, start + 7_000)]
        index.upsert([IndexedChunk(c, vectors[start + j], sparse) for j, c in enumerate(chunks)])
        assert index.optimize() is True
        counts.append(index.segment_count())
    assert counts == [2, 3, 3]  # the indexed ones and the (empty) appendable one
    assert index._live().info().indexed_vectors_count >= len(vectors)
    assert index.last_optimize  # the third round's optimise ran apart
    for i in (17, 7_017, 14_017):  # one of each round, wherever the merges put it
        (hit,) = index.query(IndexQuery(mode="vector", limit=1, dense=vectors[i]))
        assert hit.chunk.chunk_id == f"p{i}"
    index.close()
