"""The playground in a real browser (Debian's Chromium via Playwright) against the real app
under uvicorn: upload, ingestion, a grounded answer, its citation, feedback and history.
"""

from __future__ import annotations

import base64
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from pydantic import SecretStr

from api.app import create_app
from core.settings import ApiSettings, JobsSettings, Settings
from evaluation.report import write_reports
from tests.browser.conftest import LAPTOP, PHONE, Visit, accessibility_violations, visiting
from tests.conftest import DATA
from tests.integration.api_support import serve_in_thread

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Locator, Page

pytestmark = pytest.mark.browser
expect = pytest.importorskip(
    "playwright.sync_api", reason="browser test: the playwright package is not installed"
).expect

KEY = "playground-operator-key"
FLOW_INDEX = "memos"
SAMPLE = DATA / "samples" / "fake-memo.pdf"
QUESTION = "How many blankets were delivered on January 23, 2023?"
ANSWER_TEXT = "10,000 blankets"
# the other tests share an index the fixture fills through the upload API
SHARED_INDEX = "hockey"
SHARED_SAMPLE = DATA / "samples" / "stanley-cups.csv"
SHARED_QUESTION = "How many Stanley Cups have the Maple Leafs won?"
SHARED_ANSWER = "13"
EMPTY_INDEX = "empty"
FOLDER_SAMPLE = DATA / "samples" / "simple-table.md"
JOB_DONE = ("succeeded", "partially_succeeded", "failed", "cancelled")


@dataclass(frozen=True)
class Server:
    url: str
    settings: Settings

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"api-key": KEY}, timeout=60)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("playground")
    sources = root / "sources"
    (sources / "tables").mkdir(parents=True)
    shutil.copy(FOLDER_SAMPLE, sources / "tables" / FOLDER_SAMPLE.name)
    settings = Settings(
        data_dir=root / "ondata",
        api=ApiSettings(api_key=SecretStr(KEY)),
        jobs=JobsSettings(source_roots=(sources,)),
    )
    _write_evaluation_run(settings)
    with serve_in_thread(create_app(settings)) as url:
        server = Server(url, settings)
        with server.http() as http:
            _upload(http, SHARED_INDEX, SHARED_SAMPLE)
            http.post("/v1/indexes", json={"name": EMPTY_INDEX}).raise_for_status()
        yield server


def _upload(http: httpx.Client, index: str, file: Path) -> None:
    """Create `index` and ingest `file` through the API; wait for its job."""
    http.post("/v1/indexes", json={"name": index}).raise_for_status()
    with file.open("rb") as fh:
        accepted = http.post(f"/v1/indexes/{index}/documents", files={"files": (file.name, fh)})
    accepted.raise_for_status()
    job_id = accepted.json()["job_id"]
    for _ in range(600):
        job = http.get(f"/v1/ingestion/jobs/{job_id}").json()
        if job["status"] in JOB_DONE:
            break
        time.sleep(0.2)
    assert job["status"] == "succeeded", job


def _write_evaluation_run(settings: Settings) -> None:
    runs = settings.data_dir / "evaluations"
    retrieval = {
        "id": "20260102T000000Z-retrieval-smoke-abc123",
        "kind": "retrieval",
        "created_at": "2026-01-02T00:00:00+00:00",
        "dataset": "smoke",
        "split": "test",
        "k": 10,
        "docs": 8,
        "queries": 8,
        "seconds": 5.3,
        "modes": {
            "vector": {"ndcg@10": 0.91, "recall@10": 0.95},
            "keyword": {"ndcg@10": 0.82, "recall@10": 0.88},
            "hybrid": {"ndcg@10": 0.94, "recall@10": 0.97},
        },
        "latency_ms": {m: {"p50": 5.0, "p95": 9.0} for m in ("vector", "keyword", "hybrid")},
    }
    answers = {
        "id": "20260101T000000Z-answers-smoke-def456",
        "kind": "answers",
        "created_at": "2026-01-01T00:00:00+00:00",
        "dataset": "smoke",
        "questions": 6,
        "seconds": 3.2,
        "metrics": {"citation_precision": 0.83, "answer_f1": 0.61, "latency_p50_ms": 120.0},
        "counts": {"answered": 5, "refused": 1, "errors": 0, "unanswerable": 1},
        "target": "in-process",
        "gate": {
            "baseline": "baseline.json",
            "tolerance": 0.02,
            "passed": False,
            "regressions": [{"metric": "answer_f1", "baseline": 0.7, "current": 0.61}],
        },
    }
    for summary in (retrieval, answers):
        write_reports(summary, [], runs / str(summary["id"]))


