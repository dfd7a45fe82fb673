"""The long-lived parts the API serves with, built once from settings and closed together."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from core.db import Store, make_engine
from core.settings import Settings
from retrieval.answer import AnswerService
from retrieval.catalog import IndexCatalog
from retrieval.chat import make_chat_model
from retrieval.embedders import Embedder, make_embedder
from retrieval.search import Searcher
from retrieval.sparse import Bm25Encoder


@dataclass(frozen=True)
class Services:
    """What a request handler needs; one instance per app (or per CLI command)."""

    settings: Settings
    store: Store
    embedder: Embedder
    catalog: IndexCatalog
    searcher: Searcher
    answers: AnswerService


@asynccontextmanager
async def open_services(settings: Settings) -> AsyncIterator[Services]:
    """Build the store, embedder, index catalog, searcher and answer service; close them after."""
    store = Store(make_engine(settings.resolved_database_url))
    embedder = make_embedder(settings.embedding)
    catalog = IndexCatalog(settings, store)
    searcher = Searcher(embedder=embedder, sparse=Bm25Encoder(), indexes=catalog)
    model = make_chat_model(settings.chat, embedder=embedder)
    answers = AnswerService(searcher=searcher, model=model, chat_settings=settings.chat)
    try:
        yield Services(settings, store, embedder, catalog, searcher, answers)
    finally:
        await answers.aclose()
        catalog.close()
        store.engine.dispose()
