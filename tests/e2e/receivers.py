"""Real receivers for publish's channels: an HTTP webhook endpoint and an SMTP server."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import Message
from typing import Any

from aiohttp import web
from aiosmtpd.controller import Controller
from standardwebhooks import Webhook

from services.runtime.broker import free_port


@dataclass
class WebhookReceiver:
    """Verifies Standard Webhooks signatures and deduplicates by ``webhook-id``, as a
    well-behaved receiver does. ``script`` says how to answer the next requests:
    ``"500"``, ``"hang"`` (answer after the sender gave up), ``"slow"`` (200 after
    0.1 s), ``"serial"`` (one request at a time, 0.1 s each) or ``"200"``;
    ``default`` answers once the script is used up."""

    secret: str
    script: list[str] = field(default_factory=list)
    default: str = "200"
    port: int = field(default_factory=free_port)
    seen: list[tuple[str, str]] = field(default_factory=list)  # (webhook-id, answer)
    accepted: dict[str, bytes] = field(default_factory=dict)
    bad_signatures: int = 0
    _one_at_a_time: asyncio.Lock | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            Webhook(self.secret).verify(body, dict(request.headers), json_parse=False)
        except Exception:
            self.bad_signatures += 1
            return web.Response(status=401)
        webhook_id = request.headers["webhook-id"]
        answer = self.script.pop(0) if self.script else self.default
        self.seen.append((webhook_id, answer))
        if answer == "500":
            return web.Response(status=500)
        if answer == "hang":
            await asyncio.sleep(3)
            return web.Response(status=503)
        if answer == "slow":
            await asyncio.sleep(0.1)
        if answer == "serial":
            self._one_at_a_time = self._one_at_a_time or asyncio.Lock()
            async with self._one_at_a_time:
                await asyncio.sleep(0.1)
                self.accepted.setdefault(webhook_id, body)
            return web.Response(status=200)
        self.accepted.setdefault(webhook_id, body)
        return web.Response(status=200)

    def start(self) -> WebhookReceiver:
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        async def serve() -> None:
            app = web.Application()
            app.router.add_post("/hook", self._handle)
            self._runner = web.AppRunner(app)
            await self._runner.setup()
            await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
            ready.set()

        def run() -> None:
            self._loop.run_until_complete(serve())
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        async def cleanup() -> None:
            await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content, policy=policy.default))
        return "250 OK"


class SmtpReceiver:
    """An aiosmtpd server on a free loopback port, keeping every message it gets."""

    def __init__(self) -> None:
        self.port = free_port()
        self.inbox = _Inbox()
        self._controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)

    @property
    def messages(self) -> list[Message]:
        return self.inbox.messages

    def start(self) -> SmtpReceiver:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()
