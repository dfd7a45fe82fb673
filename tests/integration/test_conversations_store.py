"""Chat history in the metadata store, on SQLite and PostgreSQL: the migration, conversations
per owner, message order with citations, rename/delete, and feedback."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from core.conversations import (
    ConversationStore,
    FeedbackRecord,
    MessageRecord,
    NewMessage,
    auto_title,
    check_conversation_id,
)
from core.db import Base, Store, make_engine
from core.errors import (
    ConversationExistsError,
    ConversationNotFoundError,
    InvalidRequestError,
    MessageNotFoundError,
)
from core.models import Citation

HISTORY_TABLES = {"conversations", "messages", "feedback"}
CITATION = Citation(content="Hotels up to 180 euros.", title="Travel", chunk_id="c1", doc_id="d1")


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = Store(make_engine(store_url))
    yield s
    s.engine.dispose()


@pytest.fixture
def history(store: Store) -> ConversationStore:
    return ConversationStore(store)


def _exchange(question: str, answer: str = "Up to 180 euros [doc1].") -> list[NewMessage]:
    return [
        NewMessage(role="user", content=question),
        NewMessage(
            role="assistant",
            content=answer,
            citations=(CITATION,),
            intent=("hotel limit",),
            index_name="handbook",
            model="ondata-extractive",
        ),
    ]


def test_history_migration_creates_tables_matching_the_models(store: Store) -> None:
    assert set(inspect(store.engine).get_table_names()) >= HISTORY_TABLES
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    ours = [d for d in diff if HISTORY_TABLES & _tables_named(d)]
    assert ours == [], f"history models and migration 0004 differ: {ours}"


def _tables_named(diff: object) -> set[str]:
    text = repr(diff)
    return {t for t in HISTORY_TABLES if f"'{t}'" in text or f"<{t}>" in text}


def test_history_records_an_exchange_and_reads_it_back(history: ConversationStore) -> None:
    ids = history.record_exchange("alice", "c-1", _exchange("What is the hotel limit?"))
    history.record_exchange("alice", "c-1", _exchange("And trains?", "First class."))
    conversation = history.get_conversation("alice", "c-1")
    assert conversation.title == "What is the hotel limit?"
    assert [m.role for m in conversation.messages] == ["user", "assistant", "user", "assistant"]
    assert [m.id for m in conversation.messages[:2]] == ids
    answer = conversation.messages[1]
    assert answer.citations == (CITATION,)
    assert answer.intent == ("hotel limit",)
    assert (answer.index_name, answer.model) == ("handbook", "ondata-extractive")
    assert conversation.messages[3].content == "First class."
    assert conversation.created_at.tzinfo is not None


def test_history_conversations_are_per_owner(history: ConversationStore) -> None:
    history.record_exchange("alice", "shared-id", _exchange("alice asks"))
    history.record_exchange("bob", "shared-id", _exchange("bob asks"))
    assert history.get_conversation("alice", "shared-id").messages[0].content == "alice asks"
    assert history.get_conversation("bob", "shared-id").messages[0].content == "bob asks"
    assert [c.id for c in history.list_conversations("bob")] == ["shared-id"]
    with pytest.raises(ConversationNotFoundError):
        history.get_conversation("carol", "shared-id")
    with pytest.raises(ConversationNotFoundError):
        history.delete_conversation("carol", "shared-id")
    with pytest.raises(ConversationNotFoundError):
        history.rename("carol", "shared-id", "mine now")


def test_history_lists_most_recent_first_with_counts_and_pages(
    history: ConversationStore,
) -> None:
    for name in ("old", "middle", "new"):
        history.record_exchange("alice", name, _exchange(f"{name} question"))
    history.record_exchange("alice", "old", _exchange("old again"))
    listed = history.list_conversations("alice")
    assert [c.id for c in listed] == ["old", "new", "middle"]
    assert [c.message_count for c in listed] == [4, 2, 2]
    page = history.list_conversations("alice", limit=1, offset=1)
    assert [c.id for c in page] == ["new"]


def test_history_create_rename_and_delete(history: ConversationStore) -> None:
    created = history.create_conversation("alice", None, title="  Travel   questions ")
    assert created.title == "Travel questions"
    assert created.message_count == 0
    with pytest.raises(ConversationExistsError):
        history.create_conversation("alice", created.id)
    history.record_exchange("alice", created.id, _exchange("Hotels?"))
    # An explicit title is kept when the first exchange arrives.
    assert history.get_conversation("alice", created.id).title == "Travel questions"
    renamed = history.rename("alice", created.id, "Hotels")
    assert (renamed.title, renamed.message_count) == ("Hotels", 2)
    with pytest.raises(InvalidRequestError):
        history.rename("alice", created.id, "x" * 201)
    history.delete_conversation("alice", created.id)
    assert history.list_conversations("alice") == []
    with pytest.raises(ConversationNotFoundError):
        history.get_conversation("alice", created.id)


def test_history_delete_removes_messages_and_feedback(
    history: ConversationStore, store: Store
) -> None:
    _, answer_id = history.record_exchange("alice", "c", _exchange("q"))
    history.set_feedback("alice", "c", answer_id, rating="up")
    history.record_exchange("alice", "keep", _exchange("other"))
    history.delete_conversation("alice", "c")
    with store.session() as s:
        assert s.query(FeedbackRecord).count() == 0
        assert s.query(MessageRecord).count() == 2


def test_history_feedback_is_given_replaced_and_withdrawn(history: ConversationStore) -> None:
    question_id, answer_id = history.record_exchange("alice", "c", _exchange("q"))
    first = history.set_feedback("alice", "c", answer_id, rating="up")
    assert (first.rating, first.categories, first.comment) == ("up", (), "")
    history.set_feedback(
        "alice",
        "c",
        answer_id,
        rating="down",
        categories=["wrong_citation", "inaccurate", "wrong_citation"],
        comment="doc1 is about trains",
    )
    shown = history.get_conversation("alice", "c").messages[1].feedback
    assert shown is not None
    assert shown.rating == "down"
    assert shown.categories == ("wrong_citation", "inaccurate")
    assert shown.comment == "doc1 is about trains"
    assert history.get_conversation("alice", "c").messages[0].feedback is None
    assert history.clear_feedback("alice", "c", answer_id) is True
    assert history.clear_feedback("alice", "c", answer_id) is False
    assert history.get_conversation("alice", "c").messages[1].feedback is None
    with pytest.raises(InvalidRequestError, match="answers"):
        history.set_feedback("alice", "c", question_id, rating="up")


def test_history_feedback_needs_the_owners_message(history: ConversationStore) -> None:
    _, answer_id = history.record_exchange("alice", "c", _exchange("q"))
    history.record_exchange("alice", "other", _exchange("q2"))
    with pytest.raises(ConversationNotFoundError):
        history.set_feedback("bob", "c", answer_id, rating="down")
    with pytest.raises(MessageNotFoundError):
        history.set_feedback("alice", "other", answer_id, rating="down")
    with pytest.raises(MessageNotFoundError):
        history.set_feedback("alice", "c", "msg-nope", rating="down")


def test_history_feedback_review_filters_by_rating_and_category(
    history: ConversationStore,
) -> None:
    _, a1 = history.record_exchange("alice", "c1", _exchange("q1", "answer one"))
    _, a2 = history.record_exchange("bob", "c2", _exchange("q2", "answer two"))
    _, a3 = history.record_exchange("bob", "c2", _exchange("q3", "answer three"))
    history.set_feedback("alice", "c1", a1, rating="up")
    history.set_feedback("bob", "c2", a2, rating="down", categories=["out_of_scope"])
    history.set_feedback("bob", "c2", a3, rating="down", categories=["missing_citation"])
    everything = history.list_feedback()
    assert [f.message_id for f in everything] == [a3, a2, a1]
    assert {(f.owner, f.conversation_id) for f in everything} == {("alice", "c1"), ("bob", "c2")}
    down = history.list_feedback(rating="down")
    assert [f.message_content for f in down] == ["answer three", "answer two"]
    scoped = history.list_feedback(category="out_of_scope")
    assert [f.message_id for f in scoped] == [a2]
    assert [f.message_id for f in history.list_feedback(limit=1, offset=1)] == [a2]


def test_history_concurrent_first_exchanges_share_one_conversation(
    history: ConversationStore,
) -> None:
    errors: list[BaseException] = []

    def ask(i: int) -> None:
        try:
            history.record_exchange("alice", "race", _exchange(f"question {i}"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    conversation = history.get_conversation("alice", "race")
    assert len(conversation.messages) == 8
    roles = [m.role for m in conversation.messages]
    assert roles == ["user", "assistant"] * 4  # each exchange stays together


@pytest.mark.parametrize("good", ["a", "conv-1", "2024.06.01_x:y", "A" * 128])
def test_conversation_id_accepts(good: str) -> None:
    assert check_conversation_id(good) == good


@pytest.mark.parametrize("bad", ["", "-start", "has space", "../etc", "é", "A" * 129])
def test_conversation_id_rejects(bad: str) -> None:
    with pytest.raises(InvalidRequestError, match="1-128 characters"):
        check_conversation_id(bad)


def test_auto_title_is_one_line_cut_at_a_word() -> None:
    assert auto_title("  What is\n the limit? ") == "What is the limit?"
    long = auto_title("word " * 40)
    assert long.endswith("…")
    assert len(long) <= 81
    assert not long.removesuffix("…").endswith(" ")


def test_history_keeps_text_with_nul_characters_without_them(history: ConversationStore) -> None:
    # PostgreSQL text cannot hold NUL: such a chat message used to fail the request with a 500
    cited = Citation(content="Hotels\x00 up to 180 euros.", title="T", chunk_id="c", doc_id="d")
    turns = _exchange("Hotel\x00 limit?", "Up to\x00 180 euros [doc1].")
    turns[1] = NewMessage(role="assistant", content=turns[1].content, citations=(cited,))
    ids = history.record_exchange("alice", "c-nul", turns)
    feedback = history.set_feedback("alice", "c-nul", ids[1], rating="down", comment="bad\x00")
    assert feedback.comment == "bad"
    conversation = history.get_conversation("alice", "c-nul")
    assert conversation.title == "Hotel limit?"
    assert [m.content for m in conversation.messages] == ["Hotel limit?", "Up to 180 euros [doc1]."]
    assert conversation.messages[1].citations[0].content.startswith("Hotels")
    renamed = history.rename("alice", "c-nul", "new\x00 title")
    assert renamed.title == "new title"
