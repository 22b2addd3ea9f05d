"""The port to publish's receivers: one protocol per channel, and the set of them.

The transports themselves (HTTP, SMTP) are in ``services.publish.transports``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from services.publish.delivery import Delivery
from services.publish.retry import RetryPolicy

__all__ = ["DeliveryFailed", "Transport", "Transports"]


class DeliveryFailed(Exception):
    """A receiver did not take the delivery; the message says why.

    *status* is the receiver's HTTP status (None: no answer at all),
    *retry_after* the seconds its ``Retry-After`` asked for, and *final* why no
    other try could go better (a message that cannot be built), if so.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        final: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        self.final = final


class Transport(Protocol):
    """One channel's way to its receiver."""

    #: When to try again, and which answers end a delivery.
    retries: RetryPolicy

    async def deliver(self, record: Delivery, payload: bytes) -> bytes:
        """One attempt; returns the bytes exactly as sent, raises :class:`DeliveryFailed`."""
        ...

    async def close(self) -> None:
        """Release the connections this transport holds."""
        ...


class Transports:
    """The transport of every webhook and SMTP channel, by (tenant, channel)."""

    def __init__(self, by_channel: Mapping[tuple[str, str], Transport]) -> None:
        self._by_channel = dict(by_channel)

    def get(self, tenant: str, channel: str) -> Transport | None:
        return self._by_channel.get((tenant, channel))

    async def close(self) -> None:
        for transport in self._by_channel.values():
            await transport.close()
