"""/v1/indexes (admin) and /v1/indexes/{name}/documents (contributor): indexes, uploads and
documents. Shapes: api/ingestion_schemas.py; behaviour: api/README.md "Indexes and documents"."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, FastAPI, File, Form, Query, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, RedirectResponse, Response

from api import ingestion
from api.deps import Admin, IndexAdmin, IndexContributor, IndexReader, Reader, ServicesDep
from api.ingestion_schemas import (
    DocumentDeleted,
    DocumentList,
    DocumentOut,
    IndexCreateBody,
    IndexDeleted,
    IndexList,
    IndexOut,
    IndexUpdateBody,
    UploadAccepted,
)
from api.openapi import DOCUMENT_CONTENT, KEYED, errors
from api.pagination import Offset
from api.routes import jobs

router = APIRouter(tags=["indexes"], responses=KEYED | errors(403))


def install_ingestion_routes(app: FastAPI) -> None:
    """Indexes, documents and ingestion jobs."""
    app.include_router(router)
    app.include_router(jobs.router)


@router.post("/v1/indexes", status_code=201, responses=errors(409))
def create_index(body: IndexCreateBody, services: ServicesDep, principal: Admin) -> IndexOut:
    principal.scope.require_index(body.name, param="name")
    return ingestion.create_index(services, body, principal.scope)


@router.get("/v1/indexes")
def list_indexes(services: ServicesDep, principal: Reader) -> IndexList:
    return IndexList(data=ingestion.list_indexes(services, principal.scope))


@router.get("/v1/indexes/{name}", responses=errors(404))
def get_index(name: str, services: ServicesDep, principal: Reader) -> IndexOut:
    """The index; its counts cover only the documents the caller may read."""
    principal.scope.require_index(name, param="name")
    return ingestion.index_out(services, name, principal.scope)


@router.patch("/v1/indexes/{name}", responses=errors(404, 409))
def update_index(
    name: str, body: IndexUpdateBody, services: ServicesDep, principal: IndexAdmin
) -> IndexOut:
    return ingestion.update_index(services, name, body, principal.scope)


@router.delete("/v1/indexes/{name}", responses=errors(404, 409))
def delete_index(name: str, services: ServicesDep, principal: IndexAdmin) -> IndexDeleted:
    ingestion.delete_index(services, name, principal.scope)
    return IndexDeleted(name=name)


@router.post("/v1/indexes/{name}/documents", status_code=202, responses=errors(404, 415, 503))
async def upload_documents(
    name: str,
    services: ServicesDep,
    principal: IndexContributor,
    files: Annotated[list[UploadFile], File(description="One or more documents")],
    acl_groups: Annotated[str, Form(description="Comma-separated ACL groups")] = "",
    metadata: Annotated[str, Form(description="A JSON object")] = "",
) -> UploadAccepted:
    """Store the files and queue one ingestion job for them (202 with its job_id)."""
    return await run_in_threadpool(
        ingestion.accept_uploads,
        services,
        name,
        principal,
        files=files,
        acl_groups=acl_groups,
        metadata=metadata,
    )


@router.get("/v1/indexes/{name}/documents", responses=errors(404))
def list_documents(
    name: str,
    services: ServicesDep,
    principal: IndexContributor,
    status: Annotated[str | None, Query(pattern="^(indexed|failed)$")] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    offset: Offset = 0,
) -> DocumentList:
    data, total = ingestion.list_documents(
        services, name, principal, status=status, limit=limit, offset=offset
    )
    return DocumentList(data=data, total=total)


@router.get("/v1/indexes/{name}/documents/{doc_id}", responses=errors(404))
def get_document(
    name: str, doc_id: str, services: ServicesDep, principal: IndexContributor
) -> DocumentOut:
    return ingestion.document_out(ingestion.get_document(services, name, doc_id, principal))


@router.get(
    "/v1/indexes/{name}/documents/{doc_id}/content", responses=DOCUMENT_CONTENT | errors(404)
)
def document_content(
    name: str, doc_id: str, services: ServicesDep, principal: IndexReader
) -> Response:
    """The cited document itself: its stored file, or a redirect to its URL (reader)."""
    record = ingestion.get_document(services, name, doc_id, principal)
    source = ingestion.document_source(record)
    if isinstance(source, str):
        return RedirectResponse(source, status_code=307)
    filename = ingestion.document_out(record).filename
    return FileResponse(source, filename=filename, content_disposition_type="attachment")


@router.delete("/v1/indexes/{name}/documents/{doc_id}", responses=errors(404, 409))
def delete_document(
    name: str, doc_id: str, services: ServicesDep, principal: IndexContributor
) -> DocumentDeleted:
    removed = ingestion.delete_document(services, name, doc_id, principal)
    return DocumentDeleted(doc_id=doc_id, chunks_removed=removed)
