"""A TCP proxy of the tests' own between the services and the broker, which cuts
every connection on demand: a Kafka outage as the services see it.

The broker advertises the proxy's address (as the TLS tests do with stunnel), so
every connection a client makes, bootstrap and partition leaders alike, passes
the proxy. :meth:`cut` closes every open connection and refuses new ones until
:meth:`restore`.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator

from services.runtime.broker import free_port

__all__ = ["CuttingProxy"]


class CuttingProxy:
    def __init__(self, target_port: int, port: int | None = None) -> None:
        self.port = port or free_port()
        self._target = target_port
        self._cut = False
        self._loop = asyncio.new_event_loop()
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.base_events.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def start(self) -> CuttingProxy:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._accept, "127.0.0.1", self.port), self._loop
        ).result(10)
        return self

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
            self._drop_all()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def cut(self) -> None:
        """Every connection closed at once; new ones are closed as they come."""

        async def cut() -> None:
            self._cut = True
            self._drop_all()

        asyncio.run_coroutine_threadsafe(cut(), self._loop).result(10)

    def restore(self) -> None:
        async def restore() -> None:
            self._cut = False

        asyncio.run_coroutine_threadsafe(restore(), self._loop).result(10)

    @contextlib.contextmanager
    def outage(self) -> Iterator[None]:
        self.cut()
        try:
            yield
        finally:
            self.restore()

    def _drop_all(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._cut:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._target)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )
        self._writers -= {writer, up_writer}

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            writer.transport.abort()
