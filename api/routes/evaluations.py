"""GET /v1/evaluations[/{id}]: past `ondata eval` runs, read from <data_dir>/evaluations/<id>/.

The evaluation package writes each run's summary.json there; the API only reads those files
(it never imports evaluation). A folder without a readable summary.json is not listed. A run
is shown to keys scoped to its index (`index.name` of the summary); a run on a corpus built
from a dataset names no index, and only keys reaching every index see it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from fastapi import APIRouter

from api.deps import PrincipalDep, SettingsDep
from api.openapi import KEYED, errors
from api.schemas import EvaluationList, EvaluationRunOut
from core.access import Scope
from core.errors import EvaluationNotFoundError

router = APIRouter(tags=["evaluations"], responses=KEYED)

RUNS_DIR = "evaluations"
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$")


# Plain `def` routes: they read files, so FastAPI runs them in its thread pool.


@router.get("/v1/evaluations")
def list_evaluations(settings: SettingsDep, principal: PrincipalDep) -> EvaluationList:
    """Every readable run in the caller's scope, newest first."""
    root = settings.data_dir / RUNS_DIR
    folders = [f for f in root.iterdir() if f.is_dir()] if root.is_dir() else []
    found = [
        run_out(f.name, s)
        for f in folders
        if (s := _summary(f)) is not None and _in_scope(s, principal.scope)
    ]
    found.sort(key=lambda r: (r.created_at, r.id), reverse=True)
    return EvaluationList(data=found)


@router.get("/v1/evaluations/{run_id}", responses=errors(404))
def get_evaluation(run_id: str, settings: SettingsDep, principal: PrincipalDep) -> dict[str, Any]:
    """The run's full summary.json (404 outside the caller's scope, as for no run)."""
    summary = _summary(settings.data_dir / RUNS_DIR / run_id) if _RUN_ID.match(run_id) else None
    if summary is None or not _in_scope(summary, principal.scope):
        raise EvaluationNotFoundError(f"evaluation {run_id!r} does not exist", param="run_id")
    return summary


def _in_scope(summary: dict[str, Any], scope: Scope) -> bool:
    index = summary.get("index")
    name = index.get("name") if isinstance(index, dict) else None
    return scope.can_read_index(name if isinstance(name, str) and name else None)


def _summary(folder: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and "kind" in data else None


def run_out(folder_name: str, summary: dict[str, Any]) -> EvaluationRunOut:
    """The list entry of a run (pure)."""
    gate = summary.get("gate")
    return EvaluationRunOut(
        id=folder_name,
        kind=str(summary["kind"]),
        dataset=str(summary.get("dataset", "")),
        created_at=str(summary.get("created_at", "")),
        split=summary.get("split"),
        queries=summary.get("queries"),
        questions=summary.get("questions"),
        seconds=summary.get("seconds"),
        gate_passed=gate.get("passed") if isinstance(gate, dict) else None,
    )
