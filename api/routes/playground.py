"""The playground: a static web UI (HTML, CSS, ES modules in api/static) served at `/`.

Nothing is fetched from elsewhere: the Content-Security-Policy allows only this origin, so
the page works offline and cannot leak what it shows. The page needs no API key to load; the
API calls it makes carry the key the user enters.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"
STATIC_PATH = "/static"
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
_RAW_HEADERS = [(k.lower().encode(), v.encode()) for k, v in HEADERS.items()]

router = APIRouter(include_in_schema=False)


@router.api_route("/", methods=["GET", "HEAD"])
def playground() -> FileResponse:
    """The playground page."""
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html", headers=HEADERS)


class PlaygroundFiles(StaticFiles):
    """The playground's assets, revalidated on every load so an upgrade shows at once."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *_RAW_HEADERS]
            await send(message)

        await super().__call__(scope, receive, with_headers)


def install_playground(app: FastAPI) -> None:
    """Serve the playground at `/` and its assets under /static."""
    app.include_router(router)
    app.mount(STATIC_PATH, PlaygroundFiles(directory=STATIC_DIR), name="static")
