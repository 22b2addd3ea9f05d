"""How long ingest remembers a webhook-id, and how much room the ids may take."""

from __future__ import annotations

from services.ingest.dedupe import seen_value
from services.ingest.seen import EverySeen, SeenWindow
from services.runtime.memory import DictTextTable

DAY = 86400.0


def _every(max_bytes: int = 1 << 20) -> tuple[EverySeen, DictTextTable]:
    local = DictTextTable()
    return EverySeen(local, SeenWindow(retention_s=7 * DAY, max_bytes=max_bytes)), local


def _seen(every: EverySeen, local: DictTextTable, key: str, at: float) -> None:
    """An id accepted here at *at*: in this process's table and, through the
    changelog, in what every process has seen."""
    value = seen_value(f"event-{key}", at)
    local.put(key, value)
    every.apply(key.encode(), value.encode(), ())


def test_ids_past_the_window_are_forgotten_here_and_from_every_process_s_view() -> None:
    every, local = _every()
    for n in range(5):
        _seen(every, local, f"lerum:old-{n}", at=n)
    _seen(every, local, "lerum:new", at=7 * DAY)
    swept = every.sweep(now=7 * DAY + 3)
    assert (swept.expired, swept.evicted, swept.kept) == (3, 0, 3)
    assert [k for k, _ in local.oldest_first()] == ["lerum:old-3", "lerum:old-4", "lerum:new"]
    assert every.get("lerum:old-2") is None
    assert every.get("lerum:old-3") is not None


def test_over_the_byte_limit_the_oldest_ids_go_first_whatever_their_age() -> None:
    every, local = _every(max_bytes=1000)
    for n in range(40):
        _seen(every, local, f"lerum:msg-{n:04d}", at=1000 + n)
    swept = every.sweep(now=1100)
    assert swept.expired == 0
    assert swept.evicted > 0
    assert swept.bytes <= 1000
    kept = [k for k, _ in local.oldest_first()]
    assert kept == [f"lerum:msg-{n:04d}" for n in range(swept.evicted, 40)]
    assert every.get(f"lerum:msg-{swept.evicted - 1:04d}") is None
    assert every.get("lerum:msg-0039") is not None


def test_an_id_accepted_again_after_it_was_forgotten_is_kept_as_new() -> None:
    every, local = _every()
    _seen(every, local, "lerum:again", at=0)
    _seen(every, local, "lerum:other", at=2 * DAY)
    _seen(every, local, "lerum:again", at=8 * DAY)
    swept = every.sweep(now=8 * DAY + 1)
    assert swept.kept == 2, "the renewed id moved behind the other, not kept at the front"
    assert [k for k, _ in local.oldest_first()] == ["lerum:other", "lerum:again"]
    every.sweep(now=9.5 * DAY)
    assert [k for k, _ in local.oldest_first()] == ["lerum:again"]
    assert every.get("lerum:again") == seen_value("event-lerum:again", 8 * DAY)
