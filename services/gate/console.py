"""The hold console: communicators see, release and reject held items in a web page.

Server-rendered Swedish pages under ``/console``, for the tenants the person
acts for. A person logs in with their own token (or is named by a trusted
proxy); the session cookie is HttpOnly, SameSite=Strict and Secure over HTTPS,
and every form carries the session's token against cross-site requests.
Releases and rejections go through the same path as the operator API, so they
are audited with the person's name.
"""

from __future__ import annotations

import hmac
import json
import secrets
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import aiohttp
import jinja2
import structlog
from aiohttp import web

from services.gate import paging, wording
from services.gate.console_followup import FollowUpPages
from services.gate.followup import FollowUp
from services.gate.handler import GateHandler
from services.gate.oidc import LoginRefused, LoginStart, OidcClient
from services.gate.sessions import Caller, Principal, Session, Sessions
from services.gate.sso import identity_of
from services.runtime.keys import ItemKey, from_segment, path_segment
from services.runtime.operators import Identity, OperatorDirectory, key_digest
from services.runtime.ports import Clock
from services.runtime.swedish import duration
from services.runtime.web import REFUSED_PERSON

__all__ = ["Console"]

COOKIE = "gk_session"
LOGIN_COOKIE = "gk_login"
#: The login under way with the provider: state, nonce, PKCE verifier, for 10 minutes.
STATE_COOKIE = "gk_oidc"
STATE_TTL_S = 600
#: Rows a page of the held list.
CONSOLE_PAGE = 50
#: A session cookie to write with the page: new, or used again after a while.
_SET_SESSION = web.RequestKey("set_session", str)
_ZONE = ZoneInfo("Europe/Stockholm")
log = structlog.get_logger("gatekeeper.console")
_CSP = "default-src 'self'; style-src 'unsafe-inline'; frame-ancestors 'none'; form-action 'self'"
_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)
_ENV.filters["segment"] = lambda value: path_segment(str(value))


def _when(at: datetime) -> str:
    return at.astimezone(_ZONE).strftime("%Y-%m-%d %H:%M")


def _age(since: datetime, now: datetime) -> str:
    return duration(max((now - since).total_seconds(), 0.0))


def _same(given: str, expected: str) -> bool:
    """Constant-time comparison of two form values, whatever characters they hold."""
    return hmac.compare_digest(given.encode(), expected.encode())


def _secure(request: web.Request) -> bool:
    return request.secure or request.headers.get("X-Forwarded-Proto", "") == "https"


