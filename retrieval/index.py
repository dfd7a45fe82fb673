"""The VectorIndex protocol and its adapters: Qdrant Edge in-process, Qdrant server/cluster.

Both adapters store one point per chunk: id ``uuid5(CHUNK_NAMESPACE, chunk_id)``, named vectors
``dense`` (cosine) and ``sparse`` (BM25 term weights, ``Modifier.IDF``), and the chunk's fields
as payload (``Chunk.model_dump(mode="json")``), so a hit rebuilds its ScoredChunk. Hybrid queries
prefetch dense and sparse candidates and fuse them inside Qdrant (RRF or DBSF).

Filter keys: the Chunk's own fields (``doc_id``, ``filepath``, ``title``, ``url``, ``page``,
``section``, ...) are top-level payload keys; any other key names an entry of the chunk's
``metadata`` and is looked up at ``metadata.<key>`` (a key may also be given as
``metadata.<key>`` explicitly).
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import threading
import time
import uuid
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt
import qdrant_edge as edge
from qdrant_client import QdrantClient
from qdrant_client import models as qm

from core.errors import ConfigurationError, IndexBackendError, InvalidRequestError, OndataError
from core.models import Chunk, ScoredChunk, SparseVector
from core.settings import Settings

logger = logging.getLogger(__name__)

SearchMode = Literal["vector", "keyword", "hybrid"]
FusionMethod = Literal["rrf", "dbsf"]

DENSE = "dense"
SPARSE = "sparse"
CHUNK_NAMESPACE = uuid.UUID("6f1d3c52-7a0e-5b8e-9c41-0d2b9e5a7c13")
"""Namespace of the point ids; fixed forever, or existing points lose their identity."""
SENTENCE_VECTORS = "_sentence_vectors"
"""Payload key of the chunk's sentence vectors (retrieval/sentences.py); only fetched on request."""
BOOL_TERMS = "_bool_terms"
"""Payload key holding ``"<path>=true|false"`` for boolean metadata (see _bool_terms)."""
INDEXED_KEYWORDS = ("doc_id", "acl_groups", "filepath")
_CHUNK_FIELDS = frozenset(Chunk.model_fields) - {"metadata"}
_INDEX_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
_SCROLL_PAGE = 1024
_UPSERT_BATCH = 256
MAINTAIN_MIN_UNINDEXED = 1_000
MAINTAIN_SHARE = 0.10

FilterValue = str | int | bool | list[str] | list[int]


@dataclass(frozen=True)
class IndexedChunk:
    """A chunk with its dense and sparse vectors, ready to upsert."""

    chunk: Chunk
    dense: npt.NDArray[np.float32]
    sparse: SparseVector
    sentence_vectors: str | None = None


@dataclass(frozen=True)
class MetadataFilter:
    """Equality / membership conditions, all of which must hold.

    `equals` maps a payload key to a value or a list of accepted values;
    `acl_groups`, when not None, keeps only chunks whose acl_groups intersect it
    (chunks without groups are public and always kept).
    """

    equals: dict[str, FilterValue] = field(default_factory=dict)
    acl_groups: tuple[str, ...] | None = None


@dataclass(frozen=True)
class IndexQuery:
    """One retrieval request against the index.

    `rrf_k` is the RRF rank constant (score = sum of 1/(k + rank)); unused by DBSF.
    `with_dense_score` fills each hit's `dense_score` (cosine with `dense`, whatever the mode);
    `with_sentence_vectors` returns the stored sentence vectors (large; off by default).
    """

    mode: SearchMode
    limit: int
    dense: npt.NDArray[np.float32] | None = None
    sparse: SparseVector | None = None
    filter: MetadataFilter | None = None
    fusion: FusionMethod = "rrf"
    prefetch_limit: int = 100
    rrf_k: int = 60
    with_dense_score: bool = False
    with_sentence_vectors: bool = False


