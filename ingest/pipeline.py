"""The ingestion pipeline: parse -> chunk -> embed in batches -> upsert, with a document registry.

Unchanged documents (same bytes, same pipeline settings) do no work. Changed documents get
their new chunks written before the old ones are removed, so a document is never absent.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from core.db import DocumentRecord, IndexRecord, Store
from core.errors import DocumentNotFoundError, OndataError
from core.metrics import embedding_timer, record_ingest
from core.models import Chunk, Document, SparseVector
from core.settings import Settings
from ingest.chunking import Chunker
from ingest.parsers import file_sha256
from retrieval.catalog import refuse_other_embedder
from retrieval.embedders import Embedder, SpanEmbedder, Vectors
from retrieval.index import IndexedChunk, VectorIndex
from retrieval.sentences import content_spans, encode_sentence_vectors

logger = logging.getLogger(__name__)

STATUS_INDEXED = "indexed"
STATUS_FAILED = "failed"


class SparseEncoder(Protocol):
    """Document-side keyword representation (BM25 term weights; retrieval.corpus_bm25)."""

    def encode_document(self, text: str) -> SparseVector: ...

    def refresh(self) -> bool:
        """Bring the index's stored weights in line with its corpus after writes."""
        ...


@dataclass(frozen=True)
class FailedDocument:
    source: str
    error: str
    doc_id: str = ""


@dataclass
class IngestReport:
    """What one ingestion run did."""

    documents_ingested: int = 0
    documents_unchanged: int = 0
    documents_failed: list[FailedDocument] = field(default_factory=list)
    chunks_written: int = 0
    seconds: float = 0.0
    # doc_id -> "indexed" | "unchanged" | "failed": what happened to each document
    outcomes: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "documents_ingested": self.documents_ingested,
            "documents_unchanged": self.documents_unchanged,
            "documents_failed": [
                {"source": f.source, "error": f.error} for f in self.documents_failed
            ],
            "chunks_written": self.chunks_written,
            "seconds": round(self.seconds, 3),
        }


@dataclass(frozen=True)
class SourceFile:
    """A file to ingest and the identity/ACL it is ingested with."""

    path: Path
    doc_id: str
    url: str | None = None
    acl_groups: tuple[str, ...] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)


Parser = Callable[[SourceFile], Document]
Progress = Callable[[int], None]


