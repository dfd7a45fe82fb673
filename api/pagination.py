"""Query parameters of list routes, bounded so that every accepted value is one the metadata
store can bind (SQLite and PostgreSQL take 64-bit integers; a larger offset was a 500)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

MAX_OFFSET = 1_000_000_000

Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Items to skip")]
