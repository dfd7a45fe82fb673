"""The playground tells the truth (issue 12): sources in order and told apart, a newest answer
that is not hidden behind the question box, a missing index named as such, an evaluations
page whose empty state suggests a command that works and whose charts are readable.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from api.app import create_app
from core.settings import Settings
from evaluation.report import write_reports
from ingest.parsers import doc_id_for
from ingest.service import open_pipeline, parser_for
from ingest.sources import source_files
from tests.browser.conftest import LAPTOP, PHONE, Visit, visiting
from tests.fakes.openai_server import FakeOpenAIServer
from tests.integration.api_support import serve_in_thread

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Locator, Page

pytestmark = pytest.mark.browser
expect = pytest.importorskip(
    "playwright.sync_api", reason="browser test: the playwright package is not installed"
).expect

INDEX = "handbook"
HANDBOOK = """# Staff handbook

## Hotels
Staff travel rules: hotel rooms cost at most 180 euros per night in capital cities.

## Trains
Staff travel rules: trains are booked in first class for journeys over four hours.

## Badges
Staff travel rules: visitors wear a red badge and staff wear a blue badge at all times.
"""
QUESTION = "What are the staff travel rules for hotel rooms, trains and badges?"
REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Server:
    url: str
    settings: Settings


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, openai_fake_server: FakeOpenAIServer
) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("playground_pages")
    settings = Settings(data_dir=root / "ondata", chat=openai_fake_server.chat_settings())
    (root / "docs").mkdir()
    (root / "docs" / "handbook.md").write_text(HANDBOOK, encoding="utf-8")
    with open_pipeline(settings, INDEX) as pipeline:
        files = source_files([root / "docs"], doc_id_for=doc_id_for)
        assert pipeline.ingest_files(files, parse=parser_for(settings)).chunks_written >= 3
    with serve_in_thread(create_app(settings)) as url:
        yield Server(url, settings)


@pytest.fixture
def laptop(browser: Browser, server: Server, openai_fake: FakeOpenAIServer) -> Iterator[Visit]:
    with visiting(browser, server.url, viewport={"width": 1366, "height": 700}) as visit:
        yield visit


def ask(page: Page, question: str) -> Locator:
    expect(page.locator(".params")).to_have_attribute("data-indexes", "listed")
    page.get_by_label("Index", exact=True).select_option(INDEX)
    page.get_by_label("Strictness").select_option("1")
    page.get_by_label("Your question").fill(question)
    page.get_by_role("button", name="Send").click()
    answer = page.locator(".message.assistant").last
    expect(answer).to_have_attribute("aria-busy", "false")
    return answer


def test_sources_are_listed_in_order_and_told_apart(
    laptop: Visit, openai_fake: FakeOpenAIServer
) -> None:
    # three passages of one document (one title), cited out of order
    # times=2: the search-intent request may take the scripted text too
    openai_fake.reply(
        "Trains: first class [doc3]. Hotels: 180 euros [doc1]. Badges [doc2].", times=2
    )
    laptop.open("chat")
    answer = ask(laptop.page, QUESTION)
    items = answer.locator(".sources li")
    expect(items).to_have_count(3)
    buttons = [items.nth(i).locator(".source-link").inner_text() for i in range(3)]
    assert [b.split(".")[0] for b in buttons] == ["1", "2", "3"], buttons
    assert len({b.split(". ", 1)[1] for b in buttons}) == 1  # the same title three times
    details = [items.nth(i).locator(".source-detail").inner_text() for i in range(3)]
    assert len(set(details)) == 3, details
    assert any("180 euros" in d for d in details)
    laptop.screenshot("issue12-sources-told-apart")


def test_sources_list_the_cited_documents_by_their_number(
    laptop: Visit, openai_fake: FakeOpenAIServer
) -> None:
    # [docN] is the N-th document the model was given, in the text and the list alike:
    # cited 3 then 1, the text keeps that order, the list shows 1 and 3 (2 was not cited)
    openai_fake.reply("Badges are red [doc3]. Hotels: 180 euros [doc1].", times=2)
    laptop.open("chat")
    answer = ask(laptop.page, QUESTION)
    expect(answer.locator(".sources li")).to_have_count(2)
    listed = answer.locator(".sources .source-link").all_inner_texts()
    assert [b.split(".")[0] for b in listed] == ["1", "3"], listed
    assert answer.locator("button.cite").all_inner_texts() == ["3", "1"]


def test_the_newest_answer_is_not_hidden_behind_the_question_box(
    laptop: Visit, openai_fake: FakeOpenAIServer
) -> None:
    laptop.open("chat")
    for text in ("Hotels cost at most 180 euros [doc1].", "Badges are red and blue [doc1]."):
        openai_fake.reply(text, times=2)
        answer = ask(laptop.page, QUESTION)
    box = answer.bounding_box()
    composer = laptop.page.locator(".composer").bounding_box()
    assert box is not None
    assert composer is not None
    visible_bottom = min(box["y"] + box["height"], composer["y"])
    assert box["y"] >= 0, box  # its top is on screen
    assert box["y"] + box["height"] <= composer["y"] + 1 or box["height"] > composer["y"], (
        box,
        composer,
    )
    assert visible_bottom - box["y"] > 40
    laptop.screenshot("issue12-newest-answer-visible", full_page=False)


def test_a_missing_index_in_the_address_says_so_with_a_way_back(laptop: Visit) -> None:
    laptop.open("data?index=doesnotexist")
    alert = laptop.page.get_by_role("alert")
    expect(alert).to_contain_text("Index “doesnotexist” not found")
    laptop.screenshot("issue12-data-index-not-found")
    alert.get_by_role("link", name="Back to the indexes").click()
    expect(laptop.page.get_by_role("heading", name=f"Index “{INDEX}”", level=2)).to_be_visible()


def test_evaluations_empty_state_suggests_a_command_that_works(
    laptop: Visit, tmp_path: Path
) -> None:
    laptop.open("evaluations")
    command = laptop.page.locator(".empty-runs code").first
    expect(command).to_be_visible()
    text = command.inner_text()
    assert "`" not in laptop.page.locator(".evaluations-page").inner_text()
    laptop.screenshot("issue12-evaluations-empty")
    argv = text.split()
    assert argv[:3] == ["ondata", "eval", "retrieval"]
    # run it as shown, from the ondata folder (a subprocess: Playwright owns this thread's loop)
    ondata = Path(sys.executable).parent / "ondata"
    env = {**os.environ, "ONDATA_DATA_DIR": str(tmp_path / "data")}
    done = subprocess.run(
        [str(ondata), *argv[1:], "--out", str(tmp_path / "run"), "--json"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("viewport", [LAPTOP, PHONE], ids=["laptop", "phone"])
def test_evaluation_charts_keep_long_names_and_lower_is_better_apart(
    browser: Browser, server: Server, viewport: dict[str, int]
) -> None:
    run_id = "20260103T000000Z-answers-pubmedqa-aaa111"
    summary: dict[str, Any] = {
        "id": run_id,
        "kind": "answers",
        "created_at": "2026-01-03T00:00:00+00:00",
        "dataset": "pubmedqa",
        "questions": 28,
        "seconds": 16.9,
        "metrics": {
            "citation_precision": 0.8125,
            "answer_f1": 1.0,
            "hallucinated_citation_rate": 0.0625,
            "false_refusal_rate": 0.1,
            "latency_p50_ms": 41.25,
        },
        "counts": {"answered": 25, "refused": 3},
    }
    folder = server.settings.data_dir / "evaluations" / run_id
    write_reports(summary, [], folder)
    with visiting(browser, server.url, viewport=viewport) as visit:
        visit.open(f"evaluations?run={run_id}")
        page = visit.page
        expect(page.get_by_role("heading", name="Answer evaluation — pubmedqa")).to_be_visible()
        table = page.get_by_role("table", name="Answer metrics")
        expect(table).to_contain_text("hallucinated_citation_rate (lower is better)")
        expect(table).to_contain_text("1.000")  # a rate keeps its 3 decimals
        expect(table).to_contain_text("41.3")  # milliseconds 1
        expect(page.locator("figcaption", has_text="Rates where lower is better")).to_be_visible()
        lower = page.locator("svg.chart", has=page.locator("title", has_text="lower is better"))
        expect(lower).to_have_count(1)
        expect(lower).to_contain_text("hallucinated_")
        higher = page.locator("svg.chart", has=page.locator("title", has_text="higher is better"))
        assert "hallucinated" not in higher.first.inner_html()
        for label in page.locator("svg.chart .chart-label").all():
            box = label.evaluate("(el) => { const b = el.getBBox(); return [b.x, b.y]; }")
            assert min(box) >= 0, (label.text_content(), box)  # not cut off at the chart's edge
        visit.screenshot(f"issue12-evaluation-charts-{'phone' if viewport == PHONE else 'laptop'}")
