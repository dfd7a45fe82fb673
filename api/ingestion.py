"""What the index, document and job routes do, over the app's Services (blocking: routes
run these in the threadpool).

The API never imports the ingest package: it stores uploads, records jobs (core.jobs) and
enqueues them (core.queue); a consumer runs them with the `ondata.tasks` handler.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
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
from api.services import Services
from core import jobs
from core.db import DocumentRecord, IndexRecord, JobRecord
from core.errors import (
    DocumentNotFoundError,
    FileTooLargeError,
    IndexBusyError,
    IndexExistsError,
    IndexNotFoundError,
    IndexSettingImmutableError,
    InvalidRequestError,
    JobQueueUnavailableError,
    PermissionDeniedError,
)
from core.ingestion import (
    check_folder_source,
    check_upload_type,
    check_url_address,
    check_url_source,
    new_upload_path,
    remove_stored_upload,
    safe_filename,
    upload_doc_id,
    uploads_root,
)
from core.keys import Principal
from retrieval.index import drop_index

logger = logging.getLogger(__name__)


def _ts(value: dt.datetime | None) -> int | None:
    aware = jobs.as_utc(value)
    return int(aware.timestamp()) if aware is not None else None


# --- indexes -------------------------------------------------------------------------------


def create_index(services: Services, body: IndexCreateBody) -> IndexOut:
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
    return index_out(services, body.name)


def _check_embedding_model(services: Services, model: str | None) -> None:
    accepted = {services.embedder.name, services.settings.embedding.model}
    if model is not None and model not in accepted:
        raise InvalidRequestError(
            f"this server embeds with {services.embedder.name!r}; an index cannot use "
            f"{model!r} (set ONDATA_EMBEDDING__MODEL to change the server's model)",
            param="embedding_model",
        )


def update_index(services: Services, name: str, body: IndexUpdateBody) -> IndexOut:
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
    return index_out(services, name)


def get_index(services: Services, name: str) -> IndexRecord:
    record = services.store.get_index(name)
    if record is None:
        raise IndexNotFoundError(f"index {name!r} does not exist", param="name")
    return record


def index_out(services: Services, name: str, *, count_vectors: bool = True) -> IndexOut:
    record = get_index(services, name)
    docs = services.store.list_documents(name)
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


def list_indexes(services: Services, principal: Principal) -> list[IndexOut]:
    return [
        index_out(services, r.name, count_vectors=False)
        for r in services.store.list_indexes()
        if principal.can_access_index(r.name)
    ]


def delete_index(services: Services, name: str) -> None:
    """Cancel the index's jobs, then drop its vectors, registry rows, jobs and stored files.
    409 while a job still writes it (it was asked to stop: retry in a few seconds)."""
    get_index(services, name)
    store, settings = services.store, services.settings
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


def visible_to(principal: Principal, record: DocumentRecord) -> bool:
    """Whether the caller's groups may see this document (public ones are seen by all)."""
    if principal.groups is None or not record.acl_groups:
        return True
    return bool(set(record.acl_groups) & set(principal.groups))


def document_out(record: DocumentRecord) -> DocumentOut:
    metadata = dict(record.metadata_ or {})
    filename = str(metadata.get("filename") or record.source.rstrip("/").rsplit("/", 1)[-1])
    return DocumentOut(
        doc_id=record.doc_id,
        title=record.title,
        filename=filename,
        source=_public_source(record),
        status=record.status,
        chunk_count=record.chunk_count,
        error=record.error,
        acl_groups=list(record.acl_groups or []),
        metadata=metadata,
        origin=record.origin,
        updated_at=_ts(record.updated_at),
    )


def _public_source(record: DocumentRecord) -> str:
    # an upload's stored path says nothing useful to a client and names server folders
    if record.origin == "upload":
        return f"upload://{record.index_name}/{(record.metadata_ or {}).get('filename', '')}"
    return record.source


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
        if visible_to(principal, r) and (status is None or r.status == status)
    ]
    return [document_out(r) for r in rows[offset : offset + limit]], len(rows)


def get_document(
    services: Services, name: str, doc_id: str, principal: Principal
) -> DocumentRecord:
    get_index(services, name)
    record = services.store.get_document(name, doc_id)
    if record is None or not visible_to(principal, record):
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


