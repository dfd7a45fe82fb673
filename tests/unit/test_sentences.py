"""Sentence vectors pooled at ingestion (retrieval/sentences.py, OnnxEmbedder.embed_spans)."""

from __future__ import annotations

import base64
from collections.abc import Sequence

import numpy as np
import pytest

from core.models import Chunk, ScoredChunk
from retrieval.chat import ExtractiveAnswerer
from retrieval.embedders import Embedder, OnnxEmbedder, SpanEmbedder, Vectors
from retrieval.sentences import (
    content_spans,
    decode_sentence_vectors,
    encode_sentence_vectors,
    legacy_sentence_spans,
    sentence_spans,
    split_sentences,
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

    def embed(self, texts: Sequence[str]) -> Vectors:
        self.embedded.extend(texts)
        return self.inner.embed(texts)

    def embed_query(self, text: str) -> Vectors:
        self.embedded.append(text)
        return self.inner.embed_query(text)


def test_sentence_spans_cut_at_sentence_ends() -> None:
    assert [TEXT[s:e] for s, e in sentence_spans(TEXT)] == SENTENCES
    assert sentence_spans("") == []


def test_abbreviations_initials_and_decimals_stay_inside_their_sentence() -> None:
    text = (
        "Dr. Smith met Mr. J. R. Jones at 3.30 p.m. in the U.S. capital. "
        'He said "It is fine." See Fig. 3 for details, e.g. the table. He left.'
    )
    assert [s.text for s in split_sentences(text)] == [
        "Dr. Smith met Mr. J. R. Jones at 3.30 p.m. in the U.S. capital.",
        'He said "It is fine."',
        "See Fig. 3 for details, e.g. the table. He left.",  # "He left." is too short alone
    ]


def test_list_enumerators_join_the_item_they_open_and_are_not_quoted() -> None:
    text = (
        "The records must contain the following: a. General Ledger - a record of deposits. "
        "b. Cash Receipts Journal - list of all funds received. c. Cash Disbursements "
        "Journal - list of all disbursements. d"
    )
    quoted = [s.text for s in split_sentences(text)]
    assert quoted == [
        "The records must contain the following:",
        "General Ledger - a record of deposits.",
        "Cash Receipts Journal - list of all funds received.",
        "Cash Disbursements Journal - list of all disbursements. d",
    ]


def test_a_trailing_enumerator_moves_to_the_next_item() -> None:
    text = (
        "2. A rich repository of pre-trained models for off-the-shelf usage 3. "
        "Comprehensive tools for data annotation and model tuning 4. A model hub."
    )
    assert [s.text for s in split_sentences(text)] == [
        "A rich repository of pre-trained models for off-the-shelf usage",
        "Comprehensive tools for data annotation and model tuning",
        "A model hub.",
    ]


def test_short_units_merge_into_a_neighbour() -> None:
    text = "Module One\nThis module introduces the principles of quality. Then he left."
    assert [s.text for s in split_sentences(text)] == [
        "Module One This module introduces the principles of quality. Then he left."
    ]


def test_markdown_tables_become_row_statements_without_separator_rows() -> None:
    table = (
        "Cups by team\n\n| Stanley Cups |  |  |\n| --- | --- | --- |\n"
        "| Team | Location | Stanley Cups |\n| Blues | STL | 1 |\n| Maple Leafs | TOR | 13 |"
    )
    units = split_sentences(table)
    assert [u.text for u in units] == [
        "Cups by team",
        "Team: Blues, Location: STL, Stanley Cups: 1.",
        "Team: Maple Leafs, Location: TOR, Stanley Cups: 13.",
    ]
    assert table[units[2].start : units[2].end] == "| Maple Leafs | TOR | 13 |"


def test_legacy_spans_are_the_old_regular_expression() -> None:
    assert [TEXT[s:e] for s, e in legacy_sentence_spans(TEXT)] == SENTENCES
    assert legacy_sentence_spans("Steps. d. Whenever possible.") == [(0, 9), (10, 28)]


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


def test_vectors_stored_over_legacy_spans_serve_unchanged_sentences_only(
    embedder: OnnxEmbedder,
) -> None:
    content = (
        "Steps to follow now. Read all of this first. a. Hotels may be booked up to 180 "
        "euros per night."
    )
    _, (pooled,) = embedder.embed_spans([content], [legacy_sentence_spans(content)])
    legacy = base64.b64encode(
        np.rint(pooled * 127).clip(-127, 127).astype(np.int8).tobytes()
    ).decode("ascii")
    counting = CountingEmbedder(embedder)
    docs = [scored_doc(1, content, sentence_vectors=legacy)]
    result = ExtractiveAnswerer(counting).compose("How much can a hotel night cost?", docs)
    assert result.content.startswith("Hotels may be booked up to 180 euros per night [doc1].")
    # "Steps to follow now." kept its span and its stored row; the two others are new spans
    assert sorted(counting.embedded[1:]) == [
        "Hotels may be booked up to 180 euros per night.",
        "Read all of this first.",
    ]


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
