"""/v1/ingestion/jobs (contributor): folder and URL ingestion jobs, progress, cancel.
Shapes: api/ingestion_schemas.py; behaviour: api/README.md "Ingestion jobs"."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api import ingestion
from api.deps import Contributor, ServicesDep
from api.ingestion_schemas import JobCreateBody, JobList, JobOut
from api.openapi import KEYED, errors
from core import jobs

MAX_SCANNED_JOBS = 10_000

router = APIRouter(tags=["ingestion"], responses=KEYED | errors(403))


@router.post("/v1/ingestion/jobs", status_code=202, responses=errors(404, 503))
def create_job(body: JobCreateBody, services: ServicesDep, principal: Contributor) -> JobOut:
    job = ingestion.create_sources_job(services, body, principal)
    return ingestion.job_out(services, job)


@router.get("/v1/ingestion/jobs")
def list_jobs(
    services: ServicesDep,
    principal: Contributor,
    index_name: str | None = None,
    status: jobs.JobStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> JobList:
    """Newest first: the jobs the caller may see (ingestion.job_visible), up to `limit`."""
    scope = principal.scope
    # a restricted caller's jobs are found among everyone's: read past the ones it may not see
    scan = limit if scope.unrestricted else MAX_SCANNED_JOBS
    rows = jobs.list_jobs(services.store, index_name=index_name, status=status, limit=scan)
    visible = [j for j in rows if ingestion.job_visible(scope, j)][:limit]
    return JobList(data=[ingestion.job_out(services, j) for j in visible])


@router.get("/v1/ingestion/jobs/{job_id}", responses=errors(404))
def get_job(job_id: str, services: ServicesDep, principal: Contributor) -> JobOut:
    return ingestion.job_out(services, ingestion.get_job(services, job_id, principal))


@router.post("/v1/ingestion/jobs/{job_id}/cancel", responses=errors(404, 409))
def cancel_job(job_id: str, services: ServicesDep, principal: Contributor) -> JobOut:
    ingestion.get_job(services, job_id, principal)
    return ingestion.job_out(services, jobs.request_cancel(services.store, job_id))


@router.delete("/v1/ingestion/jobs/{job_id}", responses=errors(404, 409))
def delete_job(job_id: str, services: ServicesDep, principal: Contributor) -> JobOut:
    """The same as cancel (the record stays, so its outcome can still be read)."""
    return cancel_job(job_id, services, principal)
