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
import secrets
from collections.abc import Collection
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from aiohttp import web

from services.gate import wording
from services.gate.handler import GateHandler
from services.gate.machine import Held, ItemState, sender_for
from services.gate.operator_api import OperatorApi
from services.gate.sessions import Session, Sessions
from services.runtime.keys import ItemKey, from_segment, path_segment
from services.runtime.operators import OperatorDirectory
from services.runtime.ports import Clock

__all__ = ["Console"]

COOKIE = "gk_session"
LOGIN_COOKIE = "gk_login"
_ZONE = ZoneInfo("Europe/Stockholm")
_CSP = "default-src 'self'; style-src 'unsafe-inline'; frame-ancestors 'none'; form-action 'self'"
_KINDS = {
    "accepted": "Mottagen",
    "held": "Hålls kvar",
    "released": "Släppt",
    "rejected": "Avvisad: följer inte formatet",
    "escalated": "Eskalerad",
    "overridden": "Släppt av en person",
    "retracted": "Tillbakadragen",
    "stale": "Inaktuell version",
    "rejected_by_operator": "Stoppad av en person",
}
_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)
_ENV.filters["segment"] = lambda value: path_segment(str(value))


def _when(at: datetime) -> str:
    return at.astimezone(_ZONE).strftime("%Y-%m-%d %H:%M")


