"""Alembic migrations of the metadata store, run by `upgrade(engine)` when an engine is made.

Several processes may start at once (`ondata serve` and N `ondata worker`s): the upgrade holds
a PostgreSQL advisory lock, or a file lock next to a SQLite database, so only one migrates.
"""

from __future__ import annotations

import fcntl
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect, text
from sqlalchemy.engine import Engine

logger = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
BASELINE = "0001"
"""The schema that `create_all` made before migrations existed (indexes, documents)."""
_PG_LOCK_KEY = 7_170_411_640_951  # any fixed 64-bit number; names the "ondata migrate" lock


def alembic_config() -> Config:
    """An Alembic Config for this package (no alembic.ini needed)."""
    config = Config()
    config.set_main_option("script_location", str(HERE))
    return config


@lru_cache(maxsize=1)
def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest revision (a no-op when it is there already)."""
    with engine.connect() as probe:
        if current_revision(probe) == head_revision():
            return
    with _migration_lock(engine), engine.begin() as connection:
        current = current_revision(connection)
        if current == head_revision():
            return
        if current is None and inspect(connection).has_table("indexes"):
            # A store made by create_all before migrations: it already has the baseline.
            _run(connection, "stamp", BASELINE)
        _run(connection, "upgrade", "head")
        logger.info("metadata store migrated from %s to %s", current, head_revision())


def _run(connection: Connection, action: str, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    getattr(command, action)(config, revision)


@contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _PG_LOCK_KEY})
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_LOCK_KEY})
                conn.commit()
        return
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        yield
        return
    with open(f"{database}.migrate-lock", "a+b") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