@pytest.fixture
def laptop(browser: Browser, server: Server) -> Iterator[Visit]:
    with visiting(browser, server.url, viewport=LAPTOP) as visit:
        yield visit


@pytest.fixture
def phone(browser: Browser, server: Server) -> Iterator[Visit]:
    with visiting(browser, server.url, viewport=PHONE) as visit:
        yield visit


# ---- helpers ---------------------------------------------------------------------------------


def enter_key(page: Page, key: str = KEY) -> None:
    page.get_by_role("button", name=re.compile("^API key")).click()
    dialog = page.get_by_role("dialog", name="API key")
    dialog.get_by_label("Key", exact=True).fill(key)
    dialog.get_by_role("button", name="Save").click()
    expect(page.get_by_role("button", name="API key (saved)")).to_be_visible()


def choose_index(page: Page, name: str) -> None:
    """Pick the index (a list when the server lists indexes for this key, else a text field)."""
    params = page.locator(".params")
    # "loading" while GET /v1/indexes is out: the control is replaced when it answers
    expect(params).to_have_attribute("data-indexes", re.compile("^(un)?listed$"))
    control = page.get_by_label("Index", exact=True)
    if not control.is_visible():  # the parameters panel starts folded on a phone
        params.locator("summary").click()
    if params.get_attribute("data-indexes") == "listed":
        control.select_option(name)
    else:
        control.fill(name)


def ask(page: Page, question: str) -> None:
    page.get_by_label("Your question").fill(question)
    page.get_by_role("button", name="Send").click()
    expect(page.locator(".message.assistant").last).to_have_attribute("aria-busy", "false")


def last_answer(page: Page) -> Locator:
    return page.locator(".message.assistant").last


def drop_file(page: Page, target: Locator, file: Path, mime: str) -> None:
    """Drag-and-drop `file` onto `target`, as a file dragged from the desktop arrives."""
    transfer = page.evaluate_handle(
        """([name, data, type]) => {
            const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], name, { type }));
            return transfer;
        }""",
        [file.name, base64.b64encode(file.read_bytes()).decode(), mime],
    )
    target.dispatch_event("dragover", {"dataTransfer": transfer})
    target.dispatch_event("drop", {"dataTransfer": transfer})


# ---- the flow --------------------------------------------------------------------------------


