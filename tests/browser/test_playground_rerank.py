"""The playground's query-type menu offers the reranked (semantic) types only when the server
has a reranker (the loopback fake rerank server here), and a reranked question is answered."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from api.app import create_app
from core.settings import RerankSettings, Settings
from tests.browser.conftest import LAPTOP, visiting
from tests.fakes.rerank_server import FakeRerankServer
from tests.integration.api_support import INDEX, build_index, serve_in_thread

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.browser
expect = pytest.importorskip(
    "playwright.sync_api", reason="browser test: the playwright package is not installed"
).expect

RERANKED = {"vector_semantic_hybrid", "semantic"}


def _serve(root: Path, rerank: RerankSettings) -> Iterator[str]:
    settings = Settings(data_dir=root / "ondata", rerank=rerank)  # loopback, no keys: no auth
    build_index(settings, root / "docs")
    with serve_in_thread(create_app(settings)) as url:
        yield url


@pytest.fixture(scope="module")
def reranking_url(
    tmp_path_factory: pytest.TempPathFactory, rerank_fake_server: FakeRerankServer
) -> Iterator[str]:
    yield from _serve(tmp_path_factory.mktemp("playground_rerank"), rerank_fake_server.settings())


@pytest.fixture(scope="module")
def plain_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from _serve(tmp_path_factory.mktemp("playground_plain"), RerankSettings())


def _query_types(page: Page, state: str) -> set[str]:
    expect(page.locator(".params")).to_have_attribute("data-query-types", state)
    select = page.get_by_label("Query type")
    return set(select.locator("option").evaluate_all("options => options.map(o => o.value)"))


def test_playground_offers_semantic_query_types_with_a_reranker(
    browser: Browser, reranking_url: str, rerank_fake: FakeRerankServer
) -> None:
    with visiting(browser, reranking_url, viewport=LAPTOP) as visit:
        visit.open()
        page = visit.page
        assert _query_types(page, "reranked") >= RERANKED
        expect(page.locator(".params")).to_have_attribute("data-indexes", "listed")
        page.get_by_label("Index", exact=True).select_option(INDEX)
        page.get_by_label("Query type").select_option("semantic")
        page.get_by_label("Your question").fill("When does the cafeteria open?")
        page.get_by_role("button", name="Send").click()
        answer = page.locator(".message.assistant").last
        expect(answer).to_have_attribute("aria-busy", "false")
        expect(answer).to_contain_text("cafeteria")
    assert rerank_fake.requests
    assert rerank_fake.last_request.body["query"]


def test_playground_hides_semantic_query_types_without_a_reranker(
    browser: Browser, plain_url: str
) -> None:
    with visiting(browser, plain_url, viewport=LAPTOP) as visit:
        visit.open()
        offered = _query_types(visit.page, "plain")
        assert offered
        assert RERANKED.isdisjoint(offered)
