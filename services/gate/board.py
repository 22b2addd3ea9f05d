"""The held list every gate process shows: every item held, whichever process owns it.

The process that owns an item writes its held rows to the compacted topic
``gate.held`` whenever they change, and a tombstone when nothing is held any
more; every process reads that topic whole into this board, and its own writes
straight away too. Each record carries the owner's time (``stamp``): a record
older than what the board has for the item is ignored, so its own write and the
same record read back later never step back. The board is an SQLite file of the
gate's own (derived: made anew at every start), so memory does not grow with what
is held.

:func:`rows_of` is what the list shows of one item, with a preview of the text
as it will go out for the console's item page; :func:`api_row` drops the preview
for ``GET /v1/held``.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from services.gate import paging, wording
from services.gate.board_pages import read_page, reasons_text
from services.gate.state import GatePolicy, Held, ItemState, sender_for
from services.runtime.stamps import stamp_of

__all__ = ["HeldBoard", "PageReader", "api_row", "record_value", "rows_of"]

Row = dict[str, Any]
#: Reads a page in a process of its own (``PageWorker.read``): ``None`` when it cannot.
PageReader = Callable[[dict[str, Any]], Awaitable[tuple[bytes, int, str | None] | None]]

_SCHEMA = """
CREATE TABLE items (key BLOB PRIMARY KEY, stamp REAL NOT NULL) WITHOUT ROWID;
CREATE TABLE held (
    key BLOB NOT NULL,
    audience TEXT NOT NULL,
    since TEXT NOT NULL,    -- when this hold began (ISO)
    tenant TEXT NOT NULL,
    item_id TEXT NOT NULL,
    words TEXT NOT NULL,    -- title and item id, case-folded, for ?q=
    reasons TEXT NOT NULL,  -- |code|code|, for ?reason=
    row TEXT NOT NULL,      -- the row as JSON
    api TEXT NOT NULL,      -- the row as GET /v1/held answers it, as JSON
    PRIMARY KEY (key, audience)
) WITHOUT ROWID;
CREATE INDEX held_order ON held (since, tenant, item_id, audience);
"""


def _preview(policy: GatePolicy | None, held: Held) -> str:
    """The text as it will go out, signed with the sender block."""
    event = held.event
    lines = [event.title, ""]
    if event.summary:
        lines += [event.summary, ""]
    lines += [event.body, "", f"Mottagare: {event.recipients}"]
    lines += [f"{link.text}: {link.url}" for link in event.links]
    if policy is not None:
        sender = sender_for(policy, event)
        contact = sender.contact
        lines += ["", "-- ", sender.organization, sender.unit]
        lines.append(", ".join(p for p in (contact.name, contact.email, contact.phone) if p))
        lines.append(sender.website)
    return "\n".join(lines)


def rows_of(state: ItemState, policy: GatePolicy | None) -> list[Row]:
    """What the held list shows of one item: one row per held audience."""
    return [
        {
            "tenant": state.tenant,
            "item_id": state.item_id,
            "version": held.event.version,
            "audience": audience,
            "channels": list(held.event.channels),
            "unit": held.event.unit,
            "title": held.event.title,
            "reasons": list(held.reasons),
            "findings": [f.as_dict() for f in wording.findings(held)],
            "held_since": held.held_since.isoformat(),
            "publish_at": held.event.publish_at.isoformat(),
            "escalated": held.escalated,
            "event_id": held.event_id,
            "warnings": list(held.warnings),
            "preview": {"text": _preview(policy, held), "recipients": held.event.recipients},
        }
        for audience, held in sorted(state.held.items())
    ]


def api_row(row: Mapping[str, Any]) -> Row:
    return {k: v for k, v in row.items() if k != "preview"}


def record_value(rows: list[Row]) -> bytes | None:
    """The ``gate.held`` value of an item: its rows, or a tombstone (None) when empty."""
    return json.dumps(rows, separators=(",", ":")).encode() if rows else None


class HeldBoard:
    """The held list of every process, paged from an index: a page, its count and the
    filters cost the same at a million held rows as at ten."""

    def __init__(self, path: Path | None = None) -> None:
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            for made in (
                path,
                path.with_name(path.name + "-wal"),
                path.with_name(path.name + "-shm"),
            ):
                made.unlink(missing_ok=True)  # derived: made anew at every start
        self._db = sqlite3.connect(
            str(path) if path else ":memory:", isolation_level=None, check_same_thread=False
        )
        # Derived and rebuilt at every start, as the hold index: no sync. On a file,
        # write-ahead logging lets a page be read on a connection of its own, on
        # another thread, while the event loop writes and decides.
        journal = "WAL" if path is not None else "OFF"
        self._db.executescript(
            f"PRAGMA journal_mode = {journal}; PRAGMA synchronous = OFF;" + _SCHEMA
        )
        self._reader: sqlite3.Connection | None = None
        self._reading = threading.Lock()
        if path is not None:
            self._reader = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        #: held rows per (tenant, reason) and per (tenant, ""): counts without a scan
        self._counts: Counter[tuple[str, str]] = Counter()
        self._pages: PageReader | None = None

    def read_pages_with(self, reader: PageReader) -> None:
        """Let *reader* read :meth:`read_json`'s pages, in a process of its own (a board
        on file)."""
        self._pages = reader

    def put(self, key: bytes, stamp: float, rows: list[Row]) -> None:
        """The owner's rows for one item at *stamp*; ignored if the board has newer."""
        self.put_many([(key, stamp, rows)])

    def put_many(self, entries: Iterable[tuple[bytes, float, list[Row]]]) -> None:
        """:meth:`put` for many items in one transaction (a batch, the build at start)."""
        db = self._db
        latest: dict[bytes, tuple[float, list[Row]]] = {}
        for key, stamp, rows in entries:
            if key not in latest or stamp >= latest[key][0]:
                latest[key] = (stamp, rows)
        with db:
            db.execute("BEGIN")
            known = self._stamps(list(latest))
            for key, stamp in known.items():
                if stamp >= latest[key][0]:
                    del latest[key]  # the board has it already, or newer
                    continue
                before = db.execute("SELECT row FROM held WHERE key = ?", (key,))
                self._count([json.loads(text) for (text,) in before], -1)
                db.execute("DELETE FROM held WHERE key = ?", (key,))
            db.executemany(
                "INSERT OR REPLACE INTO items (key, stamp) VALUES (?, ?)",
                [(key, stamp) for key, (stamp, _) in latest.items()],
            )
            db.executemany(
                "INSERT INTO held VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        key,
                        r["audience"],
                        r["held_since"],
                        r["tenant"],
                        r["item_id"],
                        f"{r['title']} {r['item_id']}".casefold(),
                        reasons_text(r["reasons"]),
                        json.dumps(r, separators=(",", ":")),
                        json.dumps(api_row(r), separators=(",", ":")),
                    )
                    for key, (_, rows) in latest.items()
                    for r in rows
                ],
            )
            self._count((r for _, rows in latest.values() for r in rows), +1)

    def _stamps(self, keys: list[bytes]) -> dict[bytes, float]:
        """The board's stamp of each of *keys* it has."""
        found: dict[bytes, float] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            found.update(
                self._db.execute(
                    f"SELECT key, stamp FROM items WHERE key IN ({','.join('?' * len(chunk))})",  # noqa: S608
                    chunk,
                ).fetchall()
            )
        return found

    def _count(self, rows: Iterable[Row], sign: int) -> None:
        for row in rows:
            tenant = row["tenant"]
            self._counts[(tenant, "")] += sign
            for reason in row["reasons"]:
                self._counts[(tenant, reason)] += sign

    def apply(
        self, key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes]]
    ) -> None:
        """One record of ``gate.held``, as the mirror reads it; one without a key or a
        time is not ours and is skipped."""
        self.apply_many([(key, value, headers)])

    def apply_many(
        self, records: Sequence[tuple[bytes | None, bytes | None, Sequence[tuple[str, bytes]]]]
    ) -> None:
        """Records of ``gate.held`` as the mirror fetched them, in one transaction."""
        entries = []
        for key, value, headers in records:
            stamp = stamp_of(headers)
            if key is None or stamp is None:
                continue
            try:
                rows = json.loads(value) if value is not None else []
            except ValueError:
                continue
            if isinstance(rows, list):
                entries.append((key, stamp, rows))
        self.put_many(entries)

    def get(self, key: bytes) -> list[Row]:
        """The item's held rows, one per held audience."""
        found = self._db.execute("SELECT row FROM held WHERE key = ? ORDER BY audience", (key,))
        return [json.loads(text) for (text,) in found]

    def reasons(self, tenants: Collection[str]) -> list[str]:
        """The reasons something of *tenants* is held for now."""
        return sorted({r for (t, r), n in self._counts.items() if r and n > 0 and t in tenants})

    def count(self, tenants: Collection[str]) -> int:
        """Every held row of *tenants*."""
        return sum(self._counts[(t, "")] for t in tenants)

    def page(
        self,
        tenants: Collection[str],
        *,
        limit: int = paging.DEFAULT_LIMIT,
        cursor: str | None = None,
        q: str | None = None,
        reason: str | None = None,
    ) -> paging.Page:
        """What :func:`paging.page` answers for the rows of *tenants*, from the index:
        oldest hold first, after *cursor*, matching every word of *q* and *reason*."""
        count = self._known_count(tenants, q, reason)
        texts, total, next_cursor = read_page(
            self._db, "row", tenants, limit, cursor, q, reason, count
        )
        return paging.Page([json.loads(text) for text in texts], total, next_cursor)

    async def read_json(
        self,
        column: Literal["row", "api"],
        tenants: Collection[str],
        *,
        limit: int = paging.DEFAULT_LIMIT,
        cursor: str | None = None,
        q: str | None = None,
        reason: str | None = None,
    ) -> tuple[bytes, int, str | None]:
        """:meth:`page` read away from the event loop that decides: the rows' JSON texts
        as stored, joined by ``", "`` (whole rows, ``row``, for the console; ``api``
        as ``GET /v1/held`` shows them), the count and the next cursor. Read by the
        page reader's process when there is one and it answers, else on a thread (on
        a file), else here. A search counts every row it matches: about a second at
        a million, which would otherwise stop the decisions meanwhile."""
        if cursor:
            paging.decode(cursor)  # a bad cursor is refused here, whoever reads
        count = self._known_count(tenants, q, reason)
        if self._pages is not None:
            asked = {"column": column, "tenants": sorted(set(tenants)), "limit": limit,
                     "cursor": cursor, "q": q, "reason": reason, "count": count}  # fmt: skip
            answer = await self._pages(asked)
            if answer is not None:
                return answer
        query = (column, tenants, limit, cursor, q, reason, count)
        if self._reader is None:
            texts, total, next_cursor = read_page(self._db, *query)
        else:
            texts, total, next_cursor = await asyncio.to_thread(self._on, self._reader, query)
        return ", ".join(texts).encode(), total, next_cursor

    def _on(
        self, reader: sqlite3.Connection, query: tuple[Any, ...]
    ) -> tuple[list[str], int, str | None]:
        """A page on the reading connection, one at a time (on a thread)."""
        with self._reading:
            return read_page(reader, *query)

    def _known_count(
        self, tenants: Collection[str], q: str | None, reason: str | None
    ) -> int | None:
        """The count of matching rows without a scan, unless a search asks for one."""
        if (q or "").split():
            return None
        return sum(self._counts[(t, reason or "")] for t in set(tenants))
