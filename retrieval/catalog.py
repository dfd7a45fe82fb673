"""Opens each index once, by name, from the registry; the IndexProvider the Searcher uses."""

from __future__ import annotations

import threading

from core.db import Store
from core.errors import IndexNotFoundError
from core.settings import Settings
from retrieval.index import VectorIndex, open_index


class IndexCatalog:
    """Name -> open VectorIndex, opened lazily and kept open until `close()`."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self._settings = settings
        self._store = store
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
