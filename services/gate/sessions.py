"""Console sessions: who is logged in, and the token their forms must carry.

Kept in this process's memory: a restart of the gate logs everyone out, which
costs a login and never leaks a session to another process.
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
    def __init__(self, lifetime: timedelta = timedelta(hours=8)) -> None:
        self._lifetime = lifetime
        self._by_id: dict[str, Session] = {}

    def start(self, identity: Identity, now: datetime) -> tuple[str, Session]:
        self._by_id = {k: s for k, s in self._by_id.items() if s.expires > now}
        session_id = secrets.token_urlsafe(32)
        session = Session(identity, secrets.token_urlsafe(32), now + self._lifetime)
        self._by_id[session_id] = session
        return session_id, session

    def get(self, session_id: str | None, now: datetime) -> Session | None:
        session = self._by_id.get(session_id or "")
        return session if session is not None and session.expires > now else None

    def end(self, session_id: str | None) -> None:
        self._by_id.pop(session_id or "", None)
