"""Token-aware, structure-aware chunking: sections are not crossed, tables stay whole.

Sizes are counted in tiktoken cl100k_base tokens. The section path travels with each
chunk (in `embed_text` for the embedder and in `section` for display).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import tiktoken

from core.models import Chunk, Document, Element

# A sentence ends at . ! ? (or the CJK full stop and full-width ! ?) before an upper-case,
# digit or CJK start; CJK text needs no space after its full stop.
_SENTENCE_END = re.compile(
    "(?<=[.!?])\\s+(?=[\"'(\\[]?[A-Z0-9\u00c0-\u00d6\u00d8-\u00de\u0400-\u04ff\u4e00-\u9fff])"
    "|(?<=[\u3002\uff01\uff1f])\\s*(?=\\S)"
    "|\\n{2,}"
)
# A table over this many chunk sizes is split by rows (header repeated); smaller ones stay whole.
_MAX_TABLE_FACTOR = 3


@lru_cache(maxsize=1)
def _encoding() -> tiktoken.Encoding:
    return tiktoken.get_encoding("cl100k_base")


def count_tokens(text: str) -> int:
    """cl100k_base token count of a text."""
    return len(_encoding().encode(text, disallowed_special=()))


def split_sentences(text: str) -> list[str]:
    """Split text into sentences (and paragraphs) without a model: fast and good enough here."""
    return [s.strip() for s in _SENTENCE_END.split(text) if s and s.strip()]


@dataclass
class _Piece:
    text: str
    tokens: int
    page: int | None
    is_table: bool = False


@dataclass
class _Section:
    path: tuple[str, ...]
    pieces: list[_Piece] = field(default_factory=list)


class Chunker:
    """Packs a document's elements into chunks of at most `chunk_size` tokens."""

    def __init__(self, *, chunk_size: int = 200, chunk_overlap: int = 32) -> None:
        if chunk_overlap >= chunk_size:
            raise ValueError("chunk_overlap must be smaller than chunk_size")
        self.chunk_size = chunk_size
        self.chunk_overlap = chunk_overlap

    def chunk(self, doc: Document) -> list[Chunk]:
        """All chunks of a document, in reading order, with stable ids."""
        texts: list[tuple[str, int | None, tuple[str, ...]]] = []
        for section in _sections(doc.elements):
            for text, page in self._pack(section):
                texts.append((text, page, section.path))
        return [_make_chunk(doc, i, text, page, path) for i, (text, page, path) in enumerate(texts)]

    def _pack(self, section: _Section) -> Iterator[tuple[str, int | None]]:
        pieces = [p for piece in section.pieces for p in self._fit(piece)]
        current: list[_Piece] = []
        size = 0
        for piece in pieces:
            if current and size + piece.tokens > self.chunk_size:
                yield _join(current)
                current = self._overlap_tail(current) if not piece.is_table else []
                size = sum(p.tokens for p in current)
                if size + piece.tokens > self.chunk_size:
                    current, size = [], 0
            current.append(piece)
            size += piece.tokens
        if current:
            yield _join(current)

    def _fit(self, piece: _Piece) -> list[_Piece]:
        """Break a piece that exceeds the chunk size into sentence (or token) sized pieces."""
        if piece.tokens <= self.chunk_size:
            return [piece]
        if piece.is_table and piece.tokens <= self.chunk_size * _MAX_TABLE_FACTOR:
            return [piece]
        if piece.is_table:
            return _split_table(piece, self.chunk_size)
        out: list[_Piece] = []
        for sentence in split_sentences(piece.text):
            n = count_tokens(sentence)
            if n <= self.chunk_size:
                out.append(_Piece(sentence, n, piece.page))
            else:
                out.extend(_split_tokens(sentence, self.chunk_size, piece.page))
        return out

    def _overlap_tail(self, pieces: Sequence[_Piece]) -> list[_Piece]:
        """The last sentences of the previous chunk, up to chunk_overlap tokens."""
        if self.chunk_overlap == 0:
            return []
        tail: list[_Piece] = []
        budget = self.chunk_overlap
        for piece in reversed(pieces):
            if piece.is_table:
                break
            sentences = split_sentences(piece.text)
            for sentence in reversed(sentences):
                n = count_tokens(sentence)
                if n > budget:
                    return tail
                tail.insert(0, _Piece(sentence, n, piece.page))
                budget -= n
        return tail


