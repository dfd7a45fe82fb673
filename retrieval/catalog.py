"""Opens each index once, by name, from the registry; the IndexProvider the Searcher uses."""

from __future__ import annotations

import threading
from collections.abc import Callable

from core.db import IndexRecord, Store
from core.errors import EmbeddingModelMismatchError, IndexNotFoundError
from core.settings import Settings
from retrieval.index import VectorIndex, open_index


class IndexCatalog:
    """Name -> open VectorIndex, opened lazily and kept open until `close()`."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self._settings = settings
        self._store = store
        self._open: dict[str, VectorIndex] = {}
        self._records: dict[str, IndexRecord] = {}
        self._lock = threading.Lock()

    def __call__(self, name: str) -> VectorIndex:
        with self._lock:
            index = self._open.get(name)
            if index is not None:
                return index
            record = self._store.get_index(name)
            if record is None:
                raise IndexNotFoundError.named(name)
            index = open_index(self._settings, name, dimension=record.dimension)
            self._open[name] = index
            self._records[name] = record
            return index

    def querying(self, embedder: str, dimension: int) -> Callable[[str], VectorIndex]:
        """The IndexProvider for searches whose queries this embedder encodes: it refuses an
        index another embedding model (or precision) built, whose vectors live in another
        space. Managing such an index (listing, deleting) still goes through the catalog."""

        def provider(name: str) -> VectorIndex:
            index = self(name)
            refuse_other_embedder(self._records[name], embedder, dimension)
            return index

        return provider

    def names(self) -> list[str]:
        return [r.name for r in self._store.list_indexes()]

    def forget(self, name: str) -> None:
        """Close an index (e.g. before it is dropped or written by another process)."""
        with self._lock:
            index = self._open.pop(name, None)
            self._records.pop(name, None)
        if index is not None:
            index.close()

    def close(self) -> None:
        with self._lock:
            indexes, self._open = list(self._open.values()), {}
            self._records = {}
        for index in indexes:
            index.close()


def refuse_other_embedder(record: IndexRecord, embedder: str, dimension: int) -> None:
    """Raise unless the index was built by this embedder (name, precision included)."""
    if record.embedding_model != embedder or record.dimension != dimension:
        raise EmbeddingModelMismatchError(
            f"index {record.name!r} was created with embedding model {record.embedding_model!r} "
            f"({record.dimension}-d); the configured embedder is {embedder!r} ({dimension}-d). "
            "Use another index name or re-create the index (embedding.model and "
            "embedding.precision must match the index)."
        )
