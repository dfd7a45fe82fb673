"""Server-Sent Events in OpenAI's chat.completion.chunk format, as the official clients parse them.

A grounded stream is: one chunk whose delta carries role and OYD ``context`` (citations,
intent), then content deltas, then a chunk with ``finish_reason``, an optional usage chunk
(``stream_options.include_usage``), then ``data: [DONE]``.

The first frames are produced before the response starts, so a failure there (unknown index,
upstream 429/502/504) is an ordinary HTTP error; a failure after that is sent as a
``data: {"error": ...}`` event, which the openai client raises as APIError.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from api.convert import message_context, usage
from api.errors import error_body, ondata_error_body
from api.schemas import ChatCompletionChunk, ChunkChoice, ContextPart, Delta, Usage
from core.errors import OndataError
from core.models import Answer
from retrieval.answer import AnswerContext, AnswerDelta, AnswerDone, AnswerEvent

logger = logging.getLogger(__name__)

DONE = b"data: [DONE]\n\n"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def sse(payload: BaseModel | dict[str, Any]) -> bytes:
    """One `data:` event."""
    if isinstance(payload, BaseModel):
        return b"data: " + payload.model_dump_json(exclude_none=True).encode() + b"\n\n"
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


@dataclass
class ChunkHead:
    """id / created / model shared by every chunk of one stream."""

    id: str
    created: int
    model: str

    def chunk(self, delta: Delta, *, finish_reason: str | None = None) -> bytes:
        choice = ChunkChoice(delta=delta, finish_reason=finish_reason)
        return sse(self._chunk(choices=[choice]))

    def usage_chunk(self, totals: Usage) -> bytes:
        return sse(self._chunk(choices=[], usage=totals))

    def _chunk(
        self, *, choices: list[ChunkChoice], usage: Usage | None = None
    ) -> ChatCompletionChunk:
        return ChatCompletionChunk(
            id=self.id, created=self.created, model=self.model, choices=choices, usage=usage
        )


async def grounded_frames(
    events: AsyncIterator[AnswerEvent],
    *,
    head: ChunkHead,
    include: frozenset[ContextPart],
    include_usage: bool,
) -> AsyncIterator[bytes]:
    """AnswerService events -> SSE frames (context chunk, content chunks, finish, [DONE])."""
    answer: Answer | None = None
    async for event in events:
        if isinstance(event, AnswerContext):
            head.model = event.model
            yield head.chunk(Delta(role="assistant", context=_context(event, include)))
        elif isinstance(event, AnswerDelta):
            if event.content:
                yield head.chunk(Delta(content=event.content))
        elif isinstance(event, AnswerDone):
            answer = event.answer
    yield head.chunk(Delta(), finish_reason="stop")
    if include_usage and answer is not None:
        yield head.usage_chunk(usage(answer.prompt_tokens, answer.completion_tokens))
    yield DONE


def _context(event: AnswerContext, include: frozenset[ContextPart]) -> Any:
    return message_context(
        citations=event.citations,
        intent=event.intent,
        all_retrieved=event.all_retrieved,
        include=include,
    )


async def plain_frames(
    deltas: AsyncIterator[str],
    *,
    head: ChunkHead,
    include_usage: bool,
    prompt_tokens: int,
    count_tokens: Callable[[str], int],
) -> AsyncIterator[bytes]:
    """Chat-model deltas -> SSE frames; the first chunk carries the role and first text.

    The model's stream reports no usage, so the usage chunk counts tokens with tiktoken.
    """
    parts: list[str] = []
    async for text in deltas:
        delta = Delta(content=text) if parts else Delta(role="assistant", content=text)
        parts.append(text)
        yield head.chunk(delta)
    if not parts:
        yield head.chunk(Delta(role="assistant", content=""))
    yield head.chunk(Delta(), finish_reason="stop")
    if include_usage:
        yield head.usage_chunk(usage(prompt_tokens, count_tokens("".join(parts))))
    yield DONE


async def open_stream(frames: AsyncIterator[bytes], *, prefetch: int) -> StreamingResponse:
    """Produce the first `prefetch` frames now (errors become HTTP errors), stream the rest."""
    head: list[bytes] = []
    try:
        for _ in range(prefetch):
            head.append(await anext(frames))
    except StopAsyncIteration:
        pass
    except BaseException:
        await _aclose(frames)
        raise
    return StreamingResponse(
        _rest(head, frames), media_type="text/event-stream", headers=SSE_HEADERS
    )


async def _rest(head: list[bytes], frames: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    try:
        for frame in head:
            yield frame
        async for frame in frames:
            yield frame
    except OndataError as exc:
        logger.warning("stream failed after it started: %s", exc.message)
        yield sse(ondata_error_body(exc))
    except Exception:
        logger.exception("stream failed after it started")
        message = "The server had an error while streaming."
        yield sse(error_body(message, type_="server_error", code="server_error"))
    finally:
        await _aclose(frames)


async def _aclose(iterator: AsyncIterator[Any]) -> None:
    close = getattr(iterator, "aclose", None)
    if close is not None:
        await close()
