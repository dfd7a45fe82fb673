"""The ingestion task: runs an upload job or a sources job (folders, URLs) through the pipeline.

Registered as the `ondata.tasks` entry point "ingest"; core.queue claims the job and calls
`run_job(run, resources)`. Progress is recorded per document, so a run that was interrupted
(worker killed) resumes with the documents it had not finished; chunk ids are deterministic
and old chunks are removed only after new ones land, so a re-run never duplicates chunks.
Sync: for a folder or URL source whose listing succeeded, documents it put in the index
earlier whose file or page is gone are deleted.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from core import jobs
from core.db import DocumentRecord
from core.errors import OndataError
from core.ingestion import (
    check_folder_source,
    check_reader_allowed,
    check_url_source,
    inside_roots,
    remove_stored_upload,
)
from core.job_specs import (
    KIND_READER,
    FolderSource,
    ReaderSpec,
    SourcesSpec,
    UploadSpec,
    UrlSource,
)
from core.queue import JobRun
from core.settings import Settings
from ingest.chunking import Chunker
from ingest.parsers import doc_id_for
from ingest.pipeline import FailedDocument, IngestPipeline, IngestReport, SourceFile
from ingest.readers import ReaderSource, ingest_reader
from ingest.service import parse_source
from ingest.sources import discover_files
from ingest.web import crawl
from retrieval.catalog import refuse_other_embedder
from retrieval.corpus_bm25 import Bm25Parameters, CorpusBm25
from retrieval.resources import WorkerResources

logger = logging.getLogger(__name__)

ORIGIN_UPLOAD = "upload"
SYNC_DELETE_PAGE = 500
"""Documents a folder or site sync deletes per index write."""


@dataclass
class Plan:
    """The run's documents, failures found while listing them, and which origins are complete
    (listed without error, so their missing documents can be removed)."""

    files: list[tuple[SourceFile, str]] = field(default_factory=list)
    failures: list[tuple[str, str, str]] = field(default_factory=list)
    complete: dict[str, set[str]] = field(default_factory=dict)
    keep: set[str] = field(default_factory=set)


def run_job(run: JobRun, resources: WorkerResources) -> None:
    """Do one run of an ingestion job (the handler core.queue calls)."""
    settings = resources.settings
    if run.job.kind == KIND_READER:
        _run_reader(run, resources)
        return
    plan = (
        _upload_plan(run, settings)
        if run.job.kind == jobs.KIND_UPLOAD
        else _sources_plan(run, settings)
    )
    listed = [(src.doc_id, _label(src)) for src, _ in plan.files]
    statuses = run.add_items(listed + [(doc_id, source) for doc_id, source, _ in plan.failures])
    for doc_id, source, error in plan.failures:
        run.record(doc_id, source=source, status=jobs.ITEM_FAILED, error=error)
    todo = [
        (src, origin) for src, origin in plan.files if statuses.get(src.doc_id) == jobs.ITEM_PENDING
    ]
    pipeline = _pipeline(resources, run.index_name)
    if run.resumed:
        _purge_partial(pipeline, [src.doc_id for src, _ in todo])
    for batch in _batches(todo, settings.jobs.batch_documents):
        if run.should_stop():
            return
        _ingest_batch(run, pipeline, batch, settings=settings)
    if not run.should_stop():
        _sync(run, pipeline, plan, settings=settings)


def _pipeline(resources: WorkerResources, index_name: str) -> IngestPipeline:
    """A pipeline writing through the process's open index (never a second Edge handle)."""
    record = resources.store.get_index(index_name)
    index = resources.catalog(index_name)
    assert record is not None  # catalog() raised IndexNotFoundError otherwise
    refuse_other_embedder(record, resources.embedder.name, resources.embedder.dimension)
    return IngestPipeline(
        index_name=index_name,
        store=resources.store,
        index=index,
        embedder=resources.embedder,
        sparse=CorpusBm25(index, Bm25Parameters.from_settings(resources.settings.retrieval)),
        chunker=Chunker(chunk_size=record.chunk_size, chunk_overlap=record.chunk_overlap),
        parse_ahead=resources.settings.ingest.parse_ahead,
    )


def _label(src: SourceFile) -> str:
    return src.url or str(src.path)


