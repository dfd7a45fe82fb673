"""QdrantEdgeIndex: the VectorIndex adapter for a Qdrant Edge shard in this process."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import qdrant_edge as edge

from core.errors import ConfigurationError, IndexBackendError, IndexLockedError
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

METADATA_FILE = "ondata-metadata.json"
"""The index's own metadata (VectorIndex.read_metadata), beside the shard's files."""
BLOB_PREFIX = "ondata-blob-"
"""File name prefix of the index's blobs (VectorIndex.write_blob), beside the shard's files."""
MAINTAIN_MIN_UNINDEXED = 1_000
MAINTAIN_SHARE = 0.10
OPTIMIZE_NICE = 19
"""Where the idle scheduling class is missing: the child's niceness (the lowest priority)."""
CHILD_MODULE = "retrieval.index.edge_optimize"


LOCKED_MESSAGE = (
    "the embedded index at {path} is open in another process, most likely a running "
    "`ondata serve` (an Edge index is opened by one process at a time). While the server "
    "runs, go through it with --url (e.g. `ondata ingest PATH --url http://127.0.0.1:8000`; "
    "ask and search take --url too) or the API; or stop the server first."
)


@contextmanager
def _held_elsewhere(path: Path) -> Iterator[None]:
    """The engine's lock failure (its WAL lock would block) as IndexLockedError."""
    try:
        yield
    except Exception as exc:  # qdrant-edge raises bare Exceptions; only this one is ours
        if "WouldBlock" in str(exc):
            raise IndexLockedError(LOCKED_MESSAGE.format(path=path)) from exc
        raise


class _Gate:
    """Any number of readers at once, or one swap of the shard (which waits for them)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._swapping = False

    @contextmanager
    def shared(self) -> Iterator[None]:
        with self._cond:
            while self._swapping:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            self._swapping = True
            while self._readers:
                self._cond.wait()
        try:
            yield
        finally:
            with self._cond:
                self._swapping = False
                self._cond.notify_all()


class _Turns:
    """At most `slots` holders at a time, admitted strictly in the order they asked.

    On 2 cores one query at a time already reaches the engine's throughput (326 queries/s at
    200k chunks; 312 from 4 threads at once), so queries run side by side only queue inside
    the engine, where the thread that just finished one usually starts its next before a
    waiting thread is scheduled: from 4 threads, p50 3.4 ms but p95 52 ms. Taking turns in
    arrival order keeps the throughput and makes every query wait only for those ahead of it
    (p95 14 ms; README "The embedded index at scale").
    """

    def __init__(self, slots: int) -> None:
        self._lock = threading.Lock()
        self._free = max(1, slots)
        self._waiting: deque[threading.Event] = deque()

    @contextmanager
    def turn(self) -> Iterator[None]:
        with self._lock:
            mine = None
            if self._free and not self._waiting:
                self._free -= 1
            else:
                mine = threading.Event()
                self._waiting.append(mine)
        if mine is not None:
            mine.wait()  # the slot is handed over to this thread by the release before
        try:
            yield
        finally:
            with self._lock:
                if self._waiting:
                    self._waiting.popleft().set()
                else:
                    self._free += 1

    @property
    def waiting(self) -> int:
        with self._lock:
            return len(self._waiting)


def spare_cores(query_slots: int) -> list[int]:
    """The cores an optimise child may use: those past the first `query_slots` of this process's.

    Queries enter the engine `query_slots` at a time; the child gets the other cores, so a
    query never shares a core with it (the idle class alone left each query's core to the
    child's graph building between scheduling ticks: 1.57x the idle p95 at 100k chunks,
    against 1.09x with the child on its own core; README "The embedded index at scale").
    Empty (no pinning) where no core would be left for it.
    """
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    return cores[query_slots:] if len(cores) > query_slots else []


def engine_segments(configured: int) -> int:
    """Indexed segments a shard keeps: as configured, or one per core (0: automatic).

    The engine runs one query at a time on a shard (two threads querying one shard reach the
    throughput of one, at one CPU second per second, though the GIL is free meanwhile) and
    searches the shard's segments in parallel on its search pool, one core each: with the whole
    shard in one segment a query used one core of two and left the other idle (README "The
    embedded index at scale").
    """
    if configured > 0:
        return configured
    cores = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else ()
    return max(1, len(cores) or os.cpu_count() or 1)


def engine_query_slots(configured: int) -> int:
    """Queries the engine runs at once: as configured, or half the cores (0: automatic)."""
    return configured if configured > 0 else max(1, (os.cpu_count() or 2) // 2)


def _aside(path: Path, what: str) -> Path:
    """A sibling directory of the shard's for an optimise apart (hidden, never an index name)."""
    return path.with_name(f".{path.name}.{what}")


def _recover_swap(path: Path) -> None:
    """Finish or undo an optimise apart that a crash interrupted, before the shard opens.

    The optimised copy is renamed into place only after its child process succeeded, and the
    old shard is moved aside just before: with the shard's own directory missing, the copy is
    complete if it is there, else the old shard goes back.
    """
    if path.exists():
        return
    for candidate in (_aside(path, "optimizing"), _aside(path, "replaced")):
        if candidate.is_dir():
            candidate.rename(path)
            logger.warning("recovered the edge shard at %s from %s", path, candidate.name)
            return


def remove_optimize_leftovers(path: Path) -> None:
    """Delete what an interrupted optimise apart left beside a shard this process now owns."""
    for leftover in (_aside(path, "optimizing"), _aside(path, "replaced")):
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)


