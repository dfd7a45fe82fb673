"""API keys and roles: hashed keys in the metadata store, and the Principal a request acts as.

A key is ``od_<id>_<secret>`` (256 random bits); the store keeps only its SHA-256 and the
``od_<id>`` prefix, so a leaked database cannot be replayed. Roles nest: admin > contributor >
reader. A principal's `Scope` (core/access.py) decides what it may reach and read.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from types import EllipsisType

from sqlalchemy import JSON, DateTime, Integer, String, Text, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from core.access import ROLES, Role, Scope
from core.db import Base
from core.errors import ApiKeyNotFoundError, InvalidRequestError, LastAdminKeyError
from core.text import without_invisible

KEY_PREFIX = "od_"
_ID_BYTES = 6
_SECRET_BYTES = 32
_MAX_NAME = 128
# per-key limits: the columns are 32-bit integers on PostgreSQL (a larger value was a 500)
MAX_PER_MINUTE = 1_000_000_000


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class ApiKeyRecord(Base):
    """One API key: only its hash is stored; role, ACL groups, index scope and limits."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    name: Mapped[str] = mapped_column(Text, default="")
    role: Mapped[str] = mapped_column(String(16))
    # None: every document (admin keys made without groups)
    groups: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    # None: every index
    indexes: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    requests_per_minute: Mapped[int | None] = mapped_column(Integer, nullable=True)
    tokens_per_minute: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


@dataclass(frozen=True)
class ApiKeyInfo:
    """What may be shown about a key: never the key itself."""

    id: str
    prefix: str
    name: str
    role: Role
    groups: tuple[str, ...] | None
    indexes: tuple[str, ...] | None
    requests_per_minute: int | None
    tokens_per_minute: int | None
    created_at: dt.datetime
    revoked_at: dt.datetime | None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    @property
    def scope(self) -> Scope:
        return Scope(role=self.role, indexes=self.indexes, groups=self.groups)


@dataclass(frozen=True)
class CreatedKey:
    """A new key: `key` is shown once and never stored."""

    key: str
    info: ApiKeyInfo


@dataclass(frozen=True)
class Principal:
    """Who a request acts as.

    ``subject`` identifies the caller for history and limits (a key id, ``operator`` for the
    configured key, ``anonymous`` with auth off); ``scope`` is what it may reach and read.
    """

    subject: str
    scope: Scope
    authenticated: bool = False
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None


ANONYMOUS = Principal(subject="anonymous", scope=Scope(role="admin"))


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def parse_role(value: str) -> Role:
    """The role named `value`, or InvalidRequestError naming the accepted ones."""
    for role in ROLES:
        if value == role:
            return role
    raise InvalidRequestError(f"role must be one of {', '.join(ROLES)}", param="role")


def clean_names(values: Sequence[str], *, param: str) -> tuple[str, ...]:
    """Stripped, de-duplicated, non-empty names (groups or index names), order kept."""
    names = tuple(dict.fromkeys(v.strip() for v in values if v.strip()))
    if any(len(n) > _MAX_NAME or "," in n or n == "*" for n in names):
        raise InvalidRequestError(
            f"{param}: names are at most {_MAX_NAME} characters, without commas, and not '*'",
            param=param,
        )
    return names


def default_groups(role: Role) -> tuple[str, ...] | None:
    """Groups of a key made without any: admins read everything (they can mint any key
    anyway); contributors and readers read public documents only."""
    return None if role == "admin" else ()


def parse_groups(value: str | None, *, role: Role) -> tuple[str, ...] | None:
    """`--groups A,B` as given on the command line: `*` is every document, omitted the role's
    default, an empty string public documents only."""
    if value is None:
        return default_groups(role)
    if value.strip() == "*":
        return None
    return clean_names(value.split(","), param="groups")


def _info(row: ApiKeyRecord) -> ApiKeyInfo:
    return ApiKeyInfo(
        id=row.id,
        prefix=f"{KEY_PREFIX}{row.id}",
        name=row.name,
        role=parse_role(row.role),
        groups=None if row.groups is None else tuple(row.groups),
        indexes=None if row.indexes is None else tuple(row.indexes),
        requests_per_minute=row.requests_per_minute,
        tokens_per_minute=row.tokens_per_minute,
        created_at=_utc(row.created_at),
        revoked_at=None if row.revoked_at is None else _utc(row.revoked_at),
    )


def _utc(moment: dt.datetime) -> dt.datetime:
    # SQLite hands back naive datetimes; they were written in UTC
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def principal_for(info: ApiKeyInfo) -> Principal:
    """The principal an active key acts as."""
    return Principal(
        subject=info.id,
        scope=info.scope,
        authenticated=True,
        requests_per_minute=info.requests_per_minute,
        tokens_per_minute=info.tokens_per_minute,
    )


