"""QdrantServerIndex: the VectorIndex adapter for a Qdrant server or cluster (qdrant-client)."""

from __future__ import annotations

import base64
import logging
import uuid
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from qdrant_client import QdrantClient
from qdrant_client import models as qm

from core.errors import ConfigurationError
from core.models import ScoredChunk, SparseVector
from retrieval.index.filters import bool_term, payload_key
from retrieval.index.points import (
    DELETE_PAGE,
    SCROLL_PAGE,
    backend_errors,
    check_dimensions,
    check_request,
    chunk_payload,
    dense_list,
    payload_fields,
    point_id,
    scored_chunk,
    stored_keys,
)
from retrieval.index.types import (
    BOOL_TERMS,
    DENSE,
    INDEXED_KEYWORDS,
    SENTENCE_VECTORS,
    SPARSE,
    FilterValue,
    IndexedChunk,
    IndexQuery,
    MetadataFilter,
    check_blob_name,
)
from retrieval.term_statistics import BLOB_NAME, DocumentIdf

logger = logging.getLogger(__name__)

_UPSERT_BATCH = 256
BLOB_SUFFIX = ".ondata-blobs"
"""The companion collection of an index's blobs: <collection>.ondata-blobs (an index name
cannot hold a '.', so it is nobody's index)."""
BLOB_PART = 1 << 20
"""Bytes of a blob per point (base64 in the payload: ~1.4 MB a request)."""
_BLOB_NAMESPACE = uuid.UUID("0b5e2c61-3f4d-5a8e-a7c9-2d6f1e8b4c30")


def _blob_point(name: str, part: int) -> str:
    return str(uuid.uuid5(_BLOB_NAMESPACE, f"{name}#{part}"))


def _server_match(key: str, value: FilterValue) -> qm.FieldCondition:
    path = payload_key(key)
    if isinstance(value, bool):
        return qm.FieldCondition(key=BOOL_TERMS, match=qm.MatchValue(value=bool_term(path, value)))
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
    assert vector is not None  # checked by check_request
    return qm.SparseVector(indices=list(vector.indices), values=list(vector.values))