def test_playground_upload_answer_citation_feedback_history(laptop: Visit, server: Server) -> None:
    page = laptop.page
    laptop.open("data")
    enter_key(page)

    # 1. create an index and drop a real document on it
    create = page.locator("form.create-index")
    create.get_by_label("Name").fill(FLOW_INDEX)
    create.get_by_role("button", name="Create index").click()
    expect(page.get_by_role("heading", name=f"Index “{FLOW_INDEX}”")).to_be_visible()
    drop_file(page, page.locator(".dropzone"), SAMPLE, "application/pdf")

    # 2. its job runs to the end; the document is listed, indexed, with its chunks
    job = page.locator(".job").first
    expect(job).to_have_attribute("data-status", "succeeded", timeout=180_000)
    expect(job).to_contain_text("1 of 1 document(s)")
    row = page.get_by_role("row", name=re.compile("fake-memo"))
    expect(row).to_contain_text("indexed")
    assert int(row.locator("td.num").inner_text()) >= 1
    laptop.screenshot("data")

    # 3. a question whose answer is in the document, streamed back with citations and intent
    page.get_by_role("navigation", name="Pages").get_by_role("link", name="Chat").click()
    choose_index(page, FLOW_INDEX)
    ask(page, QUESTION)
    answer = last_answer(page)
    expect(answer.locator(".content")).to_contain_text(ANSWER_TEXT)
    expect(answer.locator(".intent li").first).to_be_visible()
    laptop.screenshot("chat-answer")

    # 4. a citation opens the side panel with the cited text, title and page
    answer.locator("button.cite").first.click()
    panel = page.get_by_role("complementary", name="fake-memo")
    expect(panel).to_be_visible()
    expect(panel.locator(".citation-content")).to_contain_text(ANSWER_TEXT)
    expect(panel.locator(".citation-meta")).to_contain_text("Page1")
    expect(page.locator("#citation-title")).to_be_focused()
    laptop.screenshot("chat-citation")
    with page.expect_download() as download:
        panel.get_by_role("button", name="Download").click()
    assert download.value.suggested_filename == SAMPLE.name
    assert Path(download.value.path()).read_bytes() == SAMPLE.read_bytes()
    panel.locator("#citation-title").focus()
    page.keyboard.press("Escape")
    expect(panel).to_be_hidden()
    expect(answer.locator("button.cite").first).to_be_focused()

    # 5. thumbs down with a category and a comment, stored on the server
    answer.get_by_role("button", name="Bad answer").click()
    answer.get_by_label("Category").select_option("wrong_citation")
    answer.get_by_label("Comment (optional)").fill("Cites the memo twice.")
    answer.get_by_role("button", name="Send feedback").click()
    expect(answer.locator(".feedback-given")).to_have_text("Feedback: bad (Wrong citation)")
    conversation_id = _latest_conversation(server)["id"]

    # 6. after a reload the conversation is listed and reads back with its citation and feedback
    page.reload()
    item = page.locator(".conversation-open", has_text="How many blankets")
    expect(item).to_be_visible()
    item.click()
    answer = last_answer(page)
    expect(answer.locator(".content")).to_contain_text(ANSWER_TEXT)
    thumb_down = answer.get_by_role("button", name="Bad answer")
    expect(thumb_down).to_have_attribute("aria-pressed", "true")
    answer.locator("button.cite").first.click()
    expect(page.locator(".citation-content")).to_contain_text(ANSWER_TEXT)
    with server.http() as http:
        stored = http.get(f"/v1/conversations/{conversation_id}").json()
    feedback = stored["messages"][-1]["feedback"]
    assert (feedback["rating"], feedback["categories"]) == ("down", ["wrong_citation"])
    assert feedback["comment"] == "Cites the memo twice."


def _latest_conversation(server: Server) -> dict[str, Any]:
    with server.http() as http:
        listed: list[dict[str, Any]] = http.get("/v1/conversations").json()["data"]
    assert listed, "no conversation was stored"
    return listed[0]


