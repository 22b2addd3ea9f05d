"""The held list a page at a time: every row held throughout is yielded once, whatever
is held or released between pages; filters and the count agree."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.gate.board import HeldBoard
from services.gate.paging import BadCursor, page
from services.runtime.stamps import stamp_header
from tests.properties import examples

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def _row(n: int, minute: int, title: str = "Nyhet", reasons: tuple[str, ...] = ()) -> Any:
    return {
        "tenant": "lerum",
        "item_id": f"item-{n}",
        "audience": "external",
        "title": title,
        "reasons": list(reasons) or ["awaiting_internal_notice"],
        "held_since": (T0 + timedelta(minutes=minute)).isoformat(),
    }


@settings(max_examples=examples(200), deadline=None)
@given(
    st.lists(st.integers(0, 30), min_size=0, max_size=40),
    st.integers(1, 7),
    st.lists(st.tuples(st.booleans(), st.integers(0, 200)), max_size=20),
)
def test_following_the_cursor_yields_every_row_held_throughout_once(
    minutes: list[int], limit: int, changes: list[tuple[bool, int]]
) -> None:
    held = {f"item-{n}": _row(n, m) for n, m in enumerate(minutes)}
    throughout = set(held)
    seen: list[str] = []
    cursor: str | None = None
    step = 0
    while True:
        got = page(list(held.values()), limit=limit, cursor=cursor)
        assert len(got.rows) <= limit
        assert got.count == len(held)
        seen += [r["item_id"] for r in got.rows]
        if got.next_cursor is None:
            break
        cursor = got.next_cursor
        if step < len(changes):  # between pages, something is held or released
            add, n = changes[step]
            if add:
                held[f"new-{n}"] = {**_row(1000 + n, 40 + n), "item_id": f"new-{n}"}
            elif held:
                gone = sorted(held)[n % len(held)]
                held.pop(gone)
                throughout.discard(gone)
            step += 1
    assert len(seen) == len(set(seen)), "no row twice"
    assert throughout <= set(seen), "every row held throughout, once"


def test_search_and_reason_filter_and_count_what_matches() -> None:
    rows = [
        _row(1, 1, "Ny förskola i Gråbo"),
        _row(2, 2, "Vattenläcka på Storgatan", ("awaiting_publish_at",)),
        _row(3, 3, "Förskolan stänger", ("awaiting_publish_at",)),
    ]
    found = page(rows, q="FÖRSKOLA gråbo")
    assert [r["item_id"] for r in found.rows] == ["item-1"]
    assert found.count == 1
    by_reason = page(rows, reason="awaiting_publish_at", limit=1)
    assert [r["item_id"] for r in by_reason.rows] == ["item-2"]
    assert by_reason.count == 2
    assert by_reason.next_cursor is not None
    rest = page(rows, reason="awaiting_publish_at", limit=1, cursor=by_reason.next_cursor)
    assert [r["item_id"] for r in rest.rows] == ["item-3"]
    assert rest.next_cursor is None
    assert [r["item_id"] for r in page(rows, q="item-2").rows] == ["item-2"]


@pytest.mark.parametrize("cursor", ["not-base64!", "bm90IGpzb24", "WzEsMiwzXQ"])
def test_a_cursor_not_handed_out_is_refused(cursor: str) -> None:
    with pytest.raises(BadCursor):
        page([_row(1, 1)], cursor=cursor)


_TENANTS = ("lerum", "ale")
_REASONS = ("awaiting_internal_notice", "awaiting_publish_at", "content_finding")
_TITLES = ("Ny förskola i Gråbo", "Vattenläcka på Storgatan", "FÖRSKOLAN stänger", "Nyhet")


@st.composite
def _items(draw: st.DrawFn) -> dict[bytes, list[dict[str, Any]]]:
    """Items of two tenants, each held for one or both audiences."""
    items: dict[bytes, list[dict[str, Any]]] = {}
    for n in range(draw(st.integers(0, 25))):
        tenant = draw(st.sampled_from(_TENANTS))
        rows = []
        for audience in draw(
            st.sampled_from([("external",), ("internal",), ("external", "internal")])
        ):
            row = _row(n, draw(st.integers(0, 8)), draw(st.sampled_from(_TITLES)))
            row |= {
                "tenant": tenant,
                "audience": audience,
                "reasons": draw(
                    st.lists(st.sampled_from(_REASONS), min_size=1, max_size=2, unique=True)
                ),
            }
            rows.append(row)
        items[f"{tenant}:item-{n}".encode()] = rows
    return items


@settings(max_examples=examples(150), deadline=None)
@given(
    _items(),
    st.lists(st.sampled_from(_TENANTS), min_size=1, max_size=2, unique=True),
    st.integers(1, 6),
    st.sampled_from([None, "förskola", "gråbo FÖRSKOLA", "item-1", "nope"]),
    st.sampled_from([None, *_REASONS]),
)
def test_the_board_pages_from_its_index_as_the_list_pages(
    items: dict[bytes, list[dict[str, Any]]],
    tenants: list[str],
    limit: int,
    q: str | None,
    reason: str | None,
) -> None:
    """The held board answers each page, its count and its cursor exactly as the pure
    paging of the same rows does, a page at a time to the end."""
    board = HeldBoard()
    board.put_many((key, 1.0, rows) for key, rows in items.items())
    visible = [r for rows in items.values() for r in rows if r["tenant"] in tenants]
    cursor: str | None = None
    while True:
        expected = page(visible, limit=limit, cursor=cursor, q=q, reason=reason)
        got = board.page(tenants, limit=limit, cursor=cursor, q=q, reason=reason)
        assert got == expected
        if got.next_cursor is None:
            break
        cursor = got.next_cursor
    assert board.count(tenants) == len(visible)
    assert board.reasons(tenants) == sorted({r for row in visible for r in row["reasons"]})


def test_the_board_keeps_the_newest_record_of_an_item_and_forgets_what_left() -> None:
    board = HeldBoard()
    key = b"lerum:item-1"
    board.put(key, 2.0, [_row(1, 1, "Andra versionen")])
    board.put(key, 1.0, [_row(1, 0, "Första versionen")])  # older: changes nothing
    assert [r["title"] for r in board.get(key)] == ["Andra versionen"]
    assert board.count(["lerum"]) == 1
    board.put(key, 3.0, [])  # released: a tombstone
    assert board.get(key) == []
    assert board.count(["lerum"]) == 0
    assert board.reasons(["lerum"]) == []
    assert board.page(["lerum"]).rows == []


def test_the_board_reads_a_fetched_batch_of_gate_held_records_at_once() -> None:
    """A batch as the mirror fetches it: rows, a later tombstone, and records that are
    not ours (no owner's time, not JSON) which change nothing."""
    board = HeldBoard()
    first, second = _row(1, 1, "Första"), _row(2, 2, "Andra")
    board.apply_many(
        [
            (b"lerum:item-1", json.dumps([first]).encode(), [stamp_header(1.0)]),
            (b"lerum:item-2", json.dumps([second]).encode(), [stamp_header(1.0)]),
            (b"lerum:item-3", json.dumps([_row(3, 3)]).encode(), []),
            (b"lerum:item-4", b"not json", [stamp_header(1.0)]),
            (b"lerum:item-1", None, [stamp_header(2.0)]),
        ]
    )
    assert [r["item_id"] for r in board.page(["lerum"]).rows] == ["item-2"]
    assert board.count(["lerum"]) == 1


async def test_a_board_on_file_reads_the_api_s_pages_on_a_connection_of_their_own(
    tmp_path: Any,
) -> None:
    """On a file the API's pages are read on a thread, from a second connection: each
    shows every write committed before it, and the cursor walks on across a write."""
    board = HeldBoard(tmp_path / "held-board.sqlite3")
    board.put_many((f"lerum:item-{n}".encode(), 1.0, [_row(n, n)]) for n in range(30))
    rows, count, next_cursor = await board.read_json("api", ["lerum"], limit=20)
    assert [r["item_id"] for r in json.loads(b"[" + rows + b"]")] == [
        f"item-{n}" for n in range(20)
    ]
    assert (count, next_cursor is not None) == (30, True)
    board.put(b"lerum:item-99", 1.0, [_row(99, 99)])  # between two pages
    rest, total, end = await board.read_json("api", ["lerum"], limit=20, cursor=next_cursor)
    assert [r["item_id"] for r in json.loads(b"[" + rest + b"]")] == [
        *(f"item-{n}" for n in range(20, 30)),
        "item-99",
    ]
    assert (total, end) == (31, None)
