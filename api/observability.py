"""Request ids (X-Request-ID in and out), one structured log line and metrics per request,
`Server-Timing` on answers, and GET /metrics in Prometheus format.
"""

from __future__ import annotations

import logging
import math
import re
import time
import uuid
from collections.abc import Callable

from fastapi import APIRouter, FastAPI
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.logging import request_id_var
from core.metrics import (
    HTTP_LATENCY,
    HTTP_REQUESTS,
    Timings,
    set_queue_depth_source,
    start_timings,
)

logger = logging.getLogger("ondata.access")
router = APIRouter(tags=["health"])

REQUEST_ID_HEADER = "x-request-id"
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


@router.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    """Prometheus text exposition of this process's metrics."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def request_id_from(scope: Scope) -> str:
    """The caller's X-Request-ID when it is a sane token, else a new one."""
    given = dict(scope["headers"]).get(REQUEST_ID_HEADER.encode(), b"").decode("latin-1")
    return given if _SAFE_ID.match(given) else uuid.uuid4().hex


def server_timing(timings: Timings, *, now: float) -> str | None:
    """`retrieve;dur=12.3, generate;dur=45.6` in milliseconds; a streamed answer's headers
    leave before it ends, so its generate is the time to the first content."""
    phases = dict(timings.phases)
    if "retrieve" in phases and "generate" not in phases:
        start, seconds = phases["retrieve"]
        phases["generate"] = (start + seconds, now - start - seconds)
        return _header(phases, streamed=True)
    return _header(phases, streamed=False) if phases else None


def _header(phases: dict[str, tuple[float, float]], *, streamed: bool) -> str:
    parts = [f"{name};dur={seconds * 1000:.1f}" for name, (_, seconds) in phases.items()]
    if streamed:
        parts[-1] += ';desc="to first content"'
    return ", ".join(parts)


def _route(scope: Scope) -> str:
    route = scope.get("route")
    return str(getattr(route, "path", "unmatched"))


class Observability:
    """Outermost middleware: request id, Server-Timing, access log line and HTTP metrics."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_from(scope)
        token = request_id_var.set(request_id)
        timings, status = start_timings(), [500]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                headers = MutableHeaders(scope=message)
                headers[REQUEST_ID_HEADER] = request_id
                if value := server_timing(timings, now=time.perf_counter()):
                    headers.append("Server-Timing", value)
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            _observe(scope, status[0], time.perf_counter() - timings.started)
            request_id_var.reset(token)


def _observe(scope: Scope, status: int, seconds: float) -> None:
    route, method = _route(scope), scope["method"]
    HTTP_REQUESTS.labels(route=route, method=method, status=str(status)).inc()
    HTTP_LATENCY.labels(route=route, method=method).observe(seconds)
    principal = getattr(scope.get("state", {}).get("principal"), "subject", None)
    logger.info(
        "%s %s %d %.1fms",
        method,
        scope["path"],
        status,
        seconds * 1000,
        extra={"route": route, "status": status, "duration_ms": round(seconds * 1000, 1),
               "subject": principal},
    )


def watch_queue_depth(pending: Callable[[], int]) -> None:
    """Report `pending()` as ondata_queue_depth at each scrape (NaN when the queue is down)."""

    def depth() -> float:
        try:
            return float(pending())
        except Exception as exc:  # a scrape must not fail because the broker is unreachable
            logger.warning("queue depth unavailable: %s", exc)
            return math.nan

    set_queue_depth_source(depth)


def install_observability(app: FastAPI) -> None:
    """Add /metrics and the middleware; call after every other middleware (it goes outermost)."""
    app.include_router(router)
    app.add_middleware(Observability)
