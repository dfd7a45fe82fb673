"""Evaluation runs: retrieval over a BEIR dataset, answers over a QA dataset.

Retrieval builds (or reuses) an index of the corpus through the real ingestion pipeline and
ranks every query with the API's own Searcher (`Searcher.rank`: no strictness, no top-n cap).
Chunk hits become a document ranking by each document's best chunk (MaxP): a document is as
relevant as its best passage, and summing would favour long documents for having many chunks.

Answers go through the real POST /v1/chat/completions: the app in-process (its lifespan run,
httpx's ASGI transport) or a running server (`url`).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from api.app import create_app
from api.services import open_services
from core.errors import (
    AuthenticationError,
    ConfigurationError,
    IndexNotFoundError,
    InvalidRequestError,
)
from core.models import ScoredChunk
from core.settings import Settings
from evaluation import metrics
from evaluation.cache import CACHE_DIR, CorpusIndex, corpus_index, slug
from evaluation.datasets import BeirDataset, QADataset, QAItem
from evaluation.judge import OpenAIJudge
from evaluation.progress import Progress, progress_bar
from retrieval.citations import is_refusal
from retrieval.index import SearchMode
from retrieval.search import Searcher

logger = logging.getLogger(__name__)

ALL_MODES: tuple[SearchMode, ...] = ("vector", "keyword", "hybrid")
RERANKED_MODES: dict[str, SearchMode] = {"semantic": "keyword", "vector_semantic_hybrid": "hybrid"}
"""OYD's semantic query types: these modes' candidates, reranked (needs rerank.backend)."""
KNOWN_MODES: tuple[str, ...] = (*ALL_MODES, *RERANKED_MODES)
CHUNKS_PER_DOCUMENT = 3
"""Chunk depth = document depth x this, so that MaxP aggregation still fills the depth."""
_ANSWER_CHARS = 4000


@dataclass
class RunResult:
    """What a run measured: the summary (as written to summary.json) and one row per query."""

    summary: dict[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)


def new_run_id(kind: str, dataset: str) -> str:
    """A sortable, unique run id: UTC time, kind, dataset."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{kind}-{slug(dataset)}-{uuid.uuid4().hex[:6]}"


def _header(kind: str, dataset: str) -> dict[str, Any]:
    return {
        "id": new_run_id(kind, dataset),
        "kind": kind,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "dataset": dataset,
    }


def _bar(total: int, desc: str) -> Progress:
    return progress_bar(total, desc, unit="q")


# --- retrieval -----------------------------------------------------------------------------


def documents_ranked(chunks: Iterable[ScoredChunk], *, depth: int) -> list[str]:
    """Document ids by their best chunk (chunks come best first), at most `depth` (pure)."""
    ranked: dict[str, None] = {}
    for hit in chunks:
        ranked.setdefault(hit.chunk.doc_id, None)
        if len(ranked) >= depth:
            break
    return list(ranked)


async def evaluate_retrieval(
    dataset: BeirDataset,
    *,
    settings: Settings,
    modes: Sequence[str] = ALL_MODES,
    k: int = 10,
    depth: int = metrics.DEEP_CUTOFF,
    baselines: bool = False,
) -> RunResult:
    """Index the corpus (cached), rank every query in every mode, score the rankings.

    `baselines` also runs the public baselines (evaluation/baselines.py) on the same dataset.
    """
    if settings.rerank.backend == "none" and set(modes) & set(RERANKED_MODES):
        raise ConfigurationError(
            "modes semantic and vector_semantic_hybrid need a reranker: set "
            "ONDATA_RERANK__BACKEND (remote or local; see README 'Reranking')"
        )
    started = time.perf_counter()
    built = _index_beir(dataset, settings)
    rows: list[dict[str, Any]] = []
    summary = _header("retrieval", dataset.name) | {"split": dataset.split, "k": k}
    async with open_services(built.settings) as services:
        for mode in modes:
            rows.extend(
                await _rank_mode(services.searcher, built.index_name, dataset, mode, k, depth)
            )
    summary |= {
        "docs": built.docs,
        "queries": len(dataset.queries),
        "seconds": round(time.perf_counter() - started, 3),
        "modes": {m: _means(rows, m, metrics.retrieval_metric_names(k)) for m in modes},
        "latency_ms": {m: _latency(r["latency_ms"] for r in rows if r["mode"] == m) for m in modes},
        "index": _index_info(built),
        "settings": _settings_info(settings),
    }
    if baselines:
        summary["baselines"] = _baselines(dataset, settings, k=k, depth=depth)
    return RunResult(summary, rows)


