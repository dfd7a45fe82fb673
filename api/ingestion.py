"""What the index, document and job routes do, over the app's Services (blocking: routes
run these in the threadpool).

The API never imports the ingest package: it stores uploads, records jobs (core.jobs) and
enqueues them (core.queue); a consumer runs them with the `ondata.tasks` handler.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import shutil
from pathlib import Path
from typing import Any, BinaryIO

from fastapi import UploadFile

from api.ingestion_schemas import (
    DocumentOut,
    IndexCreateBody,
    IndexOut,
    IndexUpdateBody,
    JobCreateBody,
    JobError,
    JobOut,
    JobProgress,
    UploadAccepted,
    UploadedFile,
)
from api.ingestion_schemas import ReaderSource as ReaderSourceBody
from api.services import Services
from core import jobs
from core.access import Scope
from core.db import DocumentRecord, IndexRecord, JobRecord
from core.errors import (
    DocumentNotFoundError,
    FileTooLargeError,
    IndexBusyError,
    IndexExistsError,
    IndexNotFoundError,
    IndexSettingImmutableError,
    IngestionJobNotFoundError,
    InvalidRequestError,
    JobQueueUnavailableError,
    PermissionDeniedError,
)
from core.ingestion import (
    check_folder_source,
    check_reader_allowed,
    check_upload_type,
    check_url_address,
    check_url_source,
    new_upload_path,
    remove_stored_upload,
    safe_filename,
    upload_doc_id,
    uploads_root,
)
from core.job_specs import (
    FolderSource,
    ReaderSpec,
    SourcesSpec,
    StoredUpload,
    UploadSpec,
    UrlSource,
)
from core.keys import Principal
from retrieval.index import drop_index

logger = logging.getLogger(__name__)


def _ts(value: dt.datetime | None) -> int | None:
    aware = jobs.as_utc(value)
    return int(aware.timestamp()) if aware is not None else None


# --- indexes -------------------------------------------------------------------------------


def create_index(services: Services, body: IndexCreateBody, scope: Scope) -> IndexOut:
    """Register a new index with its fixed settings (409 when the name is taken)."""
    if services.store.get_index(body.name) is not None:
        raise IndexExistsError(f"index {body.name!r} already exists", param="name")
    _check_embedding_model(services, body.embedding_model)
    size = body.chunk_size or services.settings.chunking.chunk_size
    overlap = body.chunk_overlap
    if overlap is None:
        overlap = min(services.settings.chunking.chunk_overlap, size // 4)
    if overlap >= size:
        raise InvalidRequestError(
            "chunk_overlap must be smaller than chunk_size", param="chunk_overlap"
        )
    record = IndexRecord(
        name=body.name,
        description=body.description,
        embedding_model=services.embedder.name,
        dimension=services.embedder.dimension,
        chunk_size=size,
        chunk_overlap=overlap,
    )
    services.store.save_index(record)
    services.catalog(body.name)  # create the vector index now, so a bad backend fails here
    logger.info("created index %s (chunk_size=%d)", body.name, size)
    return index_out(services, body.name, scope)


def _check_embedding_model(services: Services, model: str | None) -> None:
    accepted = {services.embedder.name, services.settings.embedding.model}
    if model is not None and model not in accepted:
        raise InvalidRequestError(
            f"this server embeds with {services.embedder.name!r}; an index cannot use "
            f"{model!r} (set ONDATA_EMBEDDING__MODEL to change the server's model)",
            param="embedding_model",
        )


def update_index(services: Services, name: str, body: IndexUpdateBody, scope: Scope) -> IndexOut:
    """Change an index's description; any change to a fixed setting is a 409."""
    record = get_index(services, name)
    same_model = {record.embedding_model, services.settings.embedding.model}
    fixed: dict[str, tuple[object, object, set[object]]] = {
        "embedding_model": (body.embedding_model, record.embedding_model, set(same_model)),
        "chunk_size": (body.chunk_size, record.chunk_size, {record.chunk_size}),
        "chunk_overlap": (body.chunk_overlap, record.chunk_overlap, {record.chunk_overlap}),
    }
    for field, (wanted, current, accepted) in fixed.items():
        if wanted is not None and wanted not in accepted:
            raise IndexSettingImmutableError(
                f"{field} of index {name!r} is fixed at creation ({current!r}); "
                "create a new index to use another value",
                param=field,
            )
    if body.description is not None:
        record.description = body.description
        services.store.save_index(record)
    return index_out(services, name, scope)