class IngestPipeline:
    """Writes documents of one index into the vector index and the registry."""

    def __init__(
        self,
        *,
        index_name: str,
        store: Store,
        index: VectorIndex,
        embedder: Embedder,
        sparse: SparseEncoder,
        chunker: Chunker,
        batch_chunks: int = 256,
        parse_ahead: int = 0,
    ) -> None:
        self.index_name = index_name
        self.store = store
        self.index = index
        self.embedder = embedder
        self.sparse = sparse
        self.chunker = chunker
        self.batch_chunks = batch_chunks
        self.parse_ahead = parse_ahead
        self.settings_hash = hashlib.sha256(
            f"{embedder.name}|{chunker.chunk_size}|{chunker.chunk_overlap}".encode()
        ).hexdigest()[:16]

    def ingest_files(
        self, files: Sequence[SourceFile], *, parse: Parser, progress: Progress | None = None
    ) -> IngestReport:
        """Parse, chunk, embed and upsert files; per-file failures are reported, never raised."""
        report = IngestReport()
        started = time.perf_counter()
        docs = self._parsed(files, parse=parse, report=report, progress=progress)
        # parsing (in the parser pool's processes) runs ahead while this thread embeds
        self._write(read_ahead(docs, self.parse_ahead), report=report)
        self._maintain(report)
        report.seconds = time.perf_counter() - started
        _count(report)
        return report

    def ingest_documents(
        self, docs: Iterable[Document], *, progress: Progress | None = None
    ) -> IngestReport:
        """Ingest already-parsed documents (records from a dataset, API payloads)."""
        report = IngestReport()
        started = time.perf_counter()
        self._write(self._unchanged_filtered(docs, report=report, progress=progress), report=report)
        self._maintain(report)
        report.seconds = time.perf_counter() - started
        _count(report)
        return report

    def delete_document(self, doc_id: str) -> int:
        """Remove a document's chunks and its registry entry; returns chunks removed."""
        if self.store.get_document(self.index_name, doc_id) is None:
            raise DocumentNotFoundError(f"no document {doc_id!r} in index {self.index_name!r}")
        removed = self.index.delete(doc_id=doc_id)
        self.store.delete_document(self.index_name, doc_id)
        logger.info("deleted doc_id=%s chunks=%d", doc_id, removed)
        return removed

    def delete_documents(self, doc_ids: Sequence[str]) -> int:
        """Remove several registered documents' chunks in one index write, then their entries."""
        removed = self.index.delete_documents(doc_ids)
        for doc_id in doc_ids:
            self.store.delete_document(self.index_name, doc_id)
        logger.info("deleted documents=%d chunks=%d", len(doc_ids), removed)
        return removed

    # -- internals -------------------------------------------------------------------------

    def _maintain(self, report: IngestReport) -> None:
        """Let the index build what its queries need after this run's writes."""
        if not report.chunks_written:
            return
        try:
            self.sparse.refresh()
            self.index.maintain()
        except OndataError as exc:  # the chunks are in; queries still work, only slower
            logger.warning("index upkeep failed: %s", exc.message)

    def _is_unchanged(self, doc_id: str, content_hash: str) -> bool:
        rec = self.store.get_document(self.index_name, doc_id)
        return (
            rec is not None
            and rec.status == STATUS_INDEXED
            and rec.content_hash == content_hash
            and rec.settings_hash == self.settings_hash
        )

    def _parsed(
        self,
        files: Sequence[SourceFile],
        *,
        parse: Parser,
        report: IngestReport,
        progress: Progress | None,
    ) -> Iterator[Document]:
        for src in files:
            try:
                if self._is_unchanged(src.doc_id, file_sha256(src.path)):
                    report.documents_unchanged += 1
                    report.outcomes[src.doc_id] = "unchanged"
                    continue
                yield parse(src)
            except OndataError as exc:
                self._record_failure(src.doc_id, str(src.path), exc.message, report)
            except OSError as exc:
                self._record_failure(
                    src.doc_id, str(src.path), f"cannot read file: {exc.strerror}", report
                )
            finally:
                if progress:
                    progress(1)

    def _unchanged_filtered(
        self, docs: Iterable[Document], *, report: IngestReport, progress: Progress | None
    ) -> Iterator[Document]:
        for doc in docs:
            if self._is_unchanged(doc.doc_id, doc.content_hash):
                report.documents_unchanged += 1
                report.outcomes[doc.doc_id] = "unchanged"
            else:
                yield doc
            if progress:
                progress(1)

    def _write(self, docs: Iterable[Document], *, report: IngestReport) -> None:
        pending: list[tuple[Document, list[Chunk]]] = []
        size = 0
        for doc in docs:
            chunks = self.chunker.chunk(doc)
            if not chunks:
                self._record_failure(doc.doc_id, doc.source, "no extractable text", report)
                continue
            pending.append((doc, chunks))
            size += len(chunks)
            if size >= self.batch_chunks:
                self._flush(pending, report=report)
                pending, size = [], 0
        if pending:
            self._flush(pending, report=report)

    def _flush(
        self, batch: Sequence[tuple[Document, list[Chunk]]], *, report: IngestReport
    ) -> None:
        chunks = [c for _, cs in batch for c in cs]
        try:
            with embedding_timer("documents"):
                vectors, sentences = self._embed(chunks)
            items = [
                IndexedChunk(
                    chunk=c,
                    dense=vectors[i],
                    sparse=self.sparse.encode_document(c.embed_text),
                    sentence_vectors=sentences[i],
                )
                for i, c in enumerate(chunks)
            ]
            self.index.upsert(items)
        except OndataError as exc:
            for doc, _ in batch:
                self._record_failure(doc.doc_id, doc.source, exc.message, report)
            return
        known = self.store.known_documents(self.index_name, [doc.doc_id for doc, _ in batch])
        for doc, doc_chunks in batch:
            if doc.doc_id in known:
                # The new chunks have landed; now drop what is left of the previous version.
                self.index.delete(
                    doc_id=doc.doc_id, keep_chunk_ids=[c.chunk_id for c in doc_chunks]
                )
            report.documents_ingested += 1
            report.chunks_written += len(doc_chunks)
            report.outcomes[doc.doc_id] = "indexed"
        self.store.save_documents([self._record(doc, len(cs)) for doc, cs in batch])
        logger.info("indexed documents=%d chunks=%d", len(batch), len(chunks))

    def _embed(self, chunks: Sequence[Chunk]) -> tuple[Vectors, list[str | None]]:
        """Chunk vectors, and each chunk's sentence vectors when the embedder can pool spans.

        The sentence vectors come from the same forward pass (retrieval/sentences.py), so the
        extractive answerer never embeds at question time.
        """
        texts = [c.embed_text for c in chunks]
        if not isinstance(self.embedder, SpanEmbedder):
            return self.embedder.embed(texts), [None] * len(chunks)
        spans = [content_spans(c.embed_text, c.content) for c in chunks]
        vectors, pooled = self.embedder.embed_spans(texts, spans)
        return vectors, [encode_sentence_vectors(p) if len(p) else None for p in pooled]

    def _record(self, doc: Document, chunk_count: int) -> DocumentRecord:
        return DocumentRecord(
            index_name=self.index_name,
            doc_id=doc.doc_id,
            source=doc.source,
            title=doc.title,
            content_hash=doc.content_hash,
            settings_hash=self.settings_hash,
            status=STATUS_INDEXED,
            chunk_count=chunk_count,
            error=None,
            acl_groups=list(doc.acl_groups),
            metadata_=dict(doc.metadata),
        )

    def _record_failure(self, doc_id: str, source: str, error: str, report: IngestReport) -> None:
        report.documents_failed.append(FailedDocument(source=source, error=error, doc_id=doc_id))
        report.outcomes[doc_id] = "failed"
        previous = self.store.get_document(self.index_name, doc_id)
        if previous is not None and previous.status == STATUS_INDEXED:
            # Keep serving the last good version; the failure is reported to the caller.
            return
        self.store.save_document(
            DocumentRecord(
                index_name=self.index_name,
                doc_id=doc_id,
                source=source,
                status=STATUS_FAILED,
                chunk_count=0,
                error=error,
                content_hash="",
                settings_hash=self.settings_hash,
            )
        )
        logger.warning("failed source=%s error=%s", source, error)