def _baselines(
    dataset: BeirDataset, settings: Settings, *, k: int, depth: int
) -> dict[str, dict[str, float]]:
    from evaluation.baselines import baseline_rankings, baseline_summary

    cache = settings.data_dir / CACHE_DIR
    rankings = baseline_rankings(dataset, depth=depth, cache_dir=cache)
    return baseline_summary(dataset, rankings, k=k)


def _index_beir(dataset: BeirDataset, settings: Settings) -> CorpusIndex:
    with dataset.corpus_file.open("rb") as fh:
        total = sum(1 for line in fh if line.strip())
    return corpus_index(
        settings,
        dataset=dataset.name,
        corpus_hash=dataset.corpus_hash(),
        records=dataset.iter_corpus(),
        total=total,
    )


async def _rank_mode(
    searcher: Searcher, index_name: str, dataset: BeirDataset, mode: str, k: int, depth: int
) -> list[dict[str, Any]]:
    ranking: dict[str, list[str]] = {}
    latency: dict[str, float] = {}
    with _bar(len(dataset.queries), f"{mode} queries") as bar:
        for qid, text in dataset.queries.items():
            began = time.perf_counter()
            chunks = await _ranking(searcher, index_name, text, mode, depth * CHUNKS_PER_DOCUMENT)
            latency[qid] = (time.perf_counter() - began) * 1000
            ranking[qid] = documents_ranked(chunks, depth=depth)
            bar.update(1)
    scores = metrics.retrieval_metrics(dataset.qrels, ranking, k=k)
    return [
        {"mode": mode, "qid": qid, "latency_ms": round(latency[qid], 3), **scores[qid]}
        for qid in dataset.queries
    ]


async def _ranking(
    searcher: Searcher, index_name: str, query: str, mode: str, limit: int
) -> list[ScoredChunk]:
    if mode in RERANKED_MODES:
        return await searcher.rank_reranked(
            index_name, query, mode=RERANKED_MODES[mode], limit=limit
        )
    search_mode: SearchMode = mode  # type: ignore[assignment]  # one of ALL_MODES
    return searcher.rank(index_name, query, mode=search_mode, limit=limit)


def _means(rows: Sequence[dict[str, Any]], mode: str, names: Sequence[str]) -> dict[str, float]:
    chosen = [r for r in rows if r["mode"] == mode]
    return {n: round(metrics.mean(r[n] for r in chosen) or 0.0, 6) for n in names}


def _latency(values: Iterable[float]) -> dict[str, float | None]:
    ordered = list(values)
    p50, p95 = metrics.percentile(ordered, 50), metrics.percentile(ordered, 95)
    return {
        "p50": None if p50 is None else round(p50, 2),
        "p95": None if p95 is None else round(p95, 2),
    }


def _index_info(built: CorpusIndex) -> dict[str, Any]:
    return {
        "cache_key": built.key[:16],
        "reused": not built.built,
        "chunks": built.chunks,
        "failed_documents": built.failed,
        "ingest_seconds": round(built.seconds, 3),
    }


def _settings_info(settings: Settings) -> dict[str, Any]:
    return {
        "embedding_model": settings.embedding.model,
        "embedding_backend": settings.embedding.backend,
        "embedding_precision": settings.embedding.precision,
        "chunk_size": settings.chunking.chunk_size,
        "chunk_overlap": settings.chunking.chunk_overlap,
        "rerank_backend": settings.rerank.backend,
        "rerank_model": settings.rerank.model or str(settings.rerank.path or "") or None,
        "rerank_candidates": settings.rerank.candidates,
    }


# --- answers -------------------------------------------------------------------------------


@dataclass(frozen=True)
class AnswerTarget:
    """Where the questions go: a running server (`url`) or the app in-process; which index."""

    url: str | None = None
    index_name: str | None = None
    api_key: str | None = None
    timeout_s: float = 120.0


@dataclass(frozen=True)
class _Reply:
    status: int
    latency_ms: float
    body: dict[str, Any]


async def evaluate_answers(
    dataset: QADataset, *, settings: Settings, target: AnswerTarget, limit: int | None = None
) -> RunResult:
    """Ask every question through /v1/chat/completions and score the grounded answers."""
    started = time.perf_counter()
    items = dataset.items[:limit] if limit else dataset.items
    summary = _header("answers", dataset.name)
    judge = OpenAIJudge(settings.evaluation) if settings.evaluation.judge_configured else None
    rows: list[dict[str, Any]] = []
    try:
        async with _chat_client(dataset, settings, target) as (client, index_name, built):
            with _bar(len(items), "questions") as bar:
                for item in items:
                    rows.append(await _ask(client, item, index_name, judge))
                    bar.update(1)
    finally:
        if judge is not None:
            await judge.aclose()
    summary |= {
        "questions": len(items),
        "seconds": round(time.perf_counter() - started, 3),
        "metrics": answer_summary(rows, judged=judge is not None),
        "counts": _answer_counts(rows),
        "target": target.url or "in-process",
        "index": _index_info(built) if built else {"name": index_name},
        "judge": judge.model if judge else None,
    }
    return RunResult(summary, rows)