def get_index(services: Services, name: str) -> IndexRecord:
    record = services.store.get_index(name)
    if record is None:
        raise IndexNotFoundError(f"index {name!r} does not exist", param="name")
    return record


def index_out(
    services: Services, name: str, scope: Scope, *, count_vectors: bool = True
) -> IndexOut:
    """The index as `scope` sees it: document and chunk counts of the documents it may read;
    the vector count (index-wide, hidden documents included) only for unrestricted groups."""
    record = get_index(services, name)
    docs = [d for d in services.store.list_documents(name) if scope.can_read(d.acl_groups)]
    count_vectors = count_vectors and scope.groups is None
    vectors = services.catalog(name).count() if count_vectors else None
    return IndexOut(
        name=record.name,
        description=record.description,
        embedding_model=record.embedding_model,
        dimension=record.dimension,
        chunk_size=record.chunk_size,
        chunk_overlap=record.chunk_overlap,
        created_at=_ts(record.created_at) or 0,
        document_count=len(docs),
        chunk_count=sum(d.chunk_count for d in docs if d.status == "indexed"),
        vector_count=vectors,
    )


def list_indexes(services: Services, scope: Scope) -> list[IndexOut]:
    return [
        index_out(services, r.name, scope, count_vectors=False)
        for r in services.store.list_indexes()
        if scope.can_read_index(r.name)
    ]


def delete_index(services: Services, name: str, scope: Scope) -> None:
    """Cancel the index's jobs, then drop its vectors, registry rows, jobs and stored files.
    403 when it holds documents the caller may not read (deleting them is not the caller's
    to do); 409 while a job still writes it (it was asked to stop: retry in a few seconds)."""
    get_index(services, name)
    store, settings = services.store, services.settings
    if not all(scope.can_read(d.acl_groups) for d in store.list_documents(name)):
        raise PermissionDeniedError(
            f"index {name!r} holds documents outside the key's groups; only a key that reads "
            "every document may delete it",
            param="name",
        )
    running = jobs.cancel_index_jobs(store, name)
    writer = jobs.index_writer(store, name, stale_after_s=settings.jobs.stale_after_s)
    if running or writer:
        raise IndexBusyError(
            f"ingestion job {(writer or running[0])!r} is writing index {name!r}; it was asked "
            "to stop: retry in a few seconds"
        )
    services.catalog.forget(name)
    drop_index(settings, name)
    store.delete_index(name)
    jobs.delete_index_jobs(store, name)
    for folder in (uploads_root(settings, name), settings.data_dir.resolve() / "fetched" / name):
        shutil.rmtree(folder, ignore_errors=True)
    logger.info("deleted index %s", name)


# --- documents -----------------------------------------------------------------------------


def document_out(record: DocumentRecord) -> DocumentOut:
    return DocumentOut(
        doc_id=record.doc_id,
        title=record.title,
        filename=_given_name(record),
        source=_public_source(record),
        status=record.status,
        chunk_count=record.chunk_count,
        error=record.error and public_text(record.error),
        acl_groups=list(record.acl_groups or []),
        metadata=dict(record.metadata_ or {}),
        origin=record.origin,
        updated_at=_ts(record.updated_at),
    )


# an absolute path (not a URL's), whose last part is kept
_SERVER_PATH = re.compile(r"(?<![\w:/.~-])(?:/[^\s'\"/]+)+/([^\s'\"/]+)")


def public_text(text: str) -> str:
    """A message for clients: every absolute server path in it reduced to the file's name."""
    return _SERVER_PATH.sub(r"\1", text)


