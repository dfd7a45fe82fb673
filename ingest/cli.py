"""CLI commands for ingestion: `ondata ingest` and `ondata documents list|delete`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from tqdm import tqdm

from core.errors import OndataError
from core.settings import load_settings
from ingest.parsers import doc_id_for
from ingest.service import open_pipeline, open_store, parser_for
from ingest.sources import source_files

documents_app = typer.Typer(no_args_is_help=True, help="List or delete the documents of an index.")


def ingest(
    paths: list[Path] = typer.Argument(..., help="Files or folders (recursively)."),
    index: str = typer.Option("default", "--index", help="Index name."),
    chunk_size: int | None = typer.Option(
        None, "--chunk-size", min=32, max=4096, help="Tokens per chunk."
    ),
    groups: str = typer.Option(
        "", "--groups", help="Comma-separated ACL groups for these documents."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object as the last line."),
) -> None:
    """Parse, chunk, embed and index documents. Per-file failures are reported, not fatal."""
    settings = load_settings()
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        typer.echo(f"error: no such file or folder: {', '.join(missing)}", err=True)
        raise typer.Exit(2)
    acl = [g.strip() for g in groups.split(",") if g.strip()]
    files = source_files(paths, doc_id_for=doc_id_for, acl_groups=acl)
    try:
        with (
            open_pipeline(settings, index, chunk_size=chunk_size) as pipeline,
            tqdm(total=len(files), unit="file", disable=not sys.stderr.isatty()) as bar,
        ):
            report = pipeline.ingest_files(files, parse=parser_for(settings), progress=bar.update)
    except OndataError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from exc
    if as_json:
        typer.echo(json.dumps(report.as_dict()))
        return
    typer.echo(
        f"ingested {report.documents_ingested}, unchanged {report.documents_unchanged}, "
        f"failed {len(report.documents_failed)}; "
        f"{report.chunks_written} chunks in {report.seconds:.1f}s"
    )
    for failed in report.documents_failed:
        typer.echo(f"  failed: {failed.source}: {failed.error}")


@documents_app.command("list")
def list_documents(
    index: str = typer.Option("default", "--index"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Documents of an index with status and chunk counts."""
    rows = open_store(load_settings()).list_documents(index)
    items = [
        {
            "doc_id": r.doc_id,
            "source": r.source,
            "title": r.title,
            "status": r.status,
            "chunks": r.chunk_count,
            "error": r.error,
        }
        for r in rows
    ]
    if as_json:
        typer.echo(json.dumps({"documents": items}))
        return
    for it in items:
        line = f"{it['doc_id']}\t{it['status']}\t{it['chunks']} chunks\t{it['title']}"
        typer.echo(line + (f"\t{it['error']}" if it["error"] else ""))


@documents_app.command("delete")
def delete_document(
    doc_ids: list[str] = typer.Argument(..., help="Document ids (see `documents list`)."),
    index: str = typer.Option("default", "--index"),
) -> None:
    """Delete documents and their chunks."""
    settings = load_settings()
    failed = False
    with open_pipeline(settings, index) as pipeline:
        for doc_id in doc_ids:
            try:
                removed = pipeline.delete_document(doc_id)
                typer.echo(f"deleted {doc_id} ({removed} chunks)")
            except OndataError as exc:
                typer.echo(f"error: {exc.message}", err=True)
                failed = True
    if failed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    from ingest.worker import worker

    app.command("ingest")(ingest)
    app.command("worker")(worker)
    app.add_typer(documents_app, name="documents")
