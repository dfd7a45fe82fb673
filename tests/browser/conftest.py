"""Browser fixtures: Debian's Chromium driven by Playwright (never a downloaded browser), the
real app under uvicorn on a loopback port, screenshots under test-artifacts/browser/.

Every page records the URLs it requests; a test fails if the playground fetched anything
from anywhere but the server under test.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import REPO

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = REPO / "test-artifacts" / "browser"
# WCAG 2.1 A/AA (contrast, names, labels, ARIA use) plus axe's best practices
AXE_OPTIONS = {
    "runOnly": {
        "type": "tag",
        "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"],
    }
}
LAPTOP = {"width": 1366, "height": 850}
PHONE = {"width": 390, "height": 844}

try:
    from playwright.sync_api import Browser, Page, Playwright, sync_playwright
except ImportError:  # the dev extra is not installed
    sync_playwright = None


def _skip_reason() -> str | None:
    if sync_playwright is None:
        return "browser test: the playwright package is not installed (pip install -e '.[dev]')"
    if not CHROMIUM.is_file() and shutil.which("chromium") is None:
        return "browser test: Chromium is not installed (apt-get install chromium; make does it)"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = _skip_reason()
    if reason is None:
        return
    for item in items:
        if "browser" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=reason))


# Module scope, not session: Playwright's sync API runs an event loop in this thread while
# it is started, which would break every async test (pytest-asyncio) collected after it.
@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    assert sync_playwright is not None
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    executable = CHROMIUM if CHROMIUM.is_file() else Path(shutil.which("chromium") or CHROMIUM)
    browser = playwright.chromium.launch(executable_path=str(executable), args=CHROMIUM_ARGS)
    yield browser
    browser.close()


@dataclass
class Visit:
    """A page on one server, with what it requested and any script errors it raised."""

    page: Page
    base_url: str
    requested: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def open(self, route: str = "chat") -> None:
        self.page.goto(f"{self.base_url}/#/{route}")

    def screenshot(self, name: str, *, full_page: bool = True) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=full_page)
        return path

    def foreign_requests(self) -> list[str]:
        allowed = (f"{self.base_url}/", "data:", "blob:")
        return [url for url in self.requested if not url.startswith(allowed)]


def accessibility_violations(page: Page) -> list[str]:
    """What axe-core (bundled with axe-playwright-python, run in the page) finds wrong."""
    axe = pytest.importorskip(
        "axe_playwright_python.sync_playwright", reason="axe is not installed"
    )
    found = axe.Axe().run(page, options=AXE_OPTIONS).response["violations"]
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']]}"
        for v in found
    ]


@contextmanager
def visiting(
    browser: Browser,
    base_url: str,
    *,
    viewport: dict[str, int],
    color_scheme: str = "light",
) -> Iterator[Visit]:
    """A fresh browser context (empty localStorage) on `base_url`; checks it stayed local."""
    context = browser.new_context(
        viewport=viewport,  # type: ignore[arg-type]
        locale="en-GB",
        color_scheme=color_scheme,  # type: ignore[arg-type]
    )
    context.set_default_timeout(60_000)
    page = context.new_page()
    visit = Visit(page, base_url)
    page.on("request", lambda request: visit.requested.append(request.url))
    page.on("pageerror", lambda error: visit.errors.append(str(error)))
    try:
        yield visit
    finally:
        context.close()
    assert not visit.foreign_requests(), visit.foreign_requests()
    assert not visit.errors, visit.errors
