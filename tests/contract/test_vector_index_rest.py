"""The VectorIndex contract for the server adapter over HTTP: `QdrantServerIndex` with
`QdrantClient(url=...)` against the Qdrant stand-in (tests/fakes/qdrant_server.py), so the
REST transport and JSON models the scale-out deployment uses are exercised, not only local mode.
Also: two clients (as two processes would) see each other's writes.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest
from qdrant_client import QdrantClient

from core.errors import IndexBackendError
from retrieval.index import QdrantServerIndex, VectorIndex
from tests.contract import test_vector_index as contract
from tests.contract.test_vector_index import ALL, DIM, fresh, indexed  # noqa: F401 (fixture)
from tests.fakes.qdrant_server import QdrantStandIn

OpenIndex = Callable[..., VectorIndex]


@pytest.fixture(scope="module")
def qdrant() -> Iterator[QdrantStandIn]:
    with QdrantStandIn() as server:
        yield server


def _opener(qdrant: QdrantStandIn, collection: str, opened: list[VectorIndex]) -> OpenIndex:
    def _open(dimension: int = DIM, metadata_keys: tuple[str, ...] = ("lang",)) -> VectorIndex:
        client = QdrantClient(url=qdrant.url, check_compatibility=False)
        index = contract.server_index(client, collection, dimension, metadata_keys)
        opened.append(index)
        return index

    return _open


@pytest.fixture
def open_test_index(qdrant: QdrantStandIn) -> Iterator[OpenIndex]:
    opened: list[VectorIndex] = []
    yield _opener(qdrant, f"t_{uuid.uuid4().hex[:12]}", opened)
    for index in opened:
        index.close()


@pytest.fixture(scope="module")
def index(qdrant: QdrantStandIn) -> Iterator[VectorIndex]:
    opened: list[VectorIndex] = []
    idx = _opener(qdrant, "shared", opened)()
    idx.upsert([indexed(chunk) for chunk in ALL])
    yield idx
    idx.close()


# The base class is reached through its module so pytest does not collect it here twice.
class TestVectorIndexContractOverRest(contract.TestVectorIndexContract):
    """Every contract test, through the REST transport."""


def test_rest_two_clients_share_one_collection(open_test_index: OpenIndex) -> None:
    writer, reader = open_test_index(), open_test_index()
    writer.upsert([indexed(chunk) for chunk in ALL])
    assert reader.count() == len(ALL)
    reader.delete(doc_id="animals")
    assert writer.count() == len(ALL) - 2


def test_rest_stand_in_answers_errors_as_qdrant_does(qdrant: QdrantStandIn) -> None:
    index = QdrantServerIndex(
        QdrantClient(url=qdrant.url, check_compatibility=False), collection="absent", dimension=DIM
    )
    with pytest.raises(IndexBackendError):
        index.count()
    index.close()
