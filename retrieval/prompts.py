"""Grounded prompts: grounding rules, [docN]-labelled documents wrapped as data, a token budget.

Layout of the messages sent to the model (templates in retrieval/prompts/*.txt):

1. system: the grounding rules (documents are data, cite [docN], the in_scope rule), then the
   caller's role_information and system turns as subordinate "role information";
2. the conversation history (user/assistant turns), oldest trimmed first;
3. user: ``<documents>`` with each chunk as ``<document label="[docN]" title="...">``, a
   reminder that the documents are data and the rules still apply, then the question.

Stating the rules before the documents and reminding them after, in a lower-privilege user
turn, is what keeps an instruction planted in a document from taking over.

Token budget (tiktoken; o200k_base / cl100k_base chosen by model name): the response is
reserved first; what is over the window is trimmed from the history (oldest turns first),
then from the documents (least relevant first, the last one kept is cut to fit).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from string import Template

import tiktoken

from core.errors import ContextLengthExceededError, MissingUserMessageError
from core.models import ScoredChunk
from retrieval.chat import ChatMessage
from retrieval.citations import NOT_FOUND_MESSAGE

MESSAGE_OVERHEAD_TOKENS = 4
"""Tokens each chat message costs beyond its content (role and separators)."""

UNKNOWN_TOKENIZER_MARGIN = 0.9
"""Share of the window we dare fill for models whose tokenizer tiktoken does not know."""

_O200K_PREFIXES = ("gpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "o1", "o3", "o4", "chatgpt-4o")
_TAG = re.compile(r"<(/?)\s*(documents?)\b", re.IGNORECASE)


@dataclass(frozen=True)
class Conversation:
    """A request's turns split into what the prompt needs."""

    question: str
    history: tuple[ChatMessage, ...]
    system: tuple[str, ...]


@dataclass(frozen=True)
class BuiltPrompt:
    """The messages to send and the documents they label [doc1].. (in that order)."""

    messages: tuple[ChatMessage, ...]
    documents: tuple[ScoredChunk, ...]
    prompt_tokens: int
    dropped_turns: int
    dropped_documents: int


@functools.cache
def template(name: str) -> Template:
    """A prompt template from retrieval/prompts/<name>.txt ($placeholders)."""
    text = resources.files("retrieval").joinpath("prompts", f"{name}.txt").read_text("utf-8")
    return Template(text)


NO_USER_MESSAGE = (
    "messages has no user message with text to answer; add one such as "
    '{"role": "user", "content": "your question"}'
)


def split_conversation(messages: Sequence[ChatMessage]) -> Conversation:
    """The last user turn is the question; earlier user/assistant turns are history."""
    last_user = max((i for i, m in enumerate(messages) if m.role == "user"), default=-1)
    if last_user < 0 or not messages[last_user].content.strip():
        raise MissingUserMessageError(NO_USER_MESSAGE, param="messages")
    turns = messages[:last_user]
    return Conversation(
        question=messages[last_user].content.strip(),
        history=tuple(m for m in turns if m.role != "system"),
        system=tuple(m.content for m in messages if m.role == "system" and m.content.strip()),
    )


@functools.cache
def encoding_for(model: str) -> tiktoken.Encoding:
    """The tokenizer of an OpenAI model, or a close stand-in for other models."""
    try:
        return tiktoken.encoding_for_model(model)
    except KeyError:
        name = model.lower().rsplit("/", 1)[-1]
        return tiktoken.get_encoding(
            "o200k_base" if name.startswith(_O200K_PREFIXES) else "cl100k_base"
        )


def knows_tokenizer(model: str) -> bool:
    """Whether tiktoken maps this model name to its real tokenizer."""
    try:
        tiktoken.encoding_name_for_model(model)
    except KeyError:
        return False
    return True


def count_tokens(text: str, *, model: str) -> int:
    """Tokens of a text for a model."""
    return len(encoding_for(model).encode(text, disallowed_special=()))


def message_tokens(messages: Sequence[ChatMessage], *, model: str) -> int:
    """Prompt tokens of a message list, with the per-message overhead."""
    return sum(count_tokens(m.content, model=model) + MESSAGE_OVERHEAD_TOKENS for m in messages) + 3


