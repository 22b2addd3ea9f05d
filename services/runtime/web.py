"""The HTTP face every service shares: /healthz, /readyz, /metrics and problem+json."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import mode
import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from services.runtime.operators import Identity, OperatorDirectory
from services.runtime.throttle import Throttle

__all__ = [
    "LoginGuard",
    "WebService",
    "bad_query",
    "base_app",
    "forbidden",
    "identify",
    "problem",
    "unauthorized",
    "unknown_tenant",
]

PROBLEM_JSON = "application/problem+json"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def problem(
    status: int,
    title: str,
    detail: str,
    *,
    slug: str,
    instance: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> web.Response:
    """An RFC 9457 problem details response."""
    body: dict[str, Any] = {
        "type": f"urn:gatekeeper:problem:{slug}",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    if extra:
        body.update(extra)
    return web.json_response(body, status=status, content_type=PROBLEM_JSON)


def identify(request: web.Request, operators: OperatorDirectory) -> Identity | None:
    """The operator behind a request: its bearer token, else a trusted proxy's header."""
    return operators.by_authorization(request.headers.get("Authorization")) or (
        operators.by_proxy(request.headers, request.remote)
    )


def bad_query(request: web.Request, errors: list[dict[str, str]]) -> web.Response:
    """400 for query parameters that are wrong, each named in ``errors`` with its problem."""
    return problem(
        400,
        "Bad query",
        "; ".join(f"{e['field']}: {e['detail']}" for e in errors),
        slug="bad-query",
        instance=request.path_qs,
        extra={"errors": errors},
    )


def unauthorized(request: web.Request) -> web.Response:
    response = problem(
        401,
        "Unauthorized",
        "An operator's bearer token is required.",
        slug="unauthorized",
        instance=request.path,
    )
    response.headers["WWW-Authenticate"] = 'Bearer realm="gatekeeper"'
    return response


def forbidden(request: web.Request, who: Identity) -> web.Response:
    return problem(
        403,
        "Forbidden",
        f"{who.name} is a {who.role}; only a publisher may do this.",
        slug="forbidden",
        instance=request.path,
    )


def unknown_tenant(request: web.Request, tenant: str, who: Identity) -> web.Response:
    """A ``?tenant=`` that is not one of *who*'s (or not one at all)."""
    return problem(
        404,
        "Unknown tenant",
        f"No tenant {tenant!r} for {who.name}.",
        slug="unknown-tenant",
        instance=request.path_qs,
    )


@web.middleware
async def problems(request: web.Request, handler: Handler) -> web.StreamResponse:
    """aiohttp's own refusals (no such path, wrong method, body too large) as
    problem+json too, so an API client always gets one shape of error. The
    console's pages keep their own."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or request.path.startswith("/console"):
            raise
        return problem(
            exc.status,
            exc.reason,
            exc.text or exc.reason,
            slug=exc.reason.lower().replace(" ", "-"),
            instance=request.path,
        )


#: Where people and scripts log in: the operator APIs and the console.
_GUARDED = ("/v1/held", "/v1/dead-letters", "/console")
#: HTTPS only, for a year, once a browser has seen the console over HTTPS.
_HSTS = "max-age=31536000; includeSubDomains"


class LoginGuard:
    """Failed logins logged and counted per address; too many, and that address waits.

    A 401 on an operator path is a failed login (the console's key form answers 401
    too): it is logged as ``auth.failed`` with the path and the address, never the
    token, and counted. An address over the limit gets 429 with ``Retry-After`` on
    every operator path until the oldest failure leaves the window. Behind the
    trusted proxy the address is the client's, from ``X-Forwarded-For``. Every
    answer over HTTPS carries HSTS.
    """

    def __init__(
        self,
        operators: OperatorDirectory,
        throttle: Throttle | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._operators = operators
        self._throttle = throttle or Throttle()
        self._clock = clock
        self._log = structlog.get_logger("gatekeeper")

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        guarded = request.path.startswith(_GUARDED)
        address = self._operators.client_address(
            request.remote, request.headers.get("X-Forwarded-For")
        )
        if guarded:
            wait = self._throttle.wait(f"address:{address}", self._clock())
            if wait is not None:
                self._log.warning("auth.throttled", path=request.path, address=address)
                return _secured(request, _too_many(request, wait))
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            _secured(request, exc)
            raise
        if guarded and response.status == 401:
            self._throttle.failed(f"address:{address}", self._clock())
            self._log.warning(
                "auth.failed", path=request.path, method=request.method, address=address
            )
        return _secured(request, response)


def _secured(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
    if request.secure or request.headers.get("X-Forwarded-Proto", "") == "https":
        response.headers["Strict-Transport-Security"] = _HSTS
    return response


def _too_many(request: web.Request, wait: float) -> web.Response:
    seconds = int(wait + 0.999)
    if request.path.startswith("/console"):
        response = web.Response(
            text=f"För många misslyckade inloggningar. Försök igen om {seconds} sekunder.",
            status=429,
            content_type="text/plain",
        )
    else:
        response = problem(
            429,
            "Too many failed logins",
            f"Too many failed logins from this address; try again in {seconds} s.",
            slug="too-many-requests",
            instance=request.path,
        )
    response.headers["Retry-After"] = str(seconds)
    return response


def base_app(
    registry: CollectorRegistry,
    ready: Callable[[], bool],
    *,
    client_max_size: int = 1024**2,
    guard: LoginGuard | None = None,
    unavailable: Callable[[], str | None] = lambda: None,
) -> web.Application:
    """An aiohttp app with the three operational endpoints already routed; with
    *guard*, its operator paths guarded against guessing. ``/readyz`` answers 503
    with the reason *unavailable* gives (Kafka out of reach) or while starting;
    ``/healthz`` answers 200 as long as the process answers at all."""
    middlewares: list[Any] = [guard.middleware] if guard is not None else []
    app = web.Application(client_max_size=client_max_size, middlewares=[*middlewares, problems])

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        reason = unavailable()
        if reason is not None:
            return web.json_response({"status": "unavailable", "reason": reason}, status=503)
        if ready():
            return web.json_response({"status": "ready"})
        return web.json_response(
            {"status": "starting", "reason": "recovering its tables or joining its group"},
            status=503,
        )

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app


class WebService(mode.Service):
    """Serves an aiohttp app for as long as the worker runs."""

    def __init__(self, app: web.Application, host: str, port: int, **kwargs: Any) -> None:
        self.web_app = app
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None
        super().__init__(**kwargs)

    async def on_start(self) -> None:
        self._runner = web.AppRunner(self.web_app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()

    async def on_stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
