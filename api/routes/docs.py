"""Swagger UI at /docs, only with `ONDATA_API__DOCS=true`: Swagger UI 5's files as the
fastapi-offline package ships them (its page is not used: it has an inline script), under the
playground's self-only Content-Security-Policy, so nothing is fetched from elsewhere (FastAPI's
own /docs and /redoc load from a CDN; create_app turns them off).
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse, HTMLResponse, Response

from api.routes.playground import HEADERS

DOCS_PATH = "/docs"
_ASSETS = Path(fastapi_offline.__file__).parent / "static"
_PAGE = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>ondata API</title>
<link rel="stylesheet" href="{DOCS_PATH}/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{DOCS_PATH}/swagger-ui-bundle.js"></script>
<script src="{DOCS_PATH}/init.js"></script>
</body>
</html>
"""
# a file, not an inline script: the policy allows scripts from this origin only
_INIT = 'window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui"});\n'

router = APIRouter(include_in_schema=False)


@router.get(DOCS_PATH)
def docs_page() -> HTMLResponse:
    return HTMLResponse(_PAGE, headers=HEADERS)


@router.get(f"{DOCS_PATH}/init.js")
def docs_init() -> Response:
    return Response(_INIT, media_type="text/javascript", headers=HEADERS)


@router.get(f"{DOCS_PATH}/swagger-ui.css")
def docs_css() -> FileResponse:
    return FileResponse(_ASSETS / "swagger-ui.css", media_type="text/css", headers=HEADERS)


@router.get(f"{DOCS_PATH}/swagger-ui-bundle.js")
def docs_js() -> FileResponse:
    path = _ASSETS / "swagger-ui-bundle.js"
    return FileResponse(path, media_type="text/javascript", headers=HEADERS)


def install_docs(app: FastAPI, *, enabled: bool) -> None:
    """Serve Swagger UI at /docs when `enabled` (ONDATA_API__DOCS)."""
    if enabled:
        app.include_router(router)
