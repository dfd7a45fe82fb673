"""An LLM judge for answer groundedness and relevance (1-5), on any OpenAI-compatible endpoint."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

import openai
from openai.types.chat import ChatCompletionMessageParam

from core.settings import EvaluationSettings

logger = logging.getLogger(__name__)

JUDGE_SYSTEM = (
    "You grade answers of a question-answering system that must answer only from the given "
    "passages. Reply with one JSON object and nothing else: "
    '{"groundedness": G, "relevance": R}, integers from 1 to 5.\n'
    "groundedness: 5 = every statement of the answer is supported by the passages; "
    "3 = about half is supported; 1 = the answer is unsupported or contradicts them.\n"
    "relevance: 5 = the answer fully addresses the question; 3 = partly; 1 = not at all."
)
_SCORE = re.compile(r'"?(groundedness|relevance)"?\s*[:=]\s*"?([1-5])')
_MAX_PASSAGE_CHARS = 2000


@dataclass(frozen=True)
class JudgeScores:
    """Scores 1-5; None when the judge's reply could not be read or the call failed."""

    groundedness: int | None
    relevance: int | None


def judge_prompt(question: str, answer: str, passages: Sequence[str]) -> str:
    """The user message the judge grades (pure)."""
    shown = "\n\n".join(
        f"[passage {i}]\n{p[:_MAX_PASSAGE_CHARS]}" for i, p in enumerate(passages, 1)
    )
    return f"Passages:\n{shown or '(none)'}\n\nQuestion:\n{question}\n\nAnswer:\n{answer}"


def parse_scores(reply: str) -> JudgeScores:
    """Read the two scores from the judge's reply (JSON, or `name: n` pairs)."""
    found = {name: int(value) for name, value in _SCORE.findall(reply)}
    if not found:
        try:
            data = json.loads(reply)
            found = {k: int(data[k]) for k in ("groundedness", "relevance") if k in data}
        except (ValueError, TypeError, KeyError):
            found = {}
    return JudgeScores(_in_range(found.get("groundedness")), _in_range(found.get("relevance")))


def _in_range(value: int | None) -> int | None:
    return value if value is not None and 1 <= value <= 5 else None


class OpenAIJudge:
    """Grades answers with a chat model behind an OpenAI-compatible endpoint."""

    def __init__(self, settings: EvaluationSettings) -> None:
        key = settings.judge_api_key.get_secret_value() if settings.judge_api_key else "unused"
        self.model = settings.judge_model or ""
        self._client = openai.AsyncOpenAI(
            base_url=settings.judge_base_url, api_key=key, timeout=settings.judge_timeout_s
        )

    async def grade(self, *, question: str, answer: str, passages: Sequence[str]) -> JudgeScores:
        """Scores for one answer; a failed call is logged and scores None (never raised)."""
        messages: list[ChatCompletionMessageParam] = [
            {"role": "system", "content": JUDGE_SYSTEM},
            {"role": "user", "content": judge_prompt(question, answer, passages)},
        ]
        try:
            reply = await self._client.chat.completions.create(
                model=self.model, messages=messages, temperature=0
            )
        except openai.OpenAIError as exc:
            logger.warning("judge call failed: %s", exc)
            return JudgeScores(None, None)
        return parse_scores(reply.choices[0].message.content or "")

    async def aclose(self) -> None:
        await self._client.close()
