"""Indexes built from evaluation corpora, cached under <data_dir>/eval-cache and reused.

An entry is keyed by the corpus bytes, the settings that shape an index (the embedding model
and window, chunking, BM25) and the source of the code that turns documents into chunks,
vectors and BM25 terms, so a change to any of them re-ingests instead of silently measuring
a stale index.
Each entry is a small data dir of its own (Edge shard + SQLite registry), so evaluation never
touches the user's indexes. Only the newest entry of each dataset is kept.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import logging
import re
import shutil
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.models import Document
from core.settings import Settings
from evaluation.datasets import CorpusRecord
from evaluation.progress import progress_bar
from ingest.service import open_pipeline, open_store
from ingest.sources import document_from_record
from retrieval.corpus_bm25 import Bm25Parameters, CorpusBm25
from retrieval.embedders import Embedder
from retrieval.index import open_index

logger = logging.getLogger(__name__)

CACHE_DIR = "eval-cache"
INDEX_NAME = "corpus"
_COMPLETE = "complete.json"
# The settings that change what an index holds (an allow-list: new settings sections, such as
# server or queue options, must not invalidate every cached index).
_INDEX_SHAPING: dict[str, set[str] | None] = {
    "embedding": {"backend", "model", "base_url", "dimensions", "max_seq_length", "precision"},
    "chunking": None,  # every field
}
# Modules whose code decides what goes into an index (chunks, their vectors and BM25 terms);
# query-side code (search, fusion, the index adapters' queries) is not part of the key.
_PIPELINE_MODULES = (
    "ingest.chunking",
    "ingest.pipeline",
    "ingest.service",
    "ingest.sources",
    "retrieval.embedders",
    "retrieval.onnx_export",
    "retrieval.sentences",
)
# BM25 (retrieval.sparse, retrieval.corpus_bm25 and the retrieval.bm25_* settings) is not in
# the key: a reused index is refreshed instead, which re-encodes its sparse vectors from the
# stored chunk text when their encoding no longer matches (no embedding model run).


@dataclass(frozen=True)
class CorpusIndex:
    """A ready index over an evaluation corpus; `settings` points at its own data dir."""

    settings: Settings
    index_name: str
    key: str
    docs: int
    chunks: int
    failed: int
    built: bool
    seconds: float


def cache_key(settings: Settings, corpus_hash: str) -> str:
    """sha256 over the corpus hash, the index-shaping settings and the pipeline's code."""
    material = key_material(settings, corpus_hash)
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


def key_material(settings: Settings, corpus_hash: str) -> dict[str, Any]:
    """What the cache key is made of (also written beside the entry, for humans)."""
    return {
        "corpus": corpus_hash,
        "settings": _index_shaping(settings),
        "code": code_fingerprint(),
    }


def _index_shaping(settings: Settings) -> dict[str, Any]:
    dumped = settings.model_dump(mode="json")
    shaping: dict[str, Any] = {}
    for section, fields in _INDEX_SHAPING.items():
        values = dumped.get(section)
        if isinstance(values, dict):
            shaping[section] = {k: v for k, v in values.items() if fields is None or k in fields}
    return shaping


def code_fingerprint() -> str:
    """sha256 of the source of the ingestion and indexing modules."""
    digest = hashlib.sha256()
    for name in _PIPELINE_MODULES:
        digest.update(inspect.getsource(importlib.import_module(name)).encode())
    return digest.hexdigest()


def entry_settings(settings: Settings, entry: Path) -> Settings:
    """The user's settings with the data dir, registry and index backend of a cache entry."""
    index = settings.index.model_copy(update={"backend": "edge"})
    return settings.model_copy(update={"data_dir": entry, "database_url": None, "index": index})


def corpus_index(
    settings: Settings,
    *,
    dataset: str,
    corpus_hash: str,
    records: Iterable[CorpusRecord],
    embedder: Embedder | None = None,
    total: int | None = None,
) -> CorpusIndex:
    """The cached index of a corpus, ingesting it through the real pipeline when missing.

    `records` is only consumed, and the configured embedder (unless one is given) only
    loaded, when the index has to be built.
    """
    key = cache_key(settings, corpus_hash)
    root = settings.data_dir / CACHE_DIR
    entry = root / f"{slug(dataset)}-{key[:16]}"
    target = entry_settings(settings, entry)
    done = entry / _COMPLETE
    if done.is_file():
        info = json.loads(done.read_text())
        logger.info("reusing cached index %s", entry)
        _refresh_bm25(target)
        return CorpusIndex(
            target, INDEX_NAME, key, info["docs"], info["chunks"], info["failed"], False, 0.0
        )
    shutil.rmtree(entry, ignore_errors=True)  # a build that did not finish
    entry.mkdir(parents=True)
    built = _build(target, records=records, embedder=embedder, total=total, key=key)
    done.write_text(
        json.dumps({"docs": built.docs, "chunks": built.chunks, "failed": built.failed})
    )
    _prune(root, keep=entry, dataset=dataset)
    return built


def _refresh_bm25(settings: Settings) -> None:
    """Bring a cached index's BM25 weights in line with today's settings and encoding."""
    record = open_store(settings).get_index(INDEX_NAME)
    if record is None:
        return
    index = open_index(settings, INDEX_NAME, dimension=record.dimension)
    try:
        CorpusBm25(index, Bm25Parameters.from_settings(settings.retrieval)).refresh()
    finally:
        index.close()


def _build(
    settings: Settings,
    *,
    records: Iterable[CorpusRecord],
    embedder: Embedder | None,
    total: int | None,
    key: str,
) -> CorpusIndex:
    started = time.perf_counter()
    with (
        open_pipeline(settings, INDEX_NAME, embedder=embedder) as pipeline,
        progress_bar(total, "indexing corpus", unit="doc") as bar,
    ):
        report = pipeline.ingest_documents(documents(records), progress=bar.update)
    failed = len(report.documents_failed)
    if failed:
        logger.warning(
            "%d corpus records could not be indexed (first: %s)",
            failed,
            report.documents_failed[0].error,
        )
    seconds = time.perf_counter() - started
    logger.info(
        "indexed %d documents, %d chunks in %.1fs",
        report.documents_ingested,
        report.chunks_written,
        seconds,
    )
    return CorpusIndex(
        settings,
        INDEX_NAME,
        key,
        report.documents_ingested,
        report.chunks_written,
        failed,
        True,
        seconds,
    )


def documents(records: Iterable[CorpusRecord]) -> Iterator[Document]:
    """One Document per record: the record's id kept, title and text both used."""
    for record in records:
        # a record with a title and no text is still a document (its title is its text)
        text = record.text if record.text.strip() else record.title
        yield document_from_record(record.doc_id, title=record.title, text=text)


def _prune(root: Path, *, keep: Path, dataset: str) -> None:
    prefix = f"{slug(dataset)}-"
    for old in root.iterdir():
        if (
            old != keep
            and old.is_dir()
            and old.name.startswith(prefix)
            and len(old.name) == len(keep.name)
        ):
            shutil.rmtree(old, ignore_errors=True)
            logger.info("removed stale evaluation index %s", old)


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-")[:60] or "dataset"
