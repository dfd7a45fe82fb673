"""The ingestion pipeline end to end on real parts: parsers, ONNX embedder, Qdrant Edge, SQLite."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from core.settings import Settings
from ingest.parsers import doc_id_for
from ingest.pipeline import IngestPipeline
from ingest.service import open_pipeline, open_store, parser_for
from ingest.sources import source_files
from retrieval.embedders import Embedder, make_embedder
from retrieval.index import IndexQuery
from retrieval.sentences import decode_sentence_vectors, sentence_spans

HANDBOOK = """# Travel policy

## Hotels
Employees may book hotels up to 180 euros per night in capital cities.

## Trains
First class train travel is allowed for journeys longer than four hours.
"""


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return make_embedder(Settings().embedding)


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    root.mkdir()
    (root / "travel.md").write_text(HANDBOOK, encoding="utf-8")
    (root / "notes.txt").write_text(
        "The cafeteria opens at eight and closes at three.\n", encoding="utf-8"
    )
    (root / "empty.txt").write_text("   \n", encoding="utf-8")
    (root / "unknown.xyz").write_bytes(b"\x00\x01binary")
    return root


@pytest.fixture
def pipeline(settings: Settings, embedder: Embedder) -> Iterator[IngestPipeline]:
    with open_pipeline(settings, "docs", embedder=embedder) as p:
        yield p


def _ingest(pipeline: IngestPipeline, settings: Settings, root: Path):  # type: ignore[no-untyped-def]
    files = source_files([root], doc_id_for=doc_id_for)
    return pipeline.ingest_files(files, parse=parser_for(settings))


def test_pipeline_ingests_good_files_and_reports_bad_ones(
    pipeline: IngestPipeline, settings: Settings, corpus: Path
) -> None:
    # the folder walk takes supported types only; a file named directly is tried whatever it
    # is, so unknown.xyz is named too, to check that it fails with the upload's reason
    files = source_files([corpus, corpus / "unknown.xyz"], doc_id_for=doc_id_for)
    report = pipeline.ingest_files(files, parse=parser_for(settings))
    assert report.documents_ingested == 2
    failed = {Path(f.source).name: f.error for f in report.documents_failed}
    assert set(failed) == {"empty.txt", "unknown.xyz"}
    assert "no extractable text" in failed["empty.txt"]
    assert "unsupported" in failed["unknown.xyz"].lower()
    assert report.chunks_written == pipeline.index.count() > 0


def test_pipeline_reingest_unchanged_does_no_work(
    pipeline: IngestPipeline, settings: Settings, corpus: Path
) -> None:
    _ingest(pipeline, settings, corpus)
    before = pipeline.index.count()
    again = _ingest(pipeline, settings, corpus)
    assert again.documents_unchanged == 2
    assert again.documents_ingested == 0
    assert again.chunks_written == 0
    assert pipeline.index.count() == before


def test_pipeline_changed_document_replaces_its_chunks(
    pipeline: IngestPipeline, settings: Settings, corpus: Path, embedder: Embedder
) -> None:
    _ingest(pipeline, settings, corpus)
    (corpus / "notes.txt").write_text("The cafeteria now opens at nine.\n", encoding="utf-8")
    report = _ingest(pipeline, settings, corpus)
    assert report.documents_ingested == 1
    assert report.documents_unchanged == 1
    doc_id = doc_id_for(str((corpus / "notes.txt").resolve()))
    assert pipeline.index.count(doc_id=doc_id) == 1
    hits = pipeline.index.query(
        IndexQuery(mode="vector", limit=3, dense=embedder.embed_query("cafeteria hours"))
    )
    notes = [h for h in hits if h.chunk.doc_id == doc_id]
    assert [h.chunk.content for h in notes] == ["The cafeteria now opens at nine."]


def test_pipeline_delete_removes_chunks_and_registry_row(
    pipeline: IngestPipeline, settings: Settings, corpus: Path
) -> None:
    _ingest(pipeline, settings, corpus)
    doc_id = doc_id_for(str((corpus / "travel.md").resolve()))
    assert pipeline.index.count(doc_id=doc_id) > 0
    pipeline.delete_document(doc_id)
    assert pipeline.index.count(doc_id=doc_id) == 0
    assert pipeline.store.get_document("docs", doc_id) is None


def test_pipeline_registry_lists_status_and_chunk_counts(
    pipeline: IngestPipeline, settings: Settings, corpus: Path
) -> None:
    _ingest(pipeline, settings, corpus)
    rows = {Path(r.source).name: r for r in open_store(settings).list_documents("docs")}
    assert rows["travel.md"].status == "indexed"
    assert rows["travel.md"].chunk_count == pipeline.index.count(doc_id=rows["travel.md"].doc_id)
    assert rows["empty.txt"].status == "failed"
    assert "no extractable text" in (rows["empty.txt"].error or "")


def test_pipeline_keeps_section_path_and_title(
    pipeline: IngestPipeline, settings: Settings, corpus: Path, embedder: Embedder
) -> None:
    _ingest(pipeline, settings, corpus)
    hits = pipeline.index.query(
        IndexQuery(mode="vector", limit=1, dense=embedder.embed_query("hotel price per night"))
    )
    chunk = hits[0].chunk
    assert "180 euros" in chunk.content
    assert chunk.section is not None
    assert "Hotels" in chunk.section
    assert "Hotels" in chunk.embed_text


def test_pipeline_stores_one_sentence_vector_per_sentence_of_each_chunk(
    pipeline: IngestPipeline, settings: Settings, corpus: Path, embedder: Embedder
) -> None:
    _ingest(pipeline, settings, corpus)
    question = embedder.embed_query("hotel price per night")
    hits = pipeline.index.query(
        IndexQuery(mode="vector", limit=5, dense=question, with_sentence_vectors=True)
    )
    assert hits
    for hit in hits:
        assert hit.sentence_vectors is not None
        rows = decode_sentence_vectors(hit.sentence_vectors, embedder.dimension)
        spans = sentence_spans(hit.chunk.content)
        assert rows.shape == (len(spans), embedder.dimension)
        best = int(np.argmax(rows @ question))
        start, end = spans[best]
        if "180 euros" in hit.chunk.content:
            assert "180 euros" in hit.chunk.content[start:end]


def test_pipeline_samples_folder_ingests(
    pipeline: IngestPipeline, settings: Settings, tmp_path: Path
) -> None:
    samples = Path(__file__).resolve().parents[2] / "data" / "samples"
    copy = tmp_path / "samples"
    shutil.copytree(samples, copy)
    report = _ingest(pipeline, settings, copy)
    assert report.documents_failed == []
    assert report.documents_ingested == len(list(copy.iterdir()))
