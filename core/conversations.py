"""Chat history in the metadata store: conversations, their messages, and feedback on answers.

Conversations belong to an owner (the caller's key, or one default owner when auth is off);
their ids are chosen by the client and unique per owner, so one caller can never collide with
or detect another's conversation. Messages are ordered by an autoincrement sequence; a
message's feedback is one row, replaced when given again.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

from sqlalchemy import (
    JSON,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    delete,
    func,
    select,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from core.db import Base, Store
from core.errors import (
    ConversationExistsError,
    ConversationNotFoundError,
    InvalidRequestError,
    MessageNotFoundError,
)
from core.models import Citation

Role = Literal["user", "assistant"]
Rating = Literal["up", "down"]
FeedbackCategory = Literal[
    "missing_citation", "wrong_citation", "out_of_scope", "inaccurate", "other"
]
FEEDBACK_CATEGORIES: tuple[str, ...] = get_args(FeedbackCategory)

CONVERSATION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
MAX_TITLE_CHARS = 200
AUTO_TITLE_CHARS = 80


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class ConversationRecord(Base):
    """A conversation of one owner; `public_id` is the id the client knows it by."""

    __tablename__ = "conversations"
    __table_args__ = (UniqueConstraint("owner", "public_id", name="uq_conversations_owner_id"),)

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    owner: Mapped[str] = mapped_column(String(128), index=True)
    public_id: Mapped[str] = mapped_column(String(128))
    title: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)


class MessageRecord(Base):
    """One turn: the user's question, or the answer with its citations and search intent."""

    __tablename__ = "messages"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)
    conversation_pk: Mapped[int] = mapped_column(
        ForeignKey("conversations.pk", ondelete="CASCADE"), index=True
    )
    role: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(Text)
    citations: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    intent: Mapped[list[str]] = mapped_column(JSON, default=list)
    index_name: Mapped[str | None] = mapped_column(String(128), nullable=True)
    model: Mapped[str | None] = mapped_column(String(256), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)


class FeedbackRecord(Base):
    """Thumbs up or down on an answer, with what was wrong and a comment."""

    __tablename__ = "feedback"

    message_id: Mapped[str] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True
    )
    owner: Mapped[str] = mapped_column(String(128))
    rating: Mapped[str] = mapped_column(String(8), index=True)
    categories: Mapped[list[str]] = mapped_column(JSON, default=list)
    comment: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), default=_now, index=True
    )


# ---- what the store hands out (detached from sessions) ------------------------------------


@dataclass(frozen=True)
class NewMessage:
    """A turn to record."""

    role: Role
    content: str
    id: str = ""
    citations: tuple[Citation, ...] = ()
    intent: tuple[str, ...] = ()
    index_name: str | None = None
    model: str | None = None


@dataclass(frozen=True)
class Feedback:
    """Feedback on one answer."""

    message_id: str
    rating: Rating
    categories: tuple[FeedbackCategory, ...]
    comment: str
    created_at: dt.datetime
    owner: str = ""
    conversation_id: str = ""
    message_content: str = ""


@dataclass(frozen=True)
class Message:
    """A stored turn, with its feedback if the owner gave any."""

    id: str
    role: Role
    content: str
    citations: tuple[Citation, ...]
    intent: tuple[str, ...]
    index_name: str | None
    model: str | None
    created_at: dt.datetime
    feedback: Feedback | None = None


@dataclass(frozen=True)
class Conversation:
    """A conversation's summary; `messages` is filled only when it is read whole."""

    id: str
    title: str
    created_at: dt.datetime
    updated_at: dt.datetime
    message_count: int = 0
    messages: tuple[Message, ...] = ()


def new_message_id() -> str:
    return f"msg-{uuid.uuid4().hex}"


def check_conversation_id(conversation_id: str, *, param: str = "conversation_id") -> str:
    """The id as given, or a 400 that says what ids look like."""
    if not CONVERSATION_ID.fullmatch(conversation_id):
        raise InvalidRequestError(
            "A conversation id is 1-128 characters: letters, digits and . _ : - "
            "(starting with a letter or digit).",
            param=param,
        )
    return conversation_id


def storable(text: str) -> str:
    """`text` as both databases hold it: PostgreSQL's text refuses NUL characters (a chat
    message with one, recorded in a conversation, was a 500 there)."""
    return text.replace("\x00", "")


def auto_title(text: str) -> str:
    """A conversation's first title: its first question, on one line, cut at a word."""
    line = " ".join(storable(text).split())
    if len(line) <= AUTO_TITLE_CHARS:
        return line
    cut = line[:AUTO_TITLE_CHARS].rsplit(" ", 1)[0] or line[:AUTO_TITLE_CHARS]
    return cut + "…"


