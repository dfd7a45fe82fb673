"""Long evaluation steps show progress when stderr is no terminal: plain lines, not silence."""

from __future__ import annotations

import io
import re
from pathlib import Path

from evaluation.progress import ProgressLines
from tests.integration.eval_support import eval_cli

SMOKE = Path(__file__).resolve().parents[2] / "data" / "eval" / "smoke"


def test_progress_lines_mark_start_each_tenth_and_end() -> None:
    out = io.StringIO()
    with ProgressLines(20, "indexing corpus", unit="doc", stream=out) as bar:
        for _ in range(20):
            bar.update(1)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("indexing corpus: 0/20 doc (0%)")
    assert lines[-1].startswith("indexing corpus: 20/20 doc (100%)")
    assert lines[-1].endswith(" done")
    assert len(lines) == 11  # the start, nine tenths, the end


def test_progress_lines_without_a_total_still_start_and_end() -> None:
    out = io.StringIO()
    with ProgressLines(None, "indexing corpus", unit="doc", stream=out) as bar:
        bar.update(5)
    assert [line.split(" 0.")[0] for line in out.getvalue().splitlines()] == [
        "indexing corpus: 0 doc",
        "indexing corpus: 5 doc",
    ]


def test_eval_commands_log_progress_lines_to_stderr_without_a_tty(tmp_path: Path) -> None:
    env = {"ONDATA_DATA_DIR": str(tmp_path / "data")}
    for args in (
        ["retrieval", "--dataset", str(SMOKE), "--modes", "keyword"],
        ["answers", "--dataset", str(SMOKE / "qa.jsonl"), "--limit", "2"],
    ):
        result = eval_cli(["eval", *args, "--out", str(tmp_path / args[0])], env)
        assert result.exit_code == 0, result.output
        assert re.search(r"^indexing corpus: 0/\d+ doc \(0%\)", result.stderr, re.MULTILINE)
        assert re.search(r"^indexing corpus: (\d+)/\1 doc \(100%\) .* done$", result.stderr, re.M)
        unit = "keyword queries" if args[0] == "retrieval" else "questions"
        assert re.search(rf"^{unit}: \d+/\d+ q \(100%\) .* done$", result.stderr, re.M)