@asynccontextmanager
async def _chat_client(
    dataset: QADataset, settings: Settings, target: AnswerTarget
) -> AsyncIterator[tuple[httpx.AsyncClient, str, CorpusIndex | None]]:
    headers = {"api-key": target.api_key} if target.api_key else {}
    timeout = httpx.Timeout(target.timeout_s)
    if target.url:
        index_name = target.index_name or settings.default_index
        async with httpx.AsyncClient(
            base_url=target.url, headers=headers, timeout=timeout
        ) as client:
            yield client, index_name, None
        return
    built = None
    app_settings, index_name = settings, target.index_name or ""
    if not target.index_name:
        built = _index_qa(dataset, settings)
        app_settings, index_name = built.settings, built.index_name
    if app_settings.api.api_key and not target.api_key:
        headers = {"api-key": app_settings.api.api_key.get_secret_value()}
    app = create_app(app_settings)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=transport, base_url="http://ondata.local", headers=headers, timeout=timeout
        ) as client,
    ):
        yield client, index_name, built


def _index_qa(dataset: QADataset, settings: Settings) -> CorpusIndex:
    if not dataset.corpus:
        raise InvalidRequestError(
            f"dataset {dataset.name!r} ships no corpus: name an existing index with --index",
            param="index",
        )
    return corpus_index(
        settings,
        dataset=dataset.name,
        corpus_hash=dataset.corpus_hash(),
        records=dataset.corpus,
        total=len(dataset.corpus),
    )


def chat_request(item: QAItem, index_name: str) -> dict[str, Any]:
    """The /v1/chat/completions body for one item (pure)."""
    return {
        "messages": [{"role": t.role, "content": t.content} for t in item.messages],
        "data_sources": [
            {
                "type": "ondata",
                "parameters": {
                    "index_name": index_name,
                    "include_contexts": ["citations", "intent", "all_retrieved_documents"],
                },
            }
        ],
    }


async def _post(client: httpx.AsyncClient, body: dict[str, Any]) -> _Reply:
    began = time.perf_counter()
    try:
        response = await client.post("/v1/chat/completions", json=body)
    except httpx.HTTPError as exc:
        return _Reply(0, (time.perf_counter() - began) * 1000, {"error": {"message": str(exc)}})
    latency = (time.perf_counter() - began) * 1000
    try:
        payload = response.json()
    except ValueError:
        payload = {"error": {"message": response.text[:500]}}
    _raise_if_misconfigured(response.status_code, payload)
    return _Reply(response.status_code, latency, payload)


def _raise_if_misconfigured(status: int, payload: dict[str, Any]) -> None:
    """Stop the run on errors every question would hit (wrong key, unknown index)."""
    message = str((payload.get("error") or {}).get("message", ""))
    if status == 401:
        raise AuthenticationError(f"the server refused the API key: {message}")
    if status == 404 and (payload.get("error") or {}).get("code") == "index_not_found":
        raise IndexNotFoundError(message, param="index")


async def _ask(
    client: httpx.AsyncClient, item: QAItem, index_name: str, judge: OpenAIJudge | None
) -> dict[str, Any]:
    reply = await _post(client, chat_request(item, index_name))
    row: dict[str, Any] = {
        "qid": item.qid,
        "question": item.question,
        "latency_ms": round(reply.latency_ms, 3),
        "status": reply.status,
        "answerable": item.answerable,
    }
    if reply.status != 200:
        return row | {"error": str((reply.body.get("error") or {}).get("message", "error"))}
    row |= score_reply(item, reply.body)
    if judge is not None and not row["refused"]:
        scores = await judge.grade(
            question=item.question, answer=row["answer"], passages=_passages(reply.body)
        )
        row |= {"groundedness": scores.groundedness, "relevance": scores.relevance}
    return row


def _message(body: dict[str, Any]) -> dict[str, Any]:
    choices = body.get("choices") or [{}]
    message = choices[0].get("message") or {}
    return message if isinstance(message, dict) else {}


def _passages(body: dict[str, Any]) -> list[str]:
    message = _message(body)
    context = message.get("context") or {}
    citations = context.get("citations") or []
    content = str(message.get("content") or "")
    cited = [c.get("content", "") for c in cited_citations(citations, content)]
    retrieved = [d.get("content", "") for d in context.get("all_retrieved_documents") or []]
    return cited or retrieved[:5]


