"""Fixtures shared by the retrieval unit tests: the bundled embedder and the handbook index."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from retrieval.embedders import Embedder
from retrieval.index import QdrantEdgeIndex
from tests.unit.retrieval_corpus import build_index, bundled_embedder, corpus_chunks


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return bundled_embedder()


@pytest.fixture(scope="module")
def handbook_index(
    tmp_path_factory: pytest.TempPathFactory, embedder: Embedder
) -> Iterator[QdrantEdgeIndex]:
    """The small handbook corpus (tests/unit/retrieval_corpus.py) in a real Edge index."""
    index = build_index(tmp_path_factory.mktemp("handbook") / "handbook", embedder, corpus_chunks())
    yield index
    index.close()