def optimize_copy(path: Path, dimension: int, cores: Sequence[int] = (), segments: int = 1) -> bool:
    """Optimise the shard at path in this process (the child of an optimise apart).

    It runs on `cores` only (all where empty; see spare_cores) and in the idle scheduling
    class: a core runs it only when nothing else wants that core.
    """
    if cores and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cores)
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):  # not Linux: the lowest niceness instead
        os.nice(OPTIMIZE_NICE)
    shard = edge.EdgeShard.load(str(path), _edge_config(dimension, segments))
    try:
        changed = shard.optimize()
        shard.flush()
    finally:
        shard.close()
    return bool(changed)


MAX_SEGMENT_KB = 2**40


def _edge_config(dimension: int, segments: int = 1) -> edge.EdgeConfig:
    return edge.EdgeConfig(
        vectors={DENSE: edge.EdgeVectorParams(size=dimension, distance=edge.Distance.Cosine)},
        sparse_vectors={SPARSE: edge.EdgeSparseVectorParams(modifier=edge.Modifier.Idf)},
        optimizers=edge.EdgeOptimizersConfig(
            # BM25's IDF counts deleted points until their segment is vacuumed: `optimize`
            # vacuums any segment with 2% deleted (the engine's default waits for 20%)
            deleted_threshold=0.02,
            vacuum_min_vector_number=0,
            # `segments` indexed ones (see engine_segments) + the appendable one writes go to;
            # past that the engine merges the smallest, so they stay of like size
            default_segment_number=segments + 1,
            # no cap on a merged segment (KB): the engine's default, 256 MB per indexing
            # thread (~170k chunks for the child on one core), left 4-6 segments at 500k-1M
            max_segment_size=MAX_SEGMENT_KB,
        ),
    )


_KEYWORD_INDEX = edge.KeywordIndexParams(memory=edge.Memory.Cached)


def _mapped(info: edge.PayloadIndexInfo) -> bool:
    """Whether a keyword index is memory-mapped (created with _KEYWORD_INDEX)."""
    params = info.params
    return isinstance(params, edge.KeywordIndexParams) and params.memory == edge.Memory.Cached


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
        return edge.FieldCondition(key=BOOL_TERMS, match=edge.MatchValue(bool_term(path, value)))
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
    assert vector is not None  # checked by check_request
    return edge.SparseVector(list(vector.indices), list(vector.values))