def _sections(elements: Sequence[Element]) -> list[_Section]:
    """Group consecutive elements by section path; titles start their section."""
    sections: list[_Section] = []
    for el in elements:
        text = el.text.strip()
        if not text:
            continue
        path = el.section_path
        if el.category == "Title" and not el.is_table:
            # A heading is carried by the section path, not repeated as body text,
            # unless the section would otherwise be empty (handled below).
            sections.append(_Section(path))
            continue
        if not sections or sections[-1].path != path:
            sections.append(_Section(path))
        sections[-1].pieces.append(_Piece(text, count_tokens(text), el.page, el.is_table))
    for s in sections:
        if not s.pieces and s.path:
            s.pieces.append(_Piece(s.path[-1], count_tokens(s.path[-1]), None))
    return [s for s in sections if s.pieces]


def _join(pieces: Sequence[_Piece]) -> tuple[str, int | None]:
    page = next((p.page for p in pieces if p.page is not None), None)
    parts: list[str] = []
    for p in pieces:
        sep = "\n\n" if (p.is_table or (parts and parts[-1].startswith("|"))) else " "
        parts.append((sep if parts else "") + p.text)
    return "".join(parts).strip(), page


def _split_tokens(text: str, size: int, page: int | None) -> list[_Piece]:
    enc = _encoding()
    ids = enc.encode(text, disallowed_special=())
    return [
        _Piece(enc.decode(ids[i : i + size]), len(ids[i : i + size]), page)
        for i in range(0, len(ids), size)
    ]


def _split_table(piece: _Piece, size: int) -> list[_Piece]:
    """Split an oversized table by rows, repeating its first lines (caption/header) in each part."""
    lines = piece.text.splitlines()
    head = lines[: min(3, len(lines))]
    head_tokens = count_tokens("\n".join(head))
    parts: list[_Piece] = []
    rows: list[str] = []
    budget = max(size * _MAX_TABLE_FACTOR - head_tokens, size)
    used = 0
    for line in lines[len(head) :]:
        n = count_tokens(line) + 1
        if rows and used + n > budget:
            text = "\n".join(head + rows)
            parts.append(_Piece(text, count_tokens(text), piece.page, is_table=True))
            rows, used = [], 0
        rows.append(line)
        used += n
    text = "\n".join(head + rows)
    parts.append(_Piece(text, count_tokens(text), piece.page, is_table=True))
    return parts


def section_label(title: str, path: Sequence[str]) -> str:
    """The heading line that travels with a chunk: document title then section path."""
    parts = [title, *[p for p in path if p and p != title]]
    return " > ".join(p.strip() for p in parts if p.strip())


def _make_chunk(
    doc: Document, index: int, text: str, page: int | None, path: tuple[str, ...]
) -> Chunk:
    content_hash = hashlib.sha256(text.encode("utf-8")).hexdigest()
    label = section_label(doc.title, path)
    return Chunk(
        chunk_id=f"{doc.doc_id}#{index:05d}-{content_hash[:8]}",
        doc_id=doc.doc_id,
        chunk_index=index,
        content=text,
        embed_text=f"{label}\n{text}" if label else text,
        title=doc.title,
        filepath=doc.filepath,
        url=doc.url,
        page=page,
        section=" > ".join(path) or None,
        content_hash=content_hash,
        acl_groups=doc.acl_groups,
        metadata=dict(doc.metadata),
    )
