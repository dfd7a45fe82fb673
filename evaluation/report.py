"""Run reports: summary.json, per_query.jsonl, a self-contained report.html and summary.md.

The HTML report needs nothing beside it: styles are inline and the matplotlib plots (metrics
per mode, per-query score distribution, latency histogram) are embedded as base64 PNGs.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")  # no display; must precede pyplot
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from evaluation.gate import GateResult

_CSS = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#222;padding:0 1rem}
table{border-collapse:collapse;margin:1rem 0}td,th{border:1px solid #ccc;padding:.3rem .6rem}
th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}
.pass{color:#1a7f37}.fail{color:#cf222e}img{max-width:100%}code{background:#f3f3f3}
"""
_MAX_TABLE_ROWS = 200


@dataclass(frozen=True)
class RunFiles:
    """Where a run's reports were written."""

    folder: Path
    summary: Path
    per_query: Path
    html: Path
    markdown: Path


def write_reports(
    summary: Mapping[str, Any],
    rows: Sequence[Mapping[str, Any]],
    folder: Path,
    *,
    gate: GateResult | None = None,
) -> RunFiles:
    """Write summary.json (with the gate verdict), per_query.jsonl, report.html and summary.md."""
    folder.mkdir(parents=True, exist_ok=True)
    full = dict(summary) | ({"gate": gate.as_dict()} if gate else {})
    files = RunFiles(
        folder,
        folder / "summary.json",
        folder / "per_query.jsonl",
        folder / "report.html",
        folder / "summary.md",
    )
    files.summary.write_text(json.dumps(full, indent=2) + "\n", encoding="utf-8")
    files.per_query.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    files.html.write_text(render_html(full, rows, gate=gate), encoding="utf-8")
    files.markdown.write_text(render_markdown(full, gate=gate), encoding="utf-8")
    return files


# --- tables --------------------------------------------------------------------------------