def _given_name(record: DocumentRecord) -> str:
    """The name the user gave the file: an upload's name, the path relative to the folder
    given to `ondata ingest` (ingest/sources.py), else the file's own name."""
    given = (record.metadata_ or {}).get("filename")
    return str(given or record.source.rstrip("/").rsplit("/", 1)[-1])


def _public_source(record: DocumentRecord) -> str:
    """URLs and folder-job paths (inside jobs.source_roots, named by the caller) as they are;
    uploads and CLI ingests by the name their user gave, never by a server path."""
    if record.source.startswith(("http://", "https://")) or (record.origin or "").startswith(
        "folder:"
    ):
        return record.source
    if record.origin == "upload":
        return f"upload://{record.index_name}/{_given_name(record)}"
    return _given_name(record)


def document_source(record: DocumentRecord) -> Path | str:
    """Where a document's original lives: an http(s) URL, or a local file that still exists.

    Only paths the registry recorded at ingestion are ever served (uploads, allow-listed
    folders, files the operator ingested), so no request can name a file of its own.
    """
    if record.source.startswith(("http://", "https://")):
        return record.source
    path = Path(record.source)
    if not path.is_file():
        raise DocumentNotFoundError(
            f"the original of document {record.doc_id!r} is no longer available", param="doc_id"
        )
    return path


def list_documents(
    services: Services,
    name: str,
    principal: Principal,
    *,
    status: str | None,
    limit: int,
    offset: int,
) -> tuple[list[DocumentOut], int]:
    get_index(services, name)
    rows = [
        r
        for r in services.store.list_documents(name)
        if principal.scope.can_read(r.acl_groups) and (status is None or r.status == status)
    ]
    return [document_out(r) for r in rows[offset : offset + limit]], len(rows)


def get_document(
    services: Services, name: str, doc_id: str, principal: Principal
) -> DocumentRecord:
    get_index(services, name)
    record = services.store.get_document(name, doc_id)
    if record is None or not principal.scope.can_read(record.acl_groups):
        raise DocumentNotFoundError(f"no document {doc_id!r} in index {name!r}", param="doc_id")
    return record


def delete_document(services: Services, name: str, doc_id: str, principal: Principal) -> int:
    """Remove a document's chunks, its registry row and its stored upload; chunks removed."""
    record = get_document(services, name, doc_id, principal)
    removed = services.catalog(name).delete(doc_id=doc_id)
    services.store.delete_document(name, doc_id)
    remove_stored_upload(services.settings, record.source)
    logger.info("deleted doc_id=%s from %s (%d chunks)", doc_id, name, removed)
    return removed


# --- uploads and jobs ----------------------------------------------------------------------


def parse_metadata(raw: str) -> dict[str, Any]:
    """The `metadata` form field: a JSON object (empty: none)."""
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidRequestError(
            f"metadata is not valid JSON: {exc.msg}", param="metadata"
        ) from exc
    if not isinstance(value, dict):
        raise InvalidRequestError("metadata must be a JSON object", param="metadata")
    return value


def store_file(stream: BinaryIO, target: Path) -> int:
    with target.open("xb") as fh:
        shutil.copyfileobj(stream, fh, length=1 << 20)
    return target.stat().st_size


def submit(services: Services, job: JobRecord) -> JobRecord:
    """Enqueue a recorded job; if the queue is down the job is marked failed (503)."""
    try:
        services.jobs.enqueue(job.id)
    except Exception as exc:
        logger.warning("enqueue failed for job %s: %s", job.id, exc)
        jobs.fail_unstarted(services.store, job.id, error="the task queue was unavailable")
        raise JobQueueUnavailableError("the task queue is unavailable; try again later") from exc
    return job


