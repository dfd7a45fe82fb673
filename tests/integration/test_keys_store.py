"""API keys in the metadata store (SQLite and PostgreSQL): hashes only, revocation, scopes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine

from core.access import Scope
from core.db import make_engine
from core.errors import (
    ApiKeyNotFoundError,
    InvalidRequestError,
    LastAdminKeyError,
    PermissionDeniedError,
)
from core.keys import (
    ApiKeyRecord,
    KeyStore,
    hash_key,
    parse_groups,
    parse_role,
    principal_for,
)


@pytest.fixture
def engine(store_url: str) -> Iterator[Engine]:
    engine = make_engine(store_url)
    yield engine
    engine.dispose()


@pytest.fixture
def keys(engine: Engine) -> KeyStore:
    return KeyStore(engine)


def test_keys_store_only_a_hash_and_a_prefix(keys: KeyStore, engine: Engine) -> None:
    created = keys.create(role="reader", groups=["hr"], indexes=["handbook"], name="alice")
    assert created.key.startswith(f"{created.info.prefix}_")
    with engine.connect() as conn:
        rows = conn.execute(select(ApiKeyRecord.__table__)).mappings().all()
    assert len(rows) == 1
    stored = " ".join(str(v) for v in rows[0].values())
    assert created.key not in stored
    # The secret is everything after "<prefix>_"; token_urlsafe may itself contain "_".
    secret = created.key.removeprefix(f"{created.info.prefix}_")
    assert len(secret) >= 20
    assert secret not in stored
    assert rows[0]["key_hash"] == hash_key(created.key)


def test_keys_authenticate_returns_the_keys_scope(keys: KeyStore) -> None:
    created = keys.create(role="contributor", groups=["hr", " eng ", "hr"], indexes=["a", "b"])
    info = keys.authenticate(created.key)
    assert info is not None
    assert info.role == "contributor"
    assert info.groups == ("hr", "eng")
    assert info.indexes == ("a", "b")
    assert principal_for(info).subject == created.info.id


@pytest.mark.parametrize("mangle", [lambda k: k + "x", lambda k: k[:-1], str.upper, lambda k: ""])
def test_keys_wrong_key_is_not_authenticated(keys: KeyStore, mangle: object) -> None:
    created = keys.create(role="admin")
    assert callable(mangle)
    assert keys.authenticate(mangle(created.key)) is None


def test_keys_revoked_key_is_not_authenticated_and_stays_listed(keys: KeyStore) -> None:
    created = keys.create(role="reader")
    other = keys.create(role="reader")
    revoked = keys.revoke(created.info.prefix)
    assert revoked.revoked
    assert keys.authenticate(created.key) is None
    assert keys.authenticate(other.key) is not None
    assert [i.id for i in keys.list()] == [other.info.id]
    assert {i.id for i in keys.list(include_revoked=True)} == {created.info.id, other.info.id}
    assert keys.revoke(created.key).revoked_at == revoked.revoked_at


def test_keys_revoking_an_unknown_id_is_not_found(keys: KeyStore) -> None:
    with pytest.raises(ApiKeyNotFoundError):
        keys.revoke("od_000000000000")


def test_keys_any_exist_stays_true_after_revocation(keys: KeyStore, engine: Engine) -> None:
    assert not keys.any_exist()
    created = keys.create(role="reader")
    keys.revoke(created.info.id)
    assert KeyStore(engine).any_exist()


def test_keys_admin_without_groups_reads_everything_others_public_only(keys: KeyStore) -> None:
    assert keys.create(role="admin", groups=None).info.groups is None
    assert parse_groups(None, role="admin") is None
    assert parse_groups(None, role="reader") == ()
    assert parse_groups("*", role="reader") is None
    assert parse_groups("hr, eng", role="reader") == ("hr", "eng")


@pytest.mark.parametrize("groups", [["*"], ["a" * 200], ["x,y"]])
def test_keys_odd_group_names_are_refused(keys: KeyStore, groups: list[str]) -> None:
    with pytest.raises(InvalidRequestError):
        keys.create(role="reader", groups=groups)


def test_keys_unknown_role_is_refused() -> None:
    with pytest.raises(InvalidRequestError, match="reader, contributor, admin"):
        parse_role("superuser")


def test_scope_roles_nest_and_scopes_restrict() -> None:
    reader = Scope(role="reader", indexes=("x",))
    admin = Scope(role="admin")
    assert admin.has_role("contributor")
    assert admin.has_role("reader")
    assert not reader.has_role("contributor")
    assert reader.can_read_index("x")
    assert not reader.can_read_index("y")
    assert admin.can_read_index("anything")
    with pytest.raises(PermissionDeniedError, match="contributor"):
        reader.require_role("contributor")
    with pytest.raises(PermissionDeniedError, match="'y'"):
        reader.require_index("y")


def test_keys_an_admin_key_is_kept_while_no_other_admin_holds_its_scope(keys: KeyStore) -> None:
    full = keys.create(role="admin")
    scoped = keys.create(role="admin", indexes=["x"], groups=["hr"])
    keys.create(role="contributor")
    with pytest.raises(LastAdminKeyError, match="last admin key"):
        keys.revoke(full.info.id)  # the scoped admin could not manage the other indexes
    assert keys.revoke(scoped.info.id).revoked  # the full admin holds its scope
    with pytest.raises(LastAdminKeyError):
        keys.revoke(full.info.prefix)
    assert not keys.get(full.info.id).revoked
    assert keys.revoke(full.info.id, allow_last_admin=True).revoked


def test_keys_a_second_full_admin_lets_the_first_go_and_names_are_visible(keys: KeyStore) -> None:
    first = keys.create(role="admin", name="ops\u202e\x1b[0mroot")
    assert first.info.name == "ops[0mroot"
    keys.create(role="admin")
    assert keys.revoke(first.info.id).revoked
