"""Fixtures for the metadata store on SQLite and on the machine's PostgreSQL (127.0.0.1:5432).

`store_url` is parametrized over both; each PostgreSQL use gets its own schema (search_path in
the URL), dropped afterwards, so concurrent runs never collide. `postgres_url` alone for tests
that need PostgreSQL specifically. Set ONDATA_TEST_POSTGRES to point elsewhere.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import pytest
from sqlalchemy import create_engine, text

from core.db import IndexRecord, Store, make_engine

POSTGRES = os.environ.get(
    "ONDATA_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def _with_schema(url: str, schema: str) -> str:
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options={quote(f'-csearch_path={schema}')}"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL schema; the URL's search_path points at it."""
    schema = f"t_{uuid.uuid4().hex[:16]}"
    admin = create_engine(POSTGRES, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield _with_schema(POSTGRES, schema)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The metadata store's URL on each supported database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store' / 'ondata.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@contextmanager
def store_with_indexes(url: str, names: tuple[str, ...] = ("a", "b")) -> Iterator[Store]:
    """A Store at `url` holding small index records named `names`; disposed afterwards."""
    store = Store(make_engine(url))
    for name in names:
        store.save_index(
            IndexRecord(
                name=name, embedding_model="m", dimension=4, chunk_size=200, chunk_overlap=32
            )
        )
    yield store
    store.engine.dispose()
