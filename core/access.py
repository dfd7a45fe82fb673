"""Access control in one place: what a caller may reach (role, indexes) and read (ACL groups).

Every path asks a `Scope`: search, chat and streaming (through `as_filter`, applied inside the
index), documents, ingestion jobs, feedback, conversations, evaluations and index counts
(through `can_read_index` and `can_read`). A scope only ever gets narrower (`narrow`): a trusted
groups header or a request's own ACL filter intersects it and can never widen it.

A document without ACL groups is public (every caller reads it); otherwise a caller reads it
when its groups are unrestricted (None) or share one of the document's groups.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

from core.errors import PermissionDeniedError

Role = Literal["reader", "contributor", "admin"]
ROLES: tuple[Role, ...] = get_args(Role)
_RANK: dict[str, int] = {role: rank for rank, role in enumerate(ROLES)}


def meet(current: Sequence[str] | None, other: Sequence[str] | None) -> tuple[str, ...] | None:
    """The names both allow, in `current`'s order (None: no restriction)."""
    if other is None:
        return None if current is None else tuple(current)
    if current is None:
        return tuple(dict.fromkeys(other))
    return tuple(name for name in current if name in set(other))


def _within(inner: tuple[str, ...] | None, outer: tuple[str, ...] | None) -> bool:
    return outer is None or (inner is not None and set(inner) <= set(outer))


@dataclass(frozen=True)
class Scope:
    """What one caller may do: `role`, the `indexes` it reaches (None: all) and the ACL
    `groups` whose documents it reads (None: every document; () public documents only)."""

    role: Role
    indexes: tuple[str, ...] | None = None
    groups: tuple[str, ...] | None = None

    @property
    def unrestricted(self) -> bool:
        """Every index and every document (what may see data no single group owns)."""
        return self.indexes is None and self.groups is None

    def narrow(
        self, *, indexes: Sequence[str] | None = None, groups: Sequence[str] | None = None
    ) -> Scope:
        """This scope intersected with `indexes` and `groups` (None: no further restriction);
        the only way to change a scope, so nothing can widen one."""
        return Scope(self.role, meet(self.indexes, indexes), meet(self.groups, groups))

    def contains(self, other: Scope) -> bool:
        """Whether `other` reaches no index and reads no group beyond this scope."""
        return _within(other.indexes, self.indexes) and _within(other.groups, self.groups)

    def has_role(self, role: Role) -> bool:
        return _RANK[self.role] >= _RANK[role]

    def require_role(self, role: Role) -> None:
        """PermissionDeniedError (403) unless the scope holds `role` or a higher one."""
        if not self.has_role(role):
            raise PermissionDeniedError(f"this needs the {role} role; the key is a {self.role}")

    def can_read_index(self, name: str | None) -> bool:
        """Whether the index `name` is reachable (None, no index: only for every-index scopes)."""
        return self.indexes is None or (name is not None and name in self.indexes)

    def require_index(self, name: str, *, param: str | None = None) -> None:
        """PermissionDeniedError (403) unless the index `name` is in the scope."""
        if not self.can_read_index(name):
            raise PermissionDeniedError(f"the key is not scoped to index {name!r}", param=param)

    def can_read(self, acl_groups: Sequence[str] | None) -> bool:
        """Whether a document with these ACL groups is visible (none: public)."""
        if self.groups is None or not acl_groups:
            return True
        return not set(acl_groups).isdisjoint(self.groups)

    def as_filter(self) -> tuple[str, ...] | None:
        """The ACL restriction the index applies (its `acl_groups` filter): chunks that are
        public or share one of these groups; None when every document is readable."""
        return self.groups

    def labels(self, requested: Sequence[str]) -> list[str]:
        """The ACL groups a document this scope writes gets: any requested when its groups are
        unrestricted; else within its own groups (none requested: its own groups)."""
        groups = list(dict.fromkeys(g.strip() for g in requested if g.strip()))
        if self.groups is None:
            return groups
        outside = sorted(set(groups) - set(self.groups))
        if outside:
            raise PermissionDeniedError(
                f"the key may not label documents with groups {outside}", param="acl_groups"
            )
        return groups or list(self.groups)

    def owned_id(self, base_id: str) -> str:
        """The document id `base_id` (a file name's or URL's id) takes when this scope writes
        it: itself for unrestricted groups, else tagged with the group set, so a write can
        only ever replace (or report unchanged) a document written under the same groups,
        which are all readable by this scope."""
        if self.groups is None:
            return base_id
        digest = hashlib.sha256("\x1f".join(sorted(self.groups)).encode()).hexdigest()
        return f"{base_id}-g{digest[:10]}"


EVERYTHING = Scope(role="admin")
"""The scope of the operator's key and of a server with auth off."""
