"""A page of the held board's index, and the process that reads pages of it.

:func:`read_page` is the query: oldest hold first, after a cursor, matching every
word of a search and a reason. :func:`serve` answers it in a process of its own
for ``GET /v1/held`` and the console's list
(``python -m services.gate.board_pages BOARD_FILE``): fetching a page of a
thousand rows takes the interpreter for milliseconds, which in the gate's process
would be taken from the event loop that decides releases, whatever thread did
the fetching. Write-ahead logging lets that process read while the gate writes.

The worker reads one request a line on standard input (JSON: ``column``,
``tenants``, ``limit``, ``cursor``, ``q``, ``reason`` and ``count``, the count
when the gate knows it without a scan) and answers each with a JSON line
(``count``, ``next_cursor``, ``size``; or ``bad_cursor`` or ``error``) followed
by ``size`` bytes: the page's rows, as ``GET /v1/held`` shows them (``api``) or
whole for the console (``row``), JSON objects joined by ``", "``. It ends when
standard input does, as when the gate is gone. It runs at a lower priority
than the gate (:data:`NICENESS`): where the cores are shared, a page waits
rather than a release.

This module imports nothing but the standard library and :mod:`paging`, so the
worker starts in a fraction of a second and stays small.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import sys
from collections.abc import Collection, Iterable
from typing import Any, BinaryIO, Literal

from services.gate import paging

__all__ = ["ORDER", "read_page", "reasons_text", "serve"]

#: How much lower than the gate's the worker's scheduling priority is.
NICENESS = 10

#: The order of the list and of a cursor's place in it (as ``paging``).
ORDER = "since, tenant, item_id, audience"


def reasons_text(reasons: Iterable[str]) -> str:
    """Reasons as the index keeps them, ``|code|code|``, for ``instr``."""
    return "|" + "|".join(reasons) + "|"


def read_page(
    db: sqlite3.Connection,
    column: Literal["row", "api"],
    tenants: Collection[str],
    limit: int,
    cursor: str | None,
    q: str | None,
    reason: str | None,
    count: int | None,
) -> tuple[list[str], int, str | None]:
    """The JSON texts of one page of *column*, the count of every matching row
    (*count* when given, else counted here) and the next page's cursor."""
    after = paging.decode(cursor) if cursor else None
    chosen = sorted(set(tenants))
    where = [f"tenant IN ({','.join('?' * len(chosen))})"]
    params: list[Any] = list(chosen)
    for word in (q or "").casefold().split():
        where.append("instr(words, ?) > 0")
        params.append(word)
    if reason is not None:
        where.append("instr(reasons, ?) > 0")
        params.append(reasons_text([reason]))
    # *where* holds only the fragments above; every value is a placeholder.
    if count is None:
        count = db.execute(
            f"SELECT count(*) FROM held WHERE {' AND '.join(where)}",  # noqa: S608
            params,
        ).fetchone()[0]
    if after is not None:
        where.append(f"({ORDER}) > (?, ?, ?, ?)")
        params.extend(after)
    found = db.execute(
        f"SELECT {column}, {ORDER} FROM held WHERE {' AND '.join(where)}"  # noqa: S608
        f" ORDER BY {ORDER} LIMIT ?",
        [*params, limit + 1],
    ).fetchall()
    taken = found[:limit]
    last = taken[-1] if taken and len(found) > limit else None
    next_cursor = (
        paging.cursor_after(
            {"held_since": last[1], "tenant": last[2], "item_id": last[3], "audience": last[4]}
        )
        if last is not None
        else None
    )
    return [row[0] for row in taken], int(count or 0), next_cursor


def answer(db: sqlite3.Connection, line: bytes) -> tuple[dict[str, Any], bytes]:
    """One request line's header and body."""
    try:
        asked = json.loads(line)
        column = asked.get("column", "api")
        if column not in ("row", "api"):
            raise ValueError(column)
        rows, count, next_cursor = read_page(
            db,
            column,
            [str(t) for t in asked["tenants"]],
            int(asked["limit"]),
            asked.get("cursor"),
            asked.get("q"),
            asked.get("reason"),
            asked.get("count"),
        )
    except paging.BadCursor as exc:
        return {"bad_cursor": str(exc)}, b""
    except (ValueError, KeyError, TypeError, sqlite3.Error) as exc:
        return {"error": type(exc).__name__}, b""
    body = ", ".join(rows).encode()
    return {"count": count, "next_cursor": next_cursor, "size": len(body)}, body


def serve(path: str, requests: BinaryIO, answers: BinaryIO) -> None:
    """Answer each request line on *requests* until it ends."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        for line in requests:
            header, body = answer(db, line)
            answers.write(json.dumps(header).encode() + b"\n" + body)
            answers.flush()
    finally:
        db.close()


if __name__ == "__main__":
    # Deciding comes first: where the cores are shared, a page waits, not a release.
    with contextlib.suppress(OSError):
        os.nice(NICENESS)
    serve(sys.argv[1], sys.stdin.buffer, sys.stdout.buffer)
