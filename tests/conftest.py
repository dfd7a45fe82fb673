"""Shared fixtures: offline environment, a settings root on a temporary data dir, dataset paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.settings import Settings, configure_offline_environment

configure_offline_environment()

# Fixtures `openai_fake` / `openai_fake_server`: a loopback OpenAI-compatible server;
# `store_url` / `postgres_url`: the metadata store on SQLite and PostgreSQL.
pytest_plugins = ["tests.fakes.plugin", "tests.support.stores"]

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data"
SHARED_DATASETS = REPO.parent / "shared" / "datasets"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Embedded-default settings on a fresh data dir."""
    return Settings(data_dir=tmp_path / "ondata")


@pytest.fixture
def shared_datasets() -> Path:
    """../shared/datasets, or skip when it is absent (a clean clone without shared/)."""
    if not SHARED_DATASETS.is_dir():
        pytest.skip("../shared/datasets is absent")
    return SHARED_DATASETS


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if SHARED_DATASETS.is_dir():
        return
    skip = pytest.mark.skip(reason="dataset test: ../shared/datasets is absent")
    for item in items:
        if "dataset" in item.keywords:
            item.add_marker(skip)
