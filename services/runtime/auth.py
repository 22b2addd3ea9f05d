"""The operator-token check, one for every service's operator API."""

from __future__ import annotations

import hmac

__all__ = ["OperatorAuth"]


class OperatorAuth:
    """Accepts ``Bearer <token>`` with the configured operator token; nothing without one."""

    def __init__(self, token: str | None) -> None:
        self._token = token.encode() if token else None

    @property
    def configured(self) -> bool:
        return self._token is not None

    def allows(self, authorization: str | None) -> bool:
        """Whether an ``Authorization`` header value carries the token (constant time)."""
        scheme, _, given = (authorization or "").partition(" ")
        return (
            self._token is not None
            and scheme.lower() == "bearer"
            and hmac.compare_digest(given.strip().encode(), self._token)
        )
