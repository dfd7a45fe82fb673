"""Citation verification: [docN] parsing, the prompt's numbering, unknown markers, streaming."""

from __future__ import annotations

import pytest

from core.models import Chunk, ScoredChunk
from retrieval.citations import (
    NOT_FOUND_MESSAGE,
    StreamingMarkerFilter,
    could_become_refusal,
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


def test_verify_citations_keeps_the_prompts_numbering_and_lists_every_document() -> None:
    verified = verify_citations("Hotels cost 180 [doc3]. Trains [doc1]. Again [doc3].", DOCS)
    assert verified.content == "Hotels cost 180 [doc3]. Trains [doc1]. Again [doc3]."
    assert [c.chunk_id for c in verified.citations] == [f"d{n}#0" for n in range(1, 6)]
    assert verified.removed_markers == 0


def test_verify_citations_removes_and_counts_markers_that_name_nothing_retrieved() -> None:
    verified = verify_citations("A fact [doc9]. Another [doc2][doc0].", DOCS)
    assert verified.content == "A fact. Another [doc2]."
    assert verified.removed_markers == 2
    assert verified.citations[1].doc_id == "d2"


def test_verify_citations_accepts_lists_and_loose_spelling() -> None:
    verified = verify_citations("Both [doc2, doc4] and [Doc 5,2] and [doc1,7].", DOCS)
    assert verified.content == "Both [doc2][doc4] and [doc5][doc2] and [doc1]."
    assert verified.removed_markers == 1


def test_verify_citations_carries_every_citation_field() -> None:
    citation = verify_citations("x [doc4]", DOCS).citations[3]
    assert citation.model_dump() == {
        "content": "content 4",
        "title": "Title 4",
        "url": "https://intra/4",
        "filepath": "/docs/4.pdf",
        "chunk_id": "d4#0",
        "doc_id": "d4",
        "page": 4,
    }


def test_verify_citations_without_markers_leaves_the_text_alone() -> None:
    verified = verify_citations("No markers here, [note] and [doc] stay.", DOCS)
    assert verified.content == "No markers here, [note] and [doc] stay."
    assert len(verified.citations) == len(DOCS)


def test_verify_citations_without_documents_removes_every_marker() -> None:
    verified = verify_citations("Cold [doc1].", [])
    assert (verified.content, verified.citations, verified.removed_markers) == ("Cold.", (), 1)


TEXTS = [
    "Hotels cost 180 [doc3]. Trains [doc1]. Again [doc3].",
    "  Breakfast [doc9] is included [doc2] . Hotels [doc1, doc3] cost 180 [doc1]  ",
    "Both [Doc 5,2] and [doc1,7] and an array[0] and [note].\n\nNext [doc8]\n",
    "[doc7]",
    "Ends on a marker [doc2]",
]


def _streamed(pieces: list[str]) -> tuple[list[str], StreamingMarkerFilter]:
    markers = StreamingMarkerFilter(len(DOCS))
    out = [markers.feed(piece) for piece in pieces]
    return [*out, markers.flush()], markers


@pytest.mark.parametrize("text", TEXTS)
@pytest.mark.parametrize("size", [1, 2, 3, 7])
def test_streaming_marker_filter_emits_what_verify_citations_keeps(text: str, size: int) -> None:
    # cut into pieces of `size` characters: markers split anywhere, as tokens split them
    pieces = [text[i : i + size] for i in range(0, len(text), size)]
    out, markers = _streamed(pieces)
    verified = verify_citations(text, DOCS)
    assert "".join(out) == verified.content
    assert markers.removed == verified.removed_markers


def test_streaming_marker_filter_holds_back_only_a_possible_marker() -> None:
    out, _ = _streamed(["Hotels cost", " 180 [do", "c2] and", " [doc9", "] more"])
    # "Hotels cost" goes out at once; " 180" waits for "[do..." to complete; [doc9] is dropped
    assert out == ["Hotels cost", " 180", " [doc2] and", "", " more", ""]


def test_is_refusal_recognises_the_in_scope_sentence_with_noise() -> None:
    assert is_refusal(NOT_FOUND_MESSAGE)
    assert is_refusal("  the requested information is not available in the retrieved data [doc1]")
    assert not is_refusal("Hotels cost 180 euros [doc1].")


def test_could_become_refusal_until_the_text_leaves_the_sentence() -> None:
    assert could_become_refusal("")
    assert could_become_refusal("[doc1] The requested")
    assert could_become_refusal(NOT_FOUND_MESSAGE)
    assert not could_become_refusal("The hotel")