def _age(since: datetime, now: datetime) -> str:
    minutes = max(int((now - since).total_seconds() // 60), 0)
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    parts = [f"{days} dygn"] if days else []
    parts += [f"{hours} h"] if hours else []
    parts += [f"{minutes} min"] if minutes or not parts else []
    return " ".join(parts)


def _same(given: str, expected: str) -> bool:
    """Constant-time comparison of two form values, whatever characters they hold."""
    return hmac.compare_digest(given.encode(), expected.encode())


def _secure(request: web.Request) -> bool:
    return request.secure or request.headers.get("X-Forwarded-Proto", "") == "https"


class Console:
    def __init__(
        self,
        handler: GateHandler,
        api: OperatorApi,
        operators: OperatorDirectory,
        tenants: Collection[str],
        clock: Clock,
    ) -> None:
        self._handler = handler
        self._api = api
        self._operators = operators
        self._tenants = tenants
        self._clock = clock
        self._sessions = Sessions()

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/console", self.held)
        app.router.add_get("/console/login", self.login_form)
        app.router.add_post("/console/login", self.login)
        app.router.add_post("/console/logout", self.logout)
        app.router.add_get("/console/items/{tenant}/{item_id}", self.item)
        app.router.add_post("/console/items/{tenant}/{item_id}/release", self.release)
        app.router.add_post("/console/items/{tenant}/{item_id}/reject", self.reject)

    # -- sessions -----------------------------------------------------------------------

    def _session(self, request: web.Request) -> Session | None:
        return self._sessions.get(request.cookies.get(COOKIE), self._clock())

    def _set_cookie(
        self, response: web.StreamResponse, request: web.Request, name: str, value: str
    ) -> None:
        response.set_cookie(
            name,
            value,
            path="/console",
            httponly=True,
            samesite="Strict",
            secure=_secure(request),
        )

    def _proxied(self, request: web.Request) -> tuple[str, Session] | None:
        who = self._operators.by_proxy(request.headers, request.remote)
        return self._sessions.start(who, self._clock()) if who is not None else None

    def _who(self, request: web.Request) -> Session:
        """The logged-in session, or the way to the login page."""
        session = self._session(request)
        if session is not None:
            return session
        proxied = self._proxied(request)
        if proxied is None:
            raise web.HTTPSeeOther("/console/login")
        session_id, session = proxied
        request["new_session"] = session_id
        return session

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
        if "new_session" in request:
            self._set_cookie(response, request, COOKIE, request["new_session"])
        return response

    async def login_form(self, request: web.Request, error: str | None = None) -> web.Response:
        token = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(32)
        response = self._page(
            request, "login.html", 401 if error else 200, who=None, csrf=token, error=error
        )
        self._set_cookie(response, request, LOGIN_COOKIE, token)
        return response

    async def login(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        expected = request.cookies.get(LOGIN_COOKIE)
        given = form.get("csrf")
        if not expected or not isinstance(given, str) or not _same(given, expected):
            return await self.login_form(request, "Formuläret har gått ut. Försök igen.")
        token = form.get("token")
        who = self._operators.by_token(token) if isinstance(token, str) and token else None
        if who is None:
            return await self.login_form(request, "Nyckeln stämmer inte.")
        session_id, _ = self._sessions.start(who, self._clock())
        response = web.HTTPSeeOther("/console")
        self._set_cookie(response, request, COOKIE, session_id)
        response.del_cookie(LOGIN_COOKIE, path="/console")
        raise response

    async def logout(self, request: web.Request) -> web.StreamResponse:
        # Always ends the session, even from a page older than the form's token: a
        # person who asks to be logged out is (a forged logout costs only a login).
        self._sessions.end(request.cookies.get(COOKIE))
        response = web.HTTPSeeOther("/console/login")
        response.del_cookie(COOKIE, path="/console")
        raise response

    # -- pages --------------------------------------------------------------------------

    def _row(self, state: ItemState, audience: str, held: Held, now: datetime) -> dict[str, Any]:
        policy = self._handler.policy(state.tenant)
        return {
            "tenant": state.tenant,
            "item_id": state.item_id,
            "title": held.event.title,
            "organization": policy.organization if policy else state.tenant,
            "version": held.event.version,
            "audience": audience,
            "unit": held.event.unit,
            "channels": list(held.event.channels),
            "recipients": held.event.recipients,
            "reasons": [wording.reason_text(r) for r in held.reasons] or ["Väntar på beslut"],
            "findings": wording.findings(held),
            "age": _age(held.held_since, now),
            "publish_at": _when(held.event.publish_at),
            "escalated": held.escalated,
            "text": self._text(state, held),
            "held_since": held.held_since,
        }

    def _text(self, state: ItemState, held: Held) -> str:
        """The text as it will go out, signed with the sender block."""
        event = held.event
        policy = self._handler.policy(state.tenant)
        lines = [event.title, ""]
        if event.summary:
            lines += [event.summary, ""]
        lines += [event.body, "", f"Mottagare: {event.recipients}"]
        lines += [f"{link.text}: {link.url}" for link in event.links]
        if policy is not None:
            sender = sender_for(policy, event)
            contact = sender.contact
            lines += ["", "-- ", sender.organization, sender.unit]
            lines.append(", ".join(p for p in (contact.name, contact.email, contact.phone) if p))
            lines.append(sender.website)
        return "\n".join(lines)

    async def held(self, request: web.Request) -> web.Response:
        session = self._who(request)
        who, now = session.identity, self._clock()
        rows = [
            self._row(state, audience, held, now)
            for state in self._handler.held()
            if who.acts_for(state.tenant)
            for audience, held in sorted(state.held.items())
        ]
        rows.sort(key=lambda r: (not r["escalated"], r["held_since"]))
        done = {"released": "Publiceringen är släppt.", "rejected": "Publiceringen är stoppad."}
        return self._page(
            request,
            "held.html",
            who=who,
            csrf=session.csrf,
            rows=rows,
            tenants=", ".join(who.visible(sorted(self._tenants))),
            message=done.get(request.query.get("klart", "")),
        )

    def _item_page(
        self, request: web.Request, session: Session, key: ItemKey, error: str | None = None
    ) -> web.Response:
        state = self._handler.state(key)
        now = self._clock()
        holds = (
            [self._row(state, a, h, now) for a, h in sorted(state.held.items())] if state else []
        )
        history = [
            {
                "at": _when(d.decided_at),
                "kind": _KINDS.get(d.kind, d.kind),
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

    def _key(self, request: web.Request, session: Session) -> ItemKey:
        key = ItemKey(request.match_info["tenant"], from_segment(request.match_info["item_id"]))
        if key.tenant not in self._tenants or not session.identity.acts_for(key.tenant):
            raise web.HTTPNotFound(text="Hittades inte.")
        return key

    async def item(self, request: web.Request) -> web.Response:
        session = self._who(request)
        key = self._key(request, session)
        if self._handler.state(key) is None and not self._handler.history(key).decisions:
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
        status, request_id = await self._api.decide(
            key, reason.strip(), session.identity, release=release
        )
        if request_id is None:
            return self._item_page(request, session, key, "Inget väntar längre för den här posten.")
        raise web.HTTPSeeOther(f"/console?klart={status}")