class Console:
    def __init__(
        self,
        handler: GateHandler,
        operators: OperatorDirectory,
        tenants: Collection[str],
        clock: Clock,
        sessions: Sessions,
        oidc: OidcClient | None = None,
        followup: FollowUp | None = None,
        followup_ready: Callable[[], bool] = lambda: True,
    ) -> None:
        self._follow_up = FollowUpPages(
            self._who,
            self._page,
            handler,
            tenants,
            clock,
            followup or FollowUp(),
            followup_ready,
        )
        self._handler = handler
        self._operators = operators
        self._tenants = tenants
        self._clock = clock
        self._sessions = sessions
        self._oidc = oidc
        #: Nonces of logins finished here lately: a replayed callback is refused.
        self._finished: OrderedDict[str, None] = OrderedDict()

    def add_routes(self, app: web.Application) -> None:
        self._follow_up.add_routes(app)
        app.router.add_get("/console", self.held)
        app.router.add_get("/console/login", self.login_form)
        app.router.add_post("/console/login", self.login)
        app.router.add_post("/console/logout", self.logout)
        app.router.add_get("/console/oidc/start", self.sso_start)
        app.router.add_get("/console/oidc/callback", self.sso_callback)
        app.router.add_get("/console/items/{tenant}/{item_id}", self.item)
        app.router.add_post("/console/items/{tenant}/{item_id}/release", self.release)
        app.router.add_post("/console/items/{tenant}/{item_id}/reject", self.reject)

    # -- sessions -----------------------------------------------------------------------

    def _identity(self, principal: Principal) -> Identity | None:
        """Who the session's person is now: a person removed from the file is nobody."""
        match principal.kind:
            case "key":
                return self._operators.by_digest(principal.value)
            case "email":
                return self._operators.by_email(principal.value)
            case "claims":
                return Identity(
                    principal.name, principal.value, frozenset(principal.tenants), principal.role
                )
        return None

    def _set_cookie(
        self,
        response: web.StreamResponse,
        request: web.Request,
        name: str,
        value: str,
        samesite: str = "Strict",
        max_age: int | None = None,
    ) -> None:
        response.set_cookie(
            name,
            value,
            path="/console",
            httponly=True,
            samesite=samesite,
            secure=_secure(request),
            max_age=max_age,
        )

    def _who(self, request: web.Request) -> Caller:
        """The logged-in person, or the way to the login page."""
        now = self._clock()
        session = self._sessions.open(request.cookies.get(COOKIE), now)
        identity = self._identity(session.principal) if session is not None else None
        if session is not None and identity is not None:
            used = self._sessions.used(session, now)
            if used is not None:
                request[_SET_SESSION] = self._sessions.cookie(used)
            return Caller(used or session, identity)
        proxied = self._operators.by_proxy(request.headers, request.remote)
        if proxied is None or proxied.email is None:
            raise web.HTTPSeeOther("/console/login")
        session = self._sessions.start(Principal("email", proxied.email), now)
        request[_SET_SESSION] = self._sessions.cookie(session)
        return Caller(session, proxied)

    def _page(
        self, request: web.Request, template: str, status: int = 200, **context: Any
    ) -> web.Response:
        response = web.Response(
            text=_ENV.get_template(template).render(**context),
            status=status,
            content_type="text/html",
            charset="utf-8",
            headers={
                "Cache-Control": "no-store",
                "Content-Security-Policy": _CSP,
                "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "no-referrer",
            },
        )
        if _SET_SESSION in request:
            self._set_cookie(response, request, COOKIE, request[_SET_SESSION])
        return response

    async def login_form(self, request: web.Request, error: str | None = None) -> web.Response:
        token = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(32)
        provider = self._oidc.config.provider_name if self._oidc else None
        response = self._page(
            request,
            "login.html",
            401 if error else 200,
            who=None,
            csrf=token,
            error=error,
            provider=provider,
        )
        self._set_cookie(response, request, LOGIN_COOKIE, token)
        return response

    def _logged_in(self, request: web.Request, session: Session) -> web.HTTPSeeOther:
        response = web.HTTPSeeOther("/console")
        self._set_cookie(response, request, COOKIE, self._sessions.cookie(session))
        response.del_cookie(LOGIN_COOKIE, path="/console")
        return response

    async def login(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        expected = request.cookies.get(LOGIN_COOKIE)
        given = form.get("csrf")
        if not expected or not isinstance(given, str) or not _same(given, expected):
            return await self.login_form(request, "Formuläret har gått ut. Försök igen.")
        token = form.get("token")
        who = self._operators.by_token(token) if isinstance(token, str) and token else None
        if who is None or not isinstance(token, str):
            return await self.login_form(request, "Nyckeln stämmer inte.")
        session = self._sessions.start(Principal("key", key_digest(token)), self._clock())
        raise self._logged_in(request, session)

    async def sso_start(self, request: web.Request) -> web.StreamResponse:
        """Off to the provider, with state, nonce and the PKCE verifier kept in a cookie
        that comes back on the provider's redirect (SameSite=Lax: it is another site)."""
        if self._oidc is None:
            raise web.HTTPNotFound(text="Inloggning med kommunens konto är inte påslagen.")
        try:
            url, started = await self._oidc.start()
        except (LoginRefused, aiohttp.ClientError, TimeoutError) as exc:
            log.warning("auth.sso_unavailable", problem=str(exc))
            return await self.login_form(
                request, "Inloggningstjänsten svarar inte just nu. Försök igen om en stund."
            )
        response = web.HTTPSeeOther(url)
        sealed = self._sessions.seal(asdict(started))
        self._set_cookie(
            response, request, STATE_COOKIE, sealed, samesite="Lax", max_age=STATE_TTL_S
        )
        raise response

    async def sso_callback(self, request: web.Request) -> web.StreamResponse:
        if self._oidc is None:
            raise web.HTTPNotFound(text="Inloggning med kommunens konto är inte påslagen.")
        kept = self._sessions.unseal(request.cookies.get(STATE_COOKIE), STATE_TTL_S)
        state, code = request.query.get("state", ""), request.query.get("code", "")
        try:
            if kept is None:
                raise LoginRefused("no login under way in this browser, or it took too long")
            started = LoginStart(**kept)
            if not state or not _same(state, started.state):
                raise LoginRefused("the state does not match the login under way")
            if started.nonce in self._finished:
                raise LoginRefused("this login was finished before")
            if not code:
                raise LoginRefused(f"the provider answered {request.query.get('error', '?')}")
            claims, id_token = await self._oidc.finish(code, started)
        except (LoginRefused, aiohttp.ClientError, TimeoutError, TypeError) as exc:
            log.warning("auth.sso_refused", problem=str(exc))
            return await self.login_form(request, "Inloggningen gick inte igenom. Försök igen.")
        self._remember(started.nonce)
        config = self._oidc.config
        identity = identity_of(claims, self._operators.by_email, self._tenants, config.roles_claim)
        if identity is None or identity.email is None:
            log.warning("auth.sso_unknown_person")
            request[REFUSED_PERSON] = str(claims.get("email") or "")
            response = self._page(request, "unknown.html", 403, who=None)
            response.del_cookie(STATE_COOKIE, path="/console")
            return response
        if self._operators.by_email(identity.email) is not None:
            principal = Principal("email", identity.email)
        else:
            tenants = tuple(sorted(identity.tenants)) if identity.tenants != "*" else ()
            principal = Principal("claims", identity.email, identity.name, tenants, identity.role)
        session = self._sessions.start(principal, self._clock(), id_token)
        log.info("auth.sso_login", operator=identity.name)
        # A page, not a redirect: a browser arriving from the provider's site sends no
        # SameSite=Strict cookie along a redirect chain that began there; this page's
        # own step to /console is same-site, so the new session's cookie goes with it.
        response = self._page(request, "signed_in.html", who=None)
        self._set_cookie(response, request, COOKIE, self._sessions.cookie(session))
        response.del_cookie(STATE_COOKIE, path="/console")
        response.del_cookie(LOGIN_COOKIE, path="/console")
        return response

    def _remember(self, nonce: str) -> None:
        self._finished[nonce] = None
        while len(self._finished) > 10_000:
            self._finished.popitem(last=False)

    async def logout(self, request: web.Request) -> web.StreamResponse:
        # Always ends the session, even from a page older than the form's token: a
        # person who asks to be logged out is (a forged logout costs only a login).
        session = self._sessions.open(request.cookies.get(COOKIE), self._clock())
        at_provider = None
        if session is not None:
            await self._sessions.end(session)
            if session.id_token and self._oidc is not None:
                at_provider = await self._oidc.logout_url(session.id_token)
        if at_provider is None or self._oidc is None:
            back = web.HTTPSeeOther("/console/login")
            back.del_cookie(COOKIE, path="/console")
            raise back
        # On to the provider's logout by a page, not a redirect: a form's redirect to
        # another site is what the page's form-action 'self' forbids.
        name = self._oidc.config.provider_name
        page = self._page(request, "signed_out.html", who=None, next=at_provider, provider=name)
        page.del_cookie(COOKIE, path="/console")
        return page

    # -- pages --------------------------------------------------------------------------

    def _row(self, row: Mapping[str, Any], now: datetime) -> dict[str, Any]:
        """A held list row as the pages show it."""
        policy = self._handler.policy(row["tenant"])
        held_since = datetime.fromisoformat(row["held_since"])
        preview = row.get("preview") or {}
        return {
            "tenant": row["tenant"],
            "item_id": row["item_id"],
            "title": row["title"],
            "organization": policy.organization if policy else row["tenant"],
            "version": row["version"],
            "audience": row["audience"],
            "unit": row["unit"],
            "channels": row["channels"],
            "recipients": preview.get("recipients", ""),
            "reasons": [wording.reason_text(r) for r in row["reasons"]] or ["Väntar på beslut"],
            "findings": row["findings"],
            "age": _age(held_since, now),
            "publish_at": _when(datetime.fromisoformat(row["publish_at"])),
            "escalated": row["escalated"],
            "text": preview.get("text", ""),
            "held_since": held_since,
        }

    async def held(self, request: web.Request) -> web.Response:
        session = self._who(request)
        who, now = session.identity, self._clock()
        board, tenants = self._handler.board, who.visible(sorted(self._tenants))
        q = request.query.get("q", "").strip()
        reason = request.query.get("orsak") or None
        try:
            texts, count, next_cursor = await board.read_json(
                "row",
                tenants,
                limit=CONSOLE_PAGE,
                cursor=request.query.get("sida") or None,
                q=q,
                reason=reason,
            )
        except paging.BadCursor:
            raise web.HTTPSeeOther("/console") from None
        found = paging.Page(json.loads(b"[" + texts + b"]"), count, next_cursor)
        reasons = board.reasons(tenants)
        done = {"released": "Publiceringen är släppt.", "rejected": "Publiceringen är stoppad."}
        further = None
        if found.next_cursor:
            further = "/console?" + urlencode(
                {k: v for k, v in (("q", q), ("orsak", reason or "")) if v}
                | {"sida": found.next_cursor}
            )
        return self._page(
            request,
            "held.html",
            who=who,
            csrf=session.csrf,
            rows=[self._row(row, now) for row in found.rows],
            count=found.count,
            total=board.count(tenants),
            q=q,
            reason=reason,
            reasons=[(r, wording.reason_text(r)) for r in reasons],
            further=further,
            tenants=", ".join(who.visible(sorted(self._tenants))),
            message=done.get(request.query.get("klart", "")),
        )

    def _item_page(
        self, request: web.Request, session: Caller, key: ItemKey, error: str | None = None
    ) -> web.Response:
        now = self._clock()
        holds = [self._row(row, now) for row in self._handler.board.get(key.encode())]
        history = [
            {
                "at": _when(d.decided_at),
                "kind": wording.decision_kind(d.kind),
                "version": d.version,
                "reason": d.operator_reason or d.reason,
                "operator": d.operator or "",
            }
            for d in self._handler.history(key).decisions
        ]
        title = holds[0]["title"] if holds else key.item_id
        return self._page(
            request,
            "item.html",
            422 if error else 200,
            who=session.identity,
            csrf=session.csrf,
            item={"tenant": key.tenant, "item_id": key.item_id, "title": title},
            holds=holds,
            history=history,
            error=error,
        )

    def _key(self, request: web.Request, session: Caller) -> ItemKey:
        key = ItemKey(request.match_info["tenant"], from_segment(request.match_info["item_id"]))
        if key.tenant not in self._tenants or not session.identity.acts_for(key.tenant):
            raise web.HTTPNotFound(text="Hittades inte.")
        return key

    async def item(self, request: web.Request) -> web.Response:
        session = self._who(request)
        key = self._key(request, session)
        if not self._handler.board.get(key.encode()) and not self._handler.history(key).decisions:
            raise web.HTTPNotFound(text="Hittades inte.")
        return self._item_page(request, session, key)

    async def release(self, request: web.Request) -> web.Response:
        return await self._decide(request, release=True)

    async def reject(self, request: web.Request) -> web.Response:
        return await self._decide(request, release=False)

    async def _decide(self, request: web.Request, *, release: bool) -> web.Response:
        session = self._who(request)
        key = self._key(request, session)
        form = await request.post()
        csrf, reason = form.get("csrf"), form.get("reason")
        if not session.form_ok(csrf if isinstance(csrf, str) else None):
            raise web.HTTPForbidden(text="Formuläret kom inte från konsolen. Ladda om sidan.")
        if not session.identity.may_act:
            raise web.HTTPForbidden(text="Du har läsbehörighet och kan inte fatta beslut.")
        if not isinstance(reason, str) or not reason.strip():
            return self._item_page(request, session, key, "Skriv ett skäl till beslutet.")
        status, request_id = await self._handler.request(
            key, reason.strip(), session.identity, release=release
        )
        if request_id is None:
            return self._item_page(request, session, key, "Inget väntar längre för den här posten.")
        raise web.HTTPSeeOther(f"/console?klart={status}")

    # -- follow-up ----------------------------------------------------------------------