class VectorIndex(Protocol):
    """Stores chunks with dense + sparse vectors and answers vector/keyword/hybrid queries."""

    def upsert(self, items: Sequence[IndexedChunk]) -> None:
        """Insert or replace points (point id derives from chunk_id)."""
        ...

    def delete(self, *, doc_id: str, keep_chunk_ids: Sequence[str] = ()) -> int:
        """Remove a document's chunks except those listed; returns how many were removed."""
        ...

    def query(self, request: IndexQuery) -> list[ScoredChunk]:
        """Best chunks first."""
        ...

    def count(self, *, doc_id: str | None = None) -> int:
        """Number of chunks, in all or for one document."""
        ...

    def maintain(self) -> bool:
        """Upkeep after a batch of writes (blocking); returns whether it did anything.

        Qdrant Edge builds its vector indexes here once enough points are not in one yet; a
        Qdrant server optimises in the background, so its adapter does nothing.
        """
        ...

    def close(self) -> None:
        """Make writes durable and release the engine's resources (idempotent)."""
        ...

    def drop(self) -> None:
        """Delete the index and all its data, closing it first."""
        ...


# --- shared, pure helpers -------------------------------------------------------------------


def point_id(chunk_id: str) -> str:
    """The Qdrant point id of a chunk: a UUID derived from chunk_id, stable across processes."""
    return str(uuid.uuid5(CHUNK_NAMESPACE, chunk_id))


def payload_key(key: str) -> str:
    """Where a filter key lives in the payload (Chunk fields top-level, the rest in metadata)."""
    if key in _CHUNK_FIELDS or key.startswith("metadata."):
        return key
    return f"metadata.{key}"


def chunk_payload(item: IndexedChunk) -> dict[str, Any]:
    """The payload stored with a chunk's point."""
    payload = item.chunk.model_dump(mode="json")
    payload[BOOL_TERMS] = _bool_terms(item.chunk.metadata)
    if item.sentence_vectors:
        payload[SENTENCE_VECTORS] = item.sentence_vectors
    return payload


def scored_chunk(
    payload: dict[str, Any] | None,
    score: float,
    *,
    vector: Any = None,
    request: IndexQuery | None = None,
) -> ScoredChunk:
    """Rebuild a ScoredChunk from a hit's payload (and its dense vector, when fetched)."""
    if payload is None:
        raise IndexBackendError("index returned a hit without payload")
    fields = {k: v for k, v in payload.items() if k not in (BOOL_TERMS, SENTENCE_VECTORS)}
    return ScoredChunk(
        chunk=Chunk.model_validate(fields),
        score=float(score),
        dense_score=_dense_score(vector, request),
        sentence_vectors=payload.get(SENTENCE_VECTORS),
    )


def _dense_score(vector: Any, request: IndexQuery | None) -> float | None:
    """Cosine of a hit's stored dense vector with the query's (None when not fetched)."""
    if request is None or not request.with_dense_score or request.dense is None:
        return None
    stored = vector.get(DENSE) if isinstance(vector, dict) else None
    if stored is None:
        return None
    a = np.asarray(stored, dtype=np.float32)
    b = np.asarray(request.dense, dtype=np.float32).ravel()
    return float(a @ b / max(float(np.linalg.norm(a) * np.linalg.norm(b)), 1e-12))


def _bool_terms(metadata: dict[str, Any]) -> list[str]:
    # qdrant-edge-py 0.9.0 turns MatchValue(True) into the integer 1, so boolean equality
    # never matches; boolean metadata is also indexed as keyword terms, in both adapters so
    # that payloads stay identical between Edge and a server.
    return [_bool_term(f"metadata.{k}", v) for k, v in metadata.items() if isinstance(v, bool)]


def _bool_term(path: str, value: bool) -> str:
    return f"{path}={'true' if value else 'false'}"


def _check_request(request: IndexQuery) -> None:
    if request.limit < 1:
        raise InvalidRequestError("limit must be at least 1", param="limit")
    if request.mode in ("vector", "hybrid") and request.dense is None:
        raise InvalidRequestError(f"{request.mode} search needs a dense query vector")
    if request.mode in ("keyword", "hybrid") and request.sparse is None:
        raise InvalidRequestError(f"{request.mode} search needs a sparse query vector")


def _check_dimensions(items: Sequence[IndexedChunk], dimension: int) -> None:
    for item in items:
        if item.dense.shape != (dimension,):
            raise InvalidRequestError(
                f"chunk {item.chunk.chunk_id!r} has a dense vector of shape {item.dense.shape}; "
                f"this index holds {dimension}-d vectors"
            )


def _dense_list(vector: npt.NDArray[np.float32] | None) -> list[float]:
    assert vector is not None  # checked by _check_request
    return [float(x) for x in np.asarray(vector, dtype=np.float32).ravel()]


