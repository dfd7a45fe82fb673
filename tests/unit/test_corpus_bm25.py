"""BM25 statistics that follow the index: an index's keyword scores depend on its documents,
never on the order in which they came and went."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from core.models import Chunk
from retrieval.corpus_bm25 import (
    METADATA_KEY,
    TERMS_BLOB,
    TERMS_METADATA_KEY,
    Bm25Parameters,
    CorpusBm25,
)
from retrieval.index import IndexedChunk, IndexQuery, QdrantEdgeIndex, VectorIndex
from retrieval.sparse import Bm25Encoder
from retrieval.term_statistics import TermTable

DOCS = {
    "tax": "Quarterly tax filing deadlines for supplier invoices and tax refunds",
    "cats": "Cats purr and sleep in the warm sun",
    "ocean": "Fish swim in the deep blue ocean, far from the tax office and its invoices, "
    "where whales sing long songs to each other across the cold dark water",
    "leave": "Parental leave lasts sixteen weeks; invoices for childcare are refunded",
}
QUERIES = ("tax invoices", "ocean fish", "leave refunds", "warm sun cats")
QUERY = Bm25Encoder()


def chunk(doc_id: str) -> Chunk:
    text = DOCS[doc_id]
    return Chunk(
        chunk_id=f"{doc_id}-0",
        doc_id=doc_id,
        chunk_index=0,
        content=text,
        embed_text=text,
        title=doc_id,
        content_hash=f"h-{doc_id}",
    )


def write(index: VectorIndex, bm25: CorpusBm25, doc_ids: Sequence[str]) -> None:
    """What the ingestion pipeline does: encode like the index, upsert, refresh."""
    items = [
        IndexedChunk(
            chunk=chunk(d),
            dense=np.ones(4, dtype=np.float32),
            sparse=bm25.encode_document(DOCS[d]),
        )
        for d in doc_ids
    ]
    index.upsert(items)
    bm25.refresh()


def scores(index: VectorIndex) -> dict[tuple[str, str], float]:
    out = {}
    for query in QUERIES:
        request = IndexQuery(mode="keyword", limit=10, sparse=QUERY.encode_query(query))
        for hit in index.query(request):
            out[(query, hit.chunk.chunk_id)] = hit.score
    return out


@pytest.fixture
def indexes(tmp_path: Path) -> Iterator[list[QdrantEdgeIndex]]:
    opened = [QdrantEdgeIndex.open(tmp_path / f"i{n}", dimension=4) for n in range(2)]
    yield opened
    for index in opened:
        index.close()


def test_corpus_bm25_encodes_with_the_index_mean_chunk_length(
    indexes: list[QdrantEdgeIndex],
) -> None:
    index, reference = indexes
    write(index, CorpusBm25(index), list(DOCS))
    mean = sum(QUERY.length(text) for text in DOCS.values()) / len(DOCS)
    assert index.read_metadata()[METADATA_KEY]["avg_len"] == pytest.approx(mean)
    direct = Bm25Encoder(avg_len=mean)
    reference.upsert(
        [
            IndexedChunk(chunk(d), np.ones(4, dtype=np.float32), direct.encode_document(t))
            for d, t in DOCS.items()
        ]
    )
    assert scores(index) == pytest.approx(scores(reference))


@pytest.mark.parametrize("tolerance", [0.1, 0.0])
def test_corpus_bm25_deleted_and_readded_documents_score_as_in_a_fresh_index(
    indexes: list[QdrantEdgeIndex], tolerance: float
) -> None:
    churned, fresh = indexes
    params = Bm25Parameters(tolerance=tolerance)
    bm25 = CorpusBm25(churned, params)
    write(churned, bm25, ["tax", "cats"])
    write(churned, bm25, ["ocean", "leave"])
    churned.delete(doc_id="ocean")
    churned.delete(doc_id="tax")
    if tolerance == 0.0:
        # the short documents left move the mean: everything is re-encoded to it
        assert bm25.refresh() is True
    write(churned, bm25, ["ocean", "tax"])
    # Qdrant's IDF still counts the deleted points until their segment is vacuumed
    churned.optimize()
    write(fresh, CorpusBm25(fresh, params), list(DOCS))
    assert scores(churned) == pytest.approx(scores(fresh), rel=1e-6)


def test_corpus_bm25_migrates_an_index_encoded_before_it(indexes: list[QdrantEdgeIndex]) -> None:
    legacy, fresh = indexes
    old = Bm25Encoder()  # the fixed mean length of 256 every index had
    legacy.upsert(
        [
            IndexedChunk(chunk(d), np.ones(4, dtype=np.float32), old.encode_document(t))
            for d, t in DOCS.items()
        ]
    )
    bm25 = CorpusBm25(legacy)
    assert bm25.encoding.avg_len == 256.0  # no metadata: what it was encoded with
    assert bm25.refresh() is True
    assert bm25.refresh() is False  # nothing changed since
    write(fresh, CorpusBm25(fresh), list(DOCS))
    assert scores(legacy) == pytest.approx(scores(fresh), rel=1e-6)


def test_corpus_bm25_re_encodes_when_a_parameter_changes(indexes: list[QdrantEdgeIndex]) -> None:
    index, _ = indexes
    write(index, CorpusBm25(index), list(DOCS))
    before = scores(index)
    changed = CorpusBm25(index, Bm25Parameters(k1=0.5))
    assert changed.refresh() is True
    assert index.read_metadata()[METADATA_KEY]["k1"] == 0.5
    assert scores(index) != pytest.approx(before)


def test_corpus_bm25_fixed_statistics_keep_the_configured_mean(
    indexes: list[QdrantEdgeIndex],
) -> None:
    index, _ = indexes
    write(index, CorpusBm25(index, Bm25Parameters(statistics="fixed", avg_len=80.0)), list(DOCS))
    assert index.read_metadata()[METADATA_KEY]["avg_len"] == 80.0


def test_corpus_bm25_measures_a_large_index_on_a_sample(indexes: list[QdrantEdgeIndex]) -> None:
    index = indexes[0]
    bm25 = CorpusBm25(index, sample=3)
    items = []
    for i in range(40):
        doc = "cats" if i % 2 else "ocean"
        text = DOCS[doc]
        piece = chunk(doc).model_copy(update={"chunk_id": f"{doc}-{i}", "doc_id": f"d{i}"})
        items.append(IndexedChunk(piece, np.ones(4, dtype=np.float32), bm25.encode_document(text)))
    index.upsert(items)
    bm25.refresh()
    stored = index.read_metadata()[METADATA_KEY]
    # the first 3 chunks in scroll order stand for all 40
    first = [p["embed_text"] for _, p in index.scan_payload(["embed_text"])][:3]
    measured = sum(QUERY.length(text) for text in first)
    assert stored["chunks"] == 40
    assert stored["tokens"] == round(measured * 40 / 3)
    assert stored["avg_len"] == pytest.approx(round(measured * 40 / 3) / 40)


def test_keyword_scores_count_documents_not_chunks_in_the_idf(
    indexes: list[QdrantEdgeIndex],
) -> None:
    """A term in the title of a three-chunk document is as rare as it is in documents."""
    index, _ = indexes
    bm25 = CorpusBm25(index)
    pieces = {
        "manual#0": ("manual", "Invoices: how suppliers send them"),
        "manual#1": ("manual", "Invoices: who approves them"),
        "manual#2": ("manual", "Invoices: when they are paid"),
        "cats#0": ("cats", "Cats purr and sleep in the warm sun"),
        "ocean#0": ("ocean", "Fish swim in the deep blue ocean, far from the invoices"),
    }
    items = []
    for chunk_id, (doc_id, text) in pieces.items():
        piece = chunk("cats").model_copy(
            update={"chunk_id": chunk_id, "doc_id": doc_id, "content": text, "embed_text": text}
        )
        items.append(IndexedChunk(piece, np.ones(4, dtype=np.float32), bm25.encode_document(text)))
    index.upsert(items)
    bm25.refresh()
    assert index.read_metadata()[TERMS_METADATA_KEY]["documents"] == 3
    term = QUERY.encode_query("invoices").indices[0]
    # in 2 of the 3 documents (and 4 of the 5 chunks)
    document_idf = math.log(1 + (3 - 2 + 0.5) / (2 + 0.5))
    request = IndexQuery(mode="keyword", limit=10, sparse=QUERY.encode_query("invoices"))
    hits = index.query(request)
    assert len(hits) == 4
    for hit in hits:
        stored = bm25.encode_document(hit.chunk.embed_text)
        weight = dict(zip(stored.indices, stored.values, strict=True))[term]
        assert hit.score == pytest.approx(document_idf * weight, rel=1e-5)


def test_a_large_index_rebuilds_its_term_table_once_it_outgrows_it(
    indexes: list[QdrantEdgeIndex],
) -> None:
    index = indexes[0]
    bm25 = CorpusBm25(index, sample=3)

    def add(start: int, stop: int) -> None:
        items = []
        for i in range(start, stop):
            doc = "cats" if i % 2 else "ocean"
            piece = chunk(doc).model_copy(update={"chunk_id": f"{doc}-{i}", "doc_id": f"d{i}"})
            items.append(
                IndexedChunk(piece, np.ones(4, dtype=np.float32), bm25.encode_document(DOCS[doc]))
            )
        index.upsert(items)
        bm25.refresh()

    add(0, 40)
    assert index.read_metadata()[TERMS_METADATA_KEY]["chunks"] == 40  # every chunk read
    add(40, 43)  # within the 10% tolerance: kept
    assert index.read_metadata()[TERMS_METADATA_KEY]["chunks"] == 40
    add(43, 50)
    terms = index.read_metadata()[TERMS_METADATA_KEY]
    assert (terms["chunks"], terms["documents"]) == (50, 50)
    stored = index.read_blob(TERMS_BLOB)
    assert stored is not None
    assert TermTable.from_bytes(stored).chunks == 50