def test_playground_manages_indexes_uploads_folder_jobs_and_documents(
    laptop: Visit, server: Server
) -> None:
    page = laptop.page
    page.on("dialog", lambda dialog: dialog.accept())  # the confirmations before deleting
    laptop.open("data")
    enter_key(page)
    create = page.locator("form.create-index")
    create.get_by_label("Name").fill("tables")
    create.get_by_label("Description (optional)").fill("Price lists")
    create.get_by_role("button", name="Create index").click()
    expect(page.get_by_role("row", name=re.compile("tables"))).to_contain_text("Price lists")

    folder = server.settings.jobs.source_roots[0] / "tables"
    page.get_by_label("Folder (on the server, under the allowed root)").fill(str(folder))
    page.get_by_role("button", name="Start job").click()
    expect(page.locator(".job").first).to_have_attribute("data-status", "succeeded")
    document = page.get_by_role("row", name=re.compile("simple-table"))
    expect(document).to_contain_text("indexed")

    # the drop zone is also a button that opens the file chooser (keyboard and touch users)
    page.get_by_label("Access groups (optional)").fill("finance")
    page.get_by_label("Metadata (optional JSON object)").fill('{"team": "sales"}')
    with page.expect_file_chooser() as chooser:
        page.locator(".dropzone").click()
    chooser.value.set_files(str(SHARED_SAMPLE))
    expect(page.locator(".job").first).to_contain_text(SHARED_SAMPLE.name)
    expect(page.locator(".job").first).to_have_attribute("data-status", "succeeded")
    with server.http() as http:
        listed = http.get("/v1/indexes/tables/documents").json()["data"]
    uploaded = next(d for d in listed if d["filename"] == SHARED_SAMPLE.name)
    assert (uploaded["acl_groups"], uploaded["metadata"]["team"]) == (["finance"], "sales")

    for name in ("simple-table", "stanley-cups"):
        row = page.get_by_role("row", name=re.compile(name))
        row.get_by_role("button", name=re.compile("^Delete document")).click()
        expect(row).to_have_count(0)
    expect(page.get_by_text("No documents yet")).to_be_visible()
    page.get_by_role("button", name="Delete index tables").click()
    expect(page.get_by_role("row", name=re.compile("tables"))).to_have_count(0)
    with server.http() as http:
        assert http.get("/v1/indexes/tables").status_code == 404


def test_playground_renames_and_deletes_a_conversation(laptop: Visit, server: Server) -> None:
    page = laptop.page
    page.on("dialog", lambda dialog: dialog.accept())
    laptop.open("chat")
    enter_key(page)
    choose_index(page, SHARED_INDEX)
    ask(page, "Which team has won two Stanley Cups?")
    conversation_id = _latest_conversation(server)["id"]
    item = page.locator(f'.conversation[data-id="{conversation_id}"]')
    item.get_by_role("button", name=re.compile("^Rename")).click()
    page.get_by_label("New conversation title").fill("Hockey trivia")
    page.keyboard.press("Enter")
    expect(item.locator(".conversation-open")).to_have_text("Hockey trivia")
    with server.http() as http:
        assert http.get(f"/v1/conversations/{conversation_id}").json()["title"] == "Hockey trivia"

    page.get_by_role("button", name="Delete “Hockey trivia”").click()
    expect(item).to_have_count(0)
    expect(page.locator(".message")).to_have_count(0)
    with server.http() as http:
        assert http.get(f"/v1/conversations/{conversation_id}").status_code == 404


def test_playground_says_when_the_api_key_is_missing(laptop: Visit) -> None:
    page = laptop.page
    laptop.open("chat")
    choose_index(page, SHARED_INDEX)
    ask(page, SHARED_QUESTION)
    alert = last_answer(page).get_by_role("alert")
    expect(alert).to_contain_text("Authentication failed")
    alert.get_by_role("button", name="Enter API key").click()
    expect(page.get_by_role("dialog", name="API key")).to_be_visible()
    expect(page.get_by_label("Key", exact=True)).to_be_focused()


def test_playground_says_when_the_index_is_empty(laptop: Visit) -> None:
    page = laptop.page
    laptop.open("chat")
    enter_key(page)
    choose_index(page, EMPTY_INDEX)
    ask(page, SHARED_QUESTION)
    expect(last_answer(page).locator(".notice")).to_contain_text(
        re.compile("no documents|relevance cut-off")
    )
    laptop.screenshot("chat-empty-index")


