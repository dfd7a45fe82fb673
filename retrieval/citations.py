"""Citation markers: parse [docN], keep only retrieved-and-cited documents, number them compactly.

Accepted marker forms (case-insensitive, spaces tolerated): ``[doc1]``, ``[doc1][doc2]``,
``[doc1, doc2]`` and ``[doc1, 2]``. Output always uses the canonical ``[docK]`` form, one
bracket per document. A marker naming a document that was not given to the model is removed
(with the spaces before it) and counted.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from core.models import Citation, ScoredChunk

NOT_FOUND_MESSAGE = (
    "The requested information is not available in the retrieved data. "
    "Please try another query or topic."
)
_REFUSAL_PREFIX = "the requested information is not available in the retrieved data"

MARKER = re.compile(r"[ \t]*\[\s*doc\s*(\d+)((?:\s*,\s*(?:doc\s*)?\d+)*)\s*\]", re.IGNORECASE)
_NUMBER = re.compile(r"\d+")


@dataclass(frozen=True)
class VerifiedText:
    """Answer text with compact markers and its citations (citations[k-1] is [dock])."""

    content: str
    citations: tuple[Citation, ...]
    removed_markers: int


def citation_of(scored: ScoredChunk) -> Citation:
    """The citation fields of a retrieved chunk."""
    chunk = scored.chunk
    return Citation(
        content=chunk.content,
        title=chunk.title,
        url=chunk.url,
        filepath=chunk.filepath,
        chunk_id=chunk.chunk_id,
        doc_id=chunk.doc_id,
        page=chunk.page,
    )


def marker_numbers(match: re.Match[str]) -> list[int]:
    """The document numbers one marker names, in order."""
    return [int(match.group(1)), *(int(n) for n in _NUMBER.findall(match.group(2) or ""))]


def verify_citations(text: str, documents: Sequence[ScoredChunk]) -> VerifiedText:
    """Keep markers that name a document, renumber 1..k by first appearance, drop the rest."""
    order: dict[int, int] = {}
    removed = 0

    def replace(match: re.Match[str]) -> str:
        nonlocal removed
        labels: list[str] = []
        for number in marker_numbers(match):
            if not 1 <= number <= len(documents):
                removed += 1
                continue
            compact = order.setdefault(number, len(order) + 1)
            label = f"[doc{compact}]"
            if label not in labels:
                labels.append(label)
        lead = match.group(0)[: len(match.group(0)) - len(match.group(0).lstrip(" \t"))]
        return lead + "".join(labels) if labels else ""

    content = MARKER.sub(replace, text).strip()
    citations = tuple(citation_of(documents[n - 1]) for n in order)
    return VerifiedText(content=content, citations=citations, removed_markers=removed)


def is_refusal(text: str) -> bool:
    """Whether the model said it cannot answer from the documents (the in_scope sentence)."""
    plain = " ".join(MARKER.sub("", text).split()).lower()
    return plain.startswith(_REFUSAL_PREFIX) or plain.rstrip(".") == _REFUSAL_PREFIX
