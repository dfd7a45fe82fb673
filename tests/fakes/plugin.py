"""Pytest fixtures for the loopback stand-ins (registered in tests/conftest.py): the
OpenAI-compatible server, the rerank server, and a tiny local cross-encoder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.openai_server import FakeOpenAIServer
from tests.fakes.rerank_server import FakeRerankServer
from tests.support.tiny_reranker import save_tiny_cross_encoder


@pytest.fixture(scope="session")
def openai_fake_server() -> Iterator[FakeOpenAIServer]:
    """One fake server per test session (starting uvicorn is the slow part)."""
    with FakeOpenAIServer() as server:
        yield server


@pytest.fixture
def openai_fake(openai_fake_server: FakeOpenAIServer) -> Iterator[FakeOpenAIServer]:
    """The shared fake, with no scripts or recorded requests left over from other tests."""
    openai_fake_server.reset()
    yield openai_fake_server
    openai_fake_server.reset()


@pytest.fixture(scope="session")
def rerank_fake_server() -> Iterator[FakeRerankServer]:
    with FakeRerankServer() as server:
        yield server


@pytest.fixture
def rerank_fake(rerank_fake_server: FakeRerankServer) -> Iterator[FakeRerankServer]:
    """The shared fake rerank server, without scripts or recordings from other tests."""
    rerank_fake_server.reset()
    yield rerank_fake_server
    rerank_fake_server.reset()


@pytest.fixture(scope="session")
def tiny_reranker_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding a tiny random cross-encoder (tests/support/tiny_reranker.py)."""
    return save_tiny_cross_encoder(tmp_path_factory.mktemp("tiny-reranker"))
