"""BM25 sparse vectors for documents and queries, token-compatible with Qdrant's own BM25.

The encoder wraps the BM25 embedder that ships with Qdrant Edge (`qdrant_edge.Bm25`): it runs
Qdrant's tokenizer pipeline (Unicode word tokenizer splitting on non-alphanumerics, numbers
kept, lowercase, English stopwords, Snowball stemming) and hashes each token with murmur3-32,
so the term ids are the ones Qdrant Server's ``qdrant/bm25`` inference and FastEmbed produce.
Both index adapters (Edge in-process and a Qdrant server) therefore store and query the same
vectors, and an Edge shard restored from a server snapshot keeps working.

Documents get BM25 term-frequency saturation ``tf*(k1+1) / (tf + k1*(1-b+b*len/avg_len))``
where ``len`` counts the tokens kept after stopword removal; a query term weighs its count in
the query (as Lucene and bm25s score a repeated term; unit weights lost 0.06 nDCG@10 on CISI's
long questions). IDF is applied by Qdrant at query time (sparse vector ``Modifier.IDF``),
over chunks; each index's term table turns it into IDF over documents
(retrieval/term_statistics.py).

``avg_len`` must be the index's own mean chunk length: `CorpusBm25` keeps it so, measuring the
index after writes and re-encoding the stored sparse vectors from the chunks' text when the
corpus has drifted (no embedding model involved).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import qdrant_edge

from core.errors import ConfigurationError
from core.models import SparseVector

DEFAULT_K1 = 1.2
DEFAULT_B = 0.75
DEFAULT_AVG_LEN = 256.0
_COUNTING_K = 1e9


class Bm25Encoder:
    """Text -> BM25 sparse vector (documents: saturated TF; queries: unit weights).

    Stateless after construction and safe to share between threads; picklable (it is rebuilt
    from its parameters), so it can travel to worker processes.
    """

    def __init__(
        self,
        *,
        k1: float = DEFAULT_K1,
        b: float = DEFAULT_B,
        avg_len: float = DEFAULT_AVG_LEN,
        language: str = "english",
    ) -> None:
        self.k1 = k1
        self.b = b
        self.avg_len = avg_len
        self.language = language
        config = qdrant_edge.Bm25Config(k=k1, b=b, avg_len=avg_len, language=language)
        # the same tokenizer without saturation or length normalisation: its weights are the
        # raw term counts (k = 1e9 makes tf*(k+1)/(tf+k) equal tf to float precision)
        counting = qdrant_edge.Bm25Config(k=_COUNTING_K, b=0.0, avg_len=1.0, language=language)
        try:
            self._model = qdrant_edge.Bm25(config)
            self._counter = qdrant_edge.Bm25(counting)
        except ValueError as exc:
            raise ConfigurationError(f"invalid BM25 parameters: {exc}") from exc

    def encode_document(self, text: str) -> SparseVector:
        """Term weights of a document (chunk) with BM25 TF saturation and length normalisation."""
        return _converted(self._model.embed_document(text))

    def encode_documents(self, texts: Iterable[str]) -> list[SparseVector]:
        """`encode_document` over several texts, in order."""
        return [self.encode_document(text) for text in texts]

    def encode_query(self, text: str) -> SparseVector:
        """Each query term weighted by its count in the query (IDF comes from the index)."""
        return self.term_counts(text)

    def term_counts(self, text: str) -> SparseVector:
        """How often each term occurs in the text, after stopwords and stemming."""
        counted = _converted(self._counter.embed_document(text))
        return SparseVector(
            indices=counted.indices, values=tuple(float(round(v)) for v in counted.values)
        )

    def length(self, text: str) -> int:
        """The text's BM25 length: its tokens after stopword removal."""
        return int(sum(self.term_counts(text).values))

    def with_avg_len(self, avg_len: float) -> Bm25Encoder:
        """The same encoder for a corpus of another mean length."""
        return Bm25Encoder(k1=self.k1, b=self.b, avg_len=avg_len, language=self.language)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (self.k1, self.b, self.avg_len, self.language))

    def __repr__(self) -> str:
        return (
            f"Bm25Encoder(k1={self.k1}, b={self.b}, avg_len={self.avg_len}, "
            f"language={self.language!r})"
        )


def _rebuild(k1: float, b: float, avg_len: float, language: str) -> Bm25Encoder:
    return Bm25Encoder(k1=k1, b=b, avg_len=avg_len, language=language)


def _converted(vector: qdrant_edge.SparseVector) -> SparseVector:
    pairs = sorted(zip(vector.indices, vector.values, strict=True))
    return SparseVector(
        indices=tuple(index for index, _ in pairs), values=tuple(value for _, value in pairs)
    )
