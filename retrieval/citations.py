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
# what a delta may end with that the next delta can still turn into (part of) a marker:
# an open bracket, or spaces that a removed marker would take with it
_PARTIAL_TAIL = re.compile(r"\s*(?:\[[^\]\n]{0,64})?$")


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


def could_become_refusal(text: str) -> bool:
    """Whether a streamed prefix may still turn out to be the refusal sentence."""
    plain = " ".join(MARKER.sub("", text).split()).lower()
    if not plain:
        return True
    return _REFUSAL_PREFIX.startswith(plain) or plain.startswith(_REFUSAL_PREFIX)


class StreamingMarkerFilter:
    """Drops markers that name no document from streamed text, keeping prompt numbering.

    The streamed form of `verify_citations`: what it emits, renumbered compactly, is that
    function's content (the same spaces removed, the text stripped). A marker may be split
    across deltas, so a trailing ``[...`` -- and trailing whitespace, which a marker removed
    next would take with it -- is held back until the next delta decides.
    """

    def __init__(self, document_count: int) -> None:
        self._count = document_count
        self._held = ""
        self._started = False
        self.removed = 0

    def feed(self, delta: str) -> str:
        """Text that is safe to emit now."""
        text = self._held + delta
        tail = _PARTIAL_TAIL.search(text)
        assert tail is not None  # the pattern matches the empty string at the end
        self._held = tail.group(0)
        return self._lstrip(self._clean(text[: tail.start()]))

    def flush(self) -> str:
        """Whatever was held back, once the stream has ended."""
        text, self._held = self._held, ""
        return self._lstrip(self._clean(text)).rstrip()

    def _lstrip(self, text: str) -> str:
        if not self._started:
            text = text.lstrip()
            self._started = bool(text)
        return text

    def _clean(self, text: str) -> str:
        return MARKER.sub(self._replace, text)

    def _replace(self, match: re.Match[str]) -> str:
        numbers = marker_numbers(match)
        kept = [n for n in numbers if 1 <= n <= self._count]
        self.removed += len(numbers) - len(kept)
        lead = match.group(0)[: len(match.group(0)) - len(match.group(0).lstrip(" \t"))]
        return lead + "".join(f"[doc{n}]" for n in dict.fromkeys(kept)) if kept else ""