def metric_table(summary: Mapping[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """(header, rows) of the metrics: metric x mode (retrieval) or metric, value (answers)."""
    if summary.get("kind") == "retrieval":
        # the public baselines (--baselines) are columns beside the modes, without latency
        columns = dict(summary.get("modes") or {})
        columns |= {f"{b} (baseline)": v for b, v in (summary.get("baselines") or {}).items()}
        modes = list(columns)
        names = list(dict.fromkeys(n for m in modes for n in columns[m]))
        rows = [[n, *(columns[m].get(n) for m in modes)] for n in names]
        latency = summary.get("latency_ms") or {}
        for p in ("p50", "p95"):
            rows.append([f"latency {p} (ms)", *((latency.get(m) or {}).get(p) for m in modes)])
        return ["metric", *modes], rows
    return ["metric", "value"], [[n, v] for n, v in (summary.get("metrics") or {}).items()]


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def render_markdown(summary: Mapping[str, Any], *, gate: GateResult | None = None) -> str:
    """A Markdown summary: what was run, the metric table, the gate's verdict."""
    header, rows = metric_table(summary)
    lines = [f"# {summary.get('kind', 'evaluation')} evaluation — {summary.get('dataset')}", ""]
    lines += [f"- {k}: {_fmt(summary.get(k))}" for k in _facts(summary)]
    lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    if gate is not None:
        lines += ["", *_gate_markdown(gate)]
    return "\n".join(lines) + "\n"


def _facts(summary: Mapping[str, Any]) -> list[str]:
    keys = (
        "id",
        "created_at",
        "split",
        "docs",
        "queries",
        "questions",
        "seconds",
        "target",
        "judge",
    )
    return [k for k in keys if k in summary]


def _gate_markdown(gate: GateResult) -> list[str]:
    verdict = "PASSED" if gate.passed else "FAILED"
    lines = [f"**Gate {verdict}** against `{gate.baseline}` (tolerance {gate.tolerance})"]
    for c in gate.regressions:
        lines.append(f"- {c.metric}: {_fmt(c.current)} (baseline {_fmt(c.baseline)})")
    return lines


# --- HTML ----------------------------------------------------------------------------------


def render_html(
    summary: Mapping[str, Any], rows: Sequence[Mapping[str, Any]], *, gate: GateResult | None = None
) -> str:
    """The self-contained HTML report."""
    title = f"{summary.get('kind', 'evaluation')} evaluation — {summary.get('dataset')}"
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{_e(title)}</title>",
        f"<style>{_CSS}</style></head><body><h1>{_e(title)}</h1>",
        _facts_html(summary),
        _gate_html(gate) if gate else "",
        "<h2>Metrics</h2>",
        _table_html(*metric_table(summary)),
        *(_figure_html(caption, fig) for caption, fig in figures(summary, rows)),
        _rows_html(summary, rows),
        "</body></html>",
    ]
    return "\n".join(p for p in parts if p)


def _e(value: Any) -> str:
    return html.escape(_fmt(value) if not isinstance(value, str) else value)


def _facts_html(summary: Mapping[str, Any]) -> str:
    items = "".join(f"<li>{_e(k)}: {_e(summary.get(k))}</li>" for k in _facts(summary))
    return f"<ul>{items}</ul>"


def _gate_html(gate: GateResult) -> str:
    css = "pass" if gate.passed else "fail"
    head = (
        f"<h2 class='{css}'>Gate {'passed' if gate.passed else 'FAILED'}</h2>"
        f"<p>baseline <code>{_e(gate.baseline)}</code>, tolerance {_e(gate.tolerance)}</p>"
    )
    rows = [[c.metric, c.baseline, c.current, c.delta] for c in gate.comparisons]
    marks = [c.regressed for c in gate.comparisons]
    return head + _table_html(["metric", "baseline", "this run", "change"], rows, marks=marks)


def _table_html(
    header: Sequence[str], rows: Sequence[Sequence[Any]], *, marks: Sequence[bool] = ()
) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        css = " class='fail'" if i < len(marks) and marks[i] else ""
        cells = "".join(
            f"<td class='num'>{_e(v)}</td>"
            if isinstance(v, int | float) or v is None
            else f"<td>{_e(v)}</td>"
            for v in row
        )
        body.append(f"<tr{css}>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _rows_html(summary: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]) -> str:
    """Answers only: the questions that went wrong (errors, wrong refusals, weakest F1)."""
    if summary.get("kind") != "answers" or not rows:
        return ""
    worst = sorted(rows, key=_badness, reverse=True)[:_MAX_TABLE_ROWS]
    header = ["qid", "question", "refused", "answerable", "F1", "cited", "error"]
    table = [
        [
            r["qid"],
            r["question"][:200],
            r.get("refused"),
            r.get("answerable"),
            r.get("answer_f1"),
            ", ".join(r.get("cited_doc_ids") or []),
            r.get("error", ""),
        ]
        for r in worst
    ]
    return "<h2>Questions, worst first</h2>" + _table_html(header, table)


def _badness(row: Mapping[str, Any]) -> float:
    if "error" in row:
        return 3.0
    if row.get("refusal_correct") is False:
        return 2.0
    return 1.0 - float(row.get("answer_f1") or 0.0)


def _figure_html(caption: str, fig: Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f"<h2>{_e(caption)}</h2><img alt='{_e(caption)}' src='data:image/png;base64,{data}'>"


# --- plots ---------------------------------------------------------------------------------


def figures(
    summary: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]
) -> list[tuple[str, Figure]]:
    """(caption, figure) for each plot of the report."""
    if summary.get("kind") == "retrieval":
        k = summary.get("k", 10)
        return [
            ("Metrics per mode", _modes_plot(summary)),
            (f"Per-query nDCG@{k}", _distribution_plot(rows, f"ndcg@{k}", by="mode")),
            ("Query latency", _latency_plot(rows, by="mode")),
        ]
    return [
        ("Answer metrics", _answer_plot(summary)),
        ("Per-question answer F1", _distribution_plot(rows, "answer_f1", by=None)),
        ("Request latency", _latency_plot(rows, by=None)),
    ]


def _modes_plot(summary: Mapping[str, Any]) -> Figure:
    modes = summary.get("modes") or {}
    names = list(dict.fromkeys(n for m in modes.values() for n in m))
    fig, ax = plt.subplots(figsize=(8, 3.6))
    width = 0.8 / max(len(modes), 1)
    for i, (mode, values) in enumerate(modes.items()):
        xs = [j + i * width for j in range(len(names))]
        ax.bar(xs, [values.get(n) or 0.0 for n in names], width=width, label=mode)
    ax.set_xticks([j + width * (len(modes) - 1) / 2 for j in range(len(names))], names)
    ax.set_ylim(0, 1.05)
    ax.legend(loc="lower right")
    return fig


def _answer_plot(summary: Mapping[str, Any]) -> Figure:
    values = {
        k: v
        for k, v in (summary.get("metrics") or {}).items()
        if isinstance(v, int | float) and not k.startswith("latency")
    }
    fig, ax = plt.subplots(figsize=(8, 3.6))
    ax.barh(list(values), [v / 5 if k.startswith("judge") else v for k, v in values.items()])
    ax.set_xlim(0, 1)
    ax.set_xlabel("score (judge scores divided by 5)")
    return fig


def _groups(
    rows: Sequence[Mapping[str, Any]], metric: str, by: str | None
) -> dict[str, list[float]]:
    groups: dict[str, list[float]] = {}
    for row in rows:
        value = row.get(metric)
        if isinstance(value, int | float):
            groups.setdefault(str(row.get(by)) if by else "all", []).append(float(value))
    return groups


def _distribution_plot(rows: Sequence[Mapping[str, Any]], metric: str, *, by: str | None) -> Figure:
    fig, ax = plt.subplots(figsize=(8, 3.2))
    for name, values in _groups(rows, metric, by).items():
        ax.hist(values, bins=[i / 10 for i in range(11)], histtype="step", linewidth=2, label=name)
    ax.set_xlabel(metric)
    ax.set_ylabel("queries")
    if by and ax.get_legend_handles_labels()[0]:
        ax.legend()
    return fig


def _latency_plot(rows: Sequence[Mapping[str, Any]], *, by: str | None) -> Figure:
    fig, ax = plt.subplots(figsize=(8, 3.2))
    groups = _groups(rows, "latency_ms", by)
    values = [v for vs in groups.values() for v in vs if v > 0]
    low, high = (min(values), max(values)) if values else (1.0, 10.0)
    # log-spaced bins: modes and warm-up outliers span orders of magnitude
    bins = [float(b) for b in np.geomspace(low, max(high, low * 1.01), 40)]
    for name, latencies in groups.items():
        ax.hist(
            [v for v in latencies if v > 0], bins=bins, histtype="step", linewidth=2, label=name
        )
    ax.set_xscale("log")
    ax.set_xlabel("latency (ms, log scale)")
    ax.set_ylabel("requests")
    if by and ax.get_legend_handles_labels()[0]:
        ax.legend()
    return fig
