"""Embedder adapters beyond the contract: ONNX fidelity, the export, word pieces, OpenAI errors."""

from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import openai
import pytest
from pydantic import SecretStr

from core.errors import (
    ConfigurationError,
    EmbeddingError,
    EmbeddingModelError,
    EmbeddingRateLimitError,
)
from core.settings import EmbeddingSettings
from retrieval.embedders import (
    OnnxEmbedder,
    OpenAIEmbedder,
    SentenceTransformerEmbedder,
    length_batches,
    load_word_piece_tokenizer,
    make_embedder,
    word_piece_count,
)
from retrieval.onnx_export import (
    MANIFEST_FILE,
    MODEL_FILE,
    bundled_model_dir,
    default_export_dir,
    ensure_onnx_model,
    is_valid_export,
    resolve_model_dir,
)
from tests.fakes.openai_server import FakeOpenAIServer, fake_embedding

SENTENCES = [
    "Employees accrue twenty-five days of paid vacation per calendar year.",
    "Alterations of the architecture of cerebral white matter in the developing human brain "
    "can affect cortical development and result in functional disabilities.",
    "Receipts must be attached to every expense claim above 25 EUR.",
    "Qu'est-ce que la politique de congés ? Ünïcödé text, emoji 🙂 and numbers 3.14159.",
    "",
]


@pytest.fixture(scope="module")
def onnx_embedder() -> OnnxEmbedder:
    return OnnxEmbedder.load(batch_size=4)


def _remote(fake: FakeOpenAIServer, **settings: object) -> OpenAIEmbedder:
    options = {
        "backend": "openai",
        "base_url": fake.base_url,
        "api_key": SecretStr(fake.api_key),
        "model": "fake-embedding",
        "max_retries": 0,
        "timeout_s": 5.0,
        **settings,
    }
    return OpenAIEmbedder.from_settings(EmbeddingSettings.model_validate(options))


@pytest.fixture
def remote(openai_fake: FakeOpenAIServer) -> Iterator[OpenAIEmbedder]:
    embedder = _remote(openai_fake, batch_size=2)
    yield embedder
    embedder.close()


# --- local models ------------------------------------------------------------------------------


def test_onnx_matches_sentence_transformers(onnx_embedder: OnnxEmbedder) -> None:
    reference = SentenceTransformerEmbedder.load().embed(SENTENCES)
    cosines = np.sum(onnx_embedder.embed(SENTENCES) * reference, axis=1)
    assert cosines.min() >= 0.99999


def test_onnx_truncates_at_256_word_pieces(onnx_embedder: OnnxEmbedder) -> None:
    tokenizer = onnx_embedder.tokenizer
    words = " ".join(f"word{i}" for i in range(400))
    ids = tokenizer.encode([words])[0]
    assert len(ids) == tokenizer.max_seq_length == 256
    # Everything past the window is ignored: appending text changes nothing.
    head, longer = onnx_embedder.embed([words, words + " completely different tail"])
    assert np.allclose(head, longer, atol=1e-6)


def test_length_batches_bound_padding_and_size_and_cover_every_row() -> None:
    lengths = [40, 8, 9, 120, 10, 41, 8, 200, 44, 9]
    batches = length_batches(lengths, batch_size=3)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for batch in batches:
        widths = [lengths[i] for i in batch]
        assert len(batch) <= 3
        assert widths == sorted(widths)
        assert len(batch) * max(widths) <= 1.25 * sum(widths)
    assert [[lengths[i] for i in b] for b in batches][:2] == [[8, 8, 9], [9, 10]]


def test_onnx_rows_do_not_depend_on_what_they_are_batched_with(
    onnx_embedder: OnnxEmbedder,
) -> None:
    mixed = [*SENTENCES, " ".join(["long"] * 200)]
    together = onnx_embedder.embed(mixed)
    alone = np.stack([onnx_embedder.embed([text])[0] for text in mixed])
    assert np.allclose(together, alone, atol=1e-5)


def test_onnx_export_in_the_venv_is_valid_and_reused() -> None:
    export_dir = default_export_dir(bundled_model_dir())
    before = (export_dir / MODEL_FILE).stat().st_mtime_ns
    assert ensure_onnx_model() == export_dir
    assert is_valid_export(export_dir, bundled_model_dir())
    assert (export_dir / MODEL_FILE).stat().st_mtime_ns == before


def test_onnx_export_with_a_damaged_model_is_invalid(tmp_path: Path) -> None:
    copy = tmp_path / "export"
    shutil.copytree(default_export_dir(bundled_model_dir()), copy)
    assert is_valid_export(copy, bundled_model_dir())
    with (copy / MODEL_FILE).open("r+b") as handle:
        handle.truncate(1000)
    assert not is_valid_export(copy, bundled_model_dir())
    (copy / MANIFEST_FILE).unlink()
    assert not is_valid_export(copy, bundled_model_dir())


@pytest.mark.slow
def test_onnx_model_missing_at_run_time_is_exported_then(tmp_path: Path) -> None:
    export_dir = tmp_path / "onnx"
    embedder = OnnxEmbedder.load(export_dir=export_dir)
    assert is_valid_export(export_dir, bundled_model_dir())
    reference = OnnxEmbedder.load().embed(SENTENCES)
    assert np.allclose(embedder.embed(SENTENCES), reference, atol=1e-5)


def test_unknown_local_model_is_refused_not_downloaded() -> None:
    with pytest.raises(EmbeddingModelError, match="never downloads"):
        resolve_model_dir("BAAI/bge-small-en-v1.5")


