"""`ondata eval retrieval` end to end on the smoke set, the gate both ways, and SciFact."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from core.settings import Settings
from evaluation import cli
from evaluation.datasets import load_beir
from evaluation.runs import evaluate_retrieval
from tests.integration.eval_support import eval_cli, run_eval

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "data" / "eval" / "smoke"
SHARED_DATASETS = REPO.parent / "shared" / "datasets"
METRICS = {"ndcg@10", "recall@10", "recall@100", "mrr@10", "map@100"}


def _eval(tmp_path: Path, *args: str) -> tuple[int, dict[str, Any]]:
    return run_eval("retrieval", {"ONDATA_DATA_DIR": str(tmp_path / "data")}, *args)


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("eval")
    code, line = _eval(tmp, "--dataset", str(SMOKE), "--out", str(tmp / "run1"))
    assert code == 0, line
    return tmp, line


def test_eval_retrieval_scores_every_mode_on_the_smoke_set(
    first_run: tuple[Path, dict[str, Any]],
) -> None:
    tmp, line = first_run
    assert (line["dataset"], line["split"]) == ("smoke", "test")
    assert (line["docs"], line["queries"]) == (8, 8)
    assert set(line["modes"]) == {"vector", "keyword", "hybrid"}
    for mode, values in line["modes"].items():
        assert set(values) == METRICS, mode
        assert values["ndcg@10"] >= 0.8, (mode, values)
    summary = json.loads((tmp / "run1" / "summary.json").read_text())
    assert summary["modes"] == line["modes"]
    assert summary["index"]["reused"] is False
    assert "data:image/png;base64," in (tmp / "run1" / "report.html").read_text()
    assert "| ndcg@10 |" in (tmp / "run1" / "summary.md").read_text()
    rows = (tmp / "run1" / "per_query.jsonl").read_text().splitlines()
    assert len(rows) == 3 * 8  # q9 has no qrels in the split: skipped


def test_eval_retrieval_reuses_the_index_and_passes_its_own_baseline(
    first_run: tuple[Path, dict[str, Any]],
) -> None:
    tmp, first = first_run
    baseline = tmp / "run1" / "summary.json"
    code, line = _eval(
        tmp, "--dataset", str(SMOKE), "--out", str(tmp / "run2"), "--baseline", str(baseline)
    )
    assert code == 0
    assert line["gate"]["passed"] is True
    assert line["modes"] == first["modes"]
    assert json.loads((tmp / "run2" / "summary.json").read_text())["index"]["reused"] is True


def test_eval_retrieval_gate_fails_on_a_regression(first_run: tuple[Path, dict[str, Any]]) -> None:
    tmp, first = first_run
    better = json.loads((tmp / "run1" / "summary.json").read_text())
    better["modes"]["hybrid"]["ndcg@10"] = first["modes"]["hybrid"]["ndcg@10"] + 0.05
    (tmp / "better.json").write_text(json.dumps(better))
    code, line = _eval(
        tmp,
        "--dataset",
        str(SMOKE),
        "--modes",
        "hybrid,vector,keyword",
        "--out",
        str(tmp / "run3"),
        "--baseline",
        str(tmp / "better.json"),
        "--tolerance",
        "0.02",
    )
    assert code == cli.EXIT_REGRESSION
    assert line["gate"]["passed"] is False
    assert [r["metric"] for r in line["gate"]["regressions"]] == ["modes.hybrid.ndcg@10"]
    assert "Gate FAILED" in (tmp / "run3" / "report.html").read_text()


def test_eval_retrieval_rejects_unknown_modes(tmp_path: Path) -> None:
    result = eval_cli(["eval", "retrieval", "--dataset", str(SMOKE), "--modes", "bogus"])
    assert result.exit_code == cli.EXIT_USAGE
    assert "--modes" in result.output


def test_eval_retrieval_reports_a_missing_split(tmp_path: Path) -> None:
    env = {"ONDATA_DATA_DIR": str(tmp_path)}
    result = eval_cli(["eval", "retrieval", "--dataset", str(SMOKE), "--split", "dev"], env=env)
    assert result.exit_code == cli.EXIT_FAILED
    assert "splits available: test" in result.output


@pytest.fixture(scope="module")
def scifact_test(shared_datasets_module: Path) -> dict[str, Any]:
    """SciFact test with default settings; the index is cached in the repo's .ondata/ (ignored
    by git), so a rerun costs only the queries."""
    return _shared_run(shared_datasets_module / "scifact")


@pytest.fixture(scope="module")
def cisi_test(shared_datasets_module: Path) -> dict[str, Any]:
    """CISI's one split, with default settings, cached like scifact_test."""
    return _shared_run(shared_datasets_module / "cisi")


