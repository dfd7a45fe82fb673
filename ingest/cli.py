"""CLI commands for ingestion: `ondata ingest` and `ondata documents list|delete`."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import typer
from tqdm import tqdm

from core.cli import API_KEY_HELP, INDEX_HELP, command_group, plural
from core.errors import IndexNotFoundError, OndataError
from core.remote import RemoteError, client_api_key
from core.settings import Settings, load_settings
from ingest.parsers import doc_id_for
from ingest.pipeline import IngestPipeline, IngestReport, SourceFile
from ingest.readers import ReaderSource, ingest_reader, open_reader, parse_pairs
from ingest.remote import UploadTarget, upload_files
from ingest.service import open_pipeline, open_store, parser_for
from ingest.sources import source_files

documents_app = command_group("List or delete the documents of an index.")

EXIT_ALL = 0
EXIT_SOME_FAILED = 1
EXIT_NONE = 2
EXIT_HELP = (
    "Exit status: 0 every file was ingested or was unchanged; 1 some files failed (the others "
    "are in the index); 2 nothing was ingested (bad arguments, no files of a supported type, "
    "every file failed, or the index or server could not be used)."
)


def ingest(
    paths: list[Path] = typer.Argument(None, help="Files or folders (recursively)."),
    index: str = typer.Option(None, "--index", help=INDEX_HELP),
    chunk_size: int | None = typer.Option(
        None, "--chunk-size", min=32, max=4096, help="Tokens per chunk (local runs)."
    ),
    groups: str = typer.Option(
        "", "--groups", help="Comma-separated ACL groups for these documents."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object as the last line."),
    url: str = typer.Option(
        None, "--url", help="Upload through a running `ondata serve` at this URL."
    ),
    api_key: str = typer.Option(None, "--api-key", help=API_KEY_HELP),
    reader: str = typer.Option(
        None, "--reader", help="A llama-index reader, MODULE:CLASS, instead of PATHS."
    ),
    reader_args: list[str] = typer.Option(
        None, "--reader-arg", help="key=value for the reader's constructor (JSON values read)."
    ),
    load_args: list[str] = typer.Option(
        None, "--load-arg", help="key=value for its load_data (JSON values read)."
    ),
    id_key: str = typer.Option(
        None, "--id-key", help="Metadata field that identifies a reader's document."
    ),
) -> None:
    """Parse, chunk, embed and index documents. Per-file failures are reported, not fatal.

    Folders are walked recursively for files of the supported types; a file named directly
    with another type fails with the reason an upload gets. While `ondata serve` holds the
    (embedded) index, use --url to upload through it. With --reader, any installed
    llama-index reader is the source; running the same reader and arguments again ingests
    what changed and removes the documents it no longer returns.
    """
    settings = load_settings()
    if reader:
        if paths or url:
            _fail("--reader takes no PATHS and runs locally (no --url)")
        try:
            args = parse_pairs(reader_args or [], option="--reader-arg")
            loads = parse_pairs(load_args or [], option="--load-arg")
        except OndataError as exc:
            _fail(exc.message)
        source = ReaderSource(reader, args, loads, id_key)
        _ingest_reader(settings, index or settings.default_index, source, groups, as_json)
    if not paths:
        _fail("name files or folders to ingest, or a --reader")
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        _fail(f"no such file or folder: {', '.join(missing)}")
    acl = [g.strip() for g in groups.split(",") if g.strip()]
    files = source_files(paths, doc_id_for=doc_id_for, acl_groups=acl)
    if not files:
        _fail(f"no files of a supported type in {', '.join(map(str, paths))}")
    name = index or settings.default_index
    with tqdm(total=len(files), unit="file", disable=not sys.stderr.isatty()) as bar:
        if url:
            target = UploadTarget(url, name, client_api_key(settings, api_key), tuple(acl))
            report = _remote(
                lambda: upload_files([f.path for f in files], target, progress=bar.update)
            )
        else:
            report = _local(settings, name, files, chunk_size=chunk_size, progress=bar.update)
    _print_report(report, as_json=as_json)
    raise typer.Exit(exit_status(report))


def _local(
    settings: Settings,
    index: str,
    files: list[SourceFile],
    *,
    chunk_size: int | None,
    progress: Callable[[int], None],
) -> IngestReport:
    try:
        with open_pipeline(settings, index, chunk_size=chunk_size) as pipeline:
            return pipeline.ingest_files(files, parse=parser_for(settings), progress=progress)
    except OndataError as exc:
        _fail(exc.message)


def _ingest_reader(
    settings: Settings, index: str, source: ReaderSource, groups: str, as_json: bool
) -> NoReturn:
    acl = [g.strip() for g in groups.split(",") if g.strip()]
    try:
        loaded = open_reader(source)  # a reader that cannot be used creates no index
        with (
            open_pipeline(settings, index) as pipeline,
            tqdm(unit="doc", disable=not sys.stderr.isatty()) as bar,
        ):
            report, removed = ingest_reader(
                pipeline, source, acl_groups=acl, progress=bar.update, loaded=loaded
            )
    except OndataError as exc:
        _fail(exc.message)
    if as_json:
        typer.echo(json.dumps({**report.as_dict(), "documents_removed": len(removed)}))
    else:
        _print_report(report, as_json=False)
        for record in removed:
            typer.echo(f"  removed (no longer returned): {record.title or record.doc_id}")
    raise typer.Exit(exit_status(report))


def _remote(run: Callable[[], IngestReport]) -> IngestReport:
    try:
        return run()
    except RemoteError as exc:
        _fail(str(exc))


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(EXIT_NONE)


def exit_status(report: IngestReport) -> int:
    """0 when every file made it, 1 when some failed, 2 when none was ingested or unchanged."""
    if not report.documents_failed:
        return EXIT_ALL
    if report.documents_ingested or report.documents_unchanged:
        return EXIT_SOME_FAILED
    return EXIT_NONE


def _print_report(report: IngestReport, *, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(report.as_dict()))
        return
    typer.echo(
        f"ingested {report.documents_ingested}, unchanged {report.documents_unchanged}, "
        f"failed {len(report.documents_failed)}; "
        f"{plural(report.chunks_written, 'chunk')} in {report.seconds:.1f}s"
    )
    for failed in report.documents_failed:
        typer.echo(f"  failed: {failed.source}: {failed.error}")


@documents_app.command("list")
def list_documents(
    index: str = typer.Option(None, "--index", help=INDEX_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Documents of an index with status and chunk counts."""
    settings = load_settings()
    name = _existing_index(settings, index)
    rows = open_store(settings).list_documents(name)
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
    if not rows:
        typer.echo(f"no documents in index {name!r}")
    for r in rows:
        line = f"{r.doc_id}\t{r.status}\t{plural(r.chunk_count, 'chunk')}\t{r.title}"
        typer.echo(line + (f"\t{r.error}" if r.error else ""))


