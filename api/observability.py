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
    """The route template (bounded label values); a mount (static files) is `<mount>/*`."""
    if (route := scope.get("route")) is not None:
        return str(getattr(route, "path", "unmatched"))
    mount = str(scope.get("root_path", "")).removeprefix(str(scope.get("app_root_path", "")))
    return f"{mount}/*" if mount else "unmatched"


class Observability:
    """Outermost middleware: request id, Server-Timing, access log line and HTTP metrics."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        exchange = _Exchange(scope, send)
        token = request_id_var.set(exchange.request_id)
        try:
            await self.app(scope, receive, exchange.send)
        finally:
            exchange.observe()
            request_id_var.reset(token)


class _Exchange:
    """One request: adds the headers to its response and observes it once, before the last
    body byte leaves (so a client that reads /metrics next always finds it counted)."""

    def __init__(self, scope: Scope, send: Send) -> None:
        self.scope, self._send = scope, send
        self.request_id = request_id_from(scope)
        self.timings = start_timings()
        self.status = 500
        self._observed = False

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            headers = MutableHeaders(scope=message)
            headers[REQUEST_ID_HEADER] = self.request_id
            if value := server_timing(self.timings, now=time.perf_counter()):
                headers.append("Server-Timing", value)
        elif message["type"] == "http.response.body" and not message.get("more_body", False):
            self.observe()
        await self._send(message)

    def observe(self) -> None:
        if not self._observed:
            self._observed = True
            _observe(self.scope, self.status, time.perf_counter() - self.timings.started)


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
        extra={
            "route": route,
            "status": status,
            "duration_ms": round(seconds * 1000, 1),
            "subject": principal,
        },
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