@contextmanager
def _backend_errors(backend: str, action: str) -> Iterator[None]:
    """Translate whatever the engine raises into IndexBackendError (ours pass through)."""
    try:
        yield
    except OndataError:
        raise
    except Exception as exc:  # qdrant-edge raises bare Exception; the client many kinds
        raise IndexBackendError(f"{backend} failed to {action}: {exc}") from exc


# --- Qdrant Edge (in-process shard) --------------------------------------------------------


def _edge_config(dimension: int) -> edge.EdgeConfig:
    return edge.EdgeConfig(
        vectors={DENSE: edge.EdgeVectorParams(size=dimension, distance=edge.Distance.Cosine)},
        sparse_vectors={SPARSE: edge.EdgeSparseVectorParams(modifier=edge.Modifier.Idf)},
    )


def _edge_stored_dimension(path: Path) -> int | None:
    config_file = path / "edge_config.json"
    if not config_file.is_file():
        return None
    try:
        return int(json.loads(config_file.read_text())["vectors"][DENSE]["size"])
    except (ValueError, KeyError, TypeError):
        return None  # unknown layout: EdgeShard.load checks compatibility itself


def _edge_match(key: str, value: FilterValue) -> edge.FieldCondition:
    path = payload_key(key)
    if isinstance(value, bool):
        return edge.FieldCondition(key=BOOL_TERMS, match=edge.MatchValue(_bool_term(path, value)))
    if isinstance(value, list):
        return edge.FieldCondition(key=path, match=edge.MatchAny(value))
    return edge.FieldCondition(key=path, match=edge.MatchValue(value))


def _edge_acl(groups: tuple[str, ...]) -> edge.IsEmptyCondition | edge.Filter:
    public = edge.IsEmptyCondition("acl_groups")
    if not groups:
        return public
    member = edge.FieldCondition(key="acl_groups", match=edge.MatchAny(list(groups)))
    return edge.Filter(should=[public, member])


def _edge_filter(flt: MetadataFilter | None) -> edge.Filter | None:
    if flt is None:
        return None
    must: list[Any] = [_edge_match(key, value) for key, value in flt.equals.items()]
    if flt.acl_groups is not None:
        must.append(_edge_acl(flt.acl_groups))
    return edge.Filter(must=must) if must else None


def _edge_sparse(vector: SparseVector | None) -> edge.SparseVector:
    assert vector is not None  # checked by _check_request
    return edge.SparseVector(list(vector.indices), list(vector.values))


def _edge_dense(request: IndexQuery) -> edge.Query:
    return edge.Query.Nearest(_dense_list(request.dense), using=DENSE)


def _edge_keyword(request: IndexQuery) -> edge.Query:
    return edge.Query.Nearest(_edge_sparse(request.sparse), using=SPARSE)


def _edge_request(request: IndexQuery) -> edge.QueryRequest:
    flt = _edge_filter(request.filter)
    fetch: dict[str, Any] = {
        "with_payload": (
            True
            if request.with_sentence_vectors
            else edge.PayloadSelector.Exclude([SENTENCE_VECTORS])
        ),
        "with_vector": [DENSE] if request.with_dense_score else False,
    }
    if request.mode != "hybrid":
        nearest = _edge_dense(request) if request.mode == "vector" else _edge_keyword(request)
        return edge.QueryRequest(limit=request.limit, query=nearest, filter=flt, **fetch)
    depth = max(request.prefetch_limit, request.limit)
    prefetches = [
        edge.Prefetch(limit=depth, query=_edge_dense(request), filter=flt),
        edge.Prefetch(limit=depth, query=_edge_keyword(request), filter=flt),
    ]
    # the stubs do not declare Fusion.Rrf / Fusion.Dbsf as Fusion, hence Any
    fusion: Any = (
        edge.Fusion.Rrf(k=request.rrf_k) if request.fusion == "rrf" else edge.Fusion.Dbsf()
    )
    return edge.QueryRequest(limit=request.limit, prefetches=prefetches, query=fusion, **fetch)


