"""Opens each index once, by name, from the registry; the IndexProvider the Searcher uses."""

from __future__ import annotations

import threading

from core.db import IndexRecord, Store
from core.errors import EmbeddingModelMismatchError, IndexNotFoundError
from core.settings import Settings
from retrieval.index import VectorIndex, open_index


class IndexCatalog:
    """Name -> open VectorIndex, opened lazily and kept open until `close()`.

    Given the process's embedder name and dimension, it refuses to open an index another
    embedding model (or precision) built: its queries would be embedded in another space.
    """

    def __init__(
        self, settings: Settings, store: Store, *, embedder: tuple[str, int] | None = None
    ) -> None:
        self._settings = settings
        self._store = store
        self._embedder = embedder
        self._open: dict[str, VectorIndex] = {}
        self._lock = threading.Lock()

    def __call__(self, name: str) -> VectorIndex:
        with self._lock:
            index = self._open.get(name)
            if index is not None:
                return index
            record = self._store.get_index(name)
            if record is None:
                raise IndexNotFoundError.named(name)
            if self._embedder is not None:
                refuse_other_embedder(record, *self._embedder)
            index = open_index(self._settings, name, dimension=record.dimension)
            self._open[name] = index
            return index

    def names(self) -> list[str]:
        return [r.name for r in self._store.list_indexes()]

    def forget(self, name: str) -> None:
        """Close an index (e.g. before it is dropped or written by another process)."""
        with self._lock:
            index = self._open.pop(name, None)
        if index is not None:
            index.close()

    def close(self) -> None:
        with self._lock:
            indexes, self._open = list(self._open.values()), {}
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
