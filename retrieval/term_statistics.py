"""BM25's IDF over documents, not chunks: how rare a term is must not depend on the chunking.

Qdrant's IDF modifier counts points, and a point is a chunk: a term in the title of a
document cut into five chunks counts five times, as do the terms its 32-token overlaps
repeat, so the longer a document, the commoner its words look. BM25 defines IDF over the
documents of a corpus; bm25s and Lucene index whole documents. Measured on SciFact train
(`python -m bench.fusion_rules --split train`): keyword nDCG@10 0.694 with the chunks' IDF,
0.696 with the documents' (bm25s 0.696), test 0.681 -> 0.684 (bm25s 0.686), CISI (one chunk
per abstract) unchanged.

The engine keeps applying its own IDF (so every index, old or new, scores as before when it
has no table), and each query term's weight is multiplied by idf_documents / idf_chunks from
the index's `TermTable`, which `CorpusBm25.refresh` rebuilds from the stored chunk text. The
two chunk IDFs cancel to the precision of the table's chunk counts, which lag the live index
by at most the refresh tolerance.
"""

from __future__ import annotations

import logging
import math
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from core.errors import IndexBackendError
from core.models import SparseVector

logger = logging.getLogger(__name__)

BLOB_NAME = "bm25-terms"
"""The name of an index's term table in its blob storage (VectorIndex.write_blob)."""
_MAGIC = b"ODTT"
_FORMAT = 1
_HEADER = struct.Struct("<4sIIQQ")  # magic, format, encoding version, documents, chunks
RECHECK_SECONDS = 5.0
"""How often a reader looks for a newer table (another process may have refreshed it)."""

U32 = npt.NDArray[np.uint32]
_BATCH = 4096
"""Chunks whose pairs are joined into one array at a time while building."""


def idf(total: float, containing: npt.NDArray[np.float64] | float) -> npt.NDArray[np.float64]:
    """BM25's (Lucene's and Qdrant's) IDF: ln(1 + (N - n + 0.5) / (n + 0.5))."""
    n = np.asarray(containing, dtype=np.float64)
    return np.asarray(np.log1p((total - n + 0.5) / (n + 0.5)))


