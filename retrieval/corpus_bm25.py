"""BM25 that follows its own index's corpus, whatever documents come and go.

Qdrant's BM25 takes the mean document length at encoding time. `CorpusBm25` keeps, in the
index's metadata, the parameters its stored sparse vectors were encoded with (k1, b, language,
mean chunk length, encoding version). After writes, `refresh` measures the index (every
chunk's BM25 length, from the text in its payload) and, when the mean has drifted beyond the
tolerance or a parameter changed, re-encodes every stored sparse vector from that text: the
embedding model never runs again. An index without this metadata was encoded with the old
fixed parameters (k1 1.2, b 0.75, mean length 256), which is what `refresh` assumes for it.
"""

from __future__ import annotations

import hashlib
import logging
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any, Literal

from core.models import SparseVector
from core.settings import RetrievalSettings
from retrieval.index import VectorIndex
from retrieval.sparse import DEFAULT_AVG_LEN, DEFAULT_B, DEFAULT_K1, Bm25Encoder
from retrieval.term_statistics import BLOB_NAME as TERMS_BLOB
from retrieval.term_statistics import TermTable

logger = logging.getLogger(__name__)

METADATA_KEY = "bm25"
TERMS_METADATA_KEY = "bm25_terms"
"""Metadata of the index's term table blob: its tokenizer, chunk count and digest."""
TEXT_FIELD = "embed_text"
"""The payload field every chunk's sparse vector is encoded from (ingest/pipeline.py)."""
MEASURE_SAMPLE = 20_000
"""Chunks whose lengths measure an index's mean chunk length (all of them when fewer)."""
ENCODING_VERSION = 1
"""Bump when the document-side encoding changes (tokenizer, formula): indexes re-encode."""

Statistics = Literal["corpus", "fixed"]


@dataclass(frozen=True)
class Bm25Parameters:
    """How an index's BM25 document weights are made (the `retrieval` settings' part)."""

    k1: float = DEFAULT_K1
    b: float = DEFAULT_B
    language: str = "english"
    statistics: Statistics = "corpus"
    """corpus: the mean length follows the index; fixed: always `avg_len`."""
    avg_len: float = DEFAULT_AVG_LEN
    """The mean length of `fixed`, and of an empty index's first writes under `corpus`."""
    tolerance: float = 0.1
    """Relative drift of the mean length that `refresh` lets pass without re-encoding."""

    @classmethod
    def from_settings(cls, settings: RetrievalSettings) -> Bm25Parameters:
        return cls(
            k1=settings.bm25_k1,
            b=settings.bm25_b,
            statistics=settings.bm25_statistics,
            avg_len=settings.bm25_avg_len,
            tolerance=settings.bm25_tolerance,
        )


@dataclass(frozen=True)
class Encoding:
    """What an index's stored sparse vectors were encoded with (its BM25 metadata)."""

    k1: float = DEFAULT_K1
    b: float = DEFAULT_B
    language: str = "english"
    avg_len: float = DEFAULT_AVG_LEN
    version: int = ENCODING_VERSION

    @classmethod
    def stored(cls, metadata: dict[str, Any]) -> Encoding:
        """The encoding an index's metadata names; the old fixed defaults when it names none."""
        values = metadata.get(METADATA_KEY)
        if not isinstance(values, dict):
            return cls()
        known = {k: values[k] for k in ("k1", "b", "language", "avg_len", "version") if k in values}
        return cls(**known)

    def encoder(self) -> Bm25Encoder:
        return Bm25Encoder(k1=self.k1, b=self.b, avg_len=self.avg_len, language=self.language)

    def serves(self, wanted: Encoding, *, tolerance: float) -> bool:
        """Whether vectors encoded like this may stand for `wanted` (mean within tolerance)."""
        same = (self.k1, self.b, self.language, self.version) == (
            wanted.k1,
            wanted.b,
            wanted.language,
            wanted.version,
        )
        return same and abs(self.avg_len - wanted.avg_len) <= tolerance * wanted.avg_len