def test_playground_evaluations_page_shows_tables_and_plots(laptop: Visit) -> None:
    page = laptop.page
    laptop.open("evaluations")
    enter_key(page)
    runs = page.get_by_role("table", name="Evaluation runs, newest first")
    expect(runs.get_by_role("row")).to_have_count(3)  # the header and two runs
    table = page.get_by_role("table", name=re.compile("Retrieval metrics per search mode"))
    expect(table.get_by_role("row", name=re.compile("ndcg@10"))).to_contain_text("0.940")
    expect(page.get_by_role("img", name="Retrieval metrics per search mode")).to_be_visible()
    laptop.screenshot("evaluations")

    runs.get_by_role("row", name=re.compile("answers")).get_by_role("button").click()
    expect(page.get_by_role("heading", name="Answer evaluation — smoke")).to_be_focused()
    answers = page.get_by_role("table", name="Answer metrics")
    expect(answers.get_by_role("row", name=re.compile("answer_f1"))).to_contain_text("0.610")
    expect(page.get_by_role("img", name="Questions by outcome")).to_be_visible()
    expect(page.get_by_text("Regression gate failed")).to_be_visible()
    laptop.screenshot("evaluations-answers")


def test_playground_fits_a_phone_screen(phone: Visit) -> None:
    page = phone.page
    phone.open("chat")
    enter_key(page)
    choose_index(page, SHARED_INDEX)
    ask(page, SHARED_QUESTION)
    expect(last_answer(page).locator(".content")).to_contain_text(SHARED_ANSWER)
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page scrolls sideways by {overflow}px on a phone"
    phone.screenshot("chat-phone")
    last_answer(page).locator("button.cite").first.click()
    expect(page.locator(".citation-content")).to_be_in_viewport()
    phone.screenshot("chat-citation-phone", full_page=False)


@pytest.mark.parametrize(
    ("scheme", "viewport"),
    [("light", LAPTOP), ("dark", PHONE)],
    ids=["light-laptop", "dark-phone"],
)
def test_playground_pages_pass_accessibility_checks(
    browser: Browser, server: Server, scheme: str, viewport: dict[str, int]
) -> None:
    with visiting(browser, server.url, viewport=viewport, color_scheme=scheme) as visit:
        found = _violations_on_every_page(visit)
        visit.screenshot(f"evaluations-{scheme}-{viewport['width']}")
    assert {name: v for name, v in found.items() if v} == {}


def _violations_on_every_page(visit: Visit) -> dict[str, list[str]]:
    """Key dialog, chat with an answer and its feedback form, citation panel, data, evaluations."""
    page = visit.page
    found: dict[str, list[str]] = {}
    visit.open("chat")
    page.get_by_role("button", name=re.compile("^API key")).click()
    found["key dialog"] = accessibility_violations(page)
    dialog = page.get_by_role("dialog", name="API key")
    dialog.get_by_label("Key", exact=True).fill(KEY)
    dialog.get_by_role("button", name="Save").click()
    # the dialog's close handler (which re-renders the page) has run once the button says so
    expect(page.get_by_role("button", name="API key (saved)")).to_be_visible()
    choose_index(page, SHARED_INDEX)
    ask(page, SHARED_QUESTION)
    last_answer(page).get_by_role("button", name="Bad answer").click()
    found["chat with feedback form"] = accessibility_violations(page)
    last_answer(page).locator("button.cite").first.click()
    found["citation panel"] = accessibility_violations(page)
    pages = ((f"data?index={SHARED_INDEX}", ".index-detail table"), ("evaluations", "svg.chart"))
    for route, ready in pages:
        visit.open(route)
        expect(page.locator(ready).first).to_be_visible()
        found[route] = accessibility_violations(page)
    return found


def test_playground_is_usable_from_the_keyboard(laptop: Visit) -> None:
    page = laptop.page
    laptop.open("chat")
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.locator(".brand")).to_be_focused()
    labelled = page.evaluate(
        """() => [...document.querySelectorAll('input, select, textarea')]
        .filter(el => el.type !== 'hidden')
        .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label'))
        .map(el => el.outerHTML)"""
    )
    assert labelled == [], f"controls without a label: {labelled}"
