"""Citation verification: [docN] parsing, compact numbering, unknown markers."""

from __future__ import annotations

from core.models import Chunk, ScoredChunk
from retrieval.citations import (
    NOT_FOUND_MESSAGE,
    is_refusal,
    verify_citations,
)


def _doc(n: int) -> ScoredChunk:
    chunk = Chunk(
        chunk_id=f"d{n}#0",
        doc_id=f"d{n}",
        chunk_index=0,
        content=f"content {n}",
        embed_text=f"content {n}",
        title=f"Title {n}",
        filepath=f"/docs/{n}.pdf",
        url=f"https://intra/{n}",
        page=n,
        content_hash=f"h{n}",
    )
    return ScoredChunk(chunk=chunk, score=1.0 / n)


DOCS = [_doc(n) for n in range(1, 6)]


def test_verify_citations_renumbers_compactly_in_order_of_first_appearance() -> None:
    verified = verify_citations("Hotels cost 180 [doc3]. Trains [doc1]. Again [doc3].", DOCS)
    assert verified.content == "Hotels cost 180 [doc1]. Trains [doc2]. Again [doc1]."
    assert [c.chunk_id for c in verified.citations] == ["d3#0", "d1#0"]
    assert verified.removed_markers == 0


def test_verify_citations_removes_and_counts_markers_that_name_nothing_retrieved() -> None:
    verified = verify_citations("A fact [doc9]. Another [doc2][doc0].", DOCS)
    assert verified.content == "A fact. Another [doc1]."
    assert verified.removed_markers == 2
    assert [c.doc_id for c in verified.citations] == ["d2"]


def test_verify_citations_accepts_lists_and_loose_spelling() -> None:
    verified = verify_citations("Both [doc2, doc4] and [Doc 5,2] and [doc1,7].", DOCS)
    assert verified.content == "Both [doc1][doc2] and [doc3][doc1] and [doc4]."
    assert [c.doc_id for c in verified.citations] == ["d2", "d4", "d5", "d1"]
    assert verified.removed_markers == 1


def test_verify_citations_carries_every_citation_field() -> None:
    citation = verify_citations("x [doc4]", DOCS).citations[0]
    assert citation.model_dump() == {
        "content": "content 4",
        "title": "Title 4",
        "url": "https://intra/4",
        "filepath": "/docs/4.pdf",
        "chunk_id": "d4#0",
        "doc_id": "d4",
        "page": 4,
    }


def test_verify_citations_without_markers_cites_nothing() -> None:
    verified = verify_citations("No markers here, [note] and [doc] stay.", DOCS)
    assert verified.content == "No markers here, [note] and [doc] stay."
    assert verified.citations == ()


def test_is_refusal_recognises_the_in_scope_sentence_with_noise() -> None:
    assert is_refusal(NOT_FOUND_MESSAGE)
    assert is_refusal("  the requested information is not available in the retrieved data [doc1]")
    assert not is_refusal("Hotels cost 180 euros [doc1].")
