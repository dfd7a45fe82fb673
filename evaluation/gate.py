"""The regression gate: compare a run's summary with a baseline summary.json, within a tolerance.

Every quality metric of the baseline (``modes.<mode>.<metric>`` for retrieval,
``metrics.<metric>`` for answers) is compared with the same metric of the run. Higher is
better except for rates of bad outcomes (hallucinated citations, errors). Latency is reported
but never gated: it measures the machine as much as the code. A metric the baseline has and
the run lacks is a regression (a mode was dropped, a metric stopped being computed).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import InvalidRequestError

LOWER_IS_BETTER = ("hallucinated_citation_rate", "error_rate", "false_refusal_rate")
_NOT_GATED = ("latency",)


@dataclass(frozen=True)
class Comparison:
    """One metric, baseline against run."""

    metric: str
    baseline: float
    current: float | None
    regressed: bool

    @property
    def delta(self) -> float | None:
        return None if self.current is None else self.current - self.baseline


@dataclass(frozen=True)
class GateResult:
    """The verdict: which metrics moved beyond the tolerance in the wrong direction."""

    baseline: str
    tolerance: float
    comparisons: tuple[Comparison, ...]

    @property
    def regressions(self) -> tuple[Comparison, ...]:
        return tuple(c for c in self.comparisons if c.regressed)

    @property
    def passed(self) -> bool:
        return not self.regressions

    def as_dict(self) -> dict[str, Any]:
        return {
            "baseline": self.baseline,
            "tolerance": self.tolerance,
            "passed": self.passed,
            "regressions": [
                {"metric": c.metric, "baseline": c.baseline, "current": c.current}
                for c in self.regressions
            ],
        }


def load_summary(path: Path) -> dict[str, Any]:
    """A summary.json written by an earlier run (or a folder holding one)."""
    file = path / "summary.json" if path.is_dir() else path
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidRequestError(f"cannot read baseline {file}: {exc}", param="baseline") from exc
    if not isinstance(data, dict) or not flatten_metrics(data):
        raise InvalidRequestError(f"{file} is not an ondata evaluation summary", param="baseline")
    return data


def flatten_metrics(summary: Mapping[str, Any]) -> dict[str, float]:
    """Gated metrics as flat names: ``modes.hybrid.ndcg@10``, ``metrics.answer_f1``."""
    flat: dict[str, float] = {}
    for mode, values in (summary.get("modes") or {}).items():
        for name, value in values.items():
            _put(flat, f"modes.{mode}.{name}", value)
    for name, value in (summary.get("metrics") or {}).items():
        _put(flat, f"metrics.{name}", value)
    return flat


def _put(flat: dict[str, float], name: str, value: Any) -> None:
    leaf = name.rsplit(".", 1)[-1]
    if isinstance(value, int | float) and not leaf.startswith(_NOT_GATED):
        flat[name] = float(value)


def compare(
    current: Mapping[str, Any], baseline: Mapping[str, Any], *, tolerance: float, source: str = ""
) -> GateResult:
    """Gate `current` against `baseline`; InvalidRequestError if they measure different things."""
    _check_comparable(current, baseline)
    now = flatten_metrics(current)
    comparisons = tuple(
        _compare_one(name, base, now.get(name), tolerance)
        for name, base in sorted(flatten_metrics(baseline).items())
    )
    return GateResult(baseline=source, tolerance=tolerance, comparisons=comparisons)


def _compare_one(name: str, baseline: float, current: float | None, tolerance: float) -> Comparison:
    if current is None:
        return Comparison(name, baseline, None, True)
    if name.rsplit(".", 1)[-1] in LOWER_IS_BETTER:
        regressed = current > baseline + tolerance
    else:
        regressed = current < baseline - tolerance
    return Comparison(name, baseline, current, regressed)


def _check_comparable(current: Mapping[str, Any], baseline: Mapping[str, Any]) -> None:
    for key in ("kind", "dataset", "split", "k"):
        if key in baseline and baseline.get(key) != current.get(key):
            raise InvalidRequestError(
                f"the baseline has {key}={baseline.get(key)!r}, this run "
                f"{key}={current.get(key)!r}: compare runs of the same evaluation",
                param="baseline",
            )
