"""The playground is served at `/` with its assets, under a policy that allows only this origin
(no browser needed: these run even where Chromium is absent)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from api.app import create_app
from api.routes.playground import STATIC_DIR
from core.settings import ApiSettings, Settings

EXTERNAL = re.compile(r"""(?:src|href|url|import|from|fetch)\W{0,3}["'(]\s*(?:https?:)?//""")


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c,
    ):
        yield c


async def test_playground_page_is_served_at_the_root(client: httpx.AsyncClient) -> None:
    response = await client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="/static/js/app.js">' in response.text
    policy = response.headers["content-security-policy"]
    assert "default-src 'self'" in policy
    assert "connect-src 'self'" in policy


async def test_playground_assets_are_served_locally(client: httpx.AsyncClient) -> None:
    script = await client.get("/static/js/app.js")
    style = await client.get("/static/app.css")
    assert script.status_code == 200
    assert "javascript" in script.headers["content-type"]
    assert style.status_code == 200
    assert style.headers["content-type"].startswith("text/css")
    assert "default-src 'self'" in script.headers["content-security-policy"]


async def test_playground_needs_no_api_key_to_load(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "ondata", api=ApiSettings(api_key=SecretStr("k")))
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c,
    ):
        assert (await c.get("/")).status_code == 200
        assert (await c.get("/static/js/chat.js")).status_code == 200
        assert (await c.get("/v1/models")).status_code == 401


@pytest.mark.parametrize("path", ["/static/../app.py", "/static/%2e%2e/app.py", "/static/nope.js"])
async def test_playground_assets_outside_the_folder_are_not_found(
    client: httpx.AsyncClient, path: str
) -> None:
    assert (await client.get(path)).status_code == 404


def test_playground_files_reference_no_other_origin() -> None:
    files = [p for p in STATIC_DIR.rglob("*") if p.is_file()]
    assert {p.suffix for p in files} >= {".html", ".css", ".js"}
    offenders = [p.name for p in files if EXTERNAL.search(p.read_text(encoding="utf-8"))]
    assert offenders == []