def _batches(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# --- planning ------------------------------------------------------------------------------


def _upload_plan(run: JobRun, settings: Settings) -> Plan:
    spec = run.spec
    assert isinstance(spec, UploadSpec)
    plan = Plan()
    for item in spec.files:
        src = SourceFile(
            path=Path(item.path),
            doc_id=item.doc_id,  # the API chose it (Scope.owned_id): the caller's own document
            acl_groups=tuple(spec.acl_groups),
            metadata={"filename": item.filename, **spec.metadata},
        )
        plan.files.append((src, ORIGIN_UPLOAD))
    return plan


def _sources_plan(run: JobRun, settings: Settings) -> Plan:
    spec = run.spec
    assert isinstance(spec, SourcesSpec)
    plan = Plan()
    for source in spec.sources:
        if isinstance(source, FolderSource):
            _plan_folder(plan, run, settings, source)
        else:
            _plan_url(plan, run, settings, source)
    return plan


def _source_meta(run: JobRun) -> tuple[tuple[str, ...], dict[str, Any]]:
    return tuple(run.spec.acl_groups), dict(run.spec.metadata)


def _owned(run: JobRun, base_id: str) -> str:
    """The id a document (or an origin) of this job gets: its submitter's own (see
    Scope.owned_id), so a sync never replaces or removes documents written under other groups."""
    return run.spec.scope.owned_id(base_id)


def _plan_folder(plan: Plan, run: JobRun, settings: Settings, source: FolderSource) -> None:
    origin = _owned(run, f"folder:{source.path}")
    try:
        folder = check_folder_source(settings, source.path)
        if not folder.is_dir():
            raise OSError(f"{source.path} is not a folder")
    except (OndataError, OSError) as exc:
        message = exc.message if isinstance(exc, OndataError) else str(exc)
        plan.failures.append((_source_id(origin), source.path, message))
        return
    origin = _owned(run, f"folder:{folder}")
    acl, metadata = _source_meta(run)
    files = [p for p in discover_files([folder]) if inside_roots(settings, p)]
    ids: set[str] = set()
    for path in files:
        doc_id = _owned(run, doc_id_for(str(path)))
        src = SourceFile(path=path, doc_id=doc_id, acl_groups=acl, metadata=metadata)
        plan.files.append((src, origin))
        ids.add(src.doc_id)
    plan.complete[origin] = ids


def _plan_url(plan: Plan, run: JobRun, settings: Settings, source: UrlSource) -> None:
    url = check_url_source(source.url)
    origin = _owned(run, f"url:{url}")
    dest = settings.data_dir.resolve() / "fetched" / run.index_name
    result = crawl(url, dest=dest, settings=settings.jobs, depth=source.crawl_depth)
    acl, metadata = _source_meta(run)
    for page in result.pages:
        src = SourceFile(
            path=page.path,
            doc_id=_owned(run, doc_id_for(page.url)),
            url=page.url,
            acl_groups=acl,
            metadata=metadata,
        )
        plan.files.append((src, origin))
    for page_url, error in result.failed.items():
        page_id = _owned(run, doc_id_for(page_url))
        plan.failures.append((page_id, page_url, error))
        plan.keep.add(page_id)  # a failing page keeps its last good version
    if url not in result.failed:
        plan.complete[origin] = {_owned(run, doc_id_for(p.url)) for p in result.pages}


def _source_id(origin: str) -> str:
    return f"source-{hashlib.sha256(origin.encode()).hexdigest()[:12]}"


def _run_reader(run: JobRun, resources: WorkerResources) -> None:
    """A reader job: what the reader returns is ingested, what it no longer returns removed
    (ingest/readers.py); the allow-list is checked again (settings may have changed)."""
    spec = run.spec
    assert isinstance(spec, ReaderSpec)
    source = ReaderSource(spec.reader, spec.reader_args, spec.load_args, spec.id_key)
    pipeline = _pipeline(resources, run.index_name)
    try:
        check_reader_allowed(resources.settings, spec.reader)
        report, removed = ingest_reader(
            pipeline,
            source,
            acl_groups=spec.acl_groups,
            metadata=spec.metadata,
            owned=partial(_owned, run),
            may_delete=lambda record: spec.scope.can_read(record.acl_groups),
        )
    except OndataError as exc:
        report, removed = IngestReport(), []
        report.documents_failed.append(FailedDocument(source=spec.reader, error=exc.message))
    _record_reader(run, pipeline, report, removed, label=spec.reader)


def _record_reader(
    run: JobRun,
    pipeline: IngestPipeline,
    report: IngestReport,
    removed: Sequence[DocumentRecord],
    *,
    label: str,
) -> None:
    """The job's items: each document's outcome, the reader's own failure, the removals."""
    failed = {f.doc_id or _owned(run, f"reader:{label}"): f for f in report.documents_failed}
    outcomes = dict(report.outcomes) | dict.fromkeys(failed, jobs.ITEM_FAILED)
    records = {d: pipeline.store.get_document(run.index_name, d) for d in outcomes}
    sources = {d: (r.source if r is not None else failed[d].source) for d, r in records.items()}
    run.add_items([*sources.items(), *((r.doc_id, r.source) for r in removed)])
    for doc_id, status in outcomes.items():
        record = records[doc_id]
        chunks = record.chunk_count if record and status == jobs.ITEM_INDEXED else 0
        error = failed[doc_id].error if doc_id in failed else None
        run.record(doc_id, source=sources[doc_id], status=status, error=error, chunks=chunks)
    for record in removed:
        run.record(record.doc_id, source=record.source, status=jobs.ITEM_DELETED)


# --- ingesting -----------------------------------------------------------------------------


def _purge_partial(pipeline: IngestPipeline, doc_ids: list[str]) -> None:
    """Before resuming: drop chunks an interrupted attempt wrote for documents the registry
    does not list as indexed (they would otherwise linger if the file changed meanwhile)."""
    for doc_id in doc_ids:
        record = pipeline.store.get_document(pipeline.index_name, doc_id)
        if record is None or record.status != "indexed":
            removed = pipeline.index.delete(doc_id=doc_id)
            if removed:
                logger.info("purged %d partial chunks doc_id=%s", removed, doc_id)


def _ingest_batch(
    run: JobRun,
    pipeline: IngestPipeline,
    batch: Sequence[tuple[SourceFile, str]],
    *,
    settings: Settings,
) -> None:
    files = [src for src, _ in batch]
    previous = {
        src.doc_id: pipeline.store.get_document(run.index_name, src.doc_id) for src in files
    }
    report = pipeline.ingest_files(files, parse=partial(parse_source, settings=settings))
    errors = {f.doc_id: f.error for f in report.documents_failed}
    for src, origin in batch:
        record = pipeline.store.get_document(run.index_name, src.doc_id)
        outcome = report.outcomes.get(src.doc_id, jobs.ITEM_FAILED)
        chunks = record.chunk_count if record is not None and outcome == jobs.ITEM_INDEXED else 0
        run.record(
            src.doc_id,
            source=_label(src),
            status=outcome,
            error=errors.get(src.doc_id),
            chunks=chunks,
        )
        pipeline.store.set_origin(run.index_name, [src.doc_id], origin)
        old = previous[src.doc_id]
        _tidy_upload(
            settings, src, kept=record.source if record else None, old=old.source if old else None
        )


def _tidy_upload(settings: Settings, src: SourceFile, *, kept: str | None, old: str | None) -> None:
    """Keep only the uploaded file the registry points at (the new one, or the old one when
    the new upload was unchanged or failed)."""
    new = str(src.path)
    if new != kept:
        remove_stored_upload(settings, new)
    if old and old not in (kept, new):
        remove_stored_upload(settings, old)


def _sync(run: JobRun, pipeline: IngestPipeline, plan: Plan, *, settings: Settings) -> None:
    """Delete documents of complete origins whose file or page is no longer there; never one
    the job's submitter may not read."""
    scope = run.spec.scope
    for origin, present in plan.complete.items():
        gone = [
            record
            for record in pipeline.store.documents_with_origin(run.index_name, origin)
            if record.doc_id not in present
            and record.doc_id not in plan.keep
            and scope.can_read(record.acl_groups)
        ]
        # one index write per page of documents: a folder emptied of 10k files is one flush
        # per SYNC_DELETE_PAGE, not one per file
        for start in range(0, len(gone), SYNC_DELETE_PAGE):
            page = gone[start : start + SYNC_DELETE_PAGE]
            pipeline.delete_documents([record.doc_id for record in page])
            run.add_items([(record.doc_id, record.source) for record in page])
            for record in page:
                run.record(record.doc_id, source=record.source, status=jobs.ITEM_DELETED)
            logger.info("sync removed documents=%d (source gone) origin=%s", len(page), origin)
