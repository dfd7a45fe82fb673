"""The regression gate and the reports it is shown in."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from core.errors import InvalidRequestError
from evaluation.gate import compare, flatten_metrics, load_summary
from evaluation.report import render_markdown, write_reports


def _retrieval(ndcg: float, *, latency: float = 5.0) -> dict[str, Any]:
    return {
        "id": "run",
        "kind": "retrieval",
        "dataset": "smoke",
        "split": "test",
        "k": 10,
        "docs": 8,
        "queries": 2,
        "seconds": 1.0,
        "modes": {"hybrid": {"ndcg@10": ndcg, "recall@100": 1.0}},
        "latency_ms": {"hybrid": {"p50": latency, "p95": latency}},
    }


def _answers(**values: float) -> dict[str, Any]:
    return {
        "id": "run",
        "kind": "answers",
        "dataset": "qa",
        "questions": 2,
        "seconds": 1.0,
        "metrics": {
            "answer_f1": 0.5,
            "hallucinated_citation_rate": 0.0,
            "latency_p50_ms": 10.0,
            **values,
        },
    }


def test_gate_passes_within_tolerance_and_ignores_latency() -> None:
    result = compare(_retrieval(0.695, latency=500.0), _retrieval(0.70), tolerance=0.01)
    assert result.passed
    assert [c.metric for c in result.comparisons] == [
        "modes.hybrid.ndcg@10",
        "modes.hybrid.recall@100",
    ]


def test_gate_fails_when_a_metric_drops_beyond_tolerance() -> None:
    result = compare(_retrieval(0.68), _retrieval(0.70), tolerance=0.01)
    assert not result.passed
    assert [c.metric for c in result.regressions] == ["modes.hybrid.ndcg@10"]
    assert result.regressions[0].delta == pytest.approx(-0.02)


def test_gate_treats_more_hallucinations_as_a_regression() -> None:
    worse = _answers(hallucinated_citation_rate=0.2)
    assert not compare(worse, _answers(), tolerance=0.05).passed
    assert compare(_answers(hallucinated_citation_rate=0.0), worse, tolerance=0.0).passed


def test_gate_fails_when_a_baseline_metric_is_missing() -> None:
    current = _retrieval(0.7)
    del current["modes"]["hybrid"]["recall@100"]
    result = compare(current, _retrieval(0.7), tolerance=0.01)
    assert [(c.metric, c.current) for c in result.regressions] == [
        ("modes.hybrid.recall@100", None)
    ]


def test_gate_refuses_to_compare_different_evaluations() -> None:
    other = _retrieval(0.7) | {"split": "train"}
    with pytest.raises(InvalidRequestError, match="split='train'"):
        compare(_retrieval(0.7), other, tolerance=0.01)


def test_load_summary_rejects_a_file_that_is_not_a_summary(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"hello": 1}))
    with pytest.raises(InvalidRequestError, match="not an ondata evaluation summary"):
        load_summary(path)
    assert flatten_metrics(_answers()) == {
        "metrics.answer_f1": 0.5,
        "metrics.hallucinated_citation_rate": 0.0,
    }


def test_reports_are_written_self_contained_with_the_gate_verdict(tmp_path: Path) -> None:
    rows = [
        {"mode": "hybrid", "qid": q, "latency_ms": 4.0 + i, "ndcg@10": v}
        for i, (q, v) in enumerate([("a", 1.0), ("b", 0.39)])
    ]
    gate = compare(_retrieval(0.6), _retrieval(0.7), tolerance=0.01)
    files = write_reports(_retrieval(0.6), rows, tmp_path / "run", gate=gate)

    summary = json.loads(files.summary.read_text())
    assert summary["gate"]["passed"] is False
    assert load_summary(files.folder)["modes"]["hybrid"]["ndcg@10"] == 0.6
    html = files.html.read_text()
    assert html.count("data:image/png;base64,") == 3
    assert "http" not in html.replace("http-equiv", "")  # nothing fetched from elsewhere
    assert "Gate FAILED" in html
    assert len(files.per_query.read_text().splitlines()) == 2
    markdown = files.markdown.read_text()
    assert "| ndcg@10 | 0.600 |" in markdown
    assert "**Gate FAILED**" in render_markdown(summary, gate=gate)


def test_answer_report_lists_the_worst_questions_escaped(tmp_path: Path) -> None:
    rows = [
        {
            "qid": "x",
            "question": "<script>alert(1)</script>",
            "latency_ms": 3.0,
            "refused": False,
            "answerable": True,
            "answer_f1": 0.1,
            "cited_doc_ids": ["d"],
            "refusal_correct": True,
        },
        {
            "qid": "y",
            "question": "fine",
            "latency_ms": 5.0,
            "status": 500,
            "answerable": True,
            "error": "boom",
        },
    ]
    files = write_reports(_answers(), rows, tmp_path)
    html = files.html.read_text()
    assert "<script>" not in html
    assert "&lt;script&gt;" in html
    assert html.index("boom") < html.index("&lt;script&gt;")  # errors first
