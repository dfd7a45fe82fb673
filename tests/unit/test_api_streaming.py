"""SSE framing: chunk order, usage chunk, and errors before vs after the stream starts."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from api.streaming import ChunkHead, grounded_frames, open_stream
from core.errors import ChatModelError, ChatModelRateLimitError
from core.models import Answer, Citation
from retrieval.answer import AnswerContext, AnswerDelta, AnswerDone, AnswerEvent

CITATION = Citation(content="Hotels: 180 euros.", title="Travel", chunk_id="c1", doc_id="d1")
INCLUDE = frozenset({"citations", "intent"})


async def _events(*, fail_after: int | None = None) -> AsyncIterator[AnswerEvent]:
    events: list[AnswerEvent] = [
        AnswerContext(intent=("hotel limit",), citations=(CITATION,), all_retrieved=(), model="m"),
        AnswerDelta("Up to 180 euros "),
        AnswerDelta("[doc1]."),
        AnswerDone(
            Answer(
                content="Up to 180 euros [doc1].", model="m", prompt_tokens=5, completion_tokens=7
            )
        ),
    ]
    for i, event in enumerate(events):
        if fail_after is not None and i == fail_after:
            raise ChatModelError("upstream broke")
        yield event


def _payloads(frames: list[bytes]) -> list[Any]:
    out: list[Any] = []
    for frame in frames:
        assert frame.startswith(b"data: ")
        assert frame.endswith(b"\n\n")
        data = frame.removeprefix(b"data: ").strip()
        out.append(data.decode() if data == b"[DONE]" else json.loads(data))
    return out


async def _body(frames: AsyncIterator[bytes], prefetch: int) -> list[Any]:
    response = await open_stream(frames, prefetch=prefetch)
    return _payloads([chunk async for chunk in response.body_iterator])  # type: ignore[misc]


async def test_grounded_stream_is_context_content_finish_usage_done() -> None:
    frames = grounded_frames(
        _events(), head=ChunkHead("id-1", 1, "m"), include=INCLUDE, include_usage=True
    )
    payloads = await _body(frames, prefetch=2)
    first, *middle, finish, usage, done = payloads
    assert first["choices"][0]["delta"]["role"] == "assistant"
    assert first["choices"][0]["delta"]["context"]["citations"][0]["chunk_id"] == "c1"
    assert json.loads(first["choices"][0]["delta"]["context"]["intent"]) == ["hotel limit"]
    assert "".join(m["choices"][0]["delta"]["content"] for m in middle) == "Up to 180 euros [doc1]."
    assert finish["choices"][0]["finish_reason"] == "stop"
    assert usage["choices"] == []
    assert usage["usage"] == {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}
    assert done == "[DONE]"
    assert {p["id"] for p in payloads[:-1]} == {"id-1"}


async def test_failure_before_the_first_frames_raises_for_an_http_status() -> None:
    async def rate_limited() -> AsyncIterator[AnswerEvent]:
        raise ChatModelRateLimitError("slow down", retry_after=3)
        yield  # pragma: no cover

    frames = grounded_frames(
        rate_limited(), head=ChunkHead("id", 1, "m"), include=INCLUDE, include_usage=False
    )
    with pytest.raises(ChatModelRateLimitError):
        await open_stream(frames, prefetch=2)


async def test_failure_after_the_stream_started_is_an_error_event() -> None:
    frames = grounded_frames(
        _events(fail_after=2), head=ChunkHead("id", 1, "m"), include=INCLUDE, include_usage=False
    )
    payloads = await _body(frames, prefetch=2)
    assert payloads[0]["choices"][0]["delta"]["context"]
    assert payloads[1]["choices"][0]["delta"]["content"] == "Up to 180 euros "
    assert payloads[-1] == {
        "error": {
            "message": "upstream broke",
            "type": "upstream_error",
            "param": None,
            "code": "chat_model_failed",
        }
    }
    assert "[DONE]" not in payloads
