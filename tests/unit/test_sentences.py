"""Sentence vectors pooled at ingestion (retrieval/sentences.py, OnnxEmbedder.embed_spans)."""

from __future__ import annotations

import numpy as np
import pytest

from core.models import Chunk, ScoredChunk
from retrieval.chat import ExtractiveAnswerer
from retrieval.embedders import Embedder, OnnxEmbedder, SpanEmbedder, Vectors
from retrieval.sentences import (
    content_spans,
    decode_sentence_vectors,
    encode_sentence_vectors,
    sentence_spans,
)
from tests.unit.retrieval_corpus import bundled_embedder, scored_doc

TEXT = (
    "The cafeteria opens at eight in the morning. Hotels may be booked up to 180 euros per "
    "night.\nInvoices are paid within thirty days of receipt!"
)
SENTENCES = [
    "The cafeteria opens at eight in the morning.",
    "Hotels may be booked up to 180 euros per night.",
    "Invoices are paid within thirty days of receipt!",
]


@pytest.fixture(scope="module")
def embedder() -> OnnxEmbedder:
    loaded = bundled_embedder()
    assert isinstance(loaded, OnnxEmbedder)
    return loaded


class CountingEmbedder:
    """The real embedder, counting the texts it is asked to embed."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.embedded: list[str] = []

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def dimension(self) -> int:
        return self.inner.dimension

    def embed(self, texts: list[str]) -> Vectors:
        self.embedded.extend(texts)
        return self.inner.embed(texts)

    def embed_query(self, text: str) -> Vectors:
        self.embedded.append(text)
        return self.inner.embed_query(text)


def test_sentence_spans_cut_at_sentence_ends_and_newlines() -> None:
    assert [TEXT[s:e] for s, e in sentence_spans(TEXT)] == SENTENCES
    assert sentence_spans("") == [(0, 0)]


def test_content_spans_shift_into_the_embedded_text() -> None:
    embed_text = f"Handbook > Travel\n{TEXT}"
    spans = content_spans(embed_text, TEXT)
    assert [embed_text[s:e] for s, e in spans] == SENTENCES
    assert content_spans("something else", TEXT) == []


def test_sentence_vectors_survive_encoding_within_quantisation() -> None:
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(3, 384)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    rows[1] = 0.0
    back = decode_sentence_vectors(encode_sentence_vectors(rows), 384)
    assert back.shape == (3, 384)
    assert float(back[0] @ rows[0]) > 0.99
    assert not back[1].any()
    assert decode_sentence_vectors(encode_sentence_vectors(rows), 383).shape == (0, 383)


def test_embed_spans_returns_embed_vectors_and_one_row_per_span(
    embedder: OnnxEmbedder,
) -> None:
    assert isinstance(embedder, SpanEmbedder)
    texts = [TEXT, "A short one."]
    vectors, pooled = embedder.embed_spans(texts, [sentence_spans(TEXT), [(0, 12)]])
    np.testing.assert_allclose(vectors, embedder.embed(texts), atol=1e-5)
    assert [p.shape for p in pooled] == [(3, 384), (1, 384)]
    assert np.allclose(np.linalg.norm(pooled[0], axis=1), 1.0, atol=1e-5)


def test_pooled_sentence_is_nearest_its_own_standalone_embedding(
    embedder: OnnxEmbedder,
) -> None:
    _, (pooled,) = embedder.embed_spans([TEXT], [sentence_spans(TEXT)])
    alone = embedder.embed(SENTENCES)
    similarity = pooled @ alone.T
    assert list(similarity.argmax(axis=1)) == [0, 1, 2]


def test_span_past_the_model_window_gets_a_zero_row(embedder: OnnxEmbedder) -> None:
    long_text = "word " * 400 + "The tail sentence is never seen."
    tail = (long_text.index("The tail"), len(long_text))
    _, (pooled,) = embedder.embed_spans([long_text], [[(0, 20), tail]])
    assert pooled[0].any()
    assert not pooled[1].any()


def _stored(n: int, content: str, embedder: OnnxEmbedder) -> ScoredChunk:
    _, (pooled,) = embedder.embed_spans([content], [sentence_spans(content)])
    return scored_doc(n, content, sentence_vectors=encode_sentence_vectors(pooled))


def test_extractive_answer_from_stored_vectors_embeds_nothing_but_the_question(
    embedder: OnnxEmbedder,
) -> None:
    counting = CountingEmbedder(embedder)
    docs = [
        _stored(1, TEXT, embedder),
        _stored(2, "Parking is free for visitors on weekends.", embedder),
    ]
    result = ExtractiveAnswerer(counting).compose("How much can a hotel night cost?", docs)
    assert result.content.startswith("Hotels may be booked up to 180 euros per night [doc1].")
    assert counting.embedded == ["How much can a hotel night cost?"]


def test_extractive_answer_embeds_the_sentences_a_chunk_has_no_vectors_for(
    embedder: OnnxEmbedder,
) -> None:
    counting = CountingEmbedder(embedder)
    plain = ScoredChunk(
        chunk=Chunk(
            chunk_id="c2",
            doc_id="d2",
            chunk_index=0,
            content="Hotel rooms cost at most 180 euros.",
            embed_text="x",
            title="T2",
            content_hash="h2",
        ),
        score=0.4,
    )
    docs = [_stored(1, TEXT, embedder), plain]
    result = ExtractiveAnswerer(counting).compose("How much can a hotel night cost?", docs)
    assert "[doc2]" in result.content
    assert counting.embedded[1:] == ["Hotel rooms cost at most 180 euros."]