def test_word_piece_count_matches_the_model_tokenizer() -> None:
    from transformers import AutoTokenizer

    reference = AutoTokenizer.from_pretrained(str(bundled_model_dir()))
    expected = [len(reference(s, add_special_tokens=False)["input_ids"]) for s in SENTENCES]
    assert word_piece_count(SENTENCES) == expected


def test_word_piece_count_never_truncates() -> None:
    tokenizer = load_word_piece_tokenizer()
    assert word_piece_count(["hello " * 1000]) == [1000]
    assert tokenizer.content_limit == 254
    assert tokenizer.max_seq_length == 256


def test_make_embedder_builds_the_configured_local_backend() -> None:
    embedder = make_embedder(EmbeddingSettings(batch_size=8))
    assert isinstance(embedder, OnnxEmbedder)
    assert (embedder.name, embedder.dimension) == ("all-MiniLM-L6-v2", 384)


def test_make_embedder_refuses_dimensions_the_local_model_cannot_give() -> None:
    with pytest.raises(ConfigurationError, match="384"):
        make_embedder(EmbeddingSettings(dimensions=256))


# --- OpenAI-compatible -------------------------------------------------------------------------


def test_make_embedder_builds_an_openai_embedder(openai_fake: FakeOpenAIServer) -> None:
    settings = EmbeddingSettings(
        backend="openai", base_url=openai_fake.base_url, model="fake-embedding", dimensions=64
    )
    embedder = make_embedder(settings)
    assert isinstance(embedder, OpenAIEmbedder)
    assert (embedder.name, embedder.dimension) == ("openai:fake-embedding@64", 64)
    assert openai_fake.requests == []


def test_openai_batches_in_order_and_passes_dimensions(openai_fake: FakeOpenAIServer) -> None:
    embedder = _remote(openai_fake, batch_size=2, dimensions=64)
    texts = [f"text number {i}" for i in range(5)]
    vectors = embedder.embed(texts)
    bodies = [r.body for r in openai_fake.requests_to("embeddings")]
    assert [b["input"] for b in bodies] == [texts[0:2], texts[2:4], texts[4:5]]
    assert {b["dimensions"] for b in bodies} == {64}
    expected = np.array([fake_embedding(t, 64) for t in texts], dtype=np.float32)
    assert np.allclose(vectors, expected, atol=1e-6)


def test_openai_rows_follow_index_not_response_order(
    openai_fake: FakeOpenAIServer, remote: OpenAIEmbedder
) -> None:
    openai_fake.reverse_embedding_order = True
    vectors = remote.embed(["alpha", "beta"])
    assert np.allclose(vectors[0], fake_embedding("alpha"), atol=1e-6)


def test_openai_sends_each_distinct_text_once(
    openai_fake: FakeOpenAIServer, remote: OpenAIEmbedder
) -> None:
    vectors = remote.embed(["same", "other", "same"])
    assert [r.body["input"] for r in openai_fake.requests] == [["same", "other"]]
    assert np.array_equal(vectors[0], vectors[2])


def test_openai_dimension_is_learnt_from_the_first_response(
    openai_fake: FakeOpenAIServer, remote: OpenAIEmbedder
) -> None:
    remote.embed(["first call"])
    assert remote.dimension == openai_fake.embedding_dimensions
    assert "dimensions" not in openai_fake.last_request.body
    assert len(openai_fake.requests) == 1


def test_openai_server_error_becomes_embedding_error(
    openai_fake: FakeOpenAIServer, remote: OpenAIEmbedder
) -> None:
    openai_fake.script(status=500, message="model crashed")
    with pytest.raises(EmbeddingError, match=r"HTTP 500: model crashed") as caught:
        remote.embed(["x"])
    assert caught.value.status_code == 502


def test_openai_rate_limit_becomes_rate_limit_error(
    openai_fake: FakeOpenAIServer, remote: OpenAIEmbedder
) -> None:
    openai_fake.script(status=429, retry_after=30, message="Rate limit reached")
    with pytest.raises(EmbeddingRateLimitError, match="Rate limit reached") as caught:
        remote.embed(["x"])
    assert caught.value.retry_after == 30
    assert len(openai_fake.requests) == 1


def test_openai_retries_a_429_within_its_budget(openai_fake: FakeOpenAIServer) -> None:
    openai_fake.script(status=429, retry_after=0.05)
    embedder = _remote(openai_fake, max_retries=1)
    assert embedder.embed(["x"]).shape == (1, openai_fake.embedding_dimensions)
    assert len(openai_fake.requests) == 2


def test_openai_timeout_becomes_embedding_error(openai_fake: FakeOpenAIServer) -> None:
    openai_fake.script(delay_s=1.0)
    embedder = _remote(openai_fake, timeout_s=0.2)
    with pytest.raises(EmbeddingError, match="did not answer in time"):
        embedder.embed(["x"])


def test_openai_unreachable_server_becomes_embedding_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = EmbeddingSettings(
        backend="openai", base_url=f"http://127.0.0.1:{port}/v1", max_retries=0, dimensions=8
    )
    with pytest.raises(EmbeddingError, match="cannot reach"):
        make_embedder(settings).embed(["x"])


def test_openai_embedder_works_with_azure_deployments(openai_fake: FakeOpenAIServer) -> None:
    client = openai.AzureOpenAI(
        azure_endpoint=openai_fake.azure_endpoint,
        api_key=openai_fake.api_key,
        api_version="2024-10-21",
        max_retries=0,
    )
    embedder = OpenAIEmbedder(client, model="my-embedding-deployment", dimensions=32)
    assert embedder.embed(["hello"]).shape == (1, 32)
    request = openai_fake.last_request
    assert request.deployment == "my-embedding-deployment"
    assert request.headers["api-key"] == openai_fake.api_key
