"""Console sessions: who is logged in, and the token their forms must carry.

Kept in this process's memory: a restart of the gate logs everyone out, which
costs a login and never leaks a session to another process. A session ends at
logout, 8 hours after login, or after 1 hour unused.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from services.runtime.operators import Identity

__all__ = ["Session", "Sessions"]


@dataclass(frozen=True)
class Session:
    identity: Identity
    csrf: str
    expires: datetime

    def form_ok(self, given: str | None) -> bool:
        """Whether a form carried this session's token (constant time)."""
        return given is not None and hmac.compare_digest(given.encode(), self.csrf.encode())


class Sessions:
    def __init__(
        self, lifetime: timedelta = timedelta(hours=8), idle: timedelta = timedelta(hours=1)
    ) -> None:
        self._lifetime = lifetime
        self._idle = idle
        self._by_id: dict[str, Session] = {}
        self._used: dict[str, datetime] = {}

    def _alive(self, session_id: str, now: datetime) -> bool:
        session = self._by_id.get(session_id)
        used = self._used.get(session_id)
        return (
            session is not None
            and used is not None
            and session.expires > now
            and now - used < self._idle
        )

    def start(self, identity: Identity, now: datetime) -> tuple[str, Session]:
        for gone in [k for k in self._by_id if not self._alive(k, now)]:
            self.end(gone)
        session_id = secrets.token_urlsafe(32)
        session = Session(identity, secrets.token_urlsafe(32), now + self._lifetime)
        self._by_id[session_id] = session
        self._used[session_id] = now
        return session_id, session

    def get(self, session_id: str | None, now: datetime) -> Session | None:
        """The session, used now; None once it has ended."""
        if not session_id or not self._alive(session_id, now):
            return None
        self._used[session_id] = now
        return self._by_id[session_id]

    def end(self, session_id: str | None) -> None:
        self._by_id.pop(session_id or "", None)
        self._used.pop(session_id or "", None)