def _shared_run(path: Path) -> dict[str, Any]:
    dataset = load_beir(path, split="test")
    settings = Settings(data_dir=REPO / ".ondata")
    run = evaluate_retrieval(dataset, settings=settings, baselines=True)
    return asyncio.run(run).summary


@pytest.fixture(scope="module")
def shared_datasets_module() -> Path:
    if not SHARED_DATASETS.is_dir():
        pytest.skip("../shared/datasets is absent")
    return SHARED_DATASETS


@pytest.mark.dataset
@pytest.mark.slow
def test_scifact_single_methods_beat_published_baselines(scifact_test: dict[str, Any]) -> None:
    """Each single method at or above its published BEIR figure (BM25 0.665, MiniLM 0.645),
    and hybrid no worse than measured when its defaults were chosen (0.730) minus noise."""
    modes = scifact_test["modes"]
    assert scifact_test["queries"] == 300
    assert modes["keyword"]["ndcg@10"] >= 0.665, modes
    assert modes["vector"]["ndcg@10"] >= 0.645, modes
    assert modes["hybrid"]["ndcg@10"] >= 0.725, modes


def _ndcg(summary: dict[str, Any]) -> tuple[dict[str, float], dict[str, float]]:
    modes = {m: v["ndcg@10"] for m, v in summary["modes"].items()}
    return modes, {b: v["ndcg@10"] for b, v in summary["baselines"].items()}


def _assert_dense_and_fused_hold(summary: dict[str, Any]) -> None:
    """Issue 11: vector at least the dense baseline minus 0.005, hybrid the best plus 0.005."""
    ndcg, base = _ndcg(summary)
    assert ndcg["vector"] >= base["dense"] - 0.005, (ndcg, base)
    assert ndcg["hybrid"] >= max(base.values()) + 0.005, (ndcg, base)


@pytest.mark.dataset
@pytest.mark.slow
def test_scifact_vector_and_hybrid_hold_against_the_public_baselines(
    scifact_test: dict[str, Any],
) -> None:
    _assert_dense_and_fused_hold(scifact_test)
    assert scifact_test["modes"]["hybrid"]["ndcg@10"] >= 0.730


@pytest.mark.dataset
@pytest.mark.slow
def test_scifact_keyword_within_0005_of_bm25(scifact_test: dict[str, Any]) -> None:
    ndcg, base = _ndcg(scifact_test)
    assert ndcg["keyword"] >= base["bm25"] - 0.005, (ndcg, base)


@pytest.mark.dataset
@pytest.mark.slow
def test_cisi_every_mode_holds_against_the_public_baselines(cisi_test: dict[str, Any]) -> None:
    assert cisi_test["queries"] == 76
    _assert_dense_and_fused_hold(cisi_test)
    ndcg, base = _ndcg(cisi_test)
    assert ndcg["keyword"] >= base["bm25"] - 0.005, (ndcg, base)


@pytest.mark.dataset
@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="issue 4 target not reached yet: hybrid 0.737 with DBSF")
def test_scifact_hybrid_reaches_the_issue_target(scifact_test: dict[str, Any]) -> None:
    assert scifact_test["modes"]["hybrid"]["ndcg@10"] >= 0.74


def test_eval_retrieval_runs_the_public_baselines_beside_the_modes(
    first_run: tuple[Path, dict[str, Any]],
) -> None:
    tmp, first = first_run
    code, line = _eval(tmp, "--dataset", str(SMOKE), "--out", str(tmp / "b"), "--baselines")
    assert code == 0, line
    assert line["modes"] == first["modes"]
    assert set(line["baselines"]) == {"bm25", "dense", "rrf"}
    for name, values in line["baselines"].items():
        assert set(values) == METRICS, name
        assert values["ndcg@10"] >= 0.8, (name, values)
    assert json.loads((tmp / "b" / "summary.json").read_text())["baselines"] == line["baselines"]
    assert "rrf (baseline)" in (tmp / "b" / "summary.md").read_text()
    assert "bm25 (baseline)" in (tmp / "b" / "report.html").read_text()