def _count(report: IngestReport) -> None:
    """Add a run's outcome to the process's Prometheus counters (core/metrics.py)."""
    record_ingest(
        ingested=report.documents_ingested,
        unchanged=report.documents_unchanged,
        failed=len(report.documents_failed),
        chunks=report.chunks_written,
    )


T = TypeVar("T")
_END = object()


def read_ahead(items: Iterator[T], depth: int) -> Iterator[T]:
    """Yield what `items` yields, produced by a thread up to `depth` items ahead (0: inline).

    An exception in `items` is raised here, in order; when the consumer stops early the
    producer stops after the item in hand.
    """
    if depth <= 0:
        yield from items
        return
    ready: queue.Queue[tuple[object, BaseException | None]] = queue.Queue(maxsize=depth)
    stopped = threading.Event()

    def offer(entry: tuple[object, BaseException | None]) -> bool:
        while not stopped.is_set():
            try:
                ready.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not offer((item, None)):
                    return
        except BaseException as exc:  # handed to the consumer, raised there
            offer((_END, exc))
            return
        offer((_END, None))

    producer = threading.Thread(target=produce, name="parse-ahead", daemon=True)
    producer.start()
    try:
        while True:
            item, error = ready.get()
            if error is not None:
                raise error
            if item is _END:
                return
            yield item  # type: ignore[misc]  # every other entry is an item of `items`
    finally:
        stopped.set()
        producer.join(timeout=1.0)


def ensure_index_record(
    store: Store, settings: Settings, name: str, *, embedder: Embedder
) -> IndexRecord:
    """Create the index's registry entry on first use; refuse a different embedder later."""
    existing = store.get_index(name)
    if existing is not None:
        refuse_other_embedder(existing, embedder.name, embedder.dimension)
        return existing
    record = IndexRecord(
        name=name,
        embedding_model=embedder.name,
        dimension=embedder.dimension,
        chunk_size=settings.chunking.chunk_size,
        chunk_overlap=settings.chunking.chunk_overlap,
    )
    store.save_index(record)
    return record