class KeyStore:
    """Create, list, revoke and check API keys in the metadata store."""

    def __init__(self, engine: Engine) -> None:
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._any_seen = False

    def create(
        self,
        *,
        role: Role,
        groups: Sequence[str] | EllipsisType | None = ...,
        indexes: Sequence[str] | None = None,
        name: str = "",
        requests_per_minute: int | None = None,
        tokens_per_minute: int | None = None,
    ) -> CreatedKey:
        """A new active key; the returned `key` is the only time the secret exists.

        `groups` None reads every document; omitted, the role's default (`default_groups`).
        """
        if isinstance(groups, EllipsisType):
            groups = default_groups(role)
        key_id = secrets.token_hex(_ID_BYTES)
        key = f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(_SECRET_BYTES)}"
        row = ApiKeyRecord(
            id=key_id,
            key_hash=hash_key(key),
            name=without_invisible(name),
            role=parse_role(role),
            groups=None if groups is None else list(clean_names(groups, param="groups")),
            indexes=None if indexes is None else list(clean_names(indexes, param="indexes")),
            requests_per_minute=requests_per_minute,
            tokens_per_minute=tokens_per_minute,
            created_at=_now(),
        )
        with self._sessions.begin() as s:
            s.add(row)
        self._any_seen = True
        return CreatedKey(key=key, info=_info(row))

    def list(self, *, include_revoked: bool = False) -> list[ApiKeyInfo]:
        query = select(ApiKeyRecord).order_by(ApiKeyRecord.created_at, ApiKeyRecord.id)
        if not include_revoked:
            query = query.where(ApiKeyRecord.revoked_at.is_(None))
        with self._sessions.begin() as s:
            return [_info(row) for row in s.scalars(query)]

    def get(self, key_id: str) -> ApiKeyInfo:
        """The key with this id (or `od_<id>` prefix), revoked or not; ApiKeyNotFoundError."""
        with self._sessions.begin() as s:
            return _info(self._row(s, key_id))

    def revoke(self, key_id: str, *, allow_last_admin: bool = False) -> ApiKeyInfo:
        """Revoke a key by id (or its `od_<id>` prefix); revoking twice keeps the first time.

        LastAdminKeyError (409) for an active admin key when no other active admin key would
        hold its scope (so nobody could manage keys there any more), unless `allow_last_admin`
        (an operator key is configured, so nobody is locked out).
        """
        with self._sessions.begin() as s:
            row = self._row(s, key_id)
            if row.revoked_at is None:
                if not allow_last_admin:
                    self._keep_an_admin(s, row)
                row.revoked_at = _now()
            return _info(row)

    @staticmethod
    def _keep_an_admin(session: Session, row: ApiKeyRecord) -> None:
        if row.role != "admin":
            return
        others = session.scalars(
            select(ApiKeyRecord).where(
                ApiKeyRecord.role == "admin",
                ApiKeyRecord.revoked_at.is_(None),
                ApiKeyRecord.id != row.id,
            )
        )
        scope = _info(row).scope
        if not any(_info(o).scope.contains(scope) for o in others):
            raise LastAdminKeyError(
                f"{KEY_PREFIX}{row.id} is the last admin key with its scope: revoking it would "
                "lock administrators out. Create another admin key first (`ondata keys create "
                "--role admin`), or configure the operator key (ONDATA_API__API_KEY).",
                param="key_id",
            )

    @staticmethod
    def _row(session: Session, key_id: str) -> ApiKeyRecord:
        key_id = key_id.removeprefix(KEY_PREFIX).split("_", 1)[0]
        row = session.get(ApiKeyRecord, key_id)
        if row is None:
            raise ApiKeyNotFoundError(f"no API key has id {key_id!r}", param="key_id")
        return row

    def authenticate(self, key: str) -> ApiKeyInfo | None:
        """The active key `key` is, or None when it is unknown or revoked."""
        if not key.startswith(KEY_PREFIX):
            return None
        with self._sessions.begin() as s:
            row = s.scalar(select(ApiKeyRecord).where(ApiKeyRecord.key_hash == hash_key(key)))
            if row is None or row.revoked_at is not None:
                return None
            # the hash matched through an index lookup; compare again in constant time
            if not secrets.compare_digest(row.key_hash, hash_key(key)):
                return None
            return _info(row)

    def any_exist(self) -> bool:
        """Whether a key was ever created (revoked ones count: auth never silently turns off)."""
        if not self._any_seen:
            with self._sessions.begin() as s:
                self._any_seen = bool(s.scalar(select(func.count()).select_from(ApiKeyRecord)))
        return self._any_seen
