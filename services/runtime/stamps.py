"""The owner's time on a record of a topic every process reads whole (``gate.held``,
``publish.dead``): in a header, so a tombstone has one too, and later than any time
the same process gave before, so an older record never replaces a newer one."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

__all__ = ["STAMP_HEADER", "Stamps", "stamp_header", "stamp_of"]

STAMP_HEADER = "gatekeeper-stamp"


def stamp_header(stamp: float) -> tuple[str, bytes]:
    return (STAMP_HEADER, repr(stamp).encode())


def stamp_of(headers: Sequence[tuple[str, bytes]]) -> float | None:
    """The record's time; None when it has none (or not a number): not ours."""
    raw = next((v for k, v in headers if k == STAMP_HEADER), None)
    try:
        return float(raw) if raw is not None else None
    except ValueError:
        return None


class Stamps:
    """One process's times, each later than the one before."""

    def __init__(self) -> None:
        self._last = 0.0

    def next(self, now: datetime) -> float:
        self._last = max(now.timestamp(), self._last + 1e-6)
        return self._last
