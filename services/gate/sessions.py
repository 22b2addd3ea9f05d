"""Console sessions that any gate process knows, after any restart.

A session lives in its cookie, encrypted and signed (Fernet) with the session
key: who logged in and how, when, when last used, and the token its forms must
carry. Any gate process with the same key reads it, so a restart or another
replica keeps the person logged in. It ends at logout, 8 hours after login or
after 1 hour unused; logout puts its id on a revocation list every process
reads (``Revocations``), so a copied cookie dies with it.

Who the person is gets looked up again on every request (:class:`Principal`):
someone removed from the operators file is logged out at once, and a changed
role applies at once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol

from cryptography.fernet import Fernet, InvalidToken

from services.runtime import topics
from services.runtime.operators import Identity
from services.runtime.ports import Clock, OutboundRecord, Outbox

__all__ = [
    "Caller",
    "KafkaRevocations",
    "MemoryRevocations",
    "Principal",
    "Revocations",
    "Session",
    "Sessions",
    "fernet_key",
]

#: A used session's cookie is written again at most this often (for its idle time).
REFRESH_AFTER = timedelta(minutes=1)


@dataclass(frozen=True)
class Principal:
    """How a session's person is found again: ``key`` by the SHA-256 of the key they
    logged in with, ``email`` by their e-mail in the operators file (single sign-on),
    ``claims`` by what the provider's roles claim granted at login (kept here)."""

    kind: Literal["key", "email", "claims", "proxy"]
    value: str
    name: str = ""
    tenants: tuple[str, ...] = ()
    role: Literal["viewer", "publisher"] = "viewer"


@dataclass(frozen=True)
class Session:
    session_id: str
    principal: Principal
    csrf: str
    login_at: datetime
    used_at: datetime
    #: The provider's ID token, for its logout (id_token_hint); None for a key login.
    id_token: str | None = None

    def form_ok(self, given: str | None) -> bool:
        """Whether a form carried this session's token (constant time)."""
        return given is not None and hmac.compare_digest(given.encode(), self.csrf.encode())


class Revocations(Protocol):
    """Session ids ended before their time, as every gate process knows them."""

    def ended(self, session_id: str) -> bool: ...

    async def end(self, session_id: str, until: datetime) -> None:
        """Revoke *session_id*; it need not be remembered after *until*."""
        ...


def fernet_key(secret: str) -> bytes:
    """A Fernet key made from a secret of any length (at least 32 characters)."""
    return base64.urlsafe_b64encode(hashlib.sha256(secret.encode()).digest())


def _ts(at: datetime) -> float:
    return at.timestamp()


def _at(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


class Sessions:
    def __init__(
        self,
        key: bytes,
        revocations: Revocations,
        lifetime: timedelta = timedelta(hours=8),
        idle: timedelta = timedelta(hours=1),
    ) -> None:
        self._fernet = Fernet(key)
        self._revocations = revocations
        self._lifetime = lifetime
        self._idle = idle

    def start(self, principal: Principal, now: datetime, id_token: str | None = None) -> Session:
        return Session(
            session_id=secrets.token_urlsafe(24),
            principal=principal,
            csrf=secrets.token_urlsafe(32),
            login_at=now,
            used_at=now,
            id_token=id_token,
        )

    def cookie(self, session: Session) -> str:
        """The cookie's value: the session, encrypted and signed."""
        p = session.principal
        body = {
            "sid": session.session_id,
            "csrf": session.csrf,
            "login": _ts(session.login_at),
            "used": _ts(session.used_at),
            "who": [p.kind, p.value, p.name, list(p.tenants), p.role],
            "idt": session.id_token,
        }
        return self._fernet.encrypt(json.dumps(body, separators=(",", ":")).encode()).decode()

    def open(self, cookie: str | None, now: datetime) -> Session | None:
        """The live session of *cookie*; None if it is forged, expired, idle too long or
        logged out."""
        if not cookie:
            return None
        try:
            body = json.loads(self._fernet.decrypt(cookie.encode()))
            kind, value, name, tenants, role = body["who"]
            session = Session(
                session_id=body["sid"],
                principal=Principal(kind, value, name, tuple(tenants), role),
                csrf=body["csrf"],
                login_at=_at(body["login"]),
                used_at=_at(body["used"]),
                id_token=body.get("idt"),
            )
        except (InvalidToken, ValueError, KeyError, TypeError):
            return None
        if (
            now >= session.login_at + self._lifetime
            or now - session.used_at >= self._idle
            or self._revocations.ended(session.session_id)
        ):
            return None
        return session

    def used(self, session: Session, now: datetime) -> Session | None:
        """The session used now, when its cookie is due to be written again (so its
        idle time restarts); None while the cookie it came in is recent enough."""
        if now - session.used_at < REFRESH_AFTER:
            return None
        return replace(session, used_at=now)

    async def end(self, session: Session) -> None:
        await self._revocations.end(session.session_id, session.login_at + self._lifetime)

    def seal(self, data: dict[str, Any]) -> str:
        """*data* encrypted and signed with the session key, for a cookie."""
        return self._fernet.encrypt(json.dumps(data).encode()).decode()

    def unseal(self, sealed: str | None, max_age_s: int) -> dict[str, Any] | None:
        """What :meth:`seal` sealed, if it is ours and at most *max_age_s* old."""
        if not sealed:
            return None
        try:
            found = json.loads(self._fernet.decrypt(sealed.encode(), ttl=max_age_s))
        except (InvalidToken, ValueError):
            return None
        return found if isinstance(found, dict) else None


class MemoryRevocations:
    """Revocations of this process alone (tests, and a gate without Kafka)."""

    def __init__(self) -> None:
        self._ended: dict[str, datetime] = {}

    def ended(self, session_id: str) -> bool:
        return session_id in self._ended

    async def end(self, session_id: str, until: datetime) -> None:
        self._ended[session_id] = until


class KafkaRevocations:
    """Revocations every gate process shares: each logout is written to ``gate.sessions``
    and every process reads that topic whole (a mirror hands each record to
    :meth:`apply`), so a session logged out on one replica is ended on all, also
    after a restart."""

    def __init__(self, outbox: Outbox, clock: Clock) -> None:
        self._outbox = outbox
        self._clock = clock
        self._ended: dict[str, datetime] = {}

    def ended(self, session_id: str) -> bool:
        return session_id in self._ended

    async def end(self, session_id: str, until: datetime) -> None:
        self._ended[session_id] = until
        value = json.dumps({"until": until.isoformat()}).encode()
        await self._outbox.send_all([OutboundRecord(topics.SESSIONS, session_id.encode(), value)])

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """One record of ``gate.sessions``; one that cannot be read is skipped."""
        try:
            until = datetime.fromisoformat(json.loads(value or b"")["until"])
        except (ValueError, KeyError, TypeError):
            return
        if key:
            self._ended[key.decode("utf-8", "replace")] = until
        if len(self._ended) % 1000 == 0:  # now and then, forget what has expired anyway
            now = self._clock()
            self._ended = {k: u for k, u in self._ended.items() if u > now}


@dataclass(frozen=True)
class Caller:
    """The person behind a request, in their live session."""

    session: Session
    identity: Identity

    @property
    def csrf(self) -> str:
        return self.session.csrf

    def form_ok(self, given: str | None) -> bool:
        return self.session.form_ok(given)