def create_sources_job(services: Services, body: JobCreateBody, principal: Principal) -> JobRecord:
    """Validate the sources (folders inside jobs.source_roots, http(s) URLs) and queue a job."""
    scope = principal.scope
    scope.require_index(body.index_name, param="index_name")
    get_index(services, body.index_name)
    cfg = services.settings.jobs
    if body.refresh_interval_s is not None and body.refresh_interval_s < cfg.min_refresh_interval_s:
        raise InvalidRequestError(
            f"refresh_interval_s must be at least {cfg.min_refresh_interval_s} "
            "(jobs.min_refresh_interval_s)",
            param="refresh_interval_s",
        )
    spec = (
        _reader_spec(services, body, scope)
        if any(s.type == "reader" for s in body.sources)
        else SourcesSpec(
            sources=[_checked_source(services, s.model_dump()) for s in body.sources],
            acl_groups=scope.labels(body.acl_groups),
            metadata=body.metadata,
            submitter_groups=None if scope.groups is None else list(scope.groups),
        )
    )
    job = jobs.create_job(
        services.store,
        index_name=body.index_name,
        spec=spec,
        refresh_interval_s=body.refresh_interval_s,
    )
    return submit(services, job)


def _reader_spec(services: Services, body: JobCreateBody, scope: Scope) -> ReaderSpec:
    """A reader job: admins only, the job's only source, a reader in jobs.reader_allow."""
    scope.require_role("admin")
    source = body.sources[0]
    if len(body.sources) != 1 or not isinstance(source, ReaderSourceBody):
        raise InvalidRequestError("a reader source must be the job's only source", param="sources")
    return ReaderSpec(
        reader=check_reader_allowed(services.settings, source.reader),
        reader_args=source.reader_args,
        load_args=source.load_args,
        id_key=source.id_key,
        acl_groups=scope.labels(body.acl_groups),
        metadata=body.metadata,
        submitter_groups=None if scope.groups is None else list(scope.groups),
    )


def _checked_source(services: Services, source: dict[str, Any]) -> FolderSource | UrlSource:
    if source["type"] == "folder":
        folder = check_folder_source(services.settings, source["path"])
        if not folder.is_dir():
            raise InvalidRequestError(f"folder {source['path']!r} does not exist", param="sources")
        return FolderSource(path=str(folder))
    url = check_url_source(source["url"])
    check_url_address(services.settings, url)
    return UrlSource.model_validate({**source, "url": url})


def get_job(services: Services, job_id: str, principal: Principal) -> JobRecord:
    """The job, if the caller may see it: its index is in scope and the caller may read the
    documents it writes (else 404, as for a job that does not exist)."""
    job = jobs.get_job(services.store, job_id)
    principal.scope.require_index(job.index_name, param="job_id")
    if not job_visible(principal.scope, job):
        raise IngestionJobNotFoundError(f"no ingestion job {job_id!r}", param="job_id")
    return job


def job_visible(scope: Scope, job: JobRecord) -> bool:
    """Whether `scope` may see a job: its index, and the ACL groups its documents get (what a
    job shows, file names, doc ids, sources and errors, is about those documents)."""
    return scope.can_read_index(job.index_name) and scope.can_read(jobs.job_spec(job).acl_groups)


def job_out(services: Services, job: JobRecord) -> JobOut:
    progress = jobs.job_progress(services.store, job.id)
    spec = jobs.job_spec(job)
    sources = [s.model_dump() for s in spec.sources] if isinstance(spec, SourcesSpec) else []
    if isinstance(spec, ReaderSpec):  # its arguments may hold credentials (a database URI)
        sources = [{"type": "reader", "reader": spec.reader}]
    files = spec.files if isinstance(spec, UploadSpec) else []
    return JobOut(
        id=job.id,
        index_name=job.index_name,
        kind=spec.kind,
        status=job.status,
        sources=sources,
        files=[{"filename": f.filename, "doc_id": f.doc_id} for f in files],
        acl_groups=list(spec.acl_groups),
        metadata=dict(spec.metadata),
        refresh_interval_s=job.refresh_interval_s,
        next_run_at=_ts(job.next_run_at),
        run=job.run,
        attempts=job.attempts,
        cancel_requested=job.cancel_requested,
        created_at=_ts(job.created_at) or 0,
        started_at=_ts(job.started_at),
        finished_at=_ts(job.finished_at),
        error=job.error and public_text(job.error),
        progress=JobProgress(processed=progress.processed, **vars(progress)),
        errors=_job_errors(services, job),
    )


