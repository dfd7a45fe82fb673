"""Chunking: token limits, section boundaries, tables whole, stable ids, overlap."""

from __future__ import annotations

import pytest

from core.models import Document, Element
from ingest.chunking import Chunker, count_tokens, split_sentences


def _doc(*elements: Element, title: str = "Handbook") -> Document:
    return Document(
        doc_id="hb", source="/x/hb.pdf", title=title, content_hash="h", elements=elements
    )


def _para(text: str, path: tuple[str, ...] = ("Leave",), page: int | None = 1) -> Element:
    return Element(text=text, section_path=path, page=page)


LONG = " ".join(f"Employees accrue {i} days of leave in year {i}." for i in range(120))


def test_chunker_respects_chunk_size() -> None:
    chunks = Chunker(chunk_size=64, chunk_overlap=8).chunk(_doc(_para(LONG)))
    assert len(chunks) > 5
    assert all(count_tokens(c.content) <= 64 for c in chunks)


def test_chunker_does_not_cross_sections() -> None:
    doc = _doc(_para("Leave is generous.", ("Leave",)), _para("Pay is monthly.", ("Pay",)))
    chunks = Chunker(chunk_size=200, chunk_overlap=16).chunk(doc)
    assert [c.section for c in chunks] == ["Leave", "Pay"]
    assert chunks[0].content == "Leave is generous."


def test_chunker_section_path_travels_with_embed_text() -> None:
    doc = _doc(_para("Twelve weeks are paid.", ("Leave", "Parental")))
    (chunk,) = Chunker().chunk(doc)
    assert chunk.embed_text.startswith("Handbook > Leave > Parental\n")
    assert chunk.content == "Twelve weeks are paid."
    assert chunk.section == "Leave > Parental"


def test_chunker_keeps_table_whole_with_caption() -> None:
    table = "Table 2: Leave by tenure\n| years | days |\n| --- | --- |\n" + "\n".join(
        f"| {i} | {20 + i} |" for i in range(30)
    )
    doc = _doc(
        _para("Intro text."), Element(text=table, section_path=("Leave",), is_table=True, page=3)
    )
    chunks = Chunker(chunk_size=128, chunk_overlap=16).chunk(doc)
    tables = [c for c in chunks if "| years | days |" in c.content]
    assert len(tables) == 1
    assert "Table 2: Leave by tenure" in tables[0].content
    assert "| 29 | 49 |" in tables[0].content
    assert tables[0].page == 3


def test_chunker_splits_huge_table_by_rows_repeating_header() -> None:
    table = "Table 9: Big\n| k | v |\n| --- | --- |\n" + "\n".join(
        f"| key{i} | value {i} |" for i in range(400)
    )
    chunks = Chunker(chunk_size=64, chunk_overlap=8).chunk(_doc(Element(text=table, is_table=True)))
    assert len(chunks) > 1
    assert all(c.content.startswith("Table 9: Big\n| k | v |") for c in chunks)
    assert sum(c.content.count("| key") for c in chunks) == 400


def test_chunker_ids_are_stable_and_change_with_content() -> None:
    doc = _doc(_para(LONG))
    first = [c.chunk_id for c in Chunker(chunk_size=64, chunk_overlap=8).chunk(doc)]
    again = [c.chunk_id for c in Chunker(chunk_size=64, chunk_overlap=8).chunk(doc)]
    changed = [
        c.chunk_id
        for c in Chunker(chunk_size=64, chunk_overlap=8).chunk(_doc(_para(LONG + " New.")))
    ]
    assert first == again
    assert len(set(first)) == len(first)
    assert first[-1] != changed[-1]


def test_chunker_overlap_repeats_previous_sentences() -> None:
    chunks = Chunker(chunk_size=64, chunk_overlap=24).chunk(_doc(_para(LONG)))
    last_sentence = split_sentences(chunks[0].content)[-1]
    assert chunks[1].content.startswith(last_sentence)


def test_chunker_carries_citation_metadata() -> None:
    doc = Document(
        doc_id="d1",
        source="/a/b.pdf",
        title="B",
        filepath="b.pdf",
        url="http://x/b.pdf",
        content_hash="h",
        elements=(_para("Some text.", page=7),),
        acl_groups=("hr",),
        metadata={"k": "v"},
    )
    (c,) = Chunker().chunk(doc)
    assert (c.doc_id, c.title, c.filepath, c.url, c.page) == (
        "d1",
        "B",
        "b.pdf",
        "http://x/b.pdf",
        7,
    )
    assert c.acl_groups == ("hr",)
    assert c.metadata == {"k": "v"}
    assert len(c.content_hash) == 64


def test_chunker_rejects_overlap_not_below_size() -> None:
    with pytest.raises(ValueError, match="overlap"):
        Chunker(chunk_size=32, chunk_overlap=32)


def test_chunker_heading_only_section_is_kept() -> None:
    doc = _doc(Element(text="Appendix A", category="Title", section_path=("Appendix A",)))
    (c,) = Chunker().chunk(doc)
    assert c.content == "Appendix A"
