"""An index of the gate's item table, kept up to date as states are written.

The timer asks which items need the clock now, and the gauges ask how many
holds there are by reason and how old the oldest is. Walking every held item
for each answer cost time in proportion to everything held (about 50 ms at
50,000 holds, twice a second, with every input waiting behind it), and keeping
a Python object per item cost about 500 bytes each (half a gigabyte at a
million). Here each item is one row of an SQLite table with indexes on the
wake time and on (tenant, held since), in a file of the gate's own beside its
tables, so memory does not grow with what is held; the counts by reason are
adjusted in memory by the difference each write makes. The file is derived:
it is made anew at every start from the item table.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

__all__ = ["Entry", "HoldIndex", "Holds"]

#: (reasons, held since) for each held audience of one item
Holds = tuple[tuple[tuple[str, ...], datetime], ...]
#: what one item's state says: key, tenant, wake time, holds, escalated holds
Entry = tuple[bytes, str, datetime | None, Holds, int]
#: keys asked for in one query (SQLite allows 999 placeholders in old builds)
_KEYS_PER_QUERY = 500
_BEFORE = "SELECT key, wake, pending, reasons, escalated FROM items WHERE key IN ({marks})"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

_SCHEMA = """
CREATE TABLE items (
    key BLOB PRIMARY KEY,
    tenant TEXT NOT NULL,
    wake INTEGER,     -- the item's wake time, microseconds since the epoch
    pending INTEGER,  -- that wake time until it was answered
    since INTEGER,    -- when its oldest hold began
    reasons TEXT,     -- its holds' reasons: "a,b|c", one part per hold; NULL: none
    escalated INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX items_pending ON items (pending) WHERE pending IS NOT NULL;
CREATE INDEX items_since ON items (tenant, since) WHERE since IS NOT NULL;
"""


def _micros(at: datetime) -> int:
    return (at - _EPOCH) // _MICROSECOND


def _at(micros: int) -> datetime:
    return _EPOCH + micros * _MICROSECOND


def _encode(holds: Holds) -> str | None:
    return "|".join(",".join(reasons or ("none",)) for reasons, _ in holds) if holds else None


def _reasons(encoded: str | None) -> Iterable[str]:
    if encoded is not None:
        for part in encoded.split("|"):
            yield from part.split(",")


class HoldIndex:
    """When each item next needs the clock, and what it holds, for a table of items.

    *path* is the SQLite file (made anew, whatever it held); ``":memory:"``
    keeps it in memory, for tests.
    """

    def __init__(self, path: str | Path = ":memory:") -> None:
        if str(path) != ":memory:":
            Path(path).unlink(missing_ok=True)
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), isolation_level=None)
        # Derived and rebuilt at every start: nothing is worth a sync or a journal.
        self._db.executescript(
            "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;"
            " PRAGMA cache_size = -8192; PRAGMA temp_store = FILE;" + _SCHEMA
        )
        self._counts: Counter[tuple[str, str]] = Counter()
        self._items: Counter[str] = Counter()
        self._escalated: Counter[str] = Counter()

    def update(
        self,
        key: bytes,
        tenant: str,
        wake_at: datetime | None,
        holds: Holds,
        escalated: int = 0,
    ) -> None:
        """Record what the state just written for *key* says: its wake time, its holds
        and how many of them escalated."""
        self.update_many([(key, tenant, wake_at, holds, escalated)])

    def update_many(self, entries: Sequence[Entry]) -> None:
        """:meth:`update` for many items at once (distinct keys): one read of what the
        index had for them and one write, as a batch of inputs or the build needs."""
        db = self._db
        before: dict[bytes, tuple[int | None, int | None, str | None, int]] = {}
        for start in range(0, len(entries), _KEYS_PER_QUERY):
            keys = [e[0] for e in entries[start : start + _KEYS_PER_QUERY]]
            marks = ",".join("?" * len(keys))
            query = _BEFORE.format(marks=marks)  # placeholders only: the keys are bound
            for key, wake, pending, reasons, escalated in db.execute(query, keys):
                before[bytes(key)] = (wake, pending, reasons, escalated)
        rows = []
        for key, tenant, wake_at, holds, escalated in entries:
            wake_before, pending, reasons_before, escalated_before = before.get(
                key, (None, None, None, 0)
            )
            wake = _micros(wake_at) if wake_at is not None else None
            if wake != wake_before:
                pending = wake  # a new wake time is answered once it is due
            reasons = _encode(holds)
            since = min(_micros(s) for _, s in holds) if holds else None
            rows.append((key, tenant, wake, pending, since, reasons, escalated))
            self._escalated[tenant] += escalated - escalated_before
            if reasons != reasons_before:
                self._counts.subtract((tenant, r) for r in _reasons(reasons_before))
                self._counts.update((tenant, r) for r in _reasons(reasons))
                self._items[tenant] += (reasons is not None) - (reasons_before is not None)
        db.execute("BEGIN")  # one transaction, not one per row
        try:
            db.executemany("INSERT OR REPLACE INTO items VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        finally:
            db.execute("COMMIT")

    def due(self, now: datetime) -> list[tuple[bytes, datetime]]:
        """The items whose wake time has come, each wake time answered once."""
        cutoff = _micros(now)
        rows = self._db.execute(
            "SELECT key, pending FROM items WHERE pending <= ?", (cutoff,)
        ).fetchall()
        if rows:
            self._db.execute("UPDATE items SET pending = NULL WHERE pending <= ?", (cutoff,))
        return [(bytes(key), _at(at)) for key, at in rows]

    def counts(self) -> dict[tuple[str, str], int]:
        """Holds by (tenant, reason); a hold with several reasons counts under each."""
        return {k: n for k, n in self._counts.items() if n}

    def items(self, tenant: str) -> int:
        """How many of the tenant's items hold something."""
        return self._items[tenant]

    def escalated(self, tenant: str) -> int:
        """How many of the tenant's holds the gate escalated."""
        return self._escalated[tenant]

    def oldest(self, tenant: str) -> datetime | None:
        """When the tenant's oldest current hold began, if anything is held."""
        (since,) = self._db.execute(
            "SELECT min(since) FROM items WHERE tenant = ? AND since IS NOT NULL", (tenant,)
        ).fetchone()
        return _at(since) if since is not None else None

    def held(self) -> Iterator[bytes]:
        """The keys of the items that hold something."""
        for (key,) in self._db.execute("SELECT key FROM items WHERE reasons IS NOT NULL"):
            yield bytes(key)
