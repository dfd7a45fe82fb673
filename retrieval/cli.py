"""CLI command for retrieval: `ondata search`."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import typer

from core.cli import API_KEY_HELP, INDEX_HELP, STRICTNESS_HELP, TOP_HELP
from core.db import Store, make_engine
from core.errors import OndataError
from core.remote import RemoteError, client_api_key, send_json, server_client
from core.settings import load_settings
from retrieval.catalog import IndexCatalog
from retrieval.embedders import make_embedder
from retrieval.index import SearchMode
from retrieval.search import (
    DEFAULT_STRICTNESS,
    DEFAULT_TOP_N,
    QUERY_TYPES,
    Searcher,
    SearchRequest,
    SearchResult,
)

CLI_MODES: dict[str, tuple[SearchMode, bool]] = {
    "vector": ("vector", False),
    "keyword": ("keyword", False),
    "hybrid": ("hybrid", False),
    **QUERY_TYPES,
}
# the API's query_type for each CLI mode that is not a query_type itself
_QUERY_TYPE = {"keyword": "simple", "hybrid": "vector_simple_hybrid"}
_MODE_HELP = (
    "vector | keyword | hybrid, or an OYD query_type: simple | vector_simple_hybrid | "
    "semantic (keyword, reranked) | vector_semantic_hybrid (hybrid, reranked)"
)


def search(
    query: str = typer.Argument(..., help="What to look for."),
    index: str = typer.Option(None, "--index", help=INDEX_HELP),
    mode: str = typer.Option("hybrid", "--mode", help=_MODE_HELP),
    top: int = typer.Option(DEFAULT_TOP_N, "--top", min=1, max=20, help=TOP_HELP),
    strictness: int = typer.Option(
        DEFAULT_STRICTNESS, "--strictness", min=1, max=5, help=STRICTNESS_HELP
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object as the last line."),
    url: str = typer.Option(
        None, "--url", help="Search through a running `ondata serve` at this URL (POST /v1/search)."
    ),
    api_key: str = typer.Option(None, "--api-key", help=API_KEY_HELP),
) -> None:
    """Retrieve the best chunks for a query (no answer generation).

    In-process by default; while `ondata serve` holds the (embedded) index, use --url.
    """
    if mode not in CLI_MODES:
        typer.echo(f"error: --mode must be one of {', '.join(CLI_MODES)}", err=True)
        raise typer.Exit(2)
    settings = load_settings()
    if url:
        body = {
            "index_name": index or settings.default_index,
            "query": query,
            "top_n_documents": top,
            "strictness": strictness,
            "query_type": _QUERY_TYPE.get(mode, mode),
        }
        _print_rows(_search_remote(url, client_api_key(settings, api_key), body), as_json=as_json)
        return
    embedder = make_embedder(settings.embedding)
    catalog = IndexCatalog(settings, Store(make_engine(settings.resolved_database_url)))
    searcher = Searcher.from_settings(settings, embedder=embedder, catalog=catalog)
    request_mode, rerank = CLI_MODES[mode]
    try:
        result = asyncio.run(
            _search_once(
                searcher,
                SearchRequest(
                    queries=(query,),
                    index_name=index or settings.default_index,
                    mode=request_mode,
                    top_n_documents=top,
                    strictness=strictness,
                    rerank=rerank,
                ),
            )
        )
    except OndataError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from exc
    finally:
        catalog.close()
    if result.fell_back:
        typer.echo(f"note: no reranker configured, so {mode} ran as hybrid", err=True)
    rows: list[dict[str, Any]] = [
        {
            "doc_id": d.chunk.doc_id,
            "chunk_id": d.chunk.chunk_id,
            "score": d.score,
            "rerank_score": d.rerank_score,
            "title": d.chunk.title,
            "filepath": d.chunk.filepath,
            "page": d.chunk.page,
            "content": d.chunk.content,
        }
        for d in result.documents
    ]
    _print_rows(rows, as_json=as_json)


def _print_rows(rows: list[dict[str, Any]], *, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps({"results": rows}))
        return
    for i, row in enumerate(rows, 1):
        where = (row["filepath"] or row["doc_id"]) + (f" p.{row['page']}" if row["page"] else "")
        typer.echo(f"{i}. [{row['score']:.3f}] {row['title']} ({where})")
        typer.echo("   " + row["content"][:300].replace("\n", " "))


def _search_remote(url: str, api_key: str | None, body: dict[str, Any]) -> list[dict[str, Any]]:
    """The same search through the server's POST /v1/search, as the local rows."""
    keys = ("doc_id", "chunk_id", "score", "rerank_score", "title", "filepath", "page", "content")
    try:
        with server_client(url, api_key, timeout_s=60) as client:
            found = send_json(client, "POST", "/v1/search", json=body, sent_key=bool(api_key))
    except RemoteError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    return [{k: hit.get(k) for k in keys} for hit in (found or {}).get("results", [])]


async def _search_once(searcher: Searcher, request: SearchRequest) -> SearchResult:
    try:
        return await searcher.search(request)
    finally:
        if searcher.reranker is not None:
            await searcher.reranker.aclose()


def register(app: typer.Typer) -> None:
    app.command("search")(search)
