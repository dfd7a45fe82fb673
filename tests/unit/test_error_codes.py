"""Every error ondata raises carries a stable code (clients branch on it, never on a message)."""

from __future__ import annotations

import re

import core.errors
from core.errors import OndataError


def _error_classes() -> list[type[OndataError]]:
    found: list[type[OndataError]] = []
    pending: list[type[OndataError]] = [OndataError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


def test_every_error_class_has_a_snake_case_code() -> None:
    classes = _error_classes()
    assert len(classes) > 30
    assert {c.__name__ for c in classes} >= {
        name
        for name, value in vars(core.errors).items()
        if isinstance(value, type) and issubclass(value, OndataError)
    }
    for cls in classes:
        assert re.fullmatch(r"[a-z][a-z_]*", cls.code), (cls.__name__, cls.code)
