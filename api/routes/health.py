"""GET /healthz (the process is up) and GET /readyz (it can serve: store and embedder work)."""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from api.services import Services

logger = logging.getLogger(__name__)
router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


class Readiness(BaseModel):
    """`ready`, or `starting` / `not_ready` (503) with what failed."""

    status: str
    checks: dict[str, str] | None = None


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "Starting, or a check failed"}},
)
async def readyz(request: Request) -> JSONResponse:
    services: Services | None = getattr(request.app.state, "services", None)
    if services is None:
        return JSONResponse({"status": "starting"}, status_code=503)
    checks = await asyncio.to_thread(_checks, services)
    ready = all(v == "ok" for v in checks.values())
    body = {"status": "ready" if ready else "not_ready", "checks": checks}
    return JSONResponse(body, status_code=200 if ready else 503)


def _checks(services: Services) -> dict[str, str]:
    checks: dict[str, str] = {}
    try:
        checks["indexes"] = "ok" if services.catalog.names() is not None else "failed"
    except Exception as exc:
        logger.warning("readiness: metadata store failed: %s", exc)
        checks["indexes"] = f"failed: {type(exc).__name__}"
    try:
        vector = services.embedder.embed_query("ready")
        checks["embedder"] = "ok" if len(vector) == services.embedder.dimension else "failed"
    except Exception as exc:
        logger.warning("readiness: embedder failed: %s", exc)
        checks["embedder"] = f"failed: {type(exc).__name__}"
    return checks
