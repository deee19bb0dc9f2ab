"""Cursor pagination over an increasing integer key (DESIGN.md §5 "Lists")."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from sqlalchemy import Select
from sqlalchemy.orm import InstrumentedAttribute, Session

from ..errors import AnimusError

DEFAULT_LIMIT = 50


def encode_cursor(after: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"after": after}).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        after = json.loads(base64.urlsafe_b64decode(padded.encode()))["after"]
        if not isinstance(after, int) or isinstance(after, bool) or after < 0:
            raise ValueError(after)
        return after
    except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise AnimusError(400, "invalid_cursor", "The cursor is not one this API issued") from None


def parse_limit(raw: str | None, maximum: int, default: int = DEFAULT_LIMIT) -> int:
    if raw is None or raw == "":
        return default
    try:
        limit = int(raw)
    except ValueError:
        raise AnimusError(400, "invalid_limit", f"limit must be an integer between 1 and {maximum}") from None
    if not 1 <= limit <= maximum:
        raise AnimusError(400, "invalid_limit", f"limit must be between 1 and {maximum}", {"maximum": maximum})
    return limit


def page(
    session: Session,
    stmt: Select[Any],
    key: InstrumentedAttribute[int],
    limit: int,
    cursor: str | None,
    descending: bool = False,
) -> tuple[list[Any], str | None]:
    """One page of `stmt` ordered by `key` (newest first with `descending`), and the next page's cursor.

    The cursor holds the last key of the page; None at the end.
    """
    after = decode_cursor(cursor)
    if descending:
        if cursor:
            stmt = stmt.where(key < after)
        stmt = stmt.order_by(key.desc())
    else:
        stmt = stmt.where(key > after).order_by(key)
    rows = list(session.scalars(stmt.limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor(getattr(rows[-1], key.key)) if more and rows else None
    return rows, next_cursor
