"""`ondata ask`: one grounded answer in-process, printed with its citations (or as JSON)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import typer

from api.convert import answer_request, grounded_completion, included_contexts
from api.schemas import ChatCompletionRequest, ContextPart
from api.services import Services, open_services
from api.streaming import ChunkHead, grounded_frames
from core.models import Citation
from core.remote import RemoteError, status_message
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
    _echo_citations(_cited(answer.citations, answer.content))


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
    _echo_citations(_cited(candidates, text))


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


def _cited(citations: Sequence[Citation], text: str) -> list[tuple[int, Citation]]:
    """(marker number, citation) for each distinct [docN] in the text, by number.

    A context's citations are every document given to the model ([docN] is citations[N-1]);
    the answer cites some of them.
    """
    numbers = sorted({int(n) for n in _MARKER.findall(text)})
    return [(n, citations[n - 1]) for n in numbers if 0 < n <= len(citations)]


def _echo_citations(cited: Sequence[tuple[int, Citation]]) -> None:
    if not cited:
        return
    typer.echo("\nCitations:")
    for n, citation in cited:
        where = citation.filepath or citation.url or citation.doc_id
        page = f" p.{citation.page}" if citation.page else ""
        typer.echo(f"  [doc{n}] {citation.title or where} ({where}{page})")


# ---- against a running server (`--url`) ------------------------------------------------------


def run_ask_remote(
    url: str, body: ChatCompletionRequest, *, api_key: str | None, as_json: bool
) -> None:
    """The same question through `ondata serve` at url, with the official openai client."""
    import openai

    payload = body.model_dump(exclude_none=True, include={"messages", "data_sources"})
    # the openai client insists on a key; without one the server sees a key it rejects (401)
    key = api_key or "none"
    client = openai.OpenAI(base_url=f"{url.rstrip('/')}/v1", api_key=key, max_retries=0)
    with client:
        try:
            if body.stream:
                _remote_stream(client, payload, as_json=as_json)
            else:
                _remote_complete(client, payload, as_json=as_json)
        except openai.APIStatusError as exc:
            raise RemoteError(_remote_message(url, exc, sent_key=api_key is not None)) from exc
        except openai.APIConnectionError as exc:
            raise RemoteError(f"cannot reach {url}: {exc}") from exc


def _remote_message(url: str, exc: Any, *, sent_key: bool) -> str:
    body = exc.body if isinstance(exc.body, dict) else {}
    message = str(body.get("message") or exc.message)
    return status_message(url, exc.status_code, message, sent_key=sent_key)


def _remote_complete(client: Any, payload: dict[str, Any], *, as_json: bool) -> None:
    completion = client.chat.completions.create(
        model="ondata", messages=payload["messages"], extra_body=_sources(payload)
    )
    if as_json:
        typer.echo(completion.model_dump_json(indent=2))
        return
    message = completion.choices[0].message
    typer.echo(message.content or "")
    citations = _citations((message.model_extra or {}).get("context"))
    _echo_citations(_cited(citations, message.content or ""))


def _remote_stream(client: Any, payload: dict[str, Any], *, as_json: bool) -> None:
    stream = client.chat.completions.create(
        model="ondata", messages=payload["messages"], stream=True, extra_body=_sources(payload)
    )
    candidates: list[Citation] = []
    written: list[str] = []
    for chunk in stream:
        if as_json:
            typer.echo(chunk.model_dump_json())
            continue
        for choice in chunk.choices:
            context = (choice.delta.model_extra or {}).get("context")
            candidates = _citations(context) if context else candidates
            written.append(choice.delta.content or "")
            typer.echo(choice.delta.content or "", nl=False)
    if not as_json:
        typer.echo("")
        _echo_citations(_cited(candidates, "".join(written)))


def _sources(payload: dict[str, Any]) -> dict[str, Any]:
    return {"data_sources": payload["data_sources"]}


def _citations(context: Any) -> list[Citation]:
    if not isinstance(context, dict):
        return []
    return [Citation.model_validate(c) for c in context.get("citations") or []]