def acl_for(principal: Principal, requested: list[str]) -> list[str]:
    """The groups a contributor may give documents: any when unrestricted; within its own
    groups when its key is restricted (none requested: its own groups, never public)."""
    groups = list(dict.fromkeys(g.strip() for g in requested if g.strip()))
    if principal.groups is None or "*" in principal.groups:
        return groups
    outside = sorted(set(groups) - set(principal.groups))
    if outside:
        raise PermissionDeniedError(
            f"the key may not label documents with groups {outside}", param="acl_groups"
        )
    return groups or list(principal.groups)


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
    principal.require_index(body.index_name, param="index_name")
    get_index(services, body.index_name)
    cfg = services.settings.jobs
    if body.refresh_interval_s is not None and body.refresh_interval_s < cfg.min_refresh_interval_s:
        raise InvalidRequestError(
            f"refresh_interval_s must be at least {cfg.min_refresh_interval_s} "
            "(jobs.min_refresh_interval_s)",
            param="refresh_interval_s",
        )
    sources = [_checked_source(services, s.model_dump()) for s in body.sources]
    spec = {
        "sources": sources,
        "acl_groups": acl_for(principal, body.acl_groups),
        "metadata": body.metadata,
    }
    job = jobs.create_job(
        services.store,
        index_name=body.index_name,
        kind=jobs.KIND_SOURCES,
        spec=spec,
        refresh_interval_s=body.refresh_interval_s,
    )
    return submit(services, job)


def _checked_source(services: Services, source: dict[str, Any]) -> dict[str, Any]:
    if source["type"] == "folder":
        folder = check_folder_source(services.settings, source["path"])
        if not folder.is_dir():
            raise InvalidRequestError(f"folder {source['path']!r} does not exist", param="sources")
        return {"type": "folder", "path": str(folder)}
    url = check_url_source(source["url"])
    check_url_address(services.settings, url)
    return {**source, "url": url}


def get_job(services: Services, job_id: str, principal: Principal) -> JobRecord:
    job = jobs.get_job(services.store, job_id)
    principal.require_index(job.index_name, param="job_id")
    return job


def job_out(services: Services, job: JobRecord) -> JobOut:
    progress = jobs.job_progress(services.store, job.id)
    spec = job.spec or {}
    return JobOut(
        id=job.id,
        index_name=job.index_name,
        kind=job.kind,  # type: ignore[arg-type]
        status=job.status,
        sources=list(spec.get("sources", [])),
        files=[{"filename": f["filename"], "doc_id": f["doc_id"]} for f in spec.get("files", [])],
        acl_groups=list(spec.get("acl_groups", [])),
        metadata=dict(spec.get("metadata") or {}),
        refresh_interval_s=job.refresh_interval_s,
        next_run_at=_ts(job.next_run_at),
        run=job.run,
        attempts=job.attempts,
        cancel_requested=job.cancel_requested,
        created_at=_ts(job.created_at) or 0,
        started_at=_ts(job.started_at),
        finished_at=_ts(job.finished_at),
        error=job.error,
        progress=JobProgress(processed=progress.processed, **vars(progress)),
        errors=[JobError(**vars(e)) for e in jobs.job_errors(services.store, job.id)],
    )


def accept_uploads(
    services: Services,
    name: str,
    principal: Principal,
    *,
    files: list[UploadFile],
    acl_groups: str,
    metadata: str,
) -> UploadAccepted:
    """Check every file (count, name, type, size) before storing any, then queue one job."""
    get_index(services, name)
    names = _checked_uploads(services, files)
    acl = acl_for(principal, acl_groups.split(","))
    meta = parse_metadata(metadata)
    stored = _store_uploads(services, name, files, names)
    spec = {"files": [item for item, _ in stored], "acl_groups": acl, "metadata": meta}
    job = jobs.create_job(
        services.store,
        index_name=name,
        kind=jobs.KIND_UPLOAD,
        spec=spec,
        items=[(item["doc_id"], item["filename"]) for item, _ in stored],
    )
    submit(services, job)
    documents = [
        UploadedFile(filename=item["filename"], doc_id=item["doc_id"], bytes=size)
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
    services: Services, name: str, files: list[UploadFile], names: list[str]
) -> list[tuple[dict[str, str], int]]:
    stored: list[tuple[dict[str, str], int]] = []
    try:
        for upload, safe in zip(files, names, strict=True):
            target = new_upload_path(services.settings, name, safe)
            size = store_file(upload.file, target)
            item = {"path": str(target), "filename": safe, "doc_id": upload_doc_id(name, safe)}
            stored.append((item, size))
    except BaseException:
        for item, _ in stored:
            remove_stored_upload(services.settings, item["path"])
        raise
    return stored
