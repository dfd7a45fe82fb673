"""`ondata ask`: one grounded answer in-process, printed with its citations (or as JSON)."""

from __future__ import annotations

import re
from collections.abc import Sequence

import typer

from api.convert import answer_request, grounded_completion, included_contexts
from api.schemas import ChatCompletionRequest, ContextPart
from api.services import Services, open_services
from api.streaming import ChunkHead, grounded_frames
from core.models import Citation
from core.settings import Settings
from retrieval.answer import AnswerContext, AnswerDelta, AnswerRequest

_MARKER = re.compile(r"\[doc(\d+)\]")


def ask_body(
    question: str, *, index: str, stream: bool, top: int, strictness: int
) -> ChatCompletionRequest:
    """The chat completion request `ondata ask` stands for."""
    parameters = {"index_name": index, "top_n_documents": top, "strictness": strictness}
    return ChatCompletionRequest.model_validate(
        {
            "messages": [{"role": "user", "content": question}],
            "stream": stream,
            "data_sources": [{"type": "ondata", "parameters": parameters}],
        }
    )


async def run_ask(settings: Settings, body: ChatCompletionRequest, *, as_json: bool) -> None:
    request = answer_request(body)
    async with open_services(settings) as services:
        if body.stream and as_json:
            await _echo_chunks(services, request, included_contexts(body))
            return
        if body.stream:
            await _ask_streaming(services, request)
            return
        answer = await services.answers.answer(request)
    if as_json:
        completion = grounded_completion(
            answer, include=included_contexts(body), id_="chatcmpl-cli", created=0
        )
        typer.echo(completion.model_dump_json(exclude_none=True, indent=2))
        return
    typer.echo(answer.content)
    _echo_citations(answer.citations)


async def _ask_streaming(services: Services, request: AnswerRequest) -> None:
    candidates: tuple[Citation, ...] = ()
    written: list[str] = []
    async for event in services.answers.stream(request):
        if isinstance(event, AnswerContext):
            candidates = event.citations
        elif isinstance(event, AnswerDelta):
            written.append(event.content)
            typer.echo(event.content, nl=False)
    text = "".join(written)
    typer.echo("")
    _echo_citations(_cited(candidates, text), numbers=_numbers(text))


async def _echo_chunks(
    services: Services, request: AnswerRequest, include: frozenset[ContextPart]
) -> None:
    """The same chat.completion.chunk objects the API streams, one JSON object a line."""
    head = ChunkHead("chatcmpl-cli", 0, services.answers.model_name)
    events = services.answers.stream(request)
    async for frame in grounded_frames(events, head=head, include=include, include_usage=True):
        payload = frame.removeprefix(b"data: ").strip()
        if payload != b"[DONE]":
            typer.echo(payload.decode())


def _numbers(text: str) -> list[int]:
    return sorted({int(n) for n in _MARKER.findall(text)})


def _cited(candidates: Sequence[Citation], text: str) -> list[Citation]:
    return [candidates[n - 1] for n in _numbers(text) if 0 < n <= len(candidates)]


def _echo_citations(citations: Sequence[Citation], *, numbers: Sequence[int] | None = None) -> None:
    if not citations:
        return
    typer.echo("\nCitations:")
    labels = numbers or range(1, len(citations) + 1)
    for n, citation in zip(labels, citations, strict=False):
        where = citation.filepath or citation.url or citation.doc_id
        page = f" p.{citation.page}" if citation.page else ""
        typer.echo(f"  [doc{n}] {citation.title or where} ({where}{page})")
