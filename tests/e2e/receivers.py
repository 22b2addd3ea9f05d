"""Real receivers for publish's channels: an HTTP webhook endpoint and an SMTP server."""

from __future__ import annotations

import asyncio
import ssl
import threading
import time
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import Message
from typing import Any

from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from standardwebhooks import Webhook

from services.runtime.broker import free_port


@dataclass
class WebhookReceiver:
    """Verifies Standard Webhooks signatures and deduplicates by ``webhook-id``, as a
    well-behaved receiver does. ``script`` says how to answer the next requests:
    ``"500"``, ``"hang"`` (answer after the sender gave up), ``"slow"`` (200 after
    0.1 s), ``"serial"`` (one request at a time, 0.1 s each), ``"200"``, any other
    status such as ``"410"``, or a status with a Retry-After such as
    ``"503 retry-after=2"``; ``default`` answers once the script is used up.
    ``times`` and ``agents`` record when each request came and its User-Agent."""

    secret: str
    script: list[str] = field(default_factory=list)
    default: str = "200"
    port: int = field(default_factory=free_port)
    seen: list[tuple[str, str]] = field(default_factory=list)  # (webhook-id, answer)
    accepted: dict[str, bytes] = field(default_factory=dict)
    bad_signatures: int = 0
    times: list[float] = field(default_factory=list)
    agents: list[str] = field(default_factory=list)
    signatures: list[str] = field(default_factory=list)
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
        self.times.append(time.time())
        self.agents.append(request.headers.get("User-Agent", ""))
        self.signatures.append(request.headers.get("webhook-signature", ""))
        status, _, retry_after = answer.partition(" retry-after=")
        if status.isdigit() and status not in ("200", "500"):
            headers = {"Retry-After": retry_after} if retry_after else {}
            return web.Response(status=int(status), headers=headers)
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
    """An aiosmtpd server on a free loopback port, keeping every message it gets.

    With *tls* it offers STARTTLS and refuses mail without it; with *login*
    (user, password) it refuses mail from anyone who did not authenticate.
    """

    def __init__(
        self, tls: ssl.SSLContext | None = None, login: tuple[str, str] | None = None
    ) -> None:
        self.port = free_port()
        self.inbox = _Inbox()
        self.logins: list[str] = []
        options: dict[str, Any] = {}
        if tls is not None:
            options |= {"tls_context": tls, "require_starttls": True}
        if login is not None:
            options |= {
                "auth_required": True,
                "auth_require_tls": tls is not None,
                "authenticator": self._authenticator(login),
            }
        self._controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port, **options)

    def _authenticator(self, login: tuple[str, str]) -> Any:
        def check(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
            user = data.login.decode() if isinstance(data.login, bytes) else str(data.login)
            password = data.password.decode() if isinstance(data.password, bytes) else ""
            ok = (user, password) == login
            if ok:
                self.logins.append(user)
            return AuthResult(success=ok, handled=False)

        return check

    @property
    def messages(self) -> list[Message]:
        return self.inbox.messages

    def start(self) -> SmtpReceiver:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()
