"""The public baselines' pure parts: reciprocal rank fusion."""

from __future__ import annotations

import pytest

from evaluation.baselines import rrf


def test_rrf_sums_reciprocal_ranks_of_every_list() -> None:
    fused = rrf([["a", "b", "c"], ["c", "a"]], k=60)
    # a: 1/61 + 1/62, c: 1/63 + 1/61, b: 1/62
    assert fused == ["a", "c", "b"]


def test_rrf_breaks_ties_by_document_id() -> None:
    assert rrf([["b"], ["a"]], k=60) == ["a", "b"]


@pytest.mark.parametrize("k", [1, 60])
def test_rrf_of_one_list_keeps_its_order(k: int) -> None:
    assert rrf([["x", "y", "z"]], k=k) == ["x", "y", "z"]