def _edge_point(item: IndexedChunk) -> edge.Point:
    vectors: dict[str, Any] = {
        DENSE: _dense_list(item.dense),
        SPARSE: edge.SparseVector(list(item.sparse.indices), list(item.sparse.values)),
    }
    return edge.Point(point_id(item.chunk.chunk_id), vectors, chunk_payload(item))


def _edge_doc_filter(doc_id: str | None, keep_chunk_ids: Sequence[str] = ()) -> edge.Filter | None:
    if doc_id is None:
        return None
    must: list[Any] = [edge.FieldCondition(key="doc_id", match=edge.MatchValue(doc_id))]
    if not keep_chunk_ids:
        return edge.Filter(must=must)
    keep = edge.HasIdCondition({point_id(chunk_id) for chunk_id in keep_chunk_ids})
    return edge.Filter(must=must, must_not=[keep])


class QdrantEdgeIndex:
    """A Qdrant Edge shard in a directory of this process (one open shard per directory).

    Queries may run from several threads at once (the engine locks internally); writes and
    close are serialised here so that delete's find-then-remove is atomic. Every write goes
    to the shard's write-ahead log before returning, and is flushed to segments after each
    call, so a reopened shard (even after a crash) sees it.
    """

    backend = "qdrant-edge"

    def __init__(self, shard: edge.EdgeShard, *, path: Path, dimension: int) -> None:
        self._shard = shard
        self.path = path
        self.dimension = dimension
        self._write_lock = threading.Lock()
        self._closed = False
        self._maintained_at = 0  # points when `maintain` last optimised (or tried to)

    @classmethod
    def open(
        cls, path: Path, *, dimension: int, metadata_keys: Sequence[str] = ()
    ) -> QdrantEdgeIndex:
        """Load the shard at path, or create it; raise ConfigurationError on another dimension."""
        stored = _edge_stored_dimension(path)
        if stored is not None and stored != dimension:
            raise ConfigurationError(
                f"index at {path} holds {stored}-d vectors, not {dimension}-d; "
                "use another index name or drop this one"
            )
        with _backend_errors(cls.backend, f"open the shard at {path} (open elsewhere?)"):
            if stored is None:
                shard = edge.EdgeShard.create(str(path), _edge_config(dimension))
            else:
                shard = edge.EdgeShard.load(str(path), _edge_config(dimension))
        index = cls(shard, path=path, dimension=dimension)
        try:
            index._ensure_payload_indexes(metadata_keys)
        except Exception:
            index.close()  # release the directory lock, or the next open fails
            raise
        return index

    def _ensure_payload_indexes(self, metadata_keys: Sequence[str]) -> None:
        wanted = [*INDEXED_KEYWORDS, BOOL_TERMS, *(payload_key(k) for k in metadata_keys)]
        with _backend_errors(self.backend, "create payload indexes"):
            existing = set(self._shard.info().payload_schema)
            for key in wanted:
                if key not in existing:
                    operation = edge.UpdateOperation.create_field_index(
                        key, edge.PayloadSchemaType.Keyword
                    )
                    self._shard.update(operation)

    def upsert(self, items: Sequence[IndexedChunk]) -> None:
        """Insert or replace the chunks' points."""
        if not items:
            return
        _check_dimensions(items, self.dimension)
        points = [_edge_point(item) for item in items]
        with self._write_lock, _backend_errors(self.backend, "upsert points"):
            self._live().update(edge.UpdateOperation.upsert_points(points))
            self._shard.flush()
        logger.debug("upserted %d points into %s", len(points), self.path)

    def delete(self, *, doc_id: str, keep_chunk_ids: Sequence[str] = ()) -> int:
        """Remove the document's chunks except the kept ones; returns how many went."""
        flt = _edge_doc_filter(doc_id, keep_chunk_ids)
        with self._write_lock, _backend_errors(self.backend, "delete points"):
            ids = self._point_ids(flt)
            if ids:
                self._live().update(edge.UpdateOperation.delete_points(ids))
                self._shard.flush()
        logger.debug("deleted %d points doc_id=%s from %s", len(ids), doc_id, self.path)
        return len(ids)

    def _point_ids(self, flt: edge.Filter | None) -> list[Any]:
        ids: list[Any] = []
        offset: Any = None
        while True:
            request = edge.ScrollRequest(
                offset=offset, limit=_SCROLL_PAGE, filter=flt, with_payload=False
            )
            records, offset = self._live().scroll(request)
            ids.extend(record.id for record in records)
            if offset is None:
                return ids

    def query(self, request: IndexQuery) -> list[ScoredChunk]:
        """Best chunks first."""
        _check_request(request)
        query = _edge_request(request)
        with _backend_errors(self.backend, "query"):
            hits = self._live().query(query)
        return [
            scored_chunk(hit.payload, hit.score, vector=hit.vector, request=request)
            for hit in hits
        ]

    def count(self, *, doc_id: str | None = None) -> int:
        """Number of chunks, in all or for one document (exact)."""
        with _backend_errors(self.backend, "count points"):
            request = edge.CountRequest(exact=True, filter=_edge_doc_filter(doc_id))
            return self._live().count(request)

    def optimize(self) -> bool:
        """Merge segments and build the HNSW / payload indexes now (blocking).

        Edge has no background optimizer: call this after a large ingestion so queries use
        HNSW instead of scanning. Returns whether anything changed.
        """
        with self._write_lock, _backend_errors(self.backend, "optimize"):
            return self._live().optimize()

    def maintain(self) -> bool:
        """`optimize` once the vectors outside an index reach max(1,000, 10% of all).

        Unindexed vectors are searched by scanning: 1.3 ms top-10 on 11k SciFact chunks before
        optimising (1.8 s), 0.47 ms after. The relative floor keeps a stream of small uploads
        from rebuilding a large shard each time.
        """
        with _backend_errors(self.backend, "read shard info"):
            info = self._live().info()
        vectors = 2 * info.points_count  # dense + sparse per point
        unindexed = vectors - info.indexed_vectors_count
        if unindexed < max(MAINTAIN_MIN_UNINDEXED, MAINTAIN_SHARE * vectors):
            return False
        # Edge leaves segments under its indexing threshold (~10 MB) unindexed, where a scan is
        # fast anyway: after a try that built nothing, wait for more points before the next
        if info.points_count - self._maintained_at < MAINTAIN_MIN_UNINDEXED:
            return False
        self._maintained_at = info.points_count
        started = time.perf_counter()
        changed = self.optimize()
        logger.info(
            "optimized edge shard points=%d unindexed=%d seconds=%.1f",
            info.points_count, unindexed, time.perf_counter() - started,
        )
        return changed

    def close(self) -> None:
        """Flush and release the shard; later calls raise IndexBackendError."""
        with self._write_lock:
            if self._closed:
                return
            self._closed = True
            with _backend_errors(self.backend, "close the shard"):
                self._shard.flush()
                self._shard.close()

    def drop(self) -> None:
        """Close the shard and delete its directory."""
        self.close()
        shutil.rmtree(self.path, ignore_errors=True)
        logger.info("dropped edge index at %s", self.path)

    def _live(self) -> edge.EdgeShard:
        if self._closed:
            raise IndexBackendError(f"the index at {self.path} is closed")
        return self._shard


