"""The long-lived parts an ingestion worker shares with its process: store, embedder, indexes.

`ondata serve` hands its own (so the embedded consumer writes through the same open Qdrant
Edge shard the searches read); `ondata worker` opens them with `open_worker_resources`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from core.db import Store, make_engine
from core.settings import Settings
from retrieval.catalog import IndexCatalog
from retrieval.embedders import Embedder, make_embedder


@dataclass(frozen=True)
class WorkerResources:
    """What a task handler needs from the process it runs in."""

    settings: Settings
    store: Store
    embedder: Embedder
    catalog: IndexCatalog


@contextmanager
def open_worker_resources(settings: Settings) -> Iterator[WorkerResources]:
    """Store, embedder and index catalog for a worker process; closed when done."""
    store = Store(make_engine(settings.resolved_database_url))
    catalog = IndexCatalog(settings, store)
    try:
        yield WorkerResources(settings, store, make_embedder(settings.embedding), catalog)
    finally:
        catalog.close()
        store.engine.dispose()
