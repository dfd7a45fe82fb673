"""The CLI on its own: ingest exit codes, one index default, one strictness default, messages
for what is missing or empty, and help texts that show their defaults."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from api.cli import register as register_api
from core.cli import command_group
from evaluation.cli import register as register_eval
from ingest.cli import register as register_ingest
from retrieval.cli import register as register_search
from retrieval.search import DEFAULT_STRICTNESS
from tests.integration.api_support import DOCUMENTS


def _cli() -> typer.Typer:
    cli = command_group("test")
    for register in (register_api, register_ingest, register_search, register_eval):
        register(cli)
    return cli


def ondata(*argv: str, data_dir: Path, **env: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        _cli(), list(argv), env={"ONDATA_DATA_DIR": str(data_dir), **env}, terminal_width=100
    )
    return result.exit_code, result.output


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    for name, text in DOCUMENTS.items():
        (folder / name).write_text(text, encoding="utf-8")
    (tmp_path / "notes.xyz").write_text("plain text, unknown extension\n", encoding="utf-8")
    return folder


def test_ingest_exit_status_says_whether_every_file_made_it(docs: Path, tmp_path: Path) -> None:
    data = tmp_path / "ondata"
    stray = str(tmp_path / "notes.xyz")
    code, output = ondata("ingest", str(docs), data_dir=data)
    assert (code, f"ingested {len(DOCUMENTS)}, unchanged 0, failed 0") == (0, output.split(";")[0])
    code, output = ondata("ingest", str(docs), data_dir=data)
    assert code == 0, output  # unchanged files made it too
    code, output = ondata("ingest", str(docs), stray, data_dir=data)
    assert code == 1, output
    assert "failed: " in output
    assert "unsupported file type .xyz" in output
    code, output = ondata("ingest", stray, "--json", data_dir=data)
    assert code == 2, output
    assert json.loads(output.splitlines()[-1])["documents_failed"][0]["source"] == stray
    code, output = ondata("ingest", str(tmp_path / "missing"), data_dir=data)
    assert code == 2
    assert "no such file or folder" in output


def test_ingest_of_a_folder_skips_unsupported_types(docs: Path, tmp_path: Path) -> None:
    (docs / "image.xyz").write_bytes(b"\x89PNG\r\n")
    code, output = ondata("ingest", str(docs), "--json", data_dir=tmp_path / "ondata")
    assert code == 0, output
    report = json.loads(output.splitlines()[-1])
    assert (report["documents_ingested"], report["documents_failed"]) == (len(DOCUMENTS), [])


def test_commands_use_the_default_index_setting(docs: Path, tmp_path: Path) -> None:
    data = tmp_path / "ondata"
    env = {"ONDATA_DEFAULT_INDEX": "handbook"}
    assert ondata("ingest", str(docs / "travel.md"), data_dir=data, **env)[0] == 0
    code, output = ondata("documents", "list", "--json", data_dir=data, **env)
    assert code == 0, output
    assert len(json.loads(output)["documents"]) == 1
    code, output = ondata("search", "hotels capital cities", "--json", data_dir=data, **env)
    assert code == 0, output
    assert json.loads(output)["results"]
    code, output = ondata("documents", "list", data_dir=data)  # index "default" does not exist
    assert code == 1
    assert "index 'default' does not exist" in output


def test_documents_list_of_a_missing_index_is_the_same_error_as_search(tmp_path: Path) -> None:
    outputs = []
    for argv in (
        ("documents", "list", "--index", "nope"),
        ("documents", "delete", "x", "--index", "nope"),
        ("search", "x", "--index", "nope"),
    ):
        code, output = ondata(*argv, data_dir=tmp_path)
        assert code == 1
        outputs.append(output.strip())
    assert outputs == ["error: index 'nope' does not exist"] * 3


def test_documents_list_counts_chunks_in_words(docs: Path, tmp_path: Path) -> None:
    data = tmp_path / "ondata"
    (docs / "one.txt").write_text("A single short line.\n", encoding="utf-8")
    assert ondata("ingest", str(docs / "one.txt"), "--index", "x", data_dir=data)[0] == 0
    code, output = ondata("documents", "list", "--index", "x", data_dir=data)
    assert code == 0, output
    assert "\t1 chunk\t" in output
    assert "1 chunks" not in output


def test_empty_lists_say_so(tmp_path: Path) -> None:
    code, output = ondata("keys", "list", data_dir=tmp_path)
    assert (code, output.startswith("no active keys")) == (0, True)
    code, output = ondata("keys", "list", "--json", data_dir=tmp_path)
    assert (code, json.loads(output)) == (0, [])


@pytest.mark.parametrize(
    "command",
    [
        ("ingest",),
        ("ask",),
        ("search",),
        ("documents", "list"),
        ("documents", "delete"),
        ("keys", "list"),
        ("keys", "create"),
        ("eval", "answers"),
        ("eval", "retrieval"),
    ],
)
def test_help_shows_defaults_and_no_type_for_flags(
    command: tuple[str, ...], tmp_path: Path
) -> None:
    code, output = ondata(*command, "--help", data_dir=tmp_path)
    assert code == 0, output
    assert "<bool>" not in output
    assert not re.search(r"\s\.\s*$", output, re.MULTILINE)  # a default dropped before a dot
    if re.search(r"--index\s", output) and command[0] != "eval":
        assert "default_index setting" in output


def test_search_and_ask_share_one_strictness_default(tmp_path: Path) -> None:
    for command in ("search", "ask"):
        output = ondata(command, "--help", data_dir=tmp_path)[1]
        flat = " ".join(output.split())
        assert re.search(rf"--strictness .*\[default: {DEFAULT_STRICTNESS};", flat), flat