def cited_citations(citations: Sequence[dict[str, Any]], content: str) -> list[dict[str, Any]]:
    """The citations the answer's [docN] markers name: the context lists every document
    given to the model ([docN] is citations[N-1]), the answer cites some of them."""
    numbers = sorted(set(metrics.citation_markers(content)))
    return [citations[n - 1] for n in numbers if 1 <= n <= len(citations)]


def score_reply(item: QAItem, body: dict[str, Any]) -> dict[str, Any]:
    """Per-question answer metrics from a chat completion body (pure)."""
    message = _message(body)
    content = str(message.get("content") or "")
    context = message.get("context") or {}
    citations = context.get("citations") or []
    retrieved = context.get("all_retrieved_documents")
    cited_docs = sorted({str(c.get("doc_id")) for c in cited_citations(citations, content)})
    markers = metrics.citation_markers(content)
    refused = is_refusal(content)
    scorable = item.answerable is not False and not refused
    return {
        "answer": content[:_ANSWER_CHARS],
        "refused": refused,
        "cited_doc_ids": cited_docs,
        "markers": len(markers),
        "hallucinated": metrics.hallucinated_citations(
            markers,
            [str(c.get("chunk_id")) for c in citations],
            None if retrieved is None else [str(d.get("chunk_id")) for d in retrieved],
        ),
        "citation_precision": (
            metrics.citation_precision(cited_docs, item.relevant_doc_ids) if scorable else None
        ),
        "citation_recall": (
            metrics.citation_recall(cited_docs, item.relevant_doc_ids)
            if item.answerable is not False
            else None
        ),
        "answer_f1": (
            metrics.token_f1(content, item.answer)
            if item.answer and item.answerable is not False
            else None
        ),
        "refusal_correct": metrics.refusal_correct(refused, item.answerable),
        **_containment(item, content),
    }


def _containment(item: QAItem, content: str) -> dict[str, bool | None]:
    """Short gold answers (SQuAD): one inside the reply, one inside its first sentence."""
    scored = bool(item.answers) and item.answerable is not False
    first = metrics.first_sentence(content)
    return {
        "answer_contained": metrics.contains_answer(content, item.answers) if scored else None,
        "first_sentence_contained": (
            metrics.contains_answer(first, item.answers) if scored else None
        ),
    }


def answer_summary(rows: Sequence[dict[str, Any]], *, judged: bool) -> dict[str, float | None]:
    """Run-level answer metrics from the per-question rows (pure)."""
    ok = [r for r in rows if "error" not in r]
    markers = sum(r["markers"] for r in ok)
    latency = _latency(r["latency_ms"] for r in rows)
    out: dict[str, float | None] = {
        "citation_precision": metrics.mean(r["citation_precision"] for r in ok),
        "citation_recall": metrics.mean(r["citation_recall"] for r in ok),
        "answer_f1": metrics.mean(r["answer_f1"] for r in ok),
        "refusal_accuracy": metrics.mean(
            None if r["refusal_correct"] is None else float(r["refusal_correct"]) for r in ok
        ),
        "answer_containment": _share(r["answer_contained"] for r in ok),
        "first_sentence_containment": _share(r["first_sentence_contained"] for r in ok),
        "refusal_rate_unanswerable": _share(r["refused"] for r in ok if r["answerable"] is False),
        "false_refusal_rate": _share(r["refused"] for r in ok if r["answerable"] is True),
        "hallucinated_citation_rate": (
            sum(r["hallucinated"] for r in ok) / markers if markers else 0.0
        ),
        "error_rate": (len(rows) - len(ok)) / len(rows) if rows else 0.0,
        "latency_p50_ms": latency["p50"],
        "latency_p95_ms": latency["p95"],
    }
    if judged:
        out["judge_groundedness"] = metrics.mean(r.get("groundedness") for r in ok)
        out["judge_relevance"] = metrics.mean(r.get("relevance") for r in ok)
    return {k: (round(v, 6) if v is not None else None) for k, v in out.items()}


def _share(flags: Iterable[bool | None]) -> float | None:
    """Share of the defined flags that are true (None when none is defined)."""
    return metrics.mean(None if f is None else float(f) for f in flags)


def _answer_counts(rows: Sequence[dict[str, Any]]) -> dict[str, int]:
    ok = [r for r in rows if "error" not in r]
    return {
        "answered": sum(1 for r in ok if not r["refused"]),
        "refused": sum(1 for r in ok if r["refused"]),
        "errors": len(rows) - len(ok),
        "unanswerable": sum(1 for r in rows if r["answerable"] is False),
    }