# --- Qdrant server (qdrant-client; local mode in tests) ------------------------------------


def _server_match(key: str, value: FilterValue) -> qm.FieldCondition:
    path = payload_key(key)
    if isinstance(value, bool):
        return qm.FieldCondition(key=BOOL_TERMS, match=qm.MatchValue(value=_bool_term(path, value)))
    if isinstance(value, list):
        return qm.FieldCondition(key=path, match=qm.MatchAny(any=value))
    return qm.FieldCondition(key=path, match=qm.MatchValue(value=value))


def _server_acl(groups: tuple[str, ...]) -> qm.IsEmptyCondition | qm.Filter:
    public = qm.IsEmptyCondition(is_empty=qm.PayloadField(key="acl_groups"))
    if not groups:
        return public
    member = qm.FieldCondition(key="acl_groups", match=qm.MatchAny(any=list(groups)))
    return qm.Filter(should=[public, member])


def _server_filter(flt: MetadataFilter | None) -> qm.Filter | None:
    if flt is None:
        return None
    must: list[Any] = [_server_match(key, value) for key, value in flt.equals.items()]
    if flt.acl_groups is not None:
        must.append(_server_acl(flt.acl_groups))
    return qm.Filter(must=must) if must else None


def _server_doc_filter(doc_id: str | None, keep_chunk_ids: Sequence[str] = ()) -> qm.Filter | None:
    if doc_id is None:
        return None
    must: list[Any] = [qm.FieldCondition(key="doc_id", match=qm.MatchValue(value=doc_id))]
    if not keep_chunk_ids:
        return qm.Filter(must=must)
    keep = qm.HasIdCondition(has_id=[point_id(chunk_id) for chunk_id in keep_chunk_ids])
    return qm.Filter(must=must, must_not=[keep])


