"""CLI command for retrieval: `ondata search`."""

from __future__ import annotations

import asyncio
import json

import typer

from core.cli import INDEX_HELP, STRICTNESS_HELP, TOP_HELP
from core.db import Store, make_engine
from core.errors import OndataError
from core.settings import load_settings
from retrieval.catalog import IndexCatalog
from retrieval.embedders import make_embedder
from retrieval.index import SearchMode
from retrieval.search import DEFAULT_STRICTNESS, DEFAULT_TOP_N, Searcher, SearchRequest
from retrieval.sparse import Bm25Encoder


def search(
    query: str = typer.Argument(..., help="What to look for."),
    index: str = typer.Option(None, "--index", help=INDEX_HELP),
    mode: str = typer.Option("hybrid", "--mode", help="vector | keyword | hybrid"),
    top: int = typer.Option(DEFAULT_TOP_N, "--top", min=1, max=20, help=TOP_HELP),
    strictness: int = typer.Option(
        DEFAULT_STRICTNESS, "--strictness", min=1, max=5, help=STRICTNESS_HELP
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object as the last line."),
) -> None:
    """Retrieve the best chunks for a query (no answer generation)."""
    if mode not in ("vector", "keyword", "hybrid"):
        typer.echo("error: --mode must be vector, keyword or hybrid", err=True)
        raise typer.Exit(2)
    settings = load_settings()
    catalog = IndexCatalog(settings, Store(make_engine(settings.resolved_database_url)))
    searcher = Searcher(
        embedder=make_embedder(settings.embedding), sparse=Bm25Encoder(), indexes=catalog
    )
    request_mode: SearchMode = mode  # type: ignore[assignment]
    try:
        result = asyncio.run(
            searcher.search(
                SearchRequest(
                    queries=(query,),
                    index_name=index or settings.default_index,
                    mode=request_mode,
                    top_n_documents=top,
                    strictness=strictness,
                )
            )
        )
    except OndataError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from exc
    finally:
        catalog.close()
    rows = [
        {
            "doc_id": d.chunk.doc_id,
            "chunk_id": d.chunk.chunk_id,
            "score": d.score,
            "title": d.chunk.title,
            "filepath": d.chunk.filepath,
            "page": d.chunk.page,
            "content": d.chunk.content,
        }
        for d in result.documents
    ]
    if as_json:
        typer.echo(json.dumps({"results": rows}))
        return
    for i, d in enumerate(result.documents, 1):
        c = d.chunk
        where = (c.filepath or c.doc_id) + (f" p.{c.page}" if c.page else "")
        typer.echo(f"{i}. [{d.score:.3f}] {c.title} ({where})")
        typer.echo("   " + c.content[:300].replace("\n", " "))


def register(app: typer.Typer) -> None:
    app.command("search")(search)
