"""How a webhook or SMTP channel is reached: one protocol, each transport owning its session."""

from __future__ import annotations

import asyncio
import smtplib
from email.message import EmailMessage

import aiohttp
from standardwebhooks import Webhook

from services.publish import delivery, notifications
from services.publish.channels import DeliveryFailed, Transport, Transports
from services.publish.delivery import Delivery
from services.runtime.config import Deployment, SmtpTransport, WebhookTransport
from services.runtime.ports import Clock

__all__ = ["SmtpChannel", "WebhookChannel", "transports_of"]


class WebhookChannel:
    """Standard Webhooks-signed POSTs; ``webhook-id`` is the delivery id on every retry."""

    def __init__(self, config: WebhookTransport, signer: Webhook, clock: Clock) -> None:
        self.max_attempts = config.max_attempts
        self._config = config
        self._signer = signer
        self._clock = clock
        self._session: aiohttp.ClientSession | None = None

    async def deliver(self, record: Delivery, payload: bytes) -> bytes:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        now = self._clock()
        headers = {
            "content-type": "application/json",
            "webhook-id": record.delivery_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": self._signer.sign(record.delivery_id, now, payload.decode()),
        }
        url = self._config.url
        try:
            async with self._session.post(
                url,
                data=payload,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=self._config.timeout_seconds),
            ) as response:
                if not 200 <= response.status < 300:
                    raise DeliveryFailed(f"HTTP {response.status} from {url}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DeliveryFailed(f"{type(exc).__name__} from {url}") from exc
        return payload

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class SmtpChannel:
    """A plain-text e-mail, the sender block as its signature.

    A channel's e-mail goes to the channel's recipients; a notification (no
    recipients configured) to the ones its order names.
    """

    def __init__(
        self,
        host: str,
        port: int,
        from_: str,
        max_attempts: int,
        recipients: tuple[str, ...] = (),
    ) -> None:
        self.max_attempts = max_attempts
        self._host = host
        self._port = port
        self._from = from_
        self._recipients = recipients

    def _message(self, record: Delivery) -> EmailMessage:
        order = record.order
        if self._recipients:
            subject, text = delivery.render_email(order)
            to = list(self._recipients)
        else:
            subject, text = (
                order.title,
                "\n".join([order.body, "", *delivery.signature_lines(order.sender)]),
            )
            to = [r.strip() for r in order.recipients.split(",") if r.strip()]
        message = EmailMessage()
        message["From"] = self._from
        message["To"] = ", ".join(to)
        message["Subject"] = subject
        message["Message-ID"] = f"<{record.delivery_id}@gatekeeper>"
        message.set_content(text + ("" if text.endswith("\n") else "\n"))
        return message

    async def deliver(self, record: Delivery, payload: bytes) -> bytes:
        message = self._message(record)

        def send() -> None:
            with smtplib.SMTP(self._host, self._port, timeout=30) as smtp:
                smtp.send_message(message)

        try:
            await asyncio.to_thread(send)
        except (OSError, smtplib.SMTPException) as exc:
            raise DeliveryFailed(f"{type(exc).__name__} from {self._host}") from exc
        return message.as_bytes()

    async def close(self) -> None:
        """Each e-mail opens and closes its own connection."""


def transports_of(deployment: Deployment, clock: Clock) -> Transports:
    """The transport of every webhook and SMTP channel the deployment names."""
    found: dict[tuple[str, str], Transport] = {}
    for name, tenant in deployment.tenants.items():
        signer = Webhook(deployment.outbound_secret(name))
        for channel in tenant.channels:
            config = channel.transport
            if isinstance(config, WebhookTransport):
                found[(name, channel.name)] = WebhookChannel(config, signer, clock)
            elif isinstance(config, SmtpTransport):
                found[(name, channel.name)] = SmtpChannel(
                    config.host, config.port, config.from_, config.max_attempts, config.recipients
                )
        if tenant.notifications is not None:
            relay = tenant.notifications.smtp
            mail = SmtpChannel(relay.host, relay.port, relay.from_, relay.max_attempts)
            for kind in ("held", "escalated"):
                found[(name, notifications.channel_of(kind))] = mail
    return Transports(found)
