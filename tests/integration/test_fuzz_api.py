"""Schemathesis against the real app, in-process over ASGI: every operation of /openapi.json,
a bounded number of generated requests each (fixed seed, derandomized), sent with a key of
each role. No response may be a 5xx, and each must match what the OpenAPI document declares
(status code, content type, body schema)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from fastapi import FastAPI
from schemathesis.checks import not_a_server_error
from schemathesis.python.asgi import shutdown_lifespans
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.app import create_app
from core.access import ROLES
from core.db import make_engine
from core.keys import KeyStore
from core.settings import JobsSettings, Settings
from tests.integration.api_support import build_index

EXAMPLES_PER_OPERATION = 12
SEED = 20261204
CONFIG = schemathesis.Config.from_dict(
    {
        "seed": SEED,
        "generation": {
            "max-examples": EXAMPLES_PER_OPERATION,
            "deterministic": True,
            "database": "none",
        },
        "phases": {"stateful": {"enabled": False}},
    }
)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def _role_keys(settings: Settings) -> dict[str, str]:
    engine = make_engine(settings.resolved_database_url)
    try:
        store = KeyStore(engine)
        return {role: store.create(role=role, name=f"fuzz-{role}").key for role in ROLES}
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def fuzzed_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FastAPI, Path]]:
    root = tmp_path_factory.mktemp("fuzz_api")
    # no consumer thread: fuzzed uploads queue jobs, but nothing parses them meanwhile
    settings = Settings(data_dir=root / "ondata", jobs=JobsSettings(embedded_workers=0))
    build_index(settings, root / "docs")
    yield create_app(settings), root
    shutdown_lifespans()


@pytest.fixture(scope="module")
def role_keys(fuzzed_app: tuple[FastAPI, Path]) -> dict[str, str]:
    return _role_keys(Settings(data_dir=fuzzed_app[1] / "ondata"))


# The document is built without serving anything (no lifespan, no data dir), so pytest can
# collect one test per operation; the requests go to the module's app, which has the same one.
schema = schemathesis.openapi.from_dict(
    create_app(Settings(data_dir=Path("never-created"))).openapi(), config=CONFIG
)


@schema.parametrize()
def test_fuzz_api_no_server_error_and_matches_schema(
    case: schemathesis.Case, fuzzed_app: tuple[FastAPI, Path], role_keys: dict[str, str]
) -> None:
    for role in ROLES:
        headers = {"authorization": f"Bearer {role_keys[role]}"}
        case.call_and_validate(app=fuzzed_app[0], headers=headers, checks=CHECKS)
