"""The held list a page at a time: filtered, oldest hold first, and stable while items
are held and released meanwhile (CONTRACT 5).

A pure core. A cursor names the last row a page ended with, by its place in the
order (held since, tenant, item, audience); the next page starts after it, so a row
held throughout is yielded exactly once however the list changes between pages.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["DEFAULT_LIMIT", "MAX_LIMIT", "BadCursor", "Page", "cursor_after", "decode", "page"]

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000

Row = Mapping[str, Any]


class BadCursor(ValueError):
    """A cursor this service did not hand out."""


@dataclass(frozen=True)
class Page:
    rows: list[Row]
    #: every row that matches, on every page
    count: int
    next_cursor: str | None


def _place(row: Row) -> tuple[str, str, str, str]:
    return (row["held_since"], row["tenant"], row["item_id"], row["audience"])


def _encode(place: tuple[str, str, str, str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(place)).encode()).decode().rstrip("=")


def decode(cursor: str) -> tuple[str, str, str, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        place = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise BadCursor("not a cursor this list handed out") from None
    if not (isinstance(place, list) and len(place) == 4 and all(isinstance(p, str) for p in place)):
        raise BadCursor("not a cursor this list handed out")
    return (place[0], place[1], place[2], place[3])


def cursor_after(row: Row) -> str:
    """The cursor of the page that follows *row*."""
    return _encode(_place(row))


def _matches(row: Row, words: Sequence[str], reason: str | None) -> bool:
    if reason is not None and reason not in row["reasons"]:
        return False
    text = f"{row['title']} {row['item_id']}".casefold()
    return all(word in text for word in words)


def page(
    rows: Iterable[Row],
    *,
    limit: int = DEFAULT_LIMIT,
    cursor: str | None = None,
    q: str | None = None,
    reason: str | None = None,
) -> Page:
    """The page of *rows* (in any order) after *cursor*: at most *limit* rows whose title
    or item id holds every word of *q* and whose reasons include *reason*."""
    words = (q or "").casefold().split()
    matching = sorted((r for r in rows if _matches(r, words, reason)), key=_place)
    after = decode(cursor) if cursor else None
    rest = [r for r in matching if after is None or _place(r) > after]
    taken = rest[:limit]
    more = len(rest) > limit
    return Page(taken, len(matching), cursor_after(taken[-1]) if more and taken else None)