def _server_sparse(vector: SparseVector | None) -> qm.SparseVector:
    assert vector is not None  # checked by _check_request
    return qm.SparseVector(indices=list(vector.indices), values=list(vector.values))


def _server_point(item: IndexedChunk) -> qm.PointStruct:
    vectors: dict[str, Any] = {DENSE: _dense_list(item.dense), SPARSE: _server_sparse(item.sparse)}
    return qm.PointStruct(
        id=point_id(item.chunk.chunk_id), vector=vectors, payload=chunk_payload(item)
    )


@dataclass(frozen=True)
class _ServerQuery:
    """Keyword arguments of QdrantClient.query_points for one IndexQuery."""

    query: Any
    using: str | None
    prefetch: list[qm.Prefetch] | None
    query_filter: qm.Filter | None


def _server_query(request: IndexQuery) -> _ServerQuery:
    flt = _server_filter(request.filter)
    if request.mode == "vector":
        return _ServerQuery(_dense_list(request.dense), DENSE, None, flt)
    if request.mode == "keyword":
        return _ServerQuery(_server_sparse(request.sparse), SPARSE, None, flt)
    depth = max(request.prefetch_limit, request.limit)
    prefetch = [
        qm.Prefetch(query=_dense_list(request.dense), using=DENSE, limit=depth, filter=flt),
        qm.Prefetch(query=_server_sparse(request.sparse), using=SPARSE, limit=depth, filter=flt),
    ]
    fusion: Any = (
        qm.RrfQuery(rrf=qm.Rrf(k=request.rrf_k))
        if request.fusion == "rrf"
        else qm.FusionQuery(fusion=qm.Fusion.DBSF)
    )
    return _ServerQuery(fusion, None, prefetch, None)


