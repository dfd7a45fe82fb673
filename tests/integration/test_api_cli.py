"""`ondata ask` in-process against a real index: answer and citations, --json, --stream."""

from __future__ import annotations

import json
import re

import pytest
import typer
from typer.testing import CliRunner

from api.cli import register
from core.settings import Settings
from tests.integration.api_support import INDEX, build_index

QUESTION = "How much may employees spend on hotels in capital cities?"
MARKER = re.compile(r"\[doc(\d+)\]")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("api_cli")
    settings = Settings(data_dir=root / "ondata")
    build_index(settings, root / "docs")
    return str(settings.data_dir)


def _ondata(data_dir: str, *argv: str) -> tuple[int, str]:
    cli = typer.Typer()
    register(cli)
    result = CliRunner().invoke(cli, list(argv), env={"ONDATA_DATA_DIR": data_dir})
    return result.exit_code, result.output


def _ask(data_dir: str, *args: str) -> str:
    code, output = _ondata(data_dir, "ask", QUESTION, "--index", INDEX, *args)
    assert code == 0, output
    return output


def test_ask_prints_answer_and_citations(data_dir: str) -> None:
    answer, _, citations = _ask(data_dir).partition("Citations:")
    assert "180" in answer
    numbers = {int(n) for n in MARKER.findall(answer)}
    assert numbers
    # the cited documents only, by number (the context lists every document given)
    assert {int(n) for n in MARKER.findall(citations)} == numbers
    assert "travel.md" in citations


def test_ask_json_prints_the_chat_completion(data_dir: str) -> None:
    completion = json.loads(_ask(data_dir, "--json"))
    assert completion["object"] == "chat.completion"
    message = completion["choices"][0]["message"]
    assert "180" in message["content"]
    assert message["context"]["citations"]
    assert json.loads(message["context"]["intent"])


def test_ask_stream_prints_answer_then_citations(data_dir: str) -> None:
    answer, _, citations = _ask(data_dir, "--stream").partition("Citations:")
    assert "180" in answer
    assert "travel.md" in citations
    assert {int(n) for n in MARKER.findall(citations)} == {int(n) for n in MARKER.findall(answer)}


def test_ask_stream_json_prints_the_api_chunks(data_dir: str) -> None:
    chunks = [json.loads(line) for line in _ask(data_dir, "--stream", "--json").splitlines()]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert chunks[0]["choices"][0]["delta"]["context"]["citations"]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert "180" in text
    assert chunks[-1]["usage"]["total_tokens"] > 0


def test_ask_unknown_index_fails_with_a_message(data_dir: str) -> None:
    code, output = _ondata(data_dir, "ask", "hi", "--index", "nope")
    assert code == 1
    assert "index 'nope' does not exist" in output


def test_ask_unreachable_server_fails_with_a_message(data_dir: str) -> None:
    code, output = _ondata(data_dir, "ask", "hi", "--url", "http://127.0.0.1:9")
    assert code == 1
    assert "cannot reach http://127.0.0.1:9" in output
