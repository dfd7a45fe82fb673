"""The metadata store on SQLite and PostgreSQL: Alembic migrations and the registries."""

from __future__ import annotations

import threading
from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text

from core.db import Base, DocumentRecord, IndexRecord, Store, make_engine
from core.migrations import BASELINE, alembic_config, current_revision, head_revision


def _index(name: str = "handbook") -> IndexRecord:
    return IndexRecord(
        name=name, embedding_model="m", dimension=4, chunk_size=200, chunk_overlap=32
    )


def test_migrations_form_one_linear_chain() -> None:
    script = ScriptDirectory.from_config(alembic_config())
    assert len(script.get_heads()) == 1
    assert script.get_current_head() == head_revision()


def test_store_schema_after_migrations_matches_the_models(store_url: str) -> None:
    engine = make_engine(store_url)
    with engine.connect() as conn:
        assert current_revision(conn) == head_revision()
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    assert diff == [], f"models and migrations differ; add a migration: {diff}"


def test_store_upgrades_a_pre_migration_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    old = create_engine(url)
    # The baseline schema without alembic_version: what create_all made before migrations.
    with old.begin() as conn:
        config = alembic_config()
        config.attributes["connection"] = conn
        command.upgrade(config, BASELINE)
        conn.execute(text("DROP TABLE alembic_version"))
    old.dispose()
    engine = make_engine(url)
    assert "ingestion_jobs" in inspect(engine).get_table_names()
    assert "origin" in {c["name"] for c in inspect(engine).get_columns("documents")}
    engine.dispose()


def test_store_concurrent_startups_migrate_once(store_url: str) -> None:
    errors: list[BaseException] = []

    def start() -> None:
        try:
            make_engine(store_url).dispose()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_store_round_trips_indexes_and_documents(store_url: str) -> None:
    store = Store(make_engine(store_url))
    store.save_index(_index())
    store.save_document(
        DocumentRecord(
            index_name="handbook",
            doc_id="a",
            source="/x/a.md",
            status="indexed",
            chunk_count=3,
            acl_groups=["hr"],
            metadata_={"lang": "en"},
            origin="upload",
        )
    )
    doc = store.get_document("handbook", "a")
    assert doc is not None
    facts = (doc.acl_groups, doc.metadata_, doc.origin, doc.chunk_count)
    assert facts == (["hr"], {"lang": "en"}, "upload", 3)
    assert [i.name for i in store.list_indexes()] == ["handbook"]
    store.delete_index("handbook")
    assert store.list_documents("handbook") == []
    store.engine.dispose()
