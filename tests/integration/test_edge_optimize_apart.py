"""Optimising an Edge shard apart: a child process works on a copy while queries go on here.

Qdrant Edge's binding holds the GIL for the whole of its `optimize`, so in place every query of
the process waits for it (minutes at 1M chunks, bench/index_scale.py). These tests run the real
child process on a shard large enough for the engine to build its HNSW index.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from core.settings import Settings
from retrieval.index import IndexedChunk, IndexQuery, QdrantEdgeIndex, open_index
from retrieval.index.edge import spare_cores
from tests.contract.test_vector_index import BM25, make_chunk

DIM = 384
POINTS = 8_000  # 12 MB of vectors: above Edge's indexing threshold, so optimise builds HNSW


def cores() -> set[int]:
    return os.sched_getaffinity(0)


def _vectors() -> npt.NDArray[np.float32]:
    return np.random.default_rng(3).normal(size=(POINTS, DIM)).astype(np.float32)


def _filled(path: Path, vectors: npt.NDArray[np.float32], **options: int) -> QdrantEdgeIndex:
    index = QdrantEdgeIndex.open(path, dimension=DIM, **options)  # type: ignore[arg-type]
    sparse = BM25.encode_document("text")
    for start in range(0, len(vectors), 2_000):
        chunks = [
            make_chunk(f"p{i}", f"d{i // 5}", f"text {i}") for i in range(start, start + 2_000)
        ]
        index.upsert([IndexedChunk(c, vectors[start + j], sparse) for j, c in enumerate(chunks)])
    return index


def _nearest(index: QdrantEdgeIndex, vector: npt.NDArray[np.float32]) -> str:
    (hit,) = index.query(IndexQuery(mode="vector", limit=1, dense=vector))
    return hit.chunk.chunk_id


def _siblings(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir() if p.name != path.name)


def test_optimize_apart_builds_the_index_while_queries_go_on(tmp_path: Path) -> None:
    vectors = _vectors()
    path = tmp_path / "big"
    index = _filled(path, vectors, optimize_apart_from=0)
    indexed_before = index._live().info().indexed_vectors_count
    outcome: list[bool] = []
    worker = threading.Thread(target=lambda: outcome.append(index.optimize()))
    worker.start()
    answered_meanwhile = 0
    while worker.is_alive():
        assert _nearest(index, vectors[17]) == "p17"  # served from the shard as it was
        answered_meanwhile += 1 if worker.is_alive() else 0
        time.sleep(0.005)  # leave the idle-class child some CPU
    worker.join()

    assert outcome == [True]
    assert answered_meanwhile > 0  # in place, the engine's optimise would have held them all
    # the child ran on the cores the query slots leave (all of them on one core)
    assert index.last_optimize["child_cpus"] == len(spare_cores(index.query_slots) or cores())
    info = index._live().info()
    assert info.points_count == POINTS
    assert info.indexed_vectors_count == indexed_before + POINTS  # the swapped-in copy's HNSW
    assert _nearest(index, vectors[4_321]) == "p4321"
    assert _siblings(path) == []  # neither the copy nor the replaced shard is left behind

    index.upsert(
        [IndexedChunk(make_chunk("late", "late", "late"), vectors[0], BM25.encode_document("late"))]
    )
    assert index.delete(doc_id="d0") == 5
    assert index.count() == POINTS - 5 + 1
    index.close()
    reopened = QdrantEdgeIndex.open(path, dimension=DIM)
    assert reopened.count() == POINTS - 4
    assert reopened._live().info().indexed_vectors_count >= POINTS
    reopened.close()


def test_optimize_below_the_threshold_stays_in_place(tmp_path: Path) -> None:
    index = _filled(tmp_path / "big", _vectors()[:2_000], optimize_apart_from=POINTS)
    index.optimize()
    assert _siblings(tmp_path / "big") == []
    assert index.count() == 2_000
    index.close()


def test_optimize_falls_back_in_place_when_no_copy_can_be_made(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    vectors = _vectors()
    path = tmp_path / "big"
    index = _filled(path, vectors, optimize_apart_from=0)
    (tmp_path / ".big.optimizing").write_text("in the way")  # copytree cannot create it
    with caplog.at_level(logging.WARNING, logger="retrieval.index.edge"):
        assert index.optimize() is True
    assert "optimising in place" in caplog.text
    assert index.count() == POINTS
    assert _nearest(index, vectors[4_321]) == "p4321"
    index.close()


def test_open_finishes_or_undoes_a_swap_a_crash_interrupted(tmp_path: Path) -> None:
    vectors = _vectors()[:100]
    path = tmp_path / "idx"
    _filled(path, np.tile(vectors, (20, 1))).close()  # 2,000 points

    path.rename(tmp_path / ".idx.replaced")  # crashed after moving the old shard aside
    index = QdrantEdgeIndex.open(path, dimension=DIM)
    assert index.count() == 2_000
    index.close()

    (tmp_path / ".idx.optimizing").mkdir()  # crashed while the child worked on its copy
    (tmp_path / ".idx.optimizing" / "segment").write_text("partial")
    index = QdrantEdgeIndex.open(path, dimension=DIM)
    assert index.count() == 2_000
    assert _siblings(path) == []
    index.close()


def test_open_index_takes_the_threshold_from_settings(settings: Settings) -> None:
    index = open_index(settings, "handbook", dimension=4)
    assert isinstance(index, QdrantEdgeIndex)
    assert index.optimize_apart_from == settings.index.optimize_apart_from == 20_000
    index.close()
