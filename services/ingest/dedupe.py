"""Ingest's dedupe rule: which delivery of an event counts, and the ids it gets.

A ``webhook-id`` is the idempotency key, per tenant; a record produced straight
to ``cms.events`` without one is identified by where it sits in the log. An
event's id is derived from that key and the event's content unless ingest's
HTTP door already gave it one, so a replayed record keeps its id. Pure: no I/O,
no clock.
"""

from __future__ import annotations

import hashlib
import math
import uuid
from collections import OrderedDict

__all__ = ["RecentIds", "dedupe_id", "event_id_for", "seen_at", "seen_key", "seen_value"]

_EVENT_NS = uuid.UUID("6f1d7c1e-3c52-4f0e-9a55-2b0a3c4e5d61")


def dedupe_id(webhook_id: str | None, topic: str, partition: int, offset: int) -> str:
    """The idempotency key of one delivery: its ``webhook-id``, else its log position."""
    return webhook_id or f"{topic}-{partition}-{offset}"


def seen_key(tenant: str, dedupe: str) -> str:
    """Keys are per tenant: two CMSs may choose the same ``webhook-id``."""
    return f"{tenant}:{dedupe}"


def event_id_for(key: str, content: str) -> str:
    """An event's id, derived from its key and its *content* (its canonical JSON):
    the same on a replay, and on the same event delivered again after its key was
    forgotten, which the gate then knows as decided; another for a different event
    sent under a key used before."""
    digest = hashlib.sha256(content.encode()).hexdigest()
    return str(uuid.uuid5(_EVENT_NS, f"{key}\n{digest}"))


def seen_value(event_id: str, at: float) -> str:
    """What the table ``ingest-seen`` keeps for an id: the event id it was given and
    when (whole seconds since the epoch, rounded up: an id is kept at least the
    whole window), so ids can expire."""
    return f"{event_id} {math.ceil(at)}"


def seen_at(value: str) -> tuple[str, float]:
    """The event id and time in a :func:`seen_value`; a value without a time (kept
    before ids expired) counts as seen at the epoch."""
    event_id, _, at = value.partition(" ")
    try:
        return event_id, float(at)
    except ValueError:
        return event_id, 0.0


class RecentIds:
    """The idempotency keys this process answered lately, before the agent records them."""

    def __init__(self, size: int = 100_000) -> None:
        self._ids: OrderedDict[str, str] = OrderedDict()
        self._size = size

    def get(self, key: str) -> str | None:
        return self._ids.get(key)

    def put(self, key: str, event_id: str) -> None:
        self._ids[key] = event_id
        self._ids.move_to_end(key)
        while len(self._ids) > self._size:
            self._ids.popitem(last=False)