def _job_errors(services: Services, job: JobRecord) -> list[JobError]:
    """The job's failed documents; an upload by its name, not where the server stored it
    (`<data_dir>/uploads/<index>/<unique>/<name>`)."""
    uploads = uploads_root(services.settings)
    return [
        JobError(
            doc_id=e.doc_id,
            source=(
                f"upload://{job.index_name}/{Path(e.source).name}"
                if Path(e.source).is_relative_to(uploads)
                else e.source
            ),
            error=public_text(e.error),
        )
        for e in jobs.job_errors(services.store, job.id)
    ]


def accept_uploads(
    services: Services,
    name: str,
    principal: Principal,
    *,
    files: list[UploadFile],
    acl_groups: str,
    metadata: str,
) -> UploadAccepted:
    """Check every file (count, name, type, size) before storing any, then queue one job.

    A file becomes the caller's own document (`Scope.owned_id`): an upload never replaces,
    or reports as unchanged, a document written under other ACL groups."""
    scope = principal.scope
    get_index(services, name)
    names = _checked_uploads(services, files)
    acl = scope.labels(acl_groups.split(","))
    meta = parse_metadata(metadata)
    stored = _store_uploads(services, name, files, names, scope=scope)
    spec = UploadSpec(
        files=[item for item, _ in stored],
        acl_groups=acl,
        metadata=meta,
        submitter_groups=None if scope.groups is None else list(scope.groups),
    )
    job = jobs.create_job(
        services.store,
        index_name=name,
        spec=spec,
        items=[(item.doc_id, item.filename) for item, _ in stored],
    )
    submit(services, job)
    documents = [
        UploadedFile(filename=item.filename, doc_id=item.doc_id, bytes=size)
        for item, size in stored
    ]
    return UploadAccepted(job_id=job.id, status=job.status, documents=documents)


def _checked_uploads(services: Services, files: list[UploadFile]) -> list[str]:
    cfg = services.settings.jobs
    if len(files) > cfg.max_upload_files:
        raise FileTooLargeError(
            f"{len(files)} files in one request; the limit is {cfg.max_upload_files} "
            "(jobs.max_upload_files)",
            param="files",
        )
    names: list[str] = []
    for upload in files:
        safe = safe_filename(upload.filename or "")
        check_upload_type(safe)
        if upload.size is not None and upload.size > cfg.max_upload_file_bytes:
            raise FileTooLargeError(
                f"{safe!r} is {upload.size} bytes; the limit is {cfg.max_upload_file_bytes} "
                "(jobs.max_upload_file_bytes)",
                param="files",
            )
        if safe in names:
            raise InvalidRequestError(
                f"file name {safe!r} appears twice in the request", param="files"
            )
        names.append(safe)
    total = sum(f.size or 0 for f in files)
    if total > cfg.max_upload_bytes:
        raise FileTooLargeError(
            f"the files add up to {total} bytes; the limit is {cfg.max_upload_bytes} "
            "(jobs.max_upload_bytes)",
            param="files",
        )
    return names


def _store_uploads(
    services: Services, name: str, files: list[UploadFile], names: list[str], *, scope: Scope
) -> list[tuple[StoredUpload, int]]:
    stored: list[tuple[StoredUpload, int]] = []
    try:
        for upload, safe in zip(files, names, strict=True):
            target = new_upload_path(services.settings, name, safe)
            size = store_file(upload.file, target)
            doc_id = scope.owned_id(upload_doc_id(name, safe))
            stored.append((StoredUpload(path=str(target), filename=safe, doc_id=doc_id), size))
    except BaseException:
        for item, _ in stored:
            remove_stored_upload(services.settings, item.path)
        raise
    return stored
