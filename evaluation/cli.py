"""CLI: `ondata eval retrieval` and `ondata eval answers`, with reports and a regression gate.

Exit status: 0 done (gate passed or not asked), 1 the evaluation failed, 2 bad arguments,
3 the gate found a regression beyond the tolerance.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from core.cli import command_group
from core.errors import OndataError
from core.settings import Settings, load_settings
from evaluation.datasets import QAFormat, load_beir, load_qa
from evaluation.gate import GateResult, compare, load_summary

if TYPE_CHECKING:
    from evaluation.report import RunFiles
    from evaluation.runs import RunResult

# The runs pull in the embedder, Qdrant and matplotlib: imported when a command runs, so that
# `ondata --help` and the other commands stay quick.
# (evaluation.runs.KNOWN_MODES, written out for that reason)
KNOWN_MODES = ("vector", "keyword", "hybrid", "semantic", "vector_semantic_hybrid")

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_REGRESSION = 3

eval_app = command_group("Measure retrieval and answer quality.")

_OUT_HELP = (
    "Folder for summary.json, report.html, summary.md (default: <data_dir>/evaluations/<id>)."
)
_BASELINE_HELP = "A summary.json to gate against: exit 3 if a metric drops beyond --tolerance."
_TOLERANCE_HELP = "How far (absolute) a metric may move the wrong way before the gate fails."
_QA_HELP = "QA jsonl, a PubMedQA folder, or MTRAG-UN reference.jsonl."
_CORPUS_HELP = "Corpus of a QA jsonl (default: corpus.jsonl beside it)."
_INDEX_HELP = "Ask over this existing index instead of indexing the dataset's corpus."
_URL_HELP = "A running ondata server (default: the app in-process)."
_BASELINES_HELP = (
    "Also run the public baselines (bm25s BM25, MiniLM one vector per document, their RRF) "
    "on the same dataset; needs the eval extra."
)


Out = Annotated[Path | None, typer.Option("--out", help=_OUT_HELP)]
Baseline = Annotated[Path | None, typer.Option("--baseline", help=_BASELINE_HELP)]
Tolerance = Annotated[float, typer.Option("--tolerance", min=0.0, help=_TOLERANCE_HELP)]
AsJson = Annotated[bool, typer.Option("--json", help="Print one JSON object as the last line.")]


@eval_app.command("retrieval")
def retrieval(
    dataset: Annotated[
        Path, typer.Option("--dataset", help="A BEIR folder (corpus, queries, qrels).")
    ],
    split: Annotated[str, typer.Option("--split", help="Which qrels/<split>.tsv.")] = "test",
    modes: Annotated[
        str,
        typer.Option(
            "--modes",
            help="Comma-separated: vector, keyword, hybrid, semantic (keyword reranked), "
            "vector_semantic_hybrid (hybrid reranked; both need ONDATA_RERANK__BACKEND).",
        ),
    ] = "vector,keyword,hybrid",
    k: Annotated[
        int, typer.Option("--k", min=1, max=100, help="Cut-off of nDCG, Recall, MRR.")
    ] = 10,
    out: Out = None,
    baseline: Baseline = None,
    tolerance: Tolerance = 0.01,
    as_json: AsJson = False,
    baselines: Annotated[bool, typer.Option("--baselines", help=_BASELINES_HELP)] = False,
) -> None:
    """Index a BEIR dataset (cached) and score every query in each search mode."""
    from evaluation.runs import evaluate_retrieval

    chosen = _modes(modes)
    settings = load_settings()
    result = _run(
        lambda: evaluate_retrieval(
            load_beir(dataset, split=split),
            settings=settings,
            modes=chosen,
            k=k,
            baselines=baselines,
        )
    )
    _finish(result, settings, out=out, baseline=baseline, tolerance=tolerance, as_json=as_json)


@eval_app.command("answers")
def answers(
    dataset: Annotated[Path, typer.Option("--dataset", help=_QA_HELP)],
    fmt: Annotated[str, typer.Option("--format", help="auto | qa | pubmedqa | mtrag")] = "auto",
    corpus: Annotated[Path | None, typer.Option("--corpus", help=_CORPUS_HELP)] = None,
    split: Annotated[
        str | None, typer.Option("--split", help="PubMedQA: test | train_dev | all.")
    ] = None,
    index: Annotated[str | None, typer.Option("--index", help=_INDEX_HELP)] = None,
    url: Annotated[str | None, typer.Option("--url", help=_URL_HELP)] = None,
    api_key: Annotated[
        str | None, typer.Option("--api-key", envvar="ONDATA_EVAL_API_KEY", help="Key for --url.")
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="Only the first N questions.")
    ] = None,
    out: Out = None,
    baseline: Baseline = None,
    tolerance: Tolerance = 0.01,
    as_json: AsJson = False,
) -> None:
    """Ask every question through /v1/chat/completions and score the grounded answers."""
    from evaluation.runs import AnswerTarget, evaluate_answers

    if fmt not in ("auto", "qa", "pubmedqa", "mtrag"):
        _usage("--format must be auto, qa, pubmedqa or mtrag")
    settings = load_settings()
    target = AnswerTarget(url=url, index_name=index, api_key=api_key)
    qa_format: QAFormat = fmt  # type: ignore[assignment]
    result = _run(
        lambda: evaluate_answers(
            load_qa(dataset, fmt=qa_format, corpus=corpus, split=split),
            settings=settings,
            target=target,
            limit=limit,
        )
    )
    _finish(result, settings, out=out, baseline=baseline, tolerance=tolerance, as_json=as_json)


def _modes(text: str) -> tuple[str, ...]:
    chosen = tuple(dict.fromkeys(m.strip() for m in text.split(",") if m.strip()))
    unknown = [m for m in chosen if m not in KNOWN_MODES]
    if not chosen or unknown:
        _usage(f"--modes takes a comma-separated subset of {', '.join(KNOWN_MODES)}")
    return chosen


def _usage(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(EXIT_USAGE)


def _run(make: Any) -> RunResult:
    try:
        return asyncio.run(make())  # type: ignore[no-any-return]
    except OndataError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(EXIT_FAILED) from exc


def _finish(
    result: RunResult,
    settings: Settings,
    *,
    out: Path | None,
    baseline: Path | None,
    tolerance: float,
    as_json: bool,
) -> None:
    from evaluation.report import write_reports

    gate = _gate(result, baseline, tolerance)
    folder = out or settings.data_dir / "evaluations" / result.summary["id"]
    files = write_reports(result.summary, result.rows, folder, gate=gate)
    _print(result.summary, files, gate, as_json=as_json)
    if gate is not None and not gate.passed:
        raise typer.Exit(EXIT_REGRESSION)


def _gate(result: RunResult, baseline: Path | None, tolerance: float) -> GateResult | None:
    if baseline is None:
        return None
    try:
        return compare(
            result.summary, load_summary(baseline), tolerance=tolerance, source=str(baseline)
        )
    except OndataError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(EXIT_USAGE) from exc


def _print(
    summary: dict[str, Any], files: RunFiles, gate: GateResult | None, *, as_json: bool
) -> None:
    from evaluation.report import format_value, metric_label, metric_table, text_table

    if as_json:
        typer.echo(json.dumps(json_line(summary, files, gate)))
        return
    typer.echo(text_table(*metric_table(summary)))
    typer.echo(f"report: {files.html}")
    if gate is not None:
        typer.echo(f"gate: {'passed' if gate.passed else 'FAILED'} (tolerance {gate.tolerance})")
        for c in gate.regressions:
            now, then = format_value(c.metric, c.current), format_value(c.metric, c.baseline)
            typer.echo(f"  regression: {metric_label(c.metric)} {now} (baseline {then})")


def json_line(summary: dict[str, Any], files: RunFiles, gate: GateResult | None) -> dict[str, Any]:
    """The --json object: the issue's fields first, then where the reports are and the gate."""
    keys: tuple[str, ...]
    if summary["kind"] == "retrieval":
        keys = ("dataset", "split", "docs", "queries", "seconds", "modes", "latency_ms")
        keys += ("baselines",) if "baselines" in summary else ()
    else:
        keys = ("dataset", "questions", "seconds", "metrics", "counts")
    line = {key: summary.get(key) for key in keys}
    line |= {"id": summary["id"], "report": str(files.html), "summary": str(files.summary)}
    if gate is not None:
        line["gate"] = gate.as_dict()
    return line


def register(app: typer.Typer) -> None:
    app.add_typer(eval_app, name="eval")
