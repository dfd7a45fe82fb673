"""Evaluation reports: one number format, an aligned CLI table, lower-is-better rates apart,
and judge wording only when a judge scored the run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from evaluation.report import figures, format_value, render_html, text_table, write_reports

ANSWERS: dict[str, Any] = {
    "kind": "answers",
    "dataset": "pubmedqa",
    "questions": 28,
    "seconds": 16.9,
    "metrics": {
        "citation_precision": 0.8125,
        "answer_f1": 0.41,
        "hallucinated_citation_rate": 0.0625,
        "false_refusal_rate": 0.1,
        "error_rate": 0.0,
        "latency_p50_ms": 41.23456,
    },
}


def test_format_value_one_rule_for_rates_times_and_counts() -> None:
    assert format_value("answer_f1", 0.41) == "0.410"
    assert format_value("seconds", 16.9) == "16.9"
    assert format_value("latency_p50_ms", 41.23456) == "41.2"
    assert format_value("latency p95 (ms)", 3.0) == "3.0"
    assert format_value("questions", 28) == "28"
    assert format_value("answer_f1", None) == "-"
    assert format_value("citation_precision", 0.8125) == "0.813"  # halves up, as the page
    assert format_value("answer_f1", 1e-9) == "0.000"
    assert format_value("answer_f1", float("nan")) == "nan"


def test_text_table_aligns_columns_and_marks_lower_is_better() -> None:
    table = text_table(["metric", "value"], [[n, v] for n, v in ANSWERS["metrics"].items()])
    lines = table.splitlines()
    assert len({len(line) for line in lines}) == 1  # every value ends in the same column
    assert "hallucinated_citation_rate (lower is better)  0.063" in table
    assert "citation_precision" in table
    assert "0.813" in table
    assert "41.2" in table


def test_report_without_a_judge_plots_no_judge_axis_and_splits_lower_is_better() -> None:
    captions = [caption for caption, _ in figures(ANSWERS, [])]
    assert "Answer metrics (higher is better)" in captions
    assert "Answer rates where lower is better" in captions
    assert not any("Judge" in c for c in captions)
    page = render_html(ANSWERS, [])
    assert "divided by 5" not in page
    assert "hallucinated_citation_rate (lower is better)" in page
    assert "<li>seconds: 16.9</li>" in page
    assert "<li>questions: 28</li>" in page


def test_report_with_a_judge_plots_its_scores_on_their_own_axis() -> None:
    judged = ANSWERS | {"metrics": ANSWERS["metrics"] | {"judge_groundedness": 4.25}}
    captions = [caption for caption, _ in figures(judged, [])]
    assert "Judge scores (higher is better)" in captions


def test_summary_names_the_metrics_where_lower_is_better(tmp_path: Path) -> None:
    files = write_reports(ANSWERS, [], tmp_path)
    written = json.loads(files.summary.read_text())
    assert set(written["lower_is_better"]) == {
        "hallucinated_citation_rate",
        "false_refusal_rate",
        "error_rate",
    }
    assert "| hallucinated_citation_rate (lower is better) | 0.063 |" in files.markdown.read_text()
