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
from retrieval.rerank import make_reranker
from retrieval.search import (
    DEFAULT_STRICTNESS,
    DEFAULT_TOP_N,
    QUERY_TYPES,
    Searcher,
    SearchRequest,
    SearchResult,
)
from retrieval.sparse import Bm25Encoder

CLI_MODES: dict[str, tuple[SearchMode, bool]] = {
    "vector": ("vector", False),
    "keyword": ("keyword", False),
    "hybrid": ("hybrid", False),
    **QUERY_TYPES,
}
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
) -> None:
    """Retrieve the best chunks for a query (no answer generation)."""
    if mode not in CLI_MODES:
        typer.echo(f"error: --mode must be one of {', '.join(CLI_MODES)}", err=True)
        raise typer.Exit(2)
    settings = load_settings()
    catalog = IndexCatalog(settings, Store(make_engine(settings.resolved_database_url)))
    reranker = make_reranker(settings.rerank)
    searcher = Searcher(
        embedder=make_embedder(settings.embedding),
        sparse=Bm25Encoder(),
        indexes=catalog,
        reranker=reranker,
        rerank_candidates=settings.rerank.candidates,
        retrieval=settings.retrieval,
    )
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
    rows = [
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
    if as_json:
        typer.echo(json.dumps({"results": rows}))
        return
    for i, d in enumerate(result.documents, 1):
        c = d.chunk
        where = (c.filepath or c.doc_id) + (f" p.{c.page}" if c.page else "")
        typer.echo(f"{i}. [{d.score:.3f}] {c.title} ({where})")
        typer.echo("   " + c.content[:300].replace("\n", " "))


async def _search_once(searcher: Searcher, request: SearchRequest) -> SearchResult:
    try:
        return await searcher.search(request)
    finally:
        if searcher.reranker is not None:
            await searcher.reranker.aclose()


def register(app: typer.Typer) -> None:
    app.command("search")(search)
