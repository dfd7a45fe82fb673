"""The FastAPI application: `create_app(settings)`; the lifespan builds the services once."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.auth import open_access
from api.errors import error_body, install_error_handlers
from api.observability import install_observability, watch_queue_depth
from api.openapi import install_openapi
from api.routes import chat, conversations, evaluations, health, keys, models, search
from api.routes.docs import install_docs
from api.routes.indexes import install_ingestion_routes
from api.routes.playground import install_playground
from api.services import open_services
from core.settings import Settings


def create_app(settings: Settings) -> FastAPI:
    """The ondata API; clients (embedder, indexes, chat model) live as long as the app."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with (
            open_services(settings, consume_jobs=True) as services,
            open_access(settings.api, services.store.engine) as access,
        ):
            app.state.services, app.state.access = services, access
            watch_queue_depth(services.jobs.pending_count)
            yield
        app.state.services = app.state.access = None

    app = FastAPI(
        title="ondata",
        summary="Answers from your documents, with citations (Azure OpenAI On Your Data API).",
        version="0.1.0",
        lifespan=lifespan,
        # FastAPI's pages load Swagger UI and ReDoc from a CDN; api/routes/docs.py serves ours
        docs_url=None,
        redoc_url=None,
    )
    install_error_handlers(app)
    install_openapi(app)
    for module in (chat, conversations, search, models, evaluations, health):
        app.include_router(module.router)
    app.include_router(keys.router)
    install_ingestion_routes(app)
    install_playground(app)
    install_docs(app, enabled=settings.api.docs)
    app.add_middleware(
        BodySizeLimit,
        max_bytes=settings.api.max_request_bytes,
        upload_max_bytes=settings.jobs.max_upload_bytes,
    )
    install_observability(app)
    return app


class BodySizeLimit:
    """Rejects request bodies over `max_bytes` with 413, declared (Content-Length) or streamed.

    Document uploads (POST /v1/indexes/{name}/documents) get `upload_max_bytes` instead.
    """

    def __init__(
        self, app: ASGIApp, *, max_bytes: int, upload_max_bytes: int | None = None
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.upload_max_bytes = upload_max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self._limit(scope)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit[0]:
            await _too_large_response(*limit)(scope, receive, send)
            return
        await self.app(scope, self._counting(receive, limit), send)

    def _limit(self, scope: Scope) -> tuple[int, str]:
        if self.upload_max_bytes is not None and _UPLOAD_PATH.fullmatch(scope.get("path", "")):
            return self.upload_max_bytes, "ONDATA_JOBS__MAX_UPLOAD_BYTES"
        return self.max_bytes, "ONDATA_API__MAX_REQUEST_BYTES"

    def _counting(self, receive: Receive, limit: tuple[int, str]) -> Receive:
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit[0]:
                # FastAPI re-raises HTTPException from body reading; the handler renders it.
                raise HTTPException(413, _too_large_message(*limit))
            return message

        return counted


_UPLOAD_PATH = re.compile(r"/v1/indexes/[^/]+/documents/?")


def _too_large_message(max_bytes: int, setting: str = "ONDATA_API__MAX_REQUEST_BYTES") -> str:
    return f"The request body is larger than {max_bytes} bytes ({setting})."


def _too_large_response(
    max_bytes: int, setting: str = "ONDATA_API__MAX_REQUEST_BYTES"
) -> JSONResponse:
    body = error_body(
        _too_large_message(max_bytes, setting),
        type_="invalid_request_error",
        code="request_too_large",
    )
    return JSONResponse(body, status_code=413)