@dataclass(frozen=True)
class TermTable:
    """How many documents and how many chunks hold each term of an index (sorted by term)."""

    documents: int
    chunks: int
    terms: U32
    in_documents: U32
    in_chunks: U32
    encoding_version: int = 0
    """The BM25 encoding (tokenizer) the term ids come from (corpus_bm25.ENCODING_VERSION)."""

    @classmethod
    def build(
        cls,
        chunks: Iterable[tuple[str, Iterable[int]]],
        *,
        encoding_version: int = 0,
    ) -> TermTable:
        """From each chunk's document id and its term ids (a term repeated counts once).

        Keeps one int64 (document, term) pair per chunk and term, sorted in place: ~45 pairs a
        chunk of 200 tokens, so ~0.4 KB a chunk at the peak (bench/term_table.py)."""
        doc_rows: dict[str, int] = {}
        parts: list[npt.NDArray[np.int64]] = []
        batch: list[npt.NDArray[np.int64]] = []
        count = 0
        for doc_id, terms in chunks:
            row = doc_rows.setdefault(doc_id, len(doc_rows))
            unique = np.fromiter(set(terms), dtype=np.int64)
            batch.append(unique | (row << 32))
            count += 1
            if len(batch) >= _BATCH:
                parts.append(np.concatenate(batch))
                batch = []
        parts.append(np.concatenate(batch) if batch else np.zeros(0, dtype=np.int64))
        pairs = np.concatenate(parts)  # (document, term) once per chunk that holds it
        del parts, batch
        terms, in_chunks = _runs(pairs & 0xFFFFFFFF)
        pairs.sort()
        first = np.ones(len(pairs), dtype=bool)
        first[1:] = pairs[1:] != pairs[:-1]
        doc_terms, in_documents = _runs(pairs[first] & 0xFFFFFFFF)
        del pairs, first
        if not np.array_equal(doc_terms, terms):  # the same terms, by construction
            raise AssertionError("term table: document and chunk terms disagree")
        return cls(
            documents=len(doc_rows),
            chunks=count,
            terms=terms.astype(np.uint32),
            in_documents=in_documents.astype(np.uint32),
            in_chunks=in_chunks.astype(np.uint32),
            encoding_version=encoding_version,
        )

    def query_weights(self, vector: SparseVector) -> SparseVector:
        """Query term weights times idf_documents / idf_chunks, for an engine whose IDF
        counts chunks. A term the table lacks (new since it was built) counts as in one
        chunk of one document."""
        if not vector.indices or self.documents == 0:
            return vector
        wanted = np.asarray(vector.indices, dtype=np.uint32)
        at = np.searchsorted(self.terms, wanted)
        at_clipped = np.minimum(at, max(len(self.terms) - 1, 0))
        known = (at < len(self.terms)) & (self.terms[at_clipped] == wanted)
        docs = np.where(known, self.in_documents[at_clipped], 1).astype(np.float64)
        chunks = np.where(known, self.in_chunks[at_clipped], 1).astype(np.float64)
        ratio = idf(self.documents, docs) / idf(self.chunks, chunks)
        values = np.asarray(vector.values, dtype=np.float64) * ratio
        return SparseVector(indices=vector.indices, values=tuple(float(v) for v in values))

    def to_bytes(self) -> bytes:
        header = _HEADER.pack(_MAGIC, _FORMAT, self.encoding_version, self.documents, self.chunks)
        body = b"".join(
            np.ascontiguousarray(a, dtype="<u4").tobytes()
            for a in (self.terms, self.in_documents, self.in_chunks)
        )
        return header + zlib.compress(body, 6)

    @classmethod
    def from_bytes(cls, data: bytes) -> TermTable:
        try:
            magic, fmt, version, documents, chunks = _HEADER.unpack_from(data)
            if magic != _MAGIC or fmt != _FORMAT:
                raise ValueError("not a term table of this format")
            body = np.frombuffer(zlib.decompress(data[_HEADER.size :]), dtype="<u4")
        except (struct.error, zlib.error, ValueError) as exc:
            raise IndexBackendError(f"unreadable BM25 term table: {exc}") from exc
        if len(body) % 3:
            raise IndexBackendError("unreadable BM25 term table: truncated")
        n = len(body) // 3
        return cls(
            documents=int(documents),
            chunks=int(chunks),
            terms=body[:n].astype(np.uint32),
            in_documents=body[n : 2 * n].astype(np.uint32),
            in_chunks=body[2 * n :].astype(np.uint32),
            encoding_version=int(version),
        )

    def stale_for(self, chunks: int, *, tolerance: float, encoding_version: int) -> bool:
        """Whether an index of `chunks` chunks has moved past what this table describes."""
        if encoding_version != self.encoding_version:
            return True
        return abs(chunks - self.chunks) > tolerance * max(chunks, 1) or (
            chunks > 0 and self.chunks == 0
        )


class DocumentIdf:
    """An index adapter's view of its term table: read lazily, re-read when it changes.

    `version` returns a cheap token that changes when the table is rewritten (a file's
    mtime, a metadata stamp); it is looked at no more than every `RECHECK_SECONDS`.
    """

    def __init__(
        self,
        read: Callable[[], bytes | None],
        version: Callable[[], object],
        *,
        recheck_seconds: float = RECHECK_SECONDS,
    ) -> None:
        self._read = read
        self._version = version
        self._recheck = recheck_seconds
        self._lock = threading.Lock()
        self._table: TermTable | None = None
        self._seen: object = None
        self._checked = -math.inf

    def invalidate(self) -> None:
        """Forget the table (this process just rewrote it)."""
        with self._lock:
            self._checked = -math.inf
            self._seen = None

    def table(self) -> TermTable | None:
        now = time.monotonic()
        if now - self._checked < self._recheck:
            return self._table
        with self._lock:
            if now - self._checked < self._recheck:
                return self._table
            version = self._version()
            if version != self._seen:
                data = self._read() if version is not None else None
                self._table = _parsed(data) if data else None
                self._seen = version
            self._checked = now
            return self._table

    def query_weights(self, vector: SparseVector | None) -> SparseVector | None:
        table = self.table() if vector is not None else None
        return table.query_weights(vector) if table and vector is not None else vector


def _parsed(data: bytes) -> TermTable | None:
    """The table in `data`; None (queries go on with the engine's chunk IDF) if unreadable."""
    try:
        return TermTable.from_bytes(data)
    except IndexBackendError as exc:
        logger.warning("%s: keyword search uses chunk IDF until the next refresh", exc)
        return None


def _runs(values: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """The distinct values (ascending) and how often each occurs; sorts `values` in place."""
    values.sort()
    if not len(values):
        return values, np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.concatenate(([True], values[1:] != values[:-1])))
    counts = np.diff(np.append(starts, len(values)))
    return values[starts], counts
