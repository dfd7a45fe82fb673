"""`ondata ingest --reader`: llama-index readers as sources through the real pipeline (bundled
embedder, Qdrant Edge, SQLite registry): SimpleDirectoryReader over folders and
llama-index-readers-database over this machine's PostgreSQL; re-runs ingest only what changed
and remove what the source no longer returns."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from llama_index.core import Document as LlamaDocument
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from core.db import DocumentRecord
from core.settings import Settings
from ingest.cli import register as register_ingest
from ingest.readers import ReaderSource, document_key, reader_doc_id
from ingest.service import open_store
from tests.conftest import DATA

SIMPLE = "llama_index.core:SimpleDirectoryReader"
DATABASE = "llama_index.readers.database:DatabaseReader"


def ondata(settings: Settings, *argv: str) -> tuple[int, str]:
    cli = typer.Typer()
    register_ingest(cli)
    env = {"ONDATA_DATA_DIR": str(settings.data_dir)}
    result = CliRunner().invoke(cli, list(argv), env=env)
    return result.exit_code, result.output


def ingest_json(settings: Settings, *argv: str) -> dict[str, Any]:
    code, output = ondata(settings, "ingest", *argv, "--index", "src", "--json")
    assert code == 0, output
    report: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    return report


def documents(settings: Settings) -> dict[str, DocumentRecord]:
    return {r.doc_id: r for r in open_store(settings).list_documents("src")}


def test_simple_directory_reader_syncs_a_folder(settings: Settings, tmp_path: Path) -> None:
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "hotels.md").write_text("# Hotels\n\nHotels cost up to 180 euros per night.\n")
    (folder / "trains.txt").write_text("First class trains for journeys over four hours.\n")
    (folder / "badges.txt").write_text("Visitors wear a red badge at all times.\n")
    argv = ("--reader", SIMPLE, "--reader-arg", f"input_dir={folder}")

    first = ingest_json(settings, *argv, "--groups", "staff")
    assert first["documents_ingested"] == 3
    assert first["chunks_written"] >= 3
    assert first["documents_failed"] == []
    records = documents(settings)
    assert {r.title for r in records.values()} == {"hotels.md", "trains.txt", "badges.txt"}
    assert all(r.acl_groups == ["staff"] for r in records.values())
    assert all(str(folder) not in json.dumps(r.metadata_) for r in records.values())

    again = ingest_json(settings, *argv, "--groups", "staff")
    assert (again["documents_ingested"], again["documents_unchanged"]) == (0, 3)

    (folder / "hotels.md").write_text("# Hotels\n\nHotels now cost up to 200 euros per night.\n")
    (folder / "badges.txt").unlink()
    changed = ingest_json(settings, *argv, "--groups", "staff")
    assert changed["documents_ingested"] == 1
    assert changed["documents_unchanged"] == 1
    assert changed["documents_removed"] == 1
    assert set(documents(settings)) == set(records) - {
        d for d, r in records.items() if r.title == "badges.txt"
    }


def test_simple_directory_reader_over_the_samples(settings: Settings) -> None:
    argv = ("--reader", SIMPLE, "--reader-arg", f"input_dir={DATA / 'samples'}")
    exts = '[".md", ".txt", ".csv"]'
    report = ingest_json(settings, *argv, "--reader-arg", f"required_exts={exts}")
    titles = {r.title for r in documents(settings).values()}
    assert report["documents_ingested"] == len(titles) == 3
    assert {"simple-table.md", "book-war-and-peace-1p.txt", "stanley-cups.csv"} == titles


@pytest.mark.dataset
@pytest.mark.slow
def test_simple_directory_reader_over_shared_markdown(
    settings: Settings, shared_datasets: Path
) -> None:
    folder = shared_datasets / "documents" / "markdown"
    report = ingest_json(settings, "--reader", SIMPLE, "--reader-arg", f"input_dir={folder}")
    expected = len([p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")])
    assert report["documents_ingested"] + len(report["documents_failed"]) == expected
    assert report["documents_ingested"] >= 1


@pytest.fixture
def articles(postgres_url: str) -> Iterator[tuple[str, str]]:
    """A table of articles in a fresh PostgreSQL schema: (database URL, table name)."""
    table = f"articles_{uuid.uuid4().hex[:8]}"
    engine = create_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(
            text(
                f"CREATE TABLE {table} (id int primary key, title text, body text, "
                "updated_at timestamptz default now())"
            )
        )
        for i, (title, body) in enumerate(
            [
                ("Hotels", "Hotels cost up to 180 euros per night in capitals."),
                ("Trains", "First class trains for journeys longer than four hours."),
                ("Badges", "Visitors wear a red badge and are escorted."),
            ],
            start=1,
        ):
            conn.execute(
                text(f"INSERT INTO {table} (id, title, body) VALUES (:i, :t, :b)"),
                {"i": i, "t": title, "b": body},
            )
    try:
        yield postgres_url, table
    finally:
        with engine.begin() as conn:
            conn.execute(text(f"DROP TABLE IF EXISTS {table}"))
        engine.dispose()


def test_database_reader_rows_become_documents_and_follow_the_table(
    settings: Settings, articles: tuple[str, str]
) -> None:
    url, table = articles
    argv = (
        "--reader",
        DATABASE,
        "--reader-arg",
        f"uri={url}",
        "--load-arg",
        f"query=SELECT id, title, body, updated_at FROM {table} ORDER BY id",
        "--load-arg",
        'metadata_cols=["id", "title", "updated_at"]',
        "--load-arg",
        'excluded_text_cols=["id", "updated_at"]',
        "--id-key",
        "id",
    )
    first = ingest_json(settings, *argv)
    assert first["documents_ingested"] == 3
    records = {r.title: r for r in documents(settings).values()}
    assert set(records) == {"Hotels", "Trains", "Badges"}
    assert records["Hotels"].metadata_["id"] == 1
    assert records["Hotels"].metadata_["last_modified"]  # updated_at, as an ISO string

    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(f"UPDATE {table} SET body = 'Hotels cost 200 euros.' WHERE id = 1"))
        conn.execute(text(f"DELETE FROM {table} WHERE id = 3"))
    engine.dispose()
    second = ingest_json(settings, *argv)
    assert (second["documents_ingested"], second["documents_unchanged"]) == (1, 1)
    assert second["documents_removed"] == 1
    after = {r.title: r for r in documents(settings).values()}
    assert set(after) == {"Hotels", "Trains"}
    assert after["Hotels"].doc_id == records["Hotels"].doc_id  # the same document, re-ingested
    assert after["Hotels"].content_hash != records["Hotels"].content_hash


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("no-colon", "is not MODULE:CLASS"),
        ("ondata_missing_module:Reader", "is not installed"),
        ("json:JSONDecoder", "is not a llama-index reader class"),
    ],
)
def test_reader_that_cannot_be_used_is_a_clear_error(
    settings: Settings, target: str, message: str
) -> None:
    code, output = ondata(settings, "ingest", "--reader", target, "--index", "src")
    assert code == 2
    assert message in output
    assert open_store(settings).get_index("src") is None  # nothing was created


def test_reader_arguments_it_does_not_take_are_a_clear_error(settings: Settings) -> None:
    argv = ("ingest", "--reader", SIMPLE, "--reader-arg", "nonsense=1", "--index", "src")
    code, output = ondata(settings, *argv)
    assert code == 2
    assert "SimpleDirectoryReader" in output
    code, output = ondata(settings, "ingest", "--reader", SIMPLE, "--reader-arg", "novalue")
    assert code == 2
    assert "is not key=value" in output


def test_document_key_prefers_stable_identities() -> None:
    random_id = LlamaDocument(text="same text")
    assert document_key(random_id) == document_key(LlamaDocument(text="same text"))
    assert document_key(LlamaDocument(text="a", id_="row-7")) == "id=row-7"
    by_path = LlamaDocument(text="page 2", metadata={"file_path": "/x/a.pdf", "page_label": "2"})
    assert document_key(by_path) == "path=/x/a.pdf"
    keyed = LlamaDocument(text="b", metadata={"id": 7})
    assert document_key(keyed, id_key="id") == "id=7"
    source = ReaderSource(SIMPLE, {"input_dir": "/x"})
    other = ReaderSource(SIMPLE, {"input_dir": "/y"})
    assert reader_doc_id(source, "path=/x/a.pdf") != reader_doc_id(other, "path=/x/a.pdf")
    assert reader_doc_id(source, "path=/x/a.pdf").startswith("a-pdf-")
