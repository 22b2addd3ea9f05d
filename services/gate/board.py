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

import json
import sqlite3
from collections.abc import Collection, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from services.gate import wording
from services.gate.machine import GatePolicy, Held, ItemState, sender_for
from services.runtime.stamps import stamp_of

__all__ = ["HeldBoard", "api_row", "record_value", "rows_of"]

Row = dict[str, Any]

_SCHEMA = """
CREATE TABLE board (
    key BLOB PRIMARY KEY,
    tenant TEXT,
    since TEXT,       -- when its oldest hold began (ISO); NULL: nothing held
    stamp REAL NOT NULL,
    rows TEXT         -- JSON list of its rows; NULL: nothing held
) WITHOUT ROWID;
CREATE INDEX board_since ON board (tenant, since) WHERE rows IS NOT NULL;
"""
#: A newer record replaces an older one; an older one changes nothing.
_UPSERT = """
INSERT INTO board (key, tenant, since, stamp, rows) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (key) DO UPDATE SET
    tenant = excluded.tenant, since = excluded.since, stamp = excluded.stamp,
    rows = excluded.rows
WHERE excluded.stamp >= board.stamp
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


def api_row(row: Row) -> Row:
    return {k: v for k, v in row.items() if k != "preview"}


def record_value(rows: list[Row]) -> bytes | None:
    """The ``gate.held`` value of an item: its rows, or a tombstone (None) when empty."""
    return json.dumps(rows, separators=(",", ":")).encode() if rows else None


class HeldBoard:
    def __init__(self, path: Path | None = None) -> None:
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.unlink(missing_ok=True)  # derived: made anew at every start
        self._db = sqlite3.connect(
            str(path) if path else ":memory:", isolation_level=None, check_same_thread=False
        )
        # Derived and rebuilt at every start, as the hold index: no sync, no journal.
        self._db.executescript("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;" + _SCHEMA)

    def put(self, key: bytes, stamp: float, rows: list[Row]) -> None:
        """The owner's rows for one item at *stamp*; ignored if the board has newer."""
        self.put_many([(key, stamp, rows)])

    def put_many(self, entries: Iterable[tuple[bytes, float, list[Row]]]) -> None:
        """:meth:`put` for many items in one transaction (a batch, the build at start)."""
        values = [
            (
                key,
                rows[0]["tenant"] if rows else None,
                min((r["held_since"] for r in rows), default=None),
                stamp,
                json.dumps(rows, separators=(",", ":")) if rows else None,
            )
            for key, stamp, rows in entries
        ]
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(_UPSERT, values)

    def apply(
        self, key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes]]
    ) -> None:
        """One record of ``gate.held``, as the mirror reads it; one without a key or a
        time is not ours and is skipped."""
        stamp = stamp_of(headers)
        if key is None or stamp is None:
            return
        try:
            rows = json.loads(value) if value is not None else []
        except ValueError:
            return
        if isinstance(rows, list):
            self.put(key, stamp, rows)

    def get(self, key: bytes) -> list[Row]:
        found = self._db.execute("SELECT rows FROM board WHERE key = ?", (key,)).fetchone()
        return json.loads(found[0]) if found is not None and found[0] is not None else []

    def rows(self, tenants: Collection[str] | Literal["*"]) -> Iterator[Row]:
        """Every held row of *tenants* ("*": all), oldest hold first."""
        query = "SELECT rows FROM board WHERE rows IS NOT NULL"
        params: tuple[str, ...] = ()
        if tenants != "*":
            params = tuple(tenants)
            query += f" AND tenant IN ({','.join('?' * len(params))})"
        for (text,) in self._db.execute(query + " ORDER BY since", params):
            yield from json.loads(text)
