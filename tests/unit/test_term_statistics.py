"""The term table: how many documents and chunks hold each term, and the query weights that
turn the engine's chunk IDF into BM25's document IDF."""

from __future__ import annotations

import math

import pytest

from core.errors import IndexBackendError
from core.models import SparseVector
from retrieval.term_statistics import DocumentIdf, TermTable, idf

# document "long" in three chunks, each with term 7 (its title); "short" in one, with 7 and 9
CHUNKS = [("long", [7, 1]), ("long", [7, 2]), ("long", [7, 3, 3]), ("short", [7, 9])]


def lucene_idf(total: int, containing: int) -> float:
    return math.log(1 + (total - containing + 0.5) / (containing + 0.5))


def test_counts_documents_and_chunks_per_term() -> None:
    table = TermTable.build(CHUNKS, encoding_version=5)
    assert (table.documents, table.chunks, table.encoding_version) == (2, 4, 5)
    counts = {
        int(t): (int(d), int(c))
        for t, d, c in zip(table.terms, table.in_documents, table.in_chunks, strict=True)
    }
    assert counts == {1: (1, 1), 2: (1, 1), 3: (1, 1), 7: (2, 4), 9: (1, 1)}


def test_survives_bytes_and_rejects_what_is_not_a_table() -> None:
    table = TermTable.build(CHUNKS, encoding_version=3)
    back = TermTable.from_bytes(table.to_bytes())
    assert (back.documents, back.chunks, back.encoding_version) == (2, 4, 3)
    assert back.terms.tolist() == table.terms.tolist()
    assert back.in_documents.tolist() == table.in_documents.tolist()
    assert back.in_chunks.tolist() == table.in_chunks.tolist()
    with pytest.raises(IndexBackendError, match="term table"):
        TermTable.from_bytes(b"not a table at all, not even close")
    with pytest.raises(IndexBackendError, match="term table"):
        TermTable.from_bytes(table.to_bytes()[:-3])


def test_query_weights_carry_document_over_chunk_idf() -> None:
    table = TermTable.build(CHUNKS)
    weighted = table.query_weights(SparseVector(indices=(7, 9, 42), values=(2.0, 1.0, 1.0)))
    assert weighted.indices == (7, 9, 42)
    expected = [
        2.0 * lucene_idf(2, 2) / lucene_idf(4, 4),
        lucene_idf(2, 1) / lucene_idf(4, 1),
        lucene_idf(2, 1) / lucene_idf(4, 1),  # unknown: as if in one chunk of one document
    ]
    assert list(weighted.values) == pytest.approx(expected)
    assert float(idf(4, 4)) == pytest.approx(lucene_idf(4, 4))


def test_an_empty_table_or_query_changes_nothing() -> None:
    query = SparseVector(indices=(7,), values=(1.0,))
    assert TermTable.build([]).query_weights(query) == query
    empty = SparseVector(indices=(), values=())
    assert TermTable.build(CHUNKS).query_weights(empty) == empty


def test_stale_once_the_index_moves_past_the_tolerance_or_the_tokenizer_changes() -> None:
    table = TermTable.build(CHUNKS, encoding_version=1)  # 4 chunks
    assert not table.stale_for(4, tolerance=0.1, encoding_version=1)
    assert table.stale_for(5, tolerance=0.1, encoding_version=1)
    assert not table.stale_for(5, tolerance=0.25, encoding_version=1)
    assert table.stale_for(4, tolerance=0.1, encoding_version=2)


def test_document_idf_reads_a_new_table_when_its_version_changes() -> None:
    blobs = {"data": TermTable.build(CHUNKS[:1]).to_bytes(), "version": 1}
    reads: list[int] = []

    def read() -> bytes | None:
        reads.append(1)
        return blobs["data"]  # type: ignore[return-value]

    view = DocumentIdf(read, lambda: blobs["version"], recheck_seconds=0.0)
    first = view.table()
    assert first is not None
    assert first.documents == 1
    assert view.table() is first
    assert len(reads) == 1
    blobs.update(data=TermTable.build(CHUNKS).to_bytes(), version=2)
    second = view.table()
    assert second is not None
    assert second.documents == 2
    assert len(reads) == 2
    blobs.update(version=None)
    assert view.table() is None
    assert view.query_weights(None) is None


def test_document_idf_looks_for_a_new_table_only_every_so_often() -> None:
    versions = iter(range(100))
    view = DocumentIdf(lambda: None, lambda: next(versions), recheck_seconds=3600.0)
    view.table()
    view.table()
    assert next(versions) == 1  # looked once
    view.invalidate()
    view.table()
    assert next(versions) == 3


def test_document_idf_goes_on_without_an_unreadable_table(caplog: pytest.LogCaptureFixture) -> None:
    view = DocumentIdf(lambda: b"garbage", lambda: 1, recheck_seconds=0.0)
    query = SparseVector(indices=(7,), values=(1.0,))
    assert view.query_weights(query) == query
    assert "unreadable BM25 term table" in caplog.text