class ConversationStore:
    """Conversations, messages and feedback over the metadata store's sessions."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def record_exchange(
        self, owner: str, conversation_id: str, turns: Sequence[NewMessage]
    ) -> list[str]:
        """Append turns (user question, then answer), creating the conversation if unknown.

        One transaction, so a conversation never holds a question without its answer.
        Returns the message ids.
        """
        try:
            return self._append(owner, conversation_id, turns)
        except IntegrityError:
            # Another request created the same new conversation first: append to that one.
            return self._append(owner, conversation_id, turns)

    def _append(self, owner: str, conversation_id: str, turns: Sequence[NewMessage]) -> list[str]:
        with self._store.session() as s:
            row = _find(s, owner, conversation_id)
            if row is None:
                first = next((t.content for t in turns if t.role == "user"), "")
                row = ConversationRecord(
                    owner=owner, public_id=conversation_id, title=auto_title(first)
                )
                s.add(row)
                s.flush()
            ids = [t.id or new_message_id() for t in turns]
            s.add_all(_message_row(row.pk, t, i) for t, i in zip(turns, ids, strict=True))
            row.updated_at = _now()
            return ids

    def create_conversation(
        self, owner: str, conversation_id: str | None, *, title: str = ""
    ) -> Conversation:
        """A new empty conversation (a fresh id when none is given); 400 if the id is taken."""
        public_id = check_conversation_id(conversation_id) if conversation_id else uuid.uuid4().hex
        try:
            with self._store.session() as s:
                row = ConversationRecord(owner=owner, public_id=public_id, title=_title(title))
                s.add(row)
                s.flush()
                return _summary(row, 0)
        except IntegrityError as exc:
            raise ConversationExistsError(
                f"A conversation '{public_id}' already exists.", param="id"
            ) from exc

    def list_conversations(
        self, owner: str, *, limit: int = 50, offset: int = 0
    ) -> list[Conversation]:
        """The owner's conversations, most recently updated first."""
        counts = (
            select(MessageRecord.conversation_pk, func.count().label("n"))
            .group_by(MessageRecord.conversation_pk)
            .subquery()
        )
        query = (
            select(ConversationRecord, func.coalesce(counts.c.n, 0))
            .outerjoin(counts, counts.c.conversation_pk == ConversationRecord.pk)
            .where(ConversationRecord.owner == owner)
            .order_by(ConversationRecord.updated_at.desc(), ConversationRecord.pk.desc())
            .limit(limit)
            .offset(offset)
        )
        with self._store.session() as s:
            return [_summary(row, n) for row, n in s.execute(query)]

    def get_conversation(self, owner: str, conversation_id: str) -> Conversation:
        """The conversation with every message and its feedback, oldest first."""
        with self._store.session() as s:
            row = _owned(s, owner, conversation_id)
            query = (
                select(MessageRecord, FeedbackRecord)
                .outerjoin(FeedbackRecord, FeedbackRecord.message_id == MessageRecord.id)
                .where(MessageRecord.conversation_pk == row.pk)
                .order_by(MessageRecord.seq)
            )
            messages = tuple(_message(m, f) for m, f in s.execute(query))
            summary = _summary(row, len(messages))
        return _with_messages(summary, messages)

    def rename(self, owner: str, conversation_id: str, title: str) -> Conversation:
        with self._store.session() as s:
            row = _owned(s, owner, conversation_id)
            row.title = _title(title)
            row.updated_at = _now()
            n = s.scalar(select(func.count()).where(MessageRecord.conversation_pk == row.pk))
            return _summary(row, n or 0)

    def delete_conversation(self, owner: str, conversation_id: str) -> None:
        """Delete the conversation, its messages and their feedback."""
        with self._store.session() as s:
            row = _owned(s, owner, conversation_id)
            ids = select(MessageRecord.id).where(MessageRecord.conversation_pk == row.pk)
            s.execute(delete(FeedbackRecord).where(FeedbackRecord.message_id.in_(ids)))
            s.execute(delete(MessageRecord).where(MessageRecord.conversation_pk == row.pk))
            s.delete(row)

    def set_feedback(
        self,
        owner: str,
        conversation_id: str,
        message_id: str,
        *,
        rating: Rating,
        categories: Sequence[FeedbackCategory] = (),
        comment: str = "",
    ) -> Feedback:
        """Give (or replace) feedback on one of the owner's answers."""
        with self._store.session() as s:
            message = _owned_message(s, owner, conversation_id, message_id)
            if message.role != "assistant":
                raise InvalidRequestError(
                    "Feedback is given on answers (assistant messages), not questions.",
                    param="message_id",
                )
            row = FeedbackRecord(
                message_id=message.id,
                owner=owner,
                rating=rating,
                categories=list(dict.fromkeys(categories)),
                comment=storable(comment),
                created_at=_now(),
            )
            s.merge(row)
            return _feedback(row)

    def clear_feedback(self, owner: str, conversation_id: str, message_id: str) -> bool:
        """Withdraw feedback; False when there was none."""
        with self._store.session() as s:
            message = _owned_message(s, owner, conversation_id, message_id)
            result = s.execute(
                delete(FeedbackRecord).where(FeedbackRecord.message_id == message.id)
            )
            return bool(getattr(result, "rowcount", 0))

    def list_feedback(
        self,
        *,
        rating: Rating | None = None,
        category: FeedbackCategory | None = None,
        owner: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Feedback]:
        """Feedback, newest first: everyone's, or only `owner`'s (administrators review it)."""
        query = (
            select(FeedbackRecord, MessageRecord.content, ConversationRecord.public_id)
            .join(MessageRecord, MessageRecord.id == FeedbackRecord.message_id)
            .join(ConversationRecord, ConversationRecord.pk == MessageRecord.conversation_pk)
            .order_by(FeedbackRecord.created_at.desc(), FeedbackRecord.message_id)
        )
        if rating is not None:
            query = query.where(FeedbackRecord.rating == rating)
        if owner is not None:
            query = query.where(FeedbackRecord.owner == owner)
        with self._store.session() as s:
            rows = [
                _feedback(f, conversation_id=cid, content=content)
                for f, content, cid in s.execute(query)
            ]
        # Categories are a JSON list: filtered here, portably across SQLite and PostgreSQL.
        if category is not None:
            rows = [f for f in rows if category in f.categories]
        return rows[offset : offset + limit]


