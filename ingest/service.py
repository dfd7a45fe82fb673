"""Composition of the ingestion pipeline from settings (used by the CLI and workers)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial

from core.db import Store, make_engine
from core.models import Document
from core.settings import Settings
from ingest.chunking import Chunker
from ingest.parsers import parse_file
from ingest.pipeline import IngestPipeline, SourceFile, ensure_index_record
from retrieval.corpus_bm25 import Bm25Parameters, CorpusBm25
from retrieval.embedders import Embedder, make_embedder
from retrieval.index import open_index


def open_store(settings: Settings) -> Store:
    return Store(make_engine(settings.resolved_database_url))


def parse_source(src: SourceFile, *, settings: Settings) -> Document:
    """Parse a SourceFile with the per-file limits from settings."""
    return parse_file(
        src.path,
        settings=settings.ingest,
        doc_id=src.doc_id,
        url=src.url,
        acl_groups=src.acl_groups,
        metadata=src.metadata,
    )


@contextmanager
def open_pipeline(
    settings: Settings,
    index_name: str,
    *,
    chunk_size: int | None = None,
    embedder: Embedder | None = None,
    store: Store | None = None,
) -> Iterator[IngestPipeline]:
    """An IngestPipeline for one index; closes the index when done."""
    store = store or open_store(settings)
    embedder = embedder or make_embedder(settings.embedding)
    record = ensure_index_record(store, settings, index_name, embedder=embedder)
    size = chunk_size or record.chunk_size
    overlap = min(record.chunk_overlap, size // 2)
    index = open_index(settings, index_name, dimension=embedder.dimension)
    try:
        yield IngestPipeline(
            index_name=index_name,
            store=store,
            index=index,
            embedder=embedder,
            sparse=CorpusBm25(index, Bm25Parameters.from_settings(settings.retrieval)),
            chunker=Chunker(chunk_size=size, chunk_overlap=overlap),
            parse_ahead=settings.ingest.parse_ahead,
        )
    finally:
        index.close()


def parser_for(settings: Settings) -> partial[Document]:
    return partial(parse_source, settings=settings)
