"""The int8 encoder (embedding.precision=int8): built from the fp32 export, close to it, a
distinct model name, and never mixed with fp32 on one index."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from core.db import Store, make_engine
from core.errors import ConfigurationError, EmbeddingModelMismatchError
from core.settings import EmbeddingSettings, Settings
from ingest import jobs
from ingest.pipeline import ensure_index_record
from retrieval.catalog import IndexCatalog
from retrieval.embedders import OnnxEmbedder, make_embedder
from retrieval.onnx_export import (
    INT8_EXCLUDED,
    INT8_MANIFEST_FILE,
    INT8_MODEL_FILE,
    MANIFEST_FILE,
    MODEL_FILE,
    bundled_model_dir,
    default_export_dir,
    ensure_onnx_model,
    is_valid_export,
)
from retrieval.resources import WorkerResources

SENTENCES = [
    "Employees accrue twenty-five days of paid vacation per calendar year.",
    "Alterations of the architecture of cerebral white matter in the developing human brain "
    "can affect cortical development and result in functional disabilities.",
    "Receipts must be attached to every expense claim above 25 EUR.",
    "Vitamin D deficiency is associated with an increased risk of tuberculosis in adults.",
]
# Measured on these sentences: min cosine 0.9954 (SciFact chunks: 0.9948 over 319 chunks).
MIN_COSINE = 0.985


@pytest.fixture(scope="module")
def fp32() -> OnnxEmbedder:
    return OnnxEmbedder.load(batch_size=4)


@pytest.fixture(scope="module")
def int8() -> OnnxEmbedder:
    return make_embedder(EmbeddingSettings(precision="int8"))  # type: ignore[return-value]


def test_int8_embeds_close_to_fp32_under_its_own_name(
    fp32: OnnxEmbedder, int8: OnnxEmbedder
) -> None:
    expected, got = fp32.embed(SENTENCES), int8.embed(SENTENCES)
    cosines = np.sum(expected * got, axis=1)
    assert cosines.min() >= MIN_COSINE, cosines
    assert cosines.min() < 0.99999  # really the quantised model, not the fp32 one
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert int8.name == "all-MiniLM-L6-v2-int8" != fp32.name
    assert int8.dimension == fp32.dimension == 384
    query = int8.embed_query(SENTENCES[0])
    assert float(query @ expected[0]) >= MIN_COSINE


def test_the_setting_selects_the_precision() -> None:
    assert EmbeddingSettings().precision == "fp32"
    assert EmbeddingSettings(precision="int8").precision == "int8"
    with pytest.raises(ValidationError):
        EmbeddingSettings.model_validate({"precision": "int4"})
    with pytest.raises(ConfigurationError, match=r"embedding\.backend=onnx"):
        make_embedder(EmbeddingSettings(backend="sentence-transformers", precision="int8"))


def test_int8_export_in_the_venv_is_valid_and_reused() -> None:
    export_dir = default_export_dir(bundled_model_dir())
    assert ensure_onnx_model(precision="int8") == export_dir
    before = (export_dir / INT8_MODEL_FILE).stat().st_mtime_ns
    assert ensure_onnx_model(precision="int8") == export_dir
    assert (export_dir / INT8_MODEL_FILE).stat().st_mtime_ns == before
    manifest = json.loads((export_dir / INT8_MANIFEST_FILE).read_text())
    assert manifest["excluded"] == list(INT8_EXCLUDED)
    # int8 weights: well under the fp32 file's size
    assert (export_dir / INT8_MODEL_FILE).stat().st_size < 0.8 * manifest["fp32_bytes"]


def test_int8_model_missing_or_stale_is_built_on_first_use(tmp_path: Path) -> None:
    source = default_export_dir(bundled_model_dir())
    copy = tmp_path / "onnx"
    shutil.copytree(source, copy, ignore=shutil.ignore_patterns("*int8*"))
    assert is_valid_export(copy, bundled_model_dir())
    assert not is_valid_export(copy, bundled_model_dir(), "int8")
    embedder = OnnxEmbedder.load(export_dir=copy, precision="int8")
    assert is_valid_export(copy, bundled_model_dir(), "int8")
    assert embedder.embed(["hello"]).shape == (1, 384)
    # a manifest listing other excluded nodes (an older build) is rebuilt, not trusted
    manifest = json.loads((copy / INT8_MANIFEST_FILE).read_text())
    (copy / INT8_MANIFEST_FILE).write_text(json.dumps({**manifest, "excluded": []}))
    assert not is_valid_export(copy, bundled_model_dir(), "int8")
    # the fp32 export is untouched by the int8 build
    assert (copy / MODEL_FILE).stat().st_size == json.loads((copy / MANIFEST_FILE).read_text())[
        "model_bytes"
    ]


def test_an_index_built_at_one_precision_refuses_the_other(
    tmp_path: Path, fp32: OnnxEmbedder, int8: OnnxEmbedder
) -> None:
    settings = Settings(data_dir=tmp_path)
    store = Store(make_engine(settings.resolved_database_url))
    record = ensure_index_record(store, settings, "papers", embedder=fp32)
    assert record.embedding_model == "all-MiniLM-L6-v2"
    # ingesting with int8 into the fp32 index
    with pytest.raises(EmbeddingModelMismatchError, match=r"embedding\.precision") as refused:
        ensure_index_record(store, settings, "papers", embedder=int8)
    assert "'all-MiniLM-L6-v2-int8'" in refused.value.message
    assert refused.value.status_code == 409
    # querying it with int8 (the catalog a server or `ondata search` opens indexes through)
    catalog = IndexCatalog(settings, store)
    with pytest.raises(EmbeddingModelMismatchError, match="'all-MiniLM-L6-v2'"):
        catalog.querying(int8.name, int8.dimension)("papers")
    assert catalog.querying(fp32.name, fp32.dimension)("papers") is catalog("papers")
    # an ingestion job run by an int8 worker
    with pytest.raises(EmbeddingModelMismatchError):
        jobs._pipeline(WorkerResources(settings, store, int8, catalog), "papers")
    catalog.close()
    # and an int8 index refuses fp32 the same way
    ensure_index_record(store, settings, "papers-int8", embedder=int8)
    with pytest.raises(EmbeddingModelMismatchError):
        ensure_index_record(store, settings, "papers-int8", embedder=fp32)
    store.engine.dispose()
