"""Bm25Encoder: tokenising, stopwords, stemming, stable term ids, BM25 saturation."""

from __future__ import annotations

import pickle
import subprocess
import sys

import pytest

from core.errors import ConfigurationError
from retrieval.sparse import Bm25Encoder

TEXT = "Quarterly invoices: 2024 tax filing deadlines for the Straße café"


def murmur3_32(data: bytes) -> int:
    """Reference murmur3 x86 32-bit, seed 0 (the hash Qdrant and FastEmbed use for BM25)."""
    c1, c2, mask = 0xCC9E2D51, 0x1B873593, 0xFFFFFFFF

    def scramble(k: int) -> int:
        k = (k * c1) & mask
        k = ((k << 15) | (k >> 17)) & mask
        return (k * c2) & mask

    h = 0
    body = len(data) // 4 * 4
    for i in range(0, body, 4):
        h ^= scramble(int.from_bytes(data[i : i + 4], "little"))
        h = ((h << 13) | (h >> 19)) & mask
        h = (h * 5 + 0xE6546B64) & mask
    if data[body:]:
        h ^= scramble(int.from_bytes(data[body:], "little"))
    h ^= len(data)
    for shift, mult in ((16, 0x85EBCA6B), (13, 0xC2B2AE35)):
        h = ((h ^ (h >> shift)) * mult) & mask
    return h ^ (h >> 16)


def qdrant_token_id(token: str) -> int:
    unsigned = murmur3_32(token.encode())
    return abs(unsigned - (1 << 32) if unsigned >= 1 << 31 else unsigned)


@pytest.fixture(scope="module")
def encoder() -> Bm25Encoder:
    return Bm25Encoder()


def weight(encoder: Bm25Encoder, text: str, term: str) -> float:
    vector = encoder.encode_document(text)
    (term_id,) = encoder.encode_query(term).indices
    return vector.values[vector.indices.index(term_id)]


def test_sparse_term_ids_are_qdrant_bm25_hashes_of_stems(encoder: Bm25Encoder) -> None:
    for word, stem in [("running", "run"), ("Dogs", "dog"), ("2024", "2024"), ("café", "café")]:
        assert encoder.encode_query(word).indices == (qdrant_token_id(stem),)


def test_sparse_stemming_merges_word_forms(encoder: Bm25Encoder) -> None:
    assert encoder.encode_query("running runs run").indices == encoder.encode_query("run").indices
    assert encoder.encode_query("running runs run").values == (3.0,)  # one term, thrice
    assert encoder.encode_query("invoices") == encoder.encode_query("invoice")


def test_sparse_stopwords_and_punctuation_are_dropped(encoder: Bm25Encoder) -> None:
    assert encoder.encode_query("the and of, to!").indices == ()
    assert encoder.encode_document("the and of").indices == ()
    assert encoder.encode_query("Hello, WORLD!") == encoder.encode_query("hello world")


def test_sparse_tokeniser_keeps_numbers_and_unicode(encoder: Bm25Encoder) -> None:
    assert len(encoder.encode_query("covid-19 2024").indices) == 3
    assert encoder.encode_query("ÉCOLE") == encoder.encode_query("école")
    # no ASCII folding (Qdrant's default): accented and plain spellings are different terms
    assert encoder.encode_query("café") != encoder.encode_query("cafe")


def test_sparse_query_weights_count_each_term(encoder: Bm25Encoder) -> None:
    vector = encoder.encode_query("tax tax tax filing")
    assert len(vector.indices) == 2
    assert sorted(vector.values) == [1.0, 3.0]
    assert encoder.length("tax tax tax filing of the invoices") == 5  # stopwords not counted


def test_sparse_ids_are_sorted_unique_uint32(encoder: Bm25Encoder) -> None:
    vector = encoder.encode_document(TEXT)
    assert list(vector.indices) == sorted(set(vector.indices))
    assert all(0 <= i < 2**32 for i in vector.indices)
    assert len(vector.values) == len(vector.indices)


def test_sparse_is_deterministic_across_processes(encoder: Bm25Encoder) -> None:
    code = (
        "from retrieval.sparse import Bm25Encoder;"
        f"print(list(Bm25Encoder().encode_document({TEXT!r}).indices))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(list(encoder.encode_document(TEXT).indices))


def test_sparse_document_tf_saturates(encoder: Bm25Encoder) -> None:
    filler = " ".join(f"filler{i}" for i in range(8))
    w1, w2, w4, w16 = (weight(encoder, "tax " * n + filler, "tax") for n in (1, 2, 4, 16))
    assert w1 < w2 < w4 < w16 < encoder.k1 + 1
    assert w4 - w2 < w2 - w1


def test_sparse_document_weight_follows_bm25_formula() -> None:
    encoder = Bm25Encoder(k1=1.2, b=0.75, avg_len=10.0)
    # two kept tokens ("apple", "pie"), tf=1: 2.2 / (1 + 1.2 * (0.25 + 0.75 * 2/10))
    assert weight(encoder, "apple pie", "apple") == pytest.approx(2.2 / (1 + 1.2 * 0.4), rel=1e-5)


def test_sparse_length_normalisation_depends_on_b() -> None:
    long_text = "tax " + " ".join(f"word{i}" for i in range(50))
    normalised = Bm25Encoder(b=0.75, avg_len=10.0)
    assert weight(normalised, long_text, "tax") < weight(normalised, "tax word", "tax")
    flat = Bm25Encoder(b=0.0, avg_len=10.0)
    assert weight(flat, long_text, "tax") == pytest.approx(weight(flat, "tax word", "tax"))


def test_sparse_rejects_invalid_parameters() -> None:
    with pytest.raises(ConfigurationError, match="BM25"):
        Bm25Encoder(b=1.5)
    with pytest.raises(ConfigurationError, match="language"):
        Bm25Encoder(language="klingon")


def test_sparse_encoder_pickles_with_its_parameters() -> None:
    encoder = Bm25Encoder(k1=1.5, b=0.5, avg_len=120.0)
    clone = pickle.loads(pickle.dumps(encoder))
    assert (clone.k1, clone.b, clone.avg_len) == (1.5, 0.5, 120.0)
    assert clone.encode_document(TEXT) == encoder.encode_document(TEXT)
