"""Pytest fixtures for the loopback OpenAI-compatible server (registered in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.openai_server import FakeOpenAIServer


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
