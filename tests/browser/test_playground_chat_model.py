"""The playground's chat page with a chat model behind the API (the loopback OpenAI-compatible
fake): a streamed model answer with citations, and clear messages when the model is down,
slow or rate-limited.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from api.app import create_app
from core.settings import Settings
from tests.browser.conftest import LAPTOP, Visit, visiting
from tests.fakes.openai_server import FakeOpenAIServer
from tests.integration.api_support import INDEX, build_index, serve_in_thread

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Locator, Page

pytestmark = pytest.mark.browser
expect = pytest.importorskip(
    "playwright.sync_api", reason="browser test: the playwright package is not installed"
).expect

QUESTION = "How much may employees spend on hotels in capital cities?"


@pytest.fixture(scope="module")
def base_url(
    tmp_path_factory: pytest.TempPathFactory, openai_fake_server: FakeOpenAIServer
) -> Iterator[str]:
    root = tmp_path_factory.mktemp("playground_model")
    chat = openai_fake_server.chat_settings(timeout_s=1.0)
    settings = Settings(data_dir=root / "ondata", chat=chat)  # no keys, loopback: auth is off
    build_index(settings, root / "docs")
    with serve_in_thread(create_app(settings)) as url:
        yield url


@pytest.fixture
def laptop(browser: Browser, base_url: str, openai_fake: FakeOpenAIServer) -> Iterator[Visit]:
    with visiting(browser, base_url, viewport=LAPTOP) as visit:
        yield visit


def ask(page: Page, question: str = QUESTION) -> Locator:
    params = page.locator(".params")
    expect(params).to_have_attribute("data-indexes", "listed")
    page.get_by_label("Index", exact=True).select_option(INDEX)
    page.get_by_label("Your question").fill(question)
    page.get_by_role("button", name="Send").click()
    answer = page.locator(".message.assistant").last
    expect(answer).to_have_attribute("aria-busy", "false")
    return answer


def test_playground_streams_a_model_answer_with_citations(
    laptop: Visit, openai_fake: FakeOpenAIServer
) -> None:
    laptop.open("chat")
    laptop.page.get_by_label("Temperature").fill("0.3")
    laptop.page.get_by_label("System message (role_information)").fill("Answer briefly.")
    answer = ask(laptop.page)
    expect(answer.locator(".content")).to_contain_text("180 euros")
    answer.locator("button.cite").first.click()
    expect(laptop.page.locator(".citation-content")).to_contain_text("180 euros")
    sent = openai_fake.requests_to("chat")[-1].body
    assert sent["temperature"] == 0.3
    assert sent["stream"] is True
    assert "Answer briefly." in sent["messages"][0]["content"]
    laptop.screenshot("chat-model-answer")


@pytest.mark.parametrize(
    ("script", "title"),
    [
        ({"status": 500}, "The chat model failed"),
        ({"delay_s": 2.5}, "The chat model timed out"),
        ({"status": 429, "retry_after": 7}, "Rate limited"),
    ],
    ids=["down", "slow", "rate-limited"],
)
def test_playground_says_what_went_wrong_upstream(
    laptop: Visit, openai_fake: FakeOpenAIServer, script: dict[str, float], title: str
) -> None:
    openai_fake.script(endpoint="chat", times=3, **script)  # type: ignore[arg-type]
    laptop.open("chat")
    alert = ask(laptop.page).get_by_role("alert")
    expect(alert).to_contain_text(title)
    if "retry_after" in script:
        expect(alert).to_contain_text(re.compile(r"Try again in \d+ s"))
    laptop.screenshot(f"chat-upstream-{'-'.join(title.lower().split())}")
