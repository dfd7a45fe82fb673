"""Swagger UI at /docs (ONDATA_API__DOCS=true) in a real browser: it renders the API from
/openapi.json with nothing fetched from elsewhere and no Content-Security-Policy violation."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.app import create_app
from core.settings import ApiSettings, JobsSettings, Settings
from tests.browser.conftest import LAPTOP, visiting
from tests.integration.api_support import serve_in_thread

pytestmark = pytest.mark.browser
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="browser test: the playwright package is not installed"
)


def test_docs_page_renders_the_api_under_the_self_only_policy(
    browser: sync_api.Browser, tmp_path: Path
) -> None:
    settings = Settings(
        data_dir=tmp_path / "ondata",
        api=ApiSettings(docs=True),
        jobs=JobsSettings(embedded_workers=0),
    )
    console: list[str] = []
    with (
        serve_in_thread(create_app(settings)) as url,
        visiting(browser, url, viewport=LAPTOP) as visit,
    ):
        visit.page.on("console", lambda message: console.append(message.text))
        visit.page.goto(f"{url}/docs")
        title = visit.page.locator(".swagger-ui .info .title")
        sync_api.expect(title).to_contain_text("ondata")
        sync_api.expect(visit.page.locator(".opblock-summary-path").first).to_be_visible()
        visit.screenshot("docs")
        assert f"{url}/openapi.json" in visit.requested
    violations = [m for m in console if "Content Security Policy" in m]
    assert not violations, violations