# ---- row helpers ---------------------------------------------------------------------------


def _find(s: Session, owner: str, conversation_id: str) -> ConversationRecord | None:
    query = select(ConversationRecord).where(
        ConversationRecord.owner == owner, ConversationRecord.public_id == conversation_id
    )
    return s.scalars(query).one_or_none()


def _owned(s: Session, owner: str, conversation_id: str) -> ConversationRecord:
    row = _find(s, owner, conversation_id)
    if row is None:
        raise ConversationNotFoundError(
            f"No conversation '{conversation_id}'.", param="conversation_id"
        )
    return row


def _owned_message(s: Session, owner: str, conversation_id: str, message_id: str) -> MessageRecord:
    conversation = _owned(s, owner, conversation_id)
    message = s.scalars(
        select(MessageRecord).where(
            MessageRecord.id == message_id, MessageRecord.conversation_pk == conversation.pk
        )
    ).one_or_none()
    if message is None:
        raise MessageNotFoundError(
            f"No message '{message_id}' in conversation '{conversation_id}'.", param="message_id"
        )
    return message


def _title(title: str) -> str:
    title = " ".join(storable(title).split())
    if len(title) > MAX_TITLE_CHARS:
        raise InvalidRequestError(
            f"A title is at most {MAX_TITLE_CHARS} characters.", param="title"
        )
    return title


def _message_row(conversation_pk: int, turn: NewMessage, message_id: str) -> MessageRecord:
    return MessageRecord(
        id=message_id,
        conversation_pk=conversation_pk,
        role=turn.role,
        content=storable(turn.content),
        citations=[c.model_dump() for c in turn.citations],
        intent=list(turn.intent),
        index_name=turn.index_name,
        model=turn.model,
        created_at=_now(),
    )


def _summary(row: ConversationRecord, message_count: int) -> Conversation:
    return Conversation(
        id=row.public_id,
        title=row.title,
        created_at=_aware(row.created_at),
        updated_at=_aware(row.updated_at),
        message_count=message_count,
    )


def _with_messages(summary: Conversation, messages: tuple[Message, ...]) -> Conversation:
    return Conversation(
        id=summary.id,
        title=summary.title,
        created_at=summary.created_at,
        updated_at=summary.updated_at,
        message_count=len(messages),
        messages=messages,
    )


def _message(row: MessageRecord, feedback: FeedbackRecord | None) -> Message:
    return Message(
        id=row.id,
        role="assistant" if row.role == "assistant" else "user",
        content=row.content,
        citations=tuple(Citation.model_validate(c) for c in row.citations or ()),
        intent=tuple(row.intent or ()),
        index_name=row.index_name,
        model=row.model,
        created_at=_aware(row.created_at),
        feedback=None if feedback is None else _feedback(feedback),
    )


def _feedback(row: FeedbackRecord, *, conversation_id: str = "", content: str = "") -> Feedback:
    categories = tuple(c for c in row.categories or () if c in FEEDBACK_CATEGORIES)
    return Feedback(
        message_id=row.message_id,
        rating="up" if row.rating == "up" else "down",
        categories=categories,  # type: ignore[arg-type]
        comment=row.comment or "",
        created_at=_aware(row.created_at),
        owner=row.owner,
        conversation_id=conversation_id,
        message_content=content,
    )


def _aware(value: dt.datetime) -> dt.datetime:
    """SQLite hands back naive datetimes; everything stored is UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
