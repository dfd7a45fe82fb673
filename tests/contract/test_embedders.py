"""One contract every Embedder passes: ONNX, sentence-transformers, and OpenAI (loopback fake)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import openai
import pytest

from retrieval.embedders import (
    Embedder,
    OnnxEmbedder,
    OpenAIEmbedder,
    SentenceTransformerEmbedder,
)
from tests.fakes.openai_server import FakeOpenAIServer

# Small batches so that every call below spans several of them.
BATCH_SIZE = 2
TEXTS = [
    "Cats sleep for most of the day in warm, quiet places.",
    "Tax returns are due in April and late filing incurs penalties.",
    "Rain and strong winds are expected along the coast tomorrow.",
    "Employees accrue twenty-five days of paid vacation each year.",
    "x",
]
LONG_TEXT = " ".join(["The handbook describes leave, expenses, travel and security rules."] * 800)


@pytest.fixture(scope="module", params=["onnx", "sentence-transformers", "openai"])
def embedder(
    request: pytest.FixtureRequest, openai_fake_server: FakeOpenAIServer
) -> Iterator[Embedder]:
    if request.param == "onnx":
        yield OnnxEmbedder.load(batch_size=BATCH_SIZE)
    elif request.param == "sentence-transformers":
        yield SentenceTransformerEmbedder.load(batch_size=BATCH_SIZE)
    else:
        client = openai.OpenAI(
            base_url=openai_fake_server.base_url, api_key=openai_fake_server.api_key, max_retries=0
        )
        remote = OpenAIEmbedder(client, model="fake-embedding", batch_size=BATCH_SIZE)
        yield remote
        remote.close()


class TestEmbedderContract:
    def test_embed_returns_float32_rows_of_the_dimension(self, embedder: Embedder) -> None:
        vectors = embedder.embed(TEXTS)
        assert vectors.dtype == np.float32
        assert vectors.shape == (len(TEXTS), embedder.dimension)
        assert embedder.dimension > 0
        assert embedder.name

    def test_vectors_are_unit_length(self, embedder: Embedder) -> None:
        norms = np.linalg.norm(embedder.embed(TEXTS), axis=1)
        assert np.allclose(norms, 1.0, atol=1e-5)

    def test_order_is_preserved(self, embedder: Embedder) -> None:
        forward = embedder.embed(TEXTS)
        backward = embedder.embed(TEXTS[::-1])
        assert np.allclose(forward, backward[::-1], atol=1e-5)
        assert not np.allclose(forward[0], forward[1], atol=1e-2)

    def test_batch_equals_single(self, embedder: Embedder) -> None:
        batch = embedder.embed(TEXTS)
        singles = np.stack([embedder.embed([text])[0] for text in TEXTS])
        assert np.allclose(batch, singles, atol=1e-5)

    def test_duplicates_get_identical_rows(self, embedder: Embedder) -> None:
        vectors = embedder.embed([TEXTS[0], TEXTS[1], TEXTS[0]])
        assert vectors.shape == (3, embedder.dimension)
        assert np.array_equal(vectors[0], vectors[2])

    def test_empty_list_gives_no_rows(self, embedder: Embedder) -> None:
        vectors = embedder.embed([])
        assert vectors.shape == (0, embedder.dimension)
        assert vectors.dtype == np.float32

    def test_long_text_is_truncated_not_rejected(self, embedder: Embedder) -> None:
        vectors = embedder.embed([LONG_TEXT, TEXTS[0]])
        assert vectors.shape == (2, embedder.dimension)
        assert np.all(np.isfinite(vectors))
        assert np.linalg.norm(vectors[0]) == pytest.approx(1.0, abs=1e-5)

    def test_query_is_one_vector_like_embed(self, embedder: Embedder) -> None:
        query = embedder.embed_query(TEXTS[3])
        assert query.shape == (embedder.dimension,)
        assert np.allclose(query, embedder.embed([TEXTS[3]])[0], atol=1e-5)

    def test_query_is_closest_to_the_matching_document(self, embedder: Embedder) -> None:
        scores = embedder.embed(TEXTS) @ embedder.embed_query("Where do cats sleep during the day?")
        assert int(np.argmax(scores)) == 0