class CorpusBm25:
    """The document-side BM25 encoder of one index (ingestion's SparseEncoder).

    New chunks are encoded like the ones already stored, so an index is always consistent;
    `refresh` (after a batch of writes) moves the whole index to its current statistics.
    """

    def __init__(
        self,
        index: VectorIndex,
        params: Bm25Parameters | None = None,
        *,
        sample: int = MEASURE_SAMPLE,
    ) -> None:
        self._index = index
        self._params = params or Bm25Parameters()
        self._sample = sample
        self._encoding = Encoding.stored(index.read_metadata())
        self._encoder = self._encoding.encoder()

    @property
    def encoding(self) -> Encoding:
        return self._encoding

    def encode_document(self, text: str) -> SparseVector:
        """BM25 weights of a chunk, encoded like the index's stored chunks."""
        return self._encoder.encode_document(text)

    def refresh(self) -> bool:
        """Re-encode the stored sparse vectors if they no longer fit the index, and keep its
        term table (document frequencies, retrieval/term_statistics.py) current (blocking).

        Returns whether it re-encoded. Measures the mean length (under `corpus`) on at most
        `sample` chunks, and reads every chunk's text only to re-encode or, past `sample`
        chunks, to rebuild a term table the index has outgrown by the tolerance.
        """
        chunks, tokens, table = self._measure()
        wanted = self._wanted(chunks, tokens)
        reencoded = False
        if chunks and not self._encoding.serves(wanted, tolerance=self._params.tolerance):
            encoder = wanted.encoder()
            self._index.update_sparse(list(self._encoded(encoder)))
            self._index.write_metadata(
                {METADATA_KEY: asdict(wanted) | {"chunks": chunks, "tokens": tokens}}
            )
            logger.info(
                "re-encoded BM25 of %d chunks: avg_len %.1f -> %.1f",
                chunks,
                self._encoding.avg_len,
                wanted.avg_len,
            )
            self._encoding, self._encoder = wanted, encoder
            reencoded = True
        self._refresh_terms(chunks, table)
        return reencoded

    def _refresh_terms(self, chunks: int, table: TermTable | None) -> None:
        """Write the term table: the exact one measured (a small index), or, for a large
        one, a full rebuild once the stored table is off by more than the tolerance."""
        key = self._tokenizer_key()
        stored = self._index.read_metadata().get(TERMS_METADATA_KEY)
        if table is None:
            current = (
                isinstance(stored, dict)
                and stored.get("tokenizer") == key
                and abs(int(stored.get("chunks", -1)) - chunks)
                <= self._params.tolerance * max(chunks, 1)
            )
            if current:
                return
            table = TermTable.build(
                (
                    (doc_id, self._encoder.term_counts(text).indices)
                    for doc_id, text in self._texts()
                ),
                encoding_version=key,
            )
        data = table.to_bytes()
        if isinstance(stored, dict) and stored.get("digest") == _digest(data):
            return
        self._index.write_blob(TERMS_BLOB, data)
        self._index.write_metadata(
            {
                TERMS_METADATA_KEY: {
                    "tokenizer": key,
                    "chunks": table.chunks,
                    "documents": table.documents,
                    "terms": len(table.terms),
                    "digest": _digest(data),
                }
            }
        )
        logger.info(
            "BM25 term table: %d terms over %d documents, %d chunks",
            len(table.terms),
            table.documents,
            table.chunks,
        )

    def _tokenizer_key(self) -> int:
        """What the term ids depend on: the tokenizer (language, encoding version)."""
        return zlib.crc32(f"{self._encoding.language}:{ENCODING_VERSION}".encode())

    def _measure(self) -> tuple[int, int, TermTable | None]:
        """The chunk count, their total length, and the term table when every chunk was read:
        exact up to `sample` chunks, beyond that scaled from the first `sample` in scroll
        order, which is point-id order, and point ids are hashes of the chunk ids: a uniform
        sample (and no table). The mean of 20,000 lengths is within ~1% of the whole's,
        against the 10% tolerance; reading all texts after every ingestion would cost minutes
        at 1M chunks (bench/index_scale.py)."""
        seen = tokens = 0
        rows: list[tuple[str, tuple[int, ...]]] = []
        for doc_id, text in self._texts():
            counts = self._encoder.term_counts(text)
            seen += 1
            tokens += int(sum(counts.values))
            rows.append((doc_id, counts.indices))
            if seen >= self._sample:
                break
        if seen < self._sample:
            return seen, tokens, TermTable.build(rows, encoding_version=self._tokenizer_key())
        chunks = self._index.count()
        return chunks, round(tokens * chunks / seen), None

    def _wanted(self, chunks: int, tokens: int) -> Encoding:
        p = self._params
        corpus = p.statistics == "corpus" and chunks > 0 and tokens > 0
        avg_len = tokens / chunks if corpus else p.avg_len
        return Encoding(k1=p.k1, b=p.b, language=p.language, avg_len=avg_len)

    def _encoded(self, encoder: Bm25Encoder) -> Iterator[tuple[str, SparseVector]]:
        for point, payload in self._index.scan_payload([TEXT_FIELD]):
            yield point, encoder.encode_document(str(payload.get(TEXT_FIELD) or ""))

    def _texts(self) -> Iterator[tuple[str, str]]:
        """Every chunk's document id and text."""
        for point, payload in self._index.scan_payload([TEXT_FIELD, "doc_id"]):
            yield str(payload.get("doc_id") or point), str(payload.get(TEXT_FIELD) or "")


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
