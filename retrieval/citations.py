"""Citation markers: parse [docN], keep those that name a document given to the model.

One numbering, streamed or not, as Azure "On Your Data" has it: ``[docN]`` is the N-th
document of the prompt, and an answer's citations are those documents in prompt order, so
``[docN]`` is ``citations[N-1]``. Accepted marker forms (case-insensitive, spaces tolerated):
``[doc1]``, ``[doc1][doc2]``, ``[doc1, doc2]`` and ``[doc1, 2]``. Output always uses the
canonical ``[docK]`` form, one bracket per document. A marker naming a document that was not
given to the model is removed (with the spaces before it) and counted.
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
    """Answer text with canonical markers and its citations (citations[k-1] is [dock])."""

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
    """Keep the markers that name a document (prompt numbering), drop the rest.

    The citations are every document, in order, so each kept ``[docN]`` is citations[N-1].
    """
    markers = _MarkerCleaner(len(documents))
    content = markers.clean(text).strip()
    citations = tuple(citation_of(d) for d in documents)
    return VerifiedText(content=content, citations=citations, removed_markers=markers.removed)


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


class _MarkerCleaner:
    """Rewrites markers canonically, dropping (and counting) numbers outside 1..count."""

    def __init__(self, count: int) -> None:
        self._count = count
        self.removed = 0

    def clean(self, text: str) -> str:
        return MARKER.sub(self._replace, text)

    def _replace(self, match: re.Match[str]) -> str:
        numbers = marker_numbers(match)
        kept = [n for n in numbers if 1 <= n <= self._count]
        self.removed += len(numbers) - len(kept)
        lead = match.group(0)[: len(match.group(0)) - len(match.group(0).lstrip(" \t"))]
        return lead + "".join(f"[doc{n}]" for n in dict.fromkeys(kept)) if kept else ""


class StreamingMarkerFilter:
    """The streamed form of `verify_citations`: what it emits, joined, is that function's content.

    A marker may be split across deltas, so a trailing ``[...`` -- and trailing whitespace,
    which a marker removed next would take with it -- is held back until the next delta
    decides (or the stream ends). Leading and trailing whitespace of the whole text is dropped.
    """

    def __init__(self, document_count: int) -> None:
        self._markers = _MarkerCleaner(document_count)
        self._held = ""
        self._started = False

    @property
    def removed(self) -> int:
        """Marker numbers dropped so far (they named no document)."""
        return self._markers.removed

    def feed(self, delta: str) -> str:
        """Text that is safe to emit now."""
        text = self._held + delta
        tail = _PARTIAL_TAIL.search(text)
        assert tail is not None  # the pattern matches the empty string at the end
        self._held = tail.group(0)
        return self._lstrip(self._markers.clean(text[: tail.start()]))

    def flush(self) -> str:
        """Whatever was held back, once the stream has ended."""
        text, self._held = self._held, ""
        return self._lstrip(self._markers.clean(text)).rstrip()

    def _lstrip(self, text: str) -> str:
        if not self._started:
            text = text.lstrip()
            self._started = bool(text)
        return text
