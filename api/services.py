"""The long-lived parts the API serves with, built once from settings and closed together."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from core.db import Store, make_engine
from core.queue import JobConsumer, JobQueue
from core.settings import Settings
from retrieval.answer import AnswerService
from retrieval.catalog import IndexCatalog
from retrieval.chat import make_chat_model
from retrieval.embedders import Embedder, make_embedder
from retrieval.resources import WorkerResources
from retrieval.search import Searcher

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Services:
    """What a request handler needs; one instance per app (or per CLI command)."""

    settings: Settings
    store: Store
    embedder: Embedder
    catalog: IndexCatalog
    searcher: Searcher
    answers: AnswerService
    jobs: JobQueue


@asynccontextmanager
async def open_services(
    settings: Settings, *, consume_jobs: bool = False
) -> AsyncIterator[Services]:
    """Build the store, embedder, index catalog, searcher, answer service and job queue; close
    them after. With `consume_jobs` (the server), ingestion jobs also run in this process
    when jobs.consumer_threads says so."""
    store = Store(make_engine(settings.resolved_database_url))
    embedder = make_embedder(settings.embedding)
    catalog = IndexCatalog(settings, store)
    searcher = Searcher.from_settings(settings, embedder=embedder, catalog=catalog)
    if searcher.reranker is None:
        logger.info("no reranker: query types semantic and vector_semantic_hybrid run as hybrid")
    model = make_chat_model(settings.chat, embedder=embedder)
    answers = AnswerService(searcher=searcher, model=model, chat_settings=settings.chat)
    queue = JobQueue(settings, store)
    resources = WorkerResources(settings, store, embedder, catalog)
    consumer = _start_consumer(queue, resources) if consume_jobs else None
    try:
        yield Services(settings, store, embedder, catalog, searcher, answers, queue)
    finally:
        if consumer is not None:
            consumer.stop()
        await answers.aclose()
        if searcher.reranker is not None:
            await searcher.reranker.aclose()
        catalog.close()
        store.engine.dispose()


def _start_consumer(queue: JobQueue, resources: WorkerResources) -> JobConsumer | None:
    """Ingestion jobs run in this process (sharing its open indexes) unless workers do it."""
    threads = queue.config.consumer_threads
    if threads == 0:
        return None
    consumer = JobConsumer(queue, workers=threads, context=resources)
    consumer.start()
    return consumer
