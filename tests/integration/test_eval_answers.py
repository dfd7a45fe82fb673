"""`ondata eval answers` end to end on the smoke set: in-process, against a running server with
--url, with the LLM judge on the loopback OpenAI-compatible fake, and the gate both ways."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from api.app import create_app
from core.settings import Settings
from evaluation import cli
from evaluation.cache import documents
from evaluation.datasets import load_qa
from ingest.service import open_pipeline
from tests.fakes.openai_server import FakeOpenAIServer
from tests.integration.api_support import serve_in_thread
from tests.integration.eval_support import eval_cli, run_eval

SMOKE_QA = Path(__file__).resolve().parents[2] / "data" / "eval" / "smoke" / "qa.jsonl"


def _eval(env: dict[str, str], *args: str) -> tuple[int, dict[str, Any]]:
    return run_eval("answers", env, *args)


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("answers")
    env = {"ONDATA_DATA_DIR": str(tmp / "data")}
    code, line = _eval(env, "--dataset", str(SMOKE_QA), "--out", str(tmp / "run1"))
    assert code == 0, line
    return tmp, line


def test_eval_answers_in_process_scores_citations_and_refusals(
    first_run: tuple[Path, dict[str, Any]],
) -> None:
    tmp, line = first_run
    metrics = line["metrics"]
    assert line["questions"] == 6
    assert line["counts"]["errors"] == 0
    assert line["counts"]["unanswerable"] == 1
    assert metrics["refusal_accuracy"] == 1.0, metrics  # Jupiter refused, the rest answered
    assert metrics["citation_precision"] >= 0.8, metrics
    assert metrics["citation_recall"] >= 0.8, metrics
    assert metrics["answer_f1"] > 0.1, metrics
    assert metrics["hallucinated_citation_rate"] == 0.0
    assert metrics["latency_p50_ms"] > 0
    assert "judge_groundedness" not in metrics  # no judge configured
    rows = [json.loads(r) for r in (tmp / "run1" / "per_query.jsonl").read_text().splitlines()]
    refused = {r["qid"] for r in rows if r["refused"]}
    assert refused == {"u1"}
    assert "Questions, worst first" in (tmp / "run1" / "report.html").read_text()


def test_eval_answers_gate_passes_on_itself_and_fails_on_a_better_baseline(
    first_run: tuple[Path, dict[str, Any]],
) -> None:
    tmp, first = first_run
    env = {"ONDATA_DATA_DIR": str(tmp / "data")}
    baseline = tmp / "run1" / "summary.json"
    code, line = _eval(
        env, "--dataset", str(SMOKE_QA), "--baseline", str(baseline), "--out", str(tmp / "run2")
    )
    assert (code, line["gate"]["passed"]) == (0, True)

    better = json.loads(baseline.read_text())
    better["metrics"]["answer_f1"] = first["metrics"]["answer_f1"] + 0.2
    (tmp / "better.json").write_text(json.dumps(better))
    code, line = _eval(
        env,
        "--dataset",
        str(SMOKE_QA),
        "--baseline",
        str(tmp / "better.json"),
        "--out",
        str(tmp / "run3"),
    )
    assert code == cli.EXIT_REGRESSION
    assert [r["metric"] for r in line["gate"]["regressions"]] == ["metrics.answer_f1"]


def test_eval_answers_against_a_running_server_with_url(settings: Settings) -> None:
    dataset = load_qa(SMOKE_QA)
    with open_pipeline(settings, "smoke") as pipeline:
        pipeline.ingest_documents(documents(dataset.corpus))
    with serve_in_thread(create_app(settings)) as url:
        env = {"ONDATA_DATA_DIR": str(settings.data_dir / "client")}
        code, line = _eval(
            env, "--dataset", str(SMOKE_QA), "--url", url, "--index", "smoke", "--limit", "3"
        )
    assert code == 0, line
    assert line["questions"] == 3
    assert line["counts"]["errors"] == 0
    assert line["metrics"]["citation_precision"] >= 0.6


def test_eval_answers_stops_on_an_unknown_index(settings: Settings) -> None:
    with serve_in_thread(create_app(settings)) as url:
        result = eval_cli(
            ["eval", "answers", "--dataset", str(SMOKE_QA), "--url", url, "--index", "nope"],
            env={"ONDATA_DATA_DIR": str(settings.data_dir)},
        )
    assert result.exit_code == cli.EXIT_FAILED
    assert "nope" in result.output


def test_eval_answers_with_an_llm_judge(
    first_run: tuple[Path, dict[str, Any]], openai_fake: FakeOpenAIServer
) -> None:
    tmp, _ = first_run
    openai_fake.reply('{"groundedness": 4, "relevance": 5}', times=10)
    env = {
        "ONDATA_DATA_DIR": str(tmp / "data"),
        "ONDATA_EVALUATION__JUDGE_BASE_URL": openai_fake.base_url,
        "ONDATA_EVALUATION__JUDGE_MODEL": "judge-model",
    }
    code, line = _eval(env, "--dataset", str(SMOKE_QA), "--limit", "2", "--out", str(tmp / "j"))
    assert code == 0, line
    assert line["metrics"]["judge_groundedness"] == 4.0
    assert line["metrics"]["judge_relevance"] == 5.0
    judged = openai_fake.requests_to("chat")
    assert len(judged) == 2
    assert "Passages:" in judged[0].body["messages"][1]["content"]