def _server_point(item: IndexedChunk) -> qm.PointStruct:
    vectors: dict[str, Any] = {DENSE: dense_list(item.dense), SPARSE: _server_sparse(item.sparse)}
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
        return _ServerQuery(dense_list(request.dense), DENSE, None, flt)
    if request.mode == "keyword":
        return _ServerQuery(_server_sparse(request.sparse), SPARSE, None, flt)
    depth = max(request.prefetch_limit, request.limit)
    prefetch = [
        qm.Prefetch(query=dense_list(request.dense), using=DENSE, limit=depth, filter=flt),
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
        self._blobs = f"{collection}{BLOB_SUFFIX}"
        self._idf = DocumentIdf(
            lambda: self.read_blob(BLOB_NAME), lambda: self._blob_stamp(BLOB_NAME)
        )

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
        with backend_errors(cls.backend, f"open collection {collection!r}"):
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
        check_dimensions(items, self.dimension)
        with backend_errors(self.backend, "upsert points"):
            for start in range(0, len(items), _UPSERT_BATCH):
                batch = [_server_point(item) for item in items[start : start + _UPSERT_BATCH]]
                self._client.upsert(self.collection, points=batch, wait=True)
        logger.debug("upserted %d points into %s", len(items), self.collection)

    def delete(self, *, doc_id: str, keep_chunk_ids: Sequence[str] = ()) -> int:
        """Remove the document's chunks except the kept ones; returns how many went."""
        flt = _server_doc_filter(doc_id, keep_chunk_ids)
        with backend_errors(self.backend, "delete points"):
            ids = self._point_ids(flt)
            if ids:
                selector = qm.PointIdsList(points=ids)
                self._client.delete(self.collection, points_selector=selector, wait=True)
        logger.debug("deleted %d points doc_id=%s from %s", len(ids), doc_id, self.collection)
        return len(ids)

    def delete_documents(self, doc_ids: Sequence[str]) -> int:
        """Remove the documents' chunks by filter, DELETE_PAGE ids per request."""
        wanted = list(dict.fromkeys(doc_ids))
        removed = 0
        with backend_errors(self.backend, "delete points"):
            for start in range(0, len(wanted), DELETE_PAGE):
                match = qm.MatchAny(any=wanted[start : start + DELETE_PAGE])
                flt = qm.Filter(must=[qm.FieldCondition(key="doc_id", match=match)])
                removed += self._client.count(self.collection, count_filter=flt, exact=True).count
                selector = qm.FilterSelector(filter=flt)
                self._client.delete(self.collection, points_selector=selector, wait=True)
        logger.debug(
            "deleted %d points of %d documents from %s", removed, len(wanted), self.collection
        )
        return removed

    def _point_ids(self, flt: qm.Filter | None) -> list[qm.ExtendedPointId]:
        ids: list[qm.ExtendedPointId] = []
        offset: qm.ExtendedPointId | None = None
        while True:
            records, offset = self._client.scroll(
                self.collection,
                scroll_filter=flt,
                limit=SCROLL_PAGE,
                offset=offset,
                with_payload=False,
                with_vectors=False,
            )
            ids.extend(record.id for record in records)
            if offset is None:
                return ids

    def query(self, request: IndexQuery) -> list[ScoredChunk]:
        """Best chunks first."""
        check_request(request)
        q = _server_query(replace(request, sparse=self._idf.query_weights(request.sparse)))
        with backend_errors(self.backend, "query"):
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
        with backend_errors(self.backend, "count points"):
            flt = _server_doc_filter(doc_id)
            return self._client.count(self.collection, count_filter=flt, exact=True).count

    def maintain(self) -> bool:
        """Nothing: a Qdrant server runs its optimizers in the background."""
        return False

    def scan_payload(self, keys: Sequence[str]) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every point's id with the named payload fields, a page at a time."""
        offset: qm.ExtendedPointId | None = None
        while True:
            with backend_errors(self.backend, "scroll points"):
                records, offset = self._client.scroll(
                    self.collection,
                    limit=SCROLL_PAGE,
                    offset=offset,
                    with_payload=qm.PayloadSelectorInclude(include=stored_keys(keys)),
                    with_vectors=False,
                )
            for record in records:
                fields = payload_fields(dict(record.payload or {}))
                yield str(record.id), {k: fields[k] for k in keys if k in fields}
            if offset is None:
                return

    def update_sparse(self, vectors: Sequence[tuple[str, SparseVector]]) -> None:
        """Replace the sparse vectors of existing points (dense vectors and payload kept)."""
        points = [
            qm.PointVectors(id=pid, vector={SPARSE: _server_sparse(vector)})
            for pid, vector in vectors
        ]
        with backend_errors(self.backend, "update sparse vectors"):
            for start in range(0, len(points), _UPSERT_BATCH):
                batch = points[start : start + _UPSERT_BATCH]
                self._client.update_vectors(self.collection, points=batch, wait=True)

    def read_metadata(self) -> dict[str, Any]:
        """The collection's metadata."""
        with backend_errors(self.backend, "read collection metadata"):
            metadata = self._client.get_collection(self.collection).config.metadata
        return dict(metadata or {})

    def write_metadata(self, values: dict[str, Any]) -> None:
        """Merge into the collection's metadata."""
        with backend_errors(self.backend, "write collection metadata"):
            self._client.update_collection(self.collection, metadata=values)

    def read_blob(self, name: str) -> bytes | None:
        """The blob's parts from the companion collection, or None (none, or one being
        rewritten as it was read: the caller goes on without it)."""
        check_blob_name(name)
        with backend_errors(self.backend, "read a blob"):
            if not self._client.collection_exists(self._blobs):
                return None
            head = self._client.retrieve(self._blobs, ids=[_blob_point(name, 0)])
            if not head or not head[0].payload:
                return None
            parts, stamp = int(head[0].payload["parts"]), head[0].payload["stamp"]
            ids = [_blob_point(name, i) for i in range(1, parts)]
            rest = self._client.retrieve(self._blobs, ids=ids) if ids else []
        by_id = {str(r.id): r.payload or {} for r in rest}
        found = [head[0].payload, *(by_id.get(i, {}) for i in ids)]
        if any(part.get("stamp") != stamp for part in found):
            return None
        return b"".join(base64.b64decode(part["data"]) for part in found)

    def write_blob(self, name: str, data: bytes) -> None:
        """Write the blob's parts, the first (which names the rest) last; drop leftovers."""
        check_blob_name(name)
        stamp = uuid.uuid4().hex
        pieces = [data[i : i + BLOB_PART] for i in range(0, len(data), BLOB_PART)] or [b""]
        points = [
            qm.PointStruct(
                id=_blob_point(name, i),
                vector={},
                payload={
                    "name": name,
                    "stamp": stamp,
                    "parts": len(pieces),
                    "data": base64.b64encode(piece).decode("ascii"),
                },
            )
            for i, piece in enumerate(pieces)
        ]
        with backend_errors(self.backend, "write a blob"):
            if not self._client.collection_exists(self._blobs):
                self._client.create_collection(self._blobs, vectors_config={})
            old = self._client.retrieve(self._blobs, ids=[_blob_point(name, 0)])
            before = int(old[0].payload["parts"]) if old and old[0].payload else 0
            for point in [*points[1:], points[0]]:
                self._client.upsert(self._blobs, points=[point], wait=True)
            stale = [_blob_point(name, i) for i in range(len(pieces), before)]
            if stale:
                self._client.delete(
                    self._blobs, points_selector=qm.PointIdsList(points=list(stale)), wait=True
                )
        self._idf.invalidate()

    def _blob_stamp(self, name: str) -> object:
        with backend_errors(self.backend, "read a blob"):
            if not self._client.collection_exists(self._blobs):
                return None
            head = self._client.retrieve(
                self._blobs, ids=[_blob_point(name, 0)], with_payload=["stamp"]
            )
        return head[0].payload.get("stamp") if head and head[0].payload else None

    def close(self) -> None:
        """Close the client if this index owns it."""
        if self._owns_client:
            with backend_errors(self.backend, "close the client"):
                self._client.close()

    def drop(self) -> None:
        """Delete the collection, then close."""
        with backend_errors(self.backend, f"drop collection {self.collection!r}"):
            self._client.delete_collection(self.collection)
            if self._client.collection_exists(self._blobs):
                self._client.delete_collection(self._blobs)
        logger.info("dropped collection %s", self.collection)
        self.close()
