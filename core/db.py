"""The metadata store (SQLAlchemy 2): indexes, documents, ingestion jobs. SQLite by default.

The schema is owned by Alembic migrations (core/migrations); `make_engine` upgrades to head.
A table added here needs a migration in core/migrations/versions (tests compare the two).
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    create_engine,
    event,
    select,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Base(DeclarativeBase):
    pass


class IndexRecord(Base):
    """An index and the settings fixed when it was created."""

    __tablename__ = "indexes"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    description: Mapped[str] = mapped_column(Text, default="")
    embedding_model: Mapped[str] = mapped_column(String(256))
    dimension: Mapped[int] = mapped_column(Integer)
    chunk_size: Mapped[int] = mapped_column(Integer)
    chunk_overlap: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)
    # The write lease: the ingestion job that may write this index now, and its last heartbeat.
    writer_job_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    writer_heartbeat_at: Mapped[dt.datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True
    )


class DocumentRecord(Base):
    """One document of an index: where it came from, what it hashed to, how it went."""

    __tablename__ = "documents"

    index_name: Mapped[str] = mapped_column(String(128), primary_key=True)
    doc_id: Mapped[str] = mapped_column(String(512), primary_key=True)
    source: Mapped[str] = mapped_column(Text)
    title: Mapped[str] = mapped_column(Text, default="")
    content_hash: Mapped[str] = mapped_column(String(64), default="")
    settings_hash: Mapped[str] = mapped_column(String(64), default="")
    status: Mapped[str] = mapped_column(String(32))
    chunk_count: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    acl_groups: Mapped[list[str]] = mapped_column(JSON, default=list)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), default=_now, onupdate=_now
    )
    # What put the document here ("upload", "folder:<path>", "url:<url>"): sync removes the
    # documents of an origin whose source is gone.
    origin: Mapped[str | None] = mapped_column(Text, nullable=True)


class JobRecord(Base):
    """An ingestion job: what to ingest into which index, and how the current run is going."""

    __tablename__ = "ingestion_jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    index_name: Mapped[str] = mapped_column(String(128), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(32), index=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    refresh_interval_s: Mapped[int | None] = mapped_column(Integer, nullable=True)
    next_run_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    run: Mapped[int] = mapped_column(Integer, default=1)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    worker: Mapped[str | None] = mapped_column(String(128), nullable=True)
    heartbeat_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class JobItemRecord(Base):
    """One document of a job's current run and its outcome (pending until processed)."""

    __tablename__ = "ingestion_job_items"

    job_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("ingestion_jobs.id", ondelete="CASCADE"), primary_key=True
    )
    doc_id: Mapped[str] = mapped_column(String(512), primary_key=True)
    source: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    chunk_count: Mapped[int] = mapped_column(Integer, default=0)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # the timeout first, so the WAL switch below waits out another connection's lock too
    cur.execute("PRAGMA busy_timeout=10000")
    _switch_to_wal(cur)
    cur.close()


def _switch_to_wal(cur: Any) -> None:
    """WAL mode; a brand-new file being set up by another process at the same moment can
    answer "database is locked" at once (that switch ignores busy_timeout), so retry briefly."""
    for attempt in range(50):
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == 49:
                raise
            time.sleep(0.05)


def make_engine(url: str, *, migrate: bool = True) -> Engine:
    """Create the engine and upgrade the schema to the newest migration; SQLite files get WAL
    so readers never block writers. PostgreSQL: `postgresql+psycopg://user@host/db`."""
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, pool_pre_ping=True)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    if migrate:
        from core.migrations import upgrade

        upgrade(engine)
    return engine


class Store:
    """Session factory over one engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions.begin() as s:
            yield s

    def get_document(self, index_name: str, doc_id: str) -> DocumentRecord | None:
        with self.session() as s:
            return s.get(DocumentRecord, (index_name, doc_id))

    def list_documents(self, index_name: str) -> list[DocumentRecord]:
        with self.session() as s:
            rows = s.scalars(
                select(DocumentRecord)
                .where(DocumentRecord.index_name == index_name)
                .order_by(DocumentRecord.doc_id)
            )
            return list(rows)

    def save_document(self, record: DocumentRecord) -> None:
        with self.session() as s:
            s.merge(record)

    def save_documents(self, records: list[DocumentRecord]) -> None:
        """Upsert many registry rows in one transaction."""
        with self.session() as s:
            for record in records:
                s.merge(record)

    def known_documents(self, index_name: str, doc_ids: list[str]) -> set[str]:
        """Which of these doc ids the index already has a registry row for."""
        with self.session() as s:
            rows = s.scalars(
                select(DocumentRecord.doc_id).where(
                    DocumentRecord.index_name == index_name, DocumentRecord.doc_id.in_(doc_ids)
                )
            )
            return set(rows)

    def set_origin(self, index_name: str, doc_ids: list[str], origin: str) -> None:
        """Record what put these documents here (see DocumentRecord.origin)."""
        if not doc_ids:
            return
        with self.session() as s:
            s.execute(
                update(DocumentRecord)
                .where(DocumentRecord.index_name == index_name, DocumentRecord.doc_id.in_(doc_ids))
                .values(origin=origin)
            )

    def documents_with_origin(self, index_name: str, origin: str) -> list[DocumentRecord]:
        with self.session() as s:
            rows = s.scalars(
                select(DocumentRecord).where(
                    DocumentRecord.index_name == index_name, DocumentRecord.origin == origin
                )
            )
            return list(rows)

    def delete_document(self, index_name: str, doc_id: str) -> bool:
        with self.session() as s:
            row = s.get(DocumentRecord, (index_name, doc_id))
            if row is None:
                return False
            s.delete(row)
            return True

    def get_index(self, name: str) -> IndexRecord | None:
        with self.session() as s:
            return s.get(IndexRecord, name)

    def save_index(self, record: IndexRecord) -> None:
        with self.session() as s:
            s.merge(record)

    def list_indexes(self) -> list[IndexRecord]:
        with self.session() as s:
            return list(s.scalars(select(IndexRecord).order_by(IndexRecord.name)))

    def delete_index(self, name: str) -> None:
        with self.session() as s:
            row = s.get(IndexRecord, name)
            if row is not None:
                s.delete(row)
            s.query(DocumentRecord).filter(DocumentRecord.index_name == name).delete()


# Tables defined next to the code that owns them register on Base when imported; import them
# here so Base.metadata is always the whole schema (Alembic autogenerate, the schema tests).
from core import conversations, keys  # noqa: E402, F401