class QdrantServerIndex:
    """A collection on a Qdrant server or cluster, through qdrant-client.

    qdrant-client's local mode (``QdrantClient(location=":memory:")``) speaks the same API and
    stands in for a server in tests. Thread-safe as far as the client is.
    """

    backend = "qdrant"

    def __init__(
        self, client: QdrantClient, *, collection: str, dimension: int, owns_client: bool = True
    ) -> None:
        self._client = client
        self.collection = collection
        self.dimension = dimension
        self._owns_client = owns_client

    @classmethod
    def open(
        cls,
        client: QdrantClient,
        *,
        collection: str,
        dimension: int,
        metadata_keys: Sequence[str] = (),
        owns_client: bool = True,
    ) -> QdrantServerIndex:
        """Use the collection, creating it when missing; ConfigurationError on another dimension."""
        index = cls(client, collection=collection, dimension=dimension, owns_client=owns_client)
        with _backend_errors(cls.backend, f"open collection {collection!r}"):
            if client.collection_exists(collection):
                index._check_dimension()
            else:
                index._create_collection()
            index._ensure_payload_indexes(metadata_keys)
        return index

    def _check_dimension(self) -> None:
        vectors = self._client.get_collection(self.collection).config.params.vectors
        params = vectors.get(DENSE) if isinstance(vectors, dict) else None
        if params is None or params.size != self.dimension:
            stored = "no dense" if params is None else f"{params.size}-d"
            raise ConfigurationError(
                f"collection {self.collection!r} holds {stored} vectors, not {self.dimension}-d; "
                "use another index name or drop this one"
            )

    def _create_collection(self) -> None:
        self._client.create_collection(
            self.collection,
            vectors_config={
                DENSE: qm.VectorParams(size=self.dimension, distance=qm.Distance.COSINE)
            },
            sparse_vectors_config={SPARSE: qm.SparseVectorParams(modifier=qm.Modifier.IDF)},
        )
        logger.info("created collection %s (%d-d)", self.collection, self.dimension)

    def _ensure_payload_indexes(self, metadata_keys: Sequence[str]) -> None:
        existing = set(self._client.get_collection(self.collection).payload_schema)
        wanted = [*INDEXED_KEYWORDS, BOOL_TERMS, *(payload_key(k) for k in metadata_keys)]
        with warnings.catch_warnings():
            # local mode warns that payload indexes have no effect there; a server uses them
            warnings.simplefilter("ignore", UserWarning)
            for key in (k for k in wanted if k not in existing):
                self._client.create_payload_index(
                    self.collection, key, qm.PayloadSchemaType.KEYWORD, wait=True
                )

    def upsert(self, items: Sequence[IndexedChunk]) -> None:
        """Insert or replace the chunks' points, in batches, waiting for each."""
        _check_dimensions(items, self.dimension)
        with _backend_errors(self.backend, "upsert points"):
            for start in range(0, len(items), _UPSERT_BATCH):
                batch = [_server_point(item) for item in items[start : start + _UPSERT_BATCH]]
                self._client.upsert(self.collection, points=batch, wait=True)
        logger.debug("upserted %d points into %s", len(items), self.collection)

    def delete(self, *, doc_id: str, keep_chunk_ids: Sequence[str] = ()) -> int:
        """Remove the document's chunks except the kept ones; returns how many went."""
        flt = _server_doc_filter(doc_id, keep_chunk_ids)
        with _backend_errors(self.backend, "delete points"):
            ids = self._point_ids(flt)
            if ids:
                selector = qm.PointIdsList(points=ids)
                self._client.delete(self.collection, points_selector=selector, wait=True)
        logger.debug("deleted %d points doc_id=%s from %s", len(ids), doc_id, self.collection)
        return len(ids)

    def _point_ids(self, flt: qm.Filter | None) -> list[qm.ExtendedPointId]:
        ids: list[qm.ExtendedPointId] = []
        offset: qm.ExtendedPointId | None = None
        while True:
            records, offset = self._client.scroll(
                self.collection,
                scroll_filter=flt,
                limit=_SCROLL_PAGE,
                offset=offset,
                with_payload=False,
                with_vectors=False,
            )
            ids.extend(record.id for record in records)
            if offset is None:
                return ids

    def query(self, request: IndexQuery) -> list[ScoredChunk]:
        """Best chunks first."""
        _check_request(request)
        q = _server_query(request)
        with _backend_errors(self.backend, "query"):
            response = self._client.query_points(
                self.collection,
                query=q.query,
                using=q.using,
                prefetch=q.prefetch,
                query_filter=q.query_filter,
                limit=request.limit,
                with_payload=(
                    True
                    if request.with_sentence_vectors
                    else qm.PayloadSelectorExclude(exclude=[SENTENCE_VECTORS])
                ),
                with_vectors=[DENSE] if request.with_dense_score else False,
            )
        return [
            scored_chunk(hit.payload, hit.score, vector=hit.vector, request=request)
            for hit in response.points
        ]

    def count(self, *, doc_id: str | None = None) -> int:
        """Number of chunks, in all or for one document (exact)."""
        with _backend_errors(self.backend, "count points"):
            flt = _server_doc_filter(doc_id)
            return self._client.count(self.collection, count_filter=flt, exact=True).count

    def maintain(self) -> bool:
        """Nothing: a Qdrant server runs its optimizers in the background."""
        return False

    def close(self) -> None:
        """Close the client if this index owns it."""
        if self._owns_client:
            with _backend_errors(self.backend, "close the client"):
                self._client.close()

    def drop(self) -> None:
        """Delete the collection, then close."""
        with _backend_errors(self.backend, f"drop collection {self.collection!r}"):
            self._client.delete_collection(self.collection)
        logger.info("dropped collection %s", self.collection)
        self.close()


# --- factory --------------------------------------------------------------------------------


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
    with _backend_errors("qdrant", f"connect to {settings.index.url}"):
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
    return QdrantEdgeIndex.open(path, dimension=dimension, metadata_keys=keys)


def drop_index(settings: Settings, name: str) -> bool:
    """Delete a named index that is not open; returns whether it existed."""
    if settings.index.backend == "server":
        client = _server_client(settings)
        try:
            with _backend_errors("qdrant", f"drop index {name!r}"):
                return bool(client.delete_collection(server_collection(settings, name)))
        finally:
            client.close()
    path = edge_index_path(settings, name)
    if not path.exists():
        return False
    shutil.rmtree(path)
    return True
