"""``GET /v1/held``'s pages read by a process of their own: the same pages the board
reads itself, every write committed before a page in it, and a page still answered
when that process is gone. A real child process on a real board file."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog

from services.gate import page_worker, paging
from services.gate.board import HeldBoard
from services.gate.page_worker import PageWorker

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _row(n: int, title: str = "Nyhet", reasons: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "tenant": "ale" if n % 4 == 0 else "lerum",
        "item_id": f"item-{n}",
        "audience": "external",
        "title": title,
        "reasons": list(reasons) or ["awaiting_internal_notice"],
        "held_since": (T0 + timedelta(minutes=n)).isoformat(),
    }


def _ids(rows: bytes) -> list[str]:
    return [r["item_id"] for r in json.loads(b"[" + rows + b"]")]


@pytest.fixture
async def worked(tmp_path: Path) -> AsyncIterator[tuple[HeldBoard, PageWorker]]:
    path = tmp_path / "held-board.sqlite3"
    board = HeldBoard(path)
    board.put_many((f"x:item-{n}".encode(), 1.0, [_row(n)]) for n in range(40))
    worker = PageWorker(path)
    await worker.start()
    board.read_pages_with(worker.read)
    yield board, worker
    await worker.stop()


async def test_the_worker_s_pages_are_the_board_s_own(
    worked: tuple[HeldBoard, PageWorker],
) -> None:
    board, worker = worked
    asked: list[dict[str, Any]] = []
    answered = worker.read

    async def counted(request: dict[str, Any]) -> Any:
        asked.append(request)
        return await answered(request)

    board.read_pages_with(counted)
    lerum = [f"item-{n}" for n in range(40) if n % 4]
    rows, count, cursor = await board.read_json("api", ["lerum"], limit=20)
    assert (_ids(rows), count) == (lerum[:20], 30)
    board.put(b"x:item-99", 1.0, [_row(99, "Ny badplats")])  # between two pages
    rest, total, end = await board.read_json("api", ["lerum"], limit=20, cursor=cursor)
    assert (_ids(rest), total, end) == ([*lerum[20:], "item-99"], 31, None)
    # A search is counted where it is read; a reason filters, the tenants bound.
    found, hits, _ = await board.read_json("api", ["lerum", "ale"], q="BADPLATS")
    assert (_ids(found), hits) == (["item-99"], 1)
    none, zero, _ = await board.read_json("api", ["ale"], reason="embargo")
    assert (none, zero) == (b"", 0)
    # The console's page: whole rows, as the board's own read gives them.
    whole, hits, _ = await board.read_json("row", ["lerum", "ale"], limit=3, q="badplats")
    console = board.page(["lerum", "ale"], limit=3, q="badplats")
    assert (json.loads(b"[" + whole + b"]"), hits) == (console.rows, 1)
    assert console.rows[0]["title"] == "Ny badplats"
    assert len(asked) == 5  # every page came from the worker
    assert asked[-1]["column"] == "row"


async def test_a_bad_cursor_is_refused_as_before(worked: tuple[HeldBoard, PageWorker]) -> None:
    board, _ = worked
    with pytest.raises(paging.BadCursor):
        await board.read_json("api", ["lerum"], cursor="not-a-cursor")


async def test_a_page_is_answered_when_the_worker_is_gone_and_it_is_started_again(
    worked: tuple[HeldBoard, PageWorker], monkeypatch: pytest.MonkeyPatch
) -> None:
    board, worker = worked
    first = worker._child
    assert first is not None
    assert first.pid != os.getpid()
    first.kill()
    await first.wait()
    with structlog.testing.capture_logs() as logged:
        rows, count, _ = await board.read_json("api", ["lerum", "ale"], limit=5)
    assert (_ids(rows), count) == ([f"item-{n}" for n in range(5)], 40)
    assert [e["event"] for e in logged] == ["held.page_worker_failed"]
    # Not started again at once, so a worker that cannot run is not started per page.
    assert worker._child is None
    monkeypatch.setattr(page_worker, "RESTART_AFTER_S", 0.0)
    rows, _, _ = await board.read_json("api", ["ale"], limit=2)
    assert _ids(rows) == ["item-0", "item-4"]
    again = worker._child
    assert again is not None
    assert (again.returncode, again.pid != first.pid) == (None, True)


async def test_a_worker_that_cannot_start_leaves_the_pages_to_the_board(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "held-board.sqlite3"
    board = HeldBoard(path)
    board.put_many((f"x:item-{n}".encode(), 1.0, [_row(n)]) for n in range(3))
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-such-python"))
    worker = PageWorker(path)
    with structlog.testing.capture_logs() as logged:
        await worker.start()
    board.read_pages_with(worker.read)
    rows, count, _ = await board.read_json("api", ["lerum", "ale"])
    await worker.stop()
    assert (_ids(rows), count) == (["item-0", "item-1", "item-2"], 3)
    assert [(e["event"], e["problem"]) for e in logged] == [
        ("held.page_worker_failed", "FileNotFoundError")
    ]