@documents_app.command("delete")
def delete_document(
    doc_ids: list[str] = typer.Argument(..., help="Document ids (see `documents list`)."),
    index: str = typer.Option(None, "--index", help=INDEX_HELP),
) -> None:
    """Delete documents and their chunks."""
    settings = load_settings()
    name = _existing_index(settings, index)
    try:
        with open_pipeline(settings, name) as pipeline:
            failed = [doc_id for doc_id in doc_ids if not _delete_one(pipeline, doc_id)]
    except OndataError as exc:  # the index could not be opened (e.g. `ondata serve` holds it)
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from exc
    if failed:
        raise typer.Exit(1)


def _delete_one(pipeline: IngestPipeline, doc_id: str) -> bool:
    try:
        removed = pipeline.delete_document(doc_id)
    except OndataError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        return False
    typer.echo(f"deleted {doc_id} ({plural(removed, 'chunk')})")
    return True


def _existing_index(settings: Settings, index: str | None) -> str:
    """The index named (or the default_index setting), which must exist: exit 1 otherwise."""
    name = index or settings.default_index
    if open_store(settings).get_index(name) is None:
        typer.echo(f"error: {IndexNotFoundError.named(name).message}", err=True)
        raise typer.Exit(1)
    return name


def register(app: typer.Typer) -> None:
    from ingest.worker import worker

    app.command("ingest", epilog=EXIT_HELP)(ingest)
    app.command("worker")(worker)
    app.add_typer(documents_app, name="documents")
