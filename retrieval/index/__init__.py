"""The VectorIndex protocol, its two Qdrant adapters (Edge in-process, server) and the factory.

Both adapters store one point per chunk: id ``uuid5(CHUNK_NAMESPACE, chunk_id)``, named vectors
``dense`` (cosine) and ``sparse`` (BM25 term weights, ``Modifier.IDF``), and the chunk's fields
as payload (``Chunk.model_dump(mode="json")``), so a hit rebuilds its ScoredChunk. Hybrid queries
prefetch dense and sparse candidates and fuse them inside Qdrant (RRF or DBSF).

Filter keys: the Chunk's own fields (``doc_id``, ``filepath``, ``title``, ``url``, ``page``,
``section``, ...) are top-level payload keys; any other key names an entry of the chunk's
``metadata`` and is looked up at ``metadata.<key>`` (a key may also be given as
``metadata.<key>`` explicitly).

Modules: ``types`` (protocol, requests, constants), ``filters`` (payload keys), ``points``
(shared point helpers), ``edge`` and ``server`` (one adapter each); the factory lives here.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from qdrant_client import QdrantClient

from core.errors import ConfigurationError, InvalidRequestError
from core.settings import Settings
from retrieval.index.edge import (
    MAINTAIN_MIN_UNINDEXED,
    MAINTAIN_SHARE,
    QdrantEdgeIndex,
    remove_optimize_leftovers,
)
from retrieval.index.filters import payload_key
from retrieval.index.points import backend_errors, chunk_payload, point_id, scored_chunk
from retrieval.index.server import QdrantServerIndex
from retrieval.index.types import (
    BOOL_TERMS,
    CHUNK_NAMESPACE,
    DENSE,
    INDEXED_KEYWORDS,
    SENTENCE_VECTORS,
    SPARSE,
    FilterValue,
    FusionMethod,
    IndexedChunk,
    IndexQuery,
    MetadataFilter,
    SearchMode,
    VectorIndex,
)

__all__ = [
    "BOOL_TERMS",
    "CHUNK_NAMESPACE",
    "DENSE",
    "INDEXED_KEYWORDS",
    "MAINTAIN_MIN_UNINDEXED",
    "MAINTAIN_SHARE",
    "SENTENCE_VECTORS",
    "SPARSE",
    "FilterValue",
    "FusionMethod",
    "IndexQuery",
    "IndexedChunk",
    "MetadataFilter",
    "QdrantEdgeIndex",
    "QdrantServerIndex",
    "SearchMode",
    "VectorIndex",
    "check_index_name",
    "chunk_payload",
    "drop_index",
    "edge_index_path",
    "open_index",
    "payload_key",
    "point_id",
    "scored_chunk",
    "server_collection",
]

_INDEX_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")


def check_index_name(name: str) -> str:
    """Return name if it is a valid index name (letters, digits, '_' and '-'; up to 128)."""
    if not _INDEX_NAME.fullmatch(name):
        raise InvalidRequestError(
            f"invalid index name {name!r}: use 1-128 letters, digits, '_' or '-', "
            "starting with a letter or digit",
            param="index_name",
        )
    return name


def edge_index_path(settings: Settings, name: str) -> Path:
    """The directory of an Edge index: <data_dir>/indexes/<name>/."""
    return settings.data_dir / "indexes" / check_index_name(name)


def server_collection(settings: Settings, name: str) -> str:
    """The server collection of an index: <collection_prefix><name>."""
    return f"{settings.index.collection_prefix}{check_index_name(name)}"


def _server_client(settings: Settings) -> QdrantClient:
    if not settings.index.url:
        raise ConfigurationError("index.backend=server needs ONDATA_INDEX__URL")
    api_key = settings.index.api_key.get_secret_value() if settings.index.api_key else None
    with backend_errors("qdrant", f"connect to {settings.index.url}"):
        return QdrantClient(url=settings.index.url, api_key=api_key, check_compatibility=False)


def open_index(settings: Settings, name: str, *, dimension: int) -> VectorIndex:
    """Open (creating if needed) the named index on the configured backend.

    Edge shards are single-owner: open each name once per process and share the object.
    """
    keys = settings.index.filterable_metadata
    if settings.index.backend == "server":
        client = _server_client(settings)
        collection = server_collection(settings, name)
        return QdrantServerIndex.open(
            client, collection=collection, dimension=dimension, metadata_keys=keys
        )
    path = edge_index_path(settings, name)
    return QdrantEdgeIndex.open(
        path,
        dimension=dimension,
        metadata_keys=keys,
        optimize_apart_from=settings.index.optimize_apart_from,
        query_slots=settings.index.query_slots,
        segments=settings.index.segments,
    )


def drop_index(settings: Settings, name: str) -> bool:
    """Delete a named index that is not open; returns whether it existed."""
    if settings.index.backend == "server":
        client = _server_client(settings)
        try:
            with backend_errors("qdrant", f"drop index {name!r}"):
                return bool(client.delete_collection(server_collection(settings, name)))
        finally:
            client.close()
    path = edge_index_path(settings, name)
    if not path.exists():
        return False
    shutil.rmtree(path)
    remove_optimize_leftovers(path)
    return True
