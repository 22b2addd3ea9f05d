"""The ``webhook-id``s every ingest process has accepted, for the door's answer.

The table ``ingest-seen`` is partitioned: a process holds the ids of its own
partitions. Every process also reads the table's changelog whole (a mirror hands
each record to :meth:`EverySeen.apply`), so a CMS that delivers an id again to
another process is answered ``200 duplicate`` there too.
"""

from __future__ import annotations

from collections.abc import Sequence

from services.runtime.ports import TextTable

__all__ = ["EverySeen"]


class EverySeen:
    """A :class:`~services.runtime.ports.TextTable`: this process's table, and what every
    process's table holds as its changelog tells it."""

    def __init__(self, local: TextTable) -> None:
        self._local = local
        self._everywhere: dict[bytes, str] = {}

    def get(self, key: str) -> str | None:
        return self._local.get(key) or self._everywhere.get(key.encode())

    def put(self, key: str, value: str) -> None:
        self._local.put(key, value)

    def apply(
        self, key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes]]
    ) -> None:
        """One record of the changelog."""
        if key is None:
            return
        if value is None:
            self._everywhere.pop(key, None)
        else:
            self._everywhere[key] = value.decode("utf-8", "replace")
