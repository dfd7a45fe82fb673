"""Query intent: the conversation turned into standalone search queries (OYD's ``intent``).

With a chat model, the model rewrites the conversation into 1..max standalone queries
(template ``prompts/intent.txt``); a reply that is not a list of queries falls back to the
heuristic. Without one, the heuristic: the last user turn, with the previous user turn in
front when the last one leans on it (short, or starting with / holding a reference word).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence

from retrieval.chat import ChatMessage, ChatModel, ChatParams
from retrieval.citations import is_refusal
from retrieval.prompts import split_conversation, template

logger = logging.getLogger(__name__)

DEFAULT_MAX_QUERIES = 3
SHORT_TURN_WORDS = 5
MAX_QUERY_CHARS = 300
_CONTEXT_TURNS = 6
_TURN_CHARS = 1500
_REFERENCES = frozenset(
    {"it", "its", "it's", "they", "them", "their", "theirs", "this", "these", "those"}
    | {"he", "him", "his", "she", "her", "hers", "former", "latter"}
)
_LEADING_REFERENCES = ("and ", "what about", "how about", "also ", "then ", "so ")
_BULLET = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)]|query\s*\d*\s*:)\s*", re.IGNORECASE)
_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$", re.MULTILINE)
_WORD = re.compile(r"[a-z']+")
_SENTENCE_BREAK = re.compile(r"[.!?]\s+[A-Z]")


def heuristic_queries(messages: Sequence[ChatMessage]) -> tuple[str, ...]:
    """The last user turn, preceded by the previous user turn when it needs its context."""
    convo = split_conversation(messages)
    previous = [m.content.strip() for m in convo.history if m.role == "user" and m.content.strip()]
    if previous and needs_context(convo.question):
        return (f"{previous[-1]} {convo.question}",)
    return (convo.question,)


def needs_context(question: str) -> bool:
    """Whether a follow-up cannot stand alone (few words, or a reference word)."""
    lowered = question.lower().strip()
    words = _WORD.findall(lowered)
    if len(words) <= SHORT_TURN_WORDS or lowered.startswith(_LEADING_REFERENCES):
        return True
    return any(word in _REFERENCES for word in words)


def parse_queries(text: str, *, max_queries: int) -> tuple[str, ...]:
    """Queries from a model reply: a JSON array (or {"queries": [...]}), else one per line.

    Returns () when the reply is not recognisably a list of queries.
    """
    body = _FENCE.sub("", text.strip()).strip()
    items = _json_items(body)
    if items is None:
        items = [_BULLET.sub("", line).strip().strip("\"'") for line in body.splitlines()]
        items = [item for item in items if item]
        if len(items) > max(max_queries * 2, 4) or any(_SENTENCE_BREAK.search(i) for i in items):
            return ()  # prose, not a list of queries
    if any(is_refusal(item) for item in items):
        return ()
    clean: dict[str, str] = {}
    for item in items:
        query = " ".join(item.split())
        if query and len(query) <= MAX_QUERY_CHARS and "[doc" not in query.lower():
            clean.setdefault(query.lower(), query)
    return tuple(clean.values())[:max_queries]


def _json_items(body: str) -> list[str] | None:
    start, end = body.find("["), body.rfind("]")
    candidates = [body, body[start : end + 1]] if 0 <= start < end else [body]
    for candidate in candidates:
        try:
            value = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(value, dict):
            value = value.get("queries")
        if isinstance(value, list):
            return [v for v in value if isinstance(v, str)]
        if isinstance(value, str):
            return [value]
    return None


def intent_messages(messages: Sequence[ChatMessage], *, max_queries: int) -> list[ChatMessage]:
    """The rewrite prompt: instructions, then the recent conversation as data."""
    turns = [m for m in messages if m.role != "system"][-_CONTEXT_TURNS:]
    transcript = "\n".join(f"{m.role}: {m.content.strip()[:_TURN_CHARS]}" for m in turns)
    system = template("intent").substitute(max_queries=max_queries).strip()
    return [
        ChatMessage("system", system),
        ChatMessage("user", f"Conversation:\n<conversation>\n{transcript}\n</conversation>"),
    ]


async def rewritten_queries(
    model: ChatModel, messages: Sequence[ChatMessage], *, max_queries: int
) -> tuple[tuple[str, ...], int, int]:
    """(queries, prompt tokens, completion tokens); the heuristic when the reply is unusable.

    Chat model errors propagate: the answer would need the same model anyway.
    """
    params = ChatParams(temperature=0.0, max_tokens=60 * max_queries + 40)
    result = await model.complete(intent_messages(messages, max_queries=max_queries), params=params)
    queries = parse_queries(result.content, max_queries=max_queries)
    if not queries:
        logger.info("intent reply unusable, using the last user turn: %.80r", result.content)
        queries = heuristic_queries(messages)
    return queries, result.prompt_tokens, result.completion_tokens