def system_message(
    *, role_information: str | None, in_scope: bool, extra: Sequence[str] = ()
) -> str:
    """Grounding rules, then the operator's role information (subordinate to the rules)."""
    # the in_scope rule quotes the refusal sentence that AnswerService and evaluation recognise
    rule = template("scope_in" if in_scope else "scope_out")
    scope = rule.substitute(refusal=NOT_FOUND_MESSAGE).strip()
    text = template("system").substitute(scope_rule=scope).rstrip()
    role = "\n\n".join(part.strip() for part in (role_information or "", *extra) if part.strip())
    if role:
        text += "\n" + template("role").substitute(role_information=role).rstrip()
    return text


def render_document(number: int, chunk: ScoredChunk, *, content: str | None = None) -> str:
    """One document block labelled [docN]; tags inside the content are neutralised."""
    title = " ".join((chunk.chunk.title or "").split()).replace('"', "'")
    body = _TAG.sub(lambda m: f"<{m.group(1)}_{m.group(2)}", content or chunk.chunk.content)
    return (
        template("document").substitute(number=number, title=title, content=body.strip()).rstrip()
    )


def question_message(question: str, documents: Sequence[str]) -> ChatMessage:
    """The final user turn: wrapped documents, the data-not-instructions reminder, the question."""
    body = "\n".join(documents) if documents else "(no documents)"
    return ChatMessage(
        "user", template("question").substitute(documents=body, question=question).rstrip()
    )


def build_messages(
    *,
    messages: Sequence[ChatMessage],
    documents: Sequence[ScoredChunk],
    role_information: str | None,
    in_scope: bool,
    model: str,
    context_window: int,
    response_tokens: int,
) -> BuiltPrompt:
    """The grounded prompt for a conversation and its documents, within the token budget.

    Raises ContextLengthExceededError when the rules and the question alone do not fit.
    """
    convo = split_conversation(messages)
    system = ChatMessage(
        "system",
        system_message(role_information=role_information, in_scope=in_scope, extra=convo.system),
    )
    budget = _budget(model=model, context_window=context_window, response_tokens=response_tokens)
    fixed = message_tokens([system, question_message(convo.question, [])], model=model)
    if fixed > budget:
        raise ContextLengthExceededError(
            f"the question and rules need {fixed} tokens; the model allows {budget} "
            f"after reserving {response_tokens} for the answer",
            param="messages",
        )
    blocks = [render_document(i, d) for i, d in enumerate(documents, start=1)]
    history, blocks = _fit(convo.history, blocks, documents, room=budget - fixed, model=model)
    final = (system, *history, question_message(convo.question, blocks))
    return BuiltPrompt(
        messages=final,
        documents=tuple(documents[: len(blocks)]),
        prompt_tokens=message_tokens(final, model=model),
        dropped_turns=len(convo.history) - len(history),
        dropped_documents=len(documents) - len(blocks),
    )


def _budget(*, model: str, context_window: int, response_tokens: int) -> int:
    usable = (
        context_window if knows_tokenizer(model) else int(context_window * UNKNOWN_TOKENIZER_MARGIN)
    )
    return usable - response_tokens


def _fit(
    history: Sequence[ChatMessage],
    blocks: list[str],
    documents: Sequence[ScoredChunk],
    *,
    room: int,
    model: str,
) -> tuple[tuple[ChatMessage, ...], list[str]]:
    """Drop history (oldest first), then documents (last first), then cut the last document."""
    doc_costs = [count_tokens(b, model=model) + 1 for b in blocks]
    turn_costs = [count_tokens(m.content, model=model) + MESSAGE_OVERHEAD_TOKENS for m in history]
    start = 0
    while start < len(history) and sum(turn_costs[start:]) + sum(doc_costs) > room:
        start += 1
    kept_history = tuple(history[start:])
    room -= sum(turn_costs[start:])
    while blocks and sum(doc_costs) > room:
        blocks, doc_costs = blocks[:-1], doc_costs[:-1]
    dropped = len(documents) - len(blocks)
    if dropped and room - sum(doc_costs) > 64:
        cut = _truncated(
            documents[len(blocks)], len(blocks) + 1, room - sum(doc_costs), model=model
        )
        blocks = [*blocks, cut]
    return kept_history, blocks


def _truncated(chunk: ScoredChunk, number: int, room: int, *, model: str) -> str:
    """A document block whose content is cut so the block fits in `room` tokens."""
    frame = count_tokens(render_document(number, chunk, content="x"), model=model) + 2
    encoding = encoding_for(model)
    tokens = encoding.encode(chunk.chunk.content, disallowed_special=())
    content = encoding.decode(tokens[: max(room - frame, 1)])
    return render_document(number, chunk, content=content + " ...")
