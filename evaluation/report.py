"""Run reports: summary.json, per_query.jsonl, a self-contained report.html and summary.md.

The HTML report needs nothing beside it: styles are inline and the matplotlib plots (metrics
per mode, per-query score distribution, latency histogram) are embedded as base64 PNGs.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")  # no display; must precede pyplot
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from evaluation.gate import LOWER_IS_BETTER, GateResult

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
    # the playground marks these (it reads summary.json, never this package)
    full["lower_is_better"] = [n for n in _metric_names(summary) if lower_is_better(n)]
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


def _metric_names(summary: Mapping[str, Any]) -> list[str]:
    return [str(row[0]) for row in metric_table(summary)[1]]


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


LOWER_LABEL = " (lower is better)"


def format_value(name: str, value: Any) -> str:
    """The one number format of reports and the CLI: times (ms, seconds) with 1 decimal,
    rates and scores with 3, counts as integers, "-" for nothing."""
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int) or not math.isfinite(value):
        return str(value)
    # halves round up, as the playground's toFixed does (Python's format would round 0.0625
    # to 0.062 and the page to 0.063)
    places = Decimal("0.1") if _is_time(name) else Decimal("0.001")
    return str(Decimal(repr(value)).quantize(places, rounding=ROUND_HALF_UP))


def _is_time(name: str) -> bool:
    return name == "seconds" or name.endswith("_ms") or "(ms)" in name or "latency" in name


def lower_is_better(name: str) -> bool:
    return name.rsplit(".", 1)[-1] in LOWER_IS_BETTER


def metric_label(name: str) -> str:
    """A metric's name as tables show it: marked when a lower value is the better one."""
    return name + LOWER_LABEL if lower_is_better(name) else name


def _row_cells(row: Sequence[Any]) -> list[str]:
    """A table row as text: the metric's label, then each value formatted for that metric."""
    name = str(row[0])
    return [metric_label(name), *(format_value(name, v) for v in row[1:])]


def text_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """The metric table as aligned plain text (the CLI's): names left, numbers right."""
    cells = [list(header), *(_row_cells(r) for r in rows)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(header))]
    return "\n".join(
        "  ".join(
            c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(line)
        ).rstrip()
        for line in cells
    )


def render_markdown(summary: Mapping[str, Any], *, gate: GateResult | None = None) -> str:
    """A Markdown summary: what was run, the metric table, the gate's verdict."""
    header, rows = metric_table(summary)
    lines = [f"# {summary.get('kind', 'evaluation')} evaluation — {summary.get('dataset')}", ""]
    lines += [f"- {k}: {format_value(k, summary.get(k))}" for k in _facts(summary)]
    lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_row_cells(row)) + " |" for row in rows]
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
        current, baseline = format_value(c.metric, c.current), format_value(c.metric, c.baseline)
        lines.append(f"- {metric_label(c.metric)}: {current} (baseline {baseline})")
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
    return html.escape(str(value))


def _facts_html(summary: Mapping[str, Any]) -> str:
    items = "".join(
        f"<li>{_e(k)}: {_e(format_value(k, summary.get(k)))}</li>" for k in _facts(summary)
    )
    return f"<ul>{items}</ul>"


def _gate_html(gate: GateResult) -> str:
    css = "pass" if gate.passed else "fail"
    head = (
        f"<h2 class='{css}'>Gate {'passed' if gate.passed else 'FAILED'}</h2>"
        f"<p>baseline <code>{_e(gate.baseline)}</code>, tolerance "
        f"{_e(format_value('tolerance', gate.tolerance))}</p>"
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
        name = str(row[0]) if row else ""
        cells = "".join(
            f"<td class='num'>{_e(format_value(name, v))}</td>"
            if isinstance(v, int | float) or v is None
            else f"<td>{_e(metric_label(v) if j == 0 else v)}</td>"
            for j, v in enumerate(row)
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
        *_answer_plots(summary),
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


def _answer_plots(summary: Mapping[str, Any]) -> list[tuple[str, Figure]]:
    """Rates where higher is better, rates where lower is better, and (only when a judge
    scored the run) the judge's 1-5 scores: each on its own axis."""
    values = {
        k: float(v)
        for k, v in (summary.get("metrics") or {}).items()
        if isinstance(v, int | float) and not _is_time(k)
    }
    judge = {k: v for k, v in values.items() if k.startswith("judge")}
    lower = {k: v for k, v in values.items() if lower_is_better(k)}
    higher = {k: v for k, v in values.items() if k not in judge and k not in lower}
    plots = [
        ("Answer metrics (higher is better)", _hbar(higher, limit=1, label="rate")),
        ("Answer rates where lower is better", _hbar(lower, limit=1, label="rate")),
        ("Judge scores (higher is better)", _hbar(judge, limit=5, label="score (1-5)")),
    ]
    return [(caption, fig) for caption, fig in plots if fig is not None]


def _hbar(values: Mapping[str, float], *, limit: float, label: str) -> Figure | None:
    if not values:
        return None
    fig, ax = plt.subplots(figsize=(8, 0.5 + 0.45 * len(values)))
    bars = ax.barh(list(values), list(values.values()))
    ax.bar_label(bars, labels=[format_value(k, v) for k, v in values.items()], padding=3)
    ax.set_xlim(0, limit * 1.1)
    ax.invert_yaxis()  # the table's order, top to bottom
    ax.set_xlabel(label)
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