def _edge_dense(request: IndexQuery) -> edge.Query:
    return edge.Query.Nearest(dense_list(request.dense), using=DENSE)


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
        DENSE: dense_list(item.dense),
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

    Optimising a shard of `optimize_apart_from` points or more runs in a child process on a
    copy (`optimize`), because the engine's binding holds the GIL for the whole of its own
    `optimize`: in this process every query would wait for it (minutes at 1M chunks).
    """

    backend = "qdrant-edge"

    def __init__(
        self,
        shard: edge.EdgeShard,
        *,
        path: Path,
        dimension: int,
        optimize_apart_from: int | None = None,
        query_slots: int = 1,
        segments: int = 1,
    ) -> None:
        self._shard = shard
        self.path = path
        self.dimension = dimension
        self.optimize_apart_from = optimize_apart_from
        self._write_lock = threading.Lock()
        self._gate = _Gate()  # queries share it; swapping in an optimised copy takes it whole
        self._turns = _Turns(query_slots)  # queries enter the engine in arrival order
        self.query_slots = query_slots
        self.segments = segments
        self._idf = DocumentIdf(lambda: self.read_blob(BLOB_NAME), self._term_table_version)
        self.last_optimize: dict[str, float] = {}  # phases of the last optimise apart
        self._closed = False
        self._maintained_at = 0  # points when `maintain` last optimised (or tried to)

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        dimension: int,
        metadata_keys: Sequence[str] = (),
        optimize_apart_from: int | None = None,
        query_slots: int = 0,
        segments: int = 0,
    ) -> QdrantEdgeIndex:
        """Load the shard at path, or create it; raise ConfigurationError on another dimension.

        optimize_apart_from: from this many points on, `optimize` works on a copy in a child
        process while this one goes on serving queries (None: always in place).
        query_slots: queries the engine runs at once, the others waiting their turn in
        arrival order (0: half the cores, at least one).
        segments: indexed segments the shard keeps, searched in parallel (0: one per core).
        """
        _recover_swap(path)
        config = _edge_config(dimension, engine_segments(segments))
        stored = _edge_stored_dimension(path)
        if stored is not None and stored != dimension:
            raise ConfigurationError(
                f"index at {path} holds {stored}-d vectors, not {dimension}-d; "
                "use another index name or drop this one"
            )
        with backend_errors(cls.backend, f"open the shard at {path}"), _held_elsewhere(path):
            if stored is None:
                shard = edge.EdgeShard.create(str(path), config)
            else:
                shard = edge.EdgeShard.load(str(path), config)
        index = cls(
            shard,
            path=path,
            dimension=dimension,
            optimize_apart_from=optimize_apart_from,
            query_slots=engine_query_slots(query_slots),
            segments=engine_segments(segments),
        )
        remove_optimize_leftovers(path)  # not before: they were the owner process's until now
        try:
            index._ensure_payload_indexes(metadata_keys)
        except Exception:
            index.close()  # release the directory lock, or the next open fails
            raise
        return index

    def _ensure_payload_indexes(self, metadata_keys: Sequence[str]) -> None:
        """Keyword indexes on the filtered fields, memory-mapped (an older one in RAM is rebuilt).

        In RAM (the engine's default) each keyword index is rebuilt into hash maps at every
        load: 0.75 s of a 200k-chunk shard's 1.0 s load, all of it holding the GIL, which is
        what queries wait for when an optimised copy is swapped in (and at start-up). Mapped,
        the load is 0.26 s and ACL-filtered queries are as fast (README "The embedded index at
        scale"). An index created before this is rebuilt once, at its next open.
        """
        wanted = [*INDEXED_KEYWORDS, BOOL_TERMS, *(payload_key(k) for k in metadata_keys)]
        with backend_errors(self.backend, "create payload indexes"):
            existing = self._shard.info().payload_schema
            for key in wanted:
                if key in existing and _mapped(existing[key]):
                    continue
                if key in existing:
                    logger.info("rebuilding the keyword index of %s memory-mapped", key)
                    self._shard.update(edge.UpdateOperation.delete_field_index(key))
                self._shard.update(edge.UpdateOperation.create_field_index(key, _KEYWORD_INDEX))
            self._shard.flush()

    def upsert(self, items: Sequence[IndexedChunk]) -> None:
        """Insert or replace the chunks' points."""
        if not items:
            return
        check_dimensions(items, self.dimension)
        points = [_edge_point(item) for item in items]
        with self._write_lock, backend_errors(self.backend, "upsert points"):
            self._live().update(edge.UpdateOperation.upsert_points(points))
            self._shard.flush()
        logger.debug("upserted %d points into %s", len(points), self.path)

    def delete(self, *, doc_id: str, keep_chunk_ids: Sequence[str] = ()) -> int:
        """Remove the document's chunks except the kept ones; returns how many went."""
        flt = _edge_doc_filter(doc_id, keep_chunk_ids)
        with self._write_lock, backend_errors(self.backend, "delete points"):
            ids = self._point_ids(flt)
            if ids:
                self._live().update(edge.UpdateOperation.delete_points(ids))
                self._shard.flush()
        logger.debug("deleted %d points doc_id=%s from %s", len(ids), doc_id, self.path)
        return len(ids)

    def delete_documents(self, doc_ids: Sequence[str]) -> int:
        """Remove the documents' chunks by filter, DELETE_PAGE ids per operation, one flush."""
        wanted = list(dict.fromkeys(doc_ids))
        if not wanted:
            return 0
        removed = 0
        with self._write_lock, backend_errors(self.backend, "delete points"):
            for start in range(0, len(wanted), DELETE_PAGE):
                page = wanted[start : start + DELETE_PAGE]
                flt = edge.Filter(
                    must=[edge.FieldCondition(key="doc_id", match=edge.MatchAny(page))]
                )
                removed += self._live().count(edge.CountRequest(exact=True, filter=flt))
                self._live().update(edge.UpdateOperation.delete_points_by_filter(flt))
            self._shard.flush()
        logger.debug("deleted %d points of %d documents from %s", removed, len(wanted), self.path)
        return removed

    def _point_ids(self, flt: edge.Filter | None) -> list[Any]:
        ids: list[Any] = []
        offset: Any = None
        while True:
            request = edge.ScrollRequest(
                offset=offset, limit=SCROLL_PAGE, filter=flt, with_payload=False
            )
            records, offset = self._live().scroll(request)
            ids.extend(record.id for record in records)
            if offset is None:
                return ids

    def query(self, request: IndexQuery) -> list[ScoredChunk]:
        """Best chunks first."""
        # the whole query takes its turn, building and conversion included: any Python work
        # outside it lets the thread that just finished take the next turn before the waiting
        # ones are scheduled (measured: the p95 from 4 threads stayed at 50 ms that way)
        with self._turns.turn():
            check_request(request)
            query = _edge_request(replace(request, sparse=self._idf.query_weights(request.sparse)))
            with backend_errors(self.backend, "query"), self._reading() as shard:
                hits = shard.query(query)
            return [
                scored_chunk(hit.payload, hit.score, vector=hit.vector, request=request)
                for hit in hits
            ]

    def segment_count(self) -> int:
        """Segments of the shard: the indexed ones and the appendable one writes go to."""
        with backend_errors(self.backend, "read shard info"), self._reading() as shard:
            return int(shard.info().segments_count)

    def count(self, *, doc_id: str | None = None) -> int:
        """Number of chunks, in all or for one document (exact)."""
        request = edge.CountRequest(exact=True, filter=_edge_doc_filter(doc_id))
        with backend_errors(self.backend, "count points"), self._reading() as shard:
            return shard.count(request)

    def optimize(self) -> bool:
        """Merge segments and build the HNSW / payload indexes now (blocking writes).

        Edge has no background optimizer: call this after a large ingestion so queries use
        HNSW instead of scanning. Returns whether anything changed. From
        `optimize_apart_from` points on, the work runs on a copy of the shard in a child
        process at lower priority while queries go on here against the shard as it was; the
        copy then replaces it (queries wait only for that swap: a close and a load). Without
        the disk space for a copy, or if the child fails, it optimises in place instead.
        """
        with self._write_lock, backend_errors(self.backend, "optimize"):
            shard = self._live()
            apart = self.optimize_apart_from
            if apart is None or shard.info().points_count < apart:
                return shard.optimize()
            changed = self._optimize_apart(shard)
            return shard.optimize() if changed is None else changed

    def _optimize_apart(self, shard: edge.EdgeShard) -> bool | None:
        """Optimise a copy in a child process and swap it in; None when that failed."""
        work, replaced = _aside(self.path, "optimizing"), _aside(self.path, "replaced")
        shutil.rmtree(work, ignore_errors=True)
        started = time.perf_counter()
        try:
            shard.flush()
            shutil.copytree(self.path, work)  # the copy's reads and writes release the GIL
            copied = time.perf_counter()
            cores = spare_cores(self.query_slots)
            command = [sys.executable, "-m", CHILD_MODULE, str(work), str(self.dimension)]
            child = subprocess.run(
                [*command, str(os.getpid()), ",".join(map(str, cores)), str(self.segments)],
                capture_output=True,
                text=True,
                check=False,
            )
        except OSError as exc:
            logger.warning("cannot optimise %s apart (%s): optimising in place", self.path, exc)
            shutil.rmtree(work, ignore_errors=True)
            return None
        if child.returncode != 0:
            logger.warning(
                "optimising a copy of %s failed (%s): optimising in place",
                self.path,
                child.stderr.strip().splitlines()[-1:] or child.returncode,
            )
            shutil.rmtree(work, ignore_errors=True)
            return None
        optimized = time.perf_counter()
        with self._gate.exclusive():
            shard.close()
            try:
                self.path.rename(replaced)
                work.rename(self.path)
                self._shard = self._load()
            except Exception:  # serve the shard as it was, then report
                if replaced.is_dir():
                    shutil.rmtree(self.path, ignore_errors=True)
                    replaced.rename(self.path)
                shutil.rmtree(work, ignore_errors=True)
                self._shard = self._load()
                raise
        reported = child.stdout.split()  # "true|false CPUS": what it changed, where it ran
        self.last_optimize = {
            "copy_s": copied - started,
            "child_s": optimized - copied,
            "child_cpus": int(reported[1]) if len(reported) > 1 else 0,
            "swap_s": time.perf_counter() - optimized,
        }
        logger.info(
            "optimized a copy of %s apart: copied in %.1f s, optimised in %.1f s on %d cores, "
            "swapped in %.2f s",
            self.path,
            *(self.last_optimize[k] for k in ("copy_s", "child_s", "child_cpus", "swap_s")),
        )
        shutil.rmtree(replaced, ignore_errors=True)
        return reported[:1] == ["true"]

    def maintain(self) -> bool:
        """`optimize` once the vectors outside an index reach max(1,000, 10% of all).

        Unindexed vectors are searched by scanning: 1.3 ms top-10 on 11k SciFact chunks before
        optimising (1.8 s), 0.47 ms after. The relative floor keeps a stream of small uploads
        from rebuilding a large shard each time.
        """
        with backend_errors(self.backend, "read shard info"), self._reading() as shard:
            info = shard.info()
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
            info.points_count,
            unindexed,
            time.perf_counter() - started,
        )
        return changed

    def scan_payload(self, keys: Sequence[str]) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every point's id with the named payload fields, a page at a time."""
        offset: Any = None
        while True:
            request = edge.ScrollRequest(
                offset=offset,
                limit=SCROLL_PAGE,
                with_payload=edge.PayloadSelector.Include(stored_keys(keys)),
                with_vector=False,
            )
            with backend_errors(self.backend, "scroll points"), self._reading() as shard:
                records, offset = shard.scroll(request)
            for record in records:
                fields = payload_fields(dict(record.payload or {}))
                yield str(record.id), {k: fields[k] for k in keys if k in fields}
            if offset is None:
                return

    def update_sparse(self, vectors: Sequence[tuple[str, SparseVector]]) -> None:
        """Replace the sparse vectors of existing points (dense vectors and payload kept)."""
        points = [edge.PointVectors(pid, {SPARSE: _edge_sparse(vector)}) for pid, vector in vectors]
        with self._write_lock, backend_errors(self.backend, "update sparse vectors"):
            for start in range(0, len(points), SCROLL_PAGE):
                batch = points[start : start + SCROLL_PAGE]
                self._live().update(edge.UpdateOperation.update_vectors(batch))
            self._shard.flush()

    def read_metadata(self) -> dict[str, Any]:
        """The JSON file beside the shard's own files ({} when there is none yet)."""
        file = self.path / METADATA_FILE
        if not file.is_file():
            return {}
        values = json.loads(file.read_text(encoding="utf-8"))
        return values if isinstance(values, dict) else {}

    def write_metadata(self, values: dict[str, Any]) -> None:
        """Merge into the metadata file (written whole, then renamed into place)."""
        with self._write_lock:
            merged = self.read_metadata() | values
            temporary = self.path / f"{METADATA_FILE}.tmp"
            temporary.write_text(json.dumps(merged, sort_keys=True), encoding="utf-8")
            temporary.replace(self.path / METADATA_FILE)

    def read_blob(self, name: str) -> bytes | None:
        """A file beside the shard's own files (None when there is none)."""
        file = self.path / f"{BLOB_PREFIX}{check_blob_name(name)}"
        try:
            return file.read_bytes()
        except FileNotFoundError:
            return None

    def write_blob(self, name: str, data: bytes) -> None:
        """Replace the blob's file (written whole, then renamed into place)."""
        file = self.path / f"{BLOB_PREFIX}{check_blob_name(name)}"
        with self._write_lock:
            temporary = file.with_name(f"{file.name}.tmp")
            temporary.write_bytes(data)
            temporary.replace(file)
        self._idf.invalidate()

    def _term_table_version(self) -> object:
        try:
            stat = (self.path / f"{BLOB_PREFIX}{BLOB_NAME}").stat()
        except FileNotFoundError:
            return None
        return (stat.st_mtime_ns, stat.st_size, stat.st_ino)

    def close(self) -> None:
        """Flush and release the shard; later calls raise IndexBackendError."""
        with self._write_lock:
            if self._closed:
                return
            self._closed = True
            with backend_errors(self.backend, "close the shard"):
                self._shard.flush()
                self._shard.close()

    def drop(self) -> None:
        """Close the shard and delete its directory."""
        self.close()
        shutil.rmtree(self.path, ignore_errors=True)
        remove_optimize_leftovers(self.path)
        logger.info("dropped edge index at %s", self.path)

    def _live(self) -> edge.EdgeShard:
        if self._closed:
            raise IndexBackendError(f"the index at {self.path} is closed")
        return self._shard

    def _load(self) -> edge.EdgeShard:
        with _held_elsewhere(self.path):
            config = _edge_config(self.dimension, self.segments)
            return edge.EdgeShard.load(str(self.path), config)

    @contextmanager
    def _reading(self) -> Iterator[edge.EdgeShard]:
        """The shard for a read outside the write lock (an optimise apart cannot swap it)."""
        with self._gate.shared():
            yield self._live()
