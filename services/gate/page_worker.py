"""The process that reads ``GET /v1/held``'s pages, as a service of the gate.

The gate's held board asks it for each page (:meth:`PageWorker.read`); it runs
:mod:`board_pages` in a child process over pipes, one page at a time. When the
child cannot answer (it died, or was never started) the answer is ``None`` and
the board reads the page itself, on a thread, as before: a page is never refused
for the worker's sake. A child that failed is started again on a later page, at
most every :data:`RESTART_AFTER_S`.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import mode
import structlog

from services.gate import paging

__all__ = ["PageWorker"]

#: The least time between two starts of the child after a failure.
RESTART_AFTER_S = 10.0

log = structlog.get_logger("gatekeeper.gate")


class PageWorker(mode.Service):
    """Pages of the board file at *path*, read by a child process."""

    def __init__(self, path: Path, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._path = path
        self._child: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()
        self._failed_at: float | None = None

    async def on_start(self) -> None:
        try:
            await self._spawn()
        except OSError as exc:  # the gate starts anyway; its board reads the pages
            await self._failed(type(exc).__name__)

    async def on_stop(self) -> None:
        async with self._lock:
            await self._end()

    async def _spawn(self) -> None:
        self._child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "services.gate.board_pages",
            str(self._path),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )

    async def _end(self) -> None:
        child, self._child = self._child, None
        if child is None or child.returncode is not None:
            return
        if child.stdin is not None:
            child.stdin.close()  # the child ends with its input
        try:
            await asyncio.wait_for(child.wait(), 2.0)
        except TimeoutError:
            child.kill()
            await child.wait()

    async def read(self, request: dict[str, Any]) -> tuple[bytes, int, str | None] | None:
        """One page as the child reads it: the rows joined, the count, the next
        cursor; ``None`` when the child cannot answer. A bad cursor raises
        :class:`paging.BadCursor`, as the board's own read does."""
        async with self._lock:
            if self._child is not None and self._child.returncode is not None:
                await self._failed(f"exited {self._child.returncode}")
            if self._child is None:
                if self._failed_at is None or time.monotonic() - self._failed_at < RESTART_AFTER_S:
                    return None  # not started, or failed a moment ago
                try:
                    await self._spawn()
                except OSError as exc:
                    await self._failed(type(exc).__name__)
                    return None
            child = self._child
            if child is None or child.stdin is None or child.stdout is None:
                return None  # made with both pipes: never so
            try:
                child.stdin.write(json.dumps(request).encode() + b"\n")
                await child.stdin.drain()
                header = json.loads(await child.stdout.readline())
                body = await child.stdout.readexactly(int(header.get("size", 0)))
            except BaseException as exc:
                # Half a conversation leaves the pipe out of step: never use it again.
                await self._failed(type(exc).__name__)
                if isinstance(exc, Exception):
                    return None
                raise
        if "bad_cursor" in header:
            raise paging.BadCursor(str(header["bad_cursor"]))
        if "error" in header:
            log.warning("held.page_worker_failed", problem=str(header["error"]))
            return None
        return body, int(header["count"]), header.get("next_cursor")

    async def _failed(self, problem: str) -> None:
        log.warning("held.page_worker_failed", problem=problem)
        self._failed_at = time.monotonic()
        child, self._child = self._child, None
        if child is not None and child.returncode is None:
            child.kill()
            await child.wait()
