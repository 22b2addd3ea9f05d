"""The HTTP face every service shares: /healthz, /readyz, /metrics and problem+json."""

from __future__ import annotations

import hashlib
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


#: Set on a request by a handler that refused a person it could name (single sign-on
#: of someone the operators file does not know): their e-mail, for :class:`LoginGuard`.
REFUSED_PERSON = "gatekeeper.refused_person"


def _person_key(email: str) -> str:
    return "person:" + hashlib.sha256(email.casefold().encode()).hexdigest()[:16]


class LoginGuard:
    """Failed logins logged and counted per address and per person; too many, and that
    address or person waits.

    A 401 on an operator path is a failed login (the console's key form answers 401
    too): it is logged as ``auth.failed`` with the path and the address, never the
    token, and counted. So is a refusal of a person who can be named: an e-mail the
    trusted proxy vouches for that the operators file does not know, or a single
    sign-on of such a person (the handler sets :data:`REFUSED_PERSON`); those count
    for the person too, whichever address they come from (logged as a digest of the
    e-mail, ``person``). An address or person over the limit gets 429 with
    ``Retry-After`` on every operator path until the oldest failure leaves the
    window. Behind the trusted proxy the address is the client's, from
    ``X-Forwarded-For``. Every answer over HTTPS carries HSTS.
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
        if not request.path.startswith(_GUARDED):
            return _secured(request, await handler(request))
        address = self._operators.client_address(
            request.remote, request.headers.get("X-Forwarded-For")
        )
        keys = [f"address:{address}"]
        vouched = self._operators.proxied_email(request.headers, request.remote)
        if vouched is not None:
            keys.append(_person_key(vouched))
        now = self._clock()
        waits = [w for k in keys if (w := self._throttle.wait(k, now)) is not None]
        wait = max(waits, default=None)
        if wait is not None:
            self._log.warning("auth.throttled", path=request.path, address=address)
            return _secured(request, _too_many(request, wait))
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            _secured(request, exc)
            raise
        refused = request.get(REFUSED_PERSON) or None
        if response.status == 401 or refused is not None:
            if refused is not None:
                keys.append(_person_key(refused))
                # Known only now: a person over the limit waits from this answer on.
                if (wait := self._throttle.wait(keys[-1], self._clock())) is not None:
                    response = _too_many(request, wait)
            for key in dict.fromkeys(keys):
                self._throttle.failed(key, self._clock())
            people = [k.removeprefix("person:") for k in keys if k.startswith("person:")]
            self._log.warning(
                "auth.failed",
                path=request.path,
                method=request.method,
                address=address,
                **({"person": people[-1]} if people else {}),
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
