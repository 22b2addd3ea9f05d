"""How a webhook or SMTP channel is reached: one protocol, each transport owning its session."""

from __future__ import annotations

import importlib.metadata
import ssl
from email.message import EmailMessage
from urllib.parse import urlsplit

import aiohttp
import aiosmtplib
from standardwebhooks import Webhook

from services.publish import delivery, notifications
from services.publish.channels import DeliveryFailed, Transport, Transports
from services.publish.delivery import Delivery
from services.publish.retry import RetryPolicy, retry_after_seconds
from services.runtime.config import (
    STATUS_CHANNEL,
    Deployment,
    Retries,
    SmtpServer,
    SmtpTransport,
    StatusWebhook,
    WebhookTransport,
)
from services.runtime.ports import Clock

__all__ = ["SmtpChannel", "WebhookChannel", "transports_of"]


def _policy(retries: Retries, max_attempts: int | None) -> RetryPolicy:
    return RetryPolicy.of(retries.schedule, retries.jitter, retries.retry_statuses, max_attempts)


def _user_agent() -> str:
    try:
        return f"gatekeeper/{importlib.metadata.version('gatekeeper')}"
    except importlib.metadata.PackageNotFoundError:
        return "gatekeeper"


USER_AGENT = _user_agent()


class WebhookChannel:
    """Standard Webhooks-signed POSTs; ``webhook-id`` is the delivery id on every retry.

    During a secret rotation two secrets sign each request, as the standard
    allows (space-separated signatures): the receiver may check either.
    """

    def __init__(
        self,
        config: WebhookTransport | StatusWebhook,
        secrets: tuple[str, ...],
        clock: Clock,
        url: str | None = None,
    ) -> None:
        self.retries = _policy(config.retries, config.max_attempts)
        self._config = config
        self._url = url or config.url or ""
        self._signers = [Webhook(secret) for secret in secrets]
        self._clock = clock
        self._session: aiohttp.ClientSession | None = None

    async def deliver(self, record: Delivery, payload: bytes) -> bytes:
        if self._session is None:
            self._session = aiohttp.ClientSession(headers={"User-Agent": USER_AGENT})
        now = self._clock()
        text = payload.decode()
        headers = {
            "content-type": "application/json",
            "webhook-id": record.delivery_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": " ".join(
                s.sign(record.delivery_id, now, text) for s in self._signers
            ),
        }
        url = self._url
        where = origin(url)  # a token in the path or query stays out of logs and dead letters
        try:
            async with self._session.post(
                url,
                data=payload,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=self._config.timeout_seconds),
                allow_redirects=False,  # a 3xx is a failed attempt: the address is configured
            ) as response:
                if not 200 <= response.status < 300:
                    raise DeliveryFailed(
                        f"HTTP {response.status} from {where}",
                        status=response.status,
                        retry_after=retry_after_seconds(
                            response.headers.get("Retry-After"), self._clock()
                        ),
                    )
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DeliveryFailed(f"{type(exc).__name__} from {where}") from exc
        return payload

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def origin(url: str) -> str:
    """Scheme, host and port of *url*: what may be shown of an address that can carry
    a token in its path, query or user part."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname or ''}{port}"


class SmtpChannel:
    """A plain-text e-mail, the sender block as its signature, through a relay.

    A channel's e-mail goes to the channel's recipients; a notification (no
    recipients configured) to the ones its order names.
    """

    def __init__(
        self,
        server: SmtpServer,
        login: tuple[str, str] | None = None,
        recipients: tuple[str, ...] = (),
    ) -> None:
        self.retries = _policy(server.retries, server.max_attempts)
        self._server = server
        self._login = login
        self._recipients = recipients

    def _message(self, record: Delivery) -> EmailMessage:
        order = record.order
        if self._recipients:
            subject, text = delivery.render_email(order)
            to = list(self._recipients)
        else:
            lines = [order.body, "", *delivery.signature_lines(order.sender)]
            subject, text = order.title, "\n".join(lines)
            to = [r.strip() for r in order.recipients.split(",") if r.strip()]
        message = EmailMessage()
        message["From"] = self._server.from_
        message["To"] = ", ".join(to)
        message["Subject"] = subject
        message["Message-ID"] = f"<{record.delivery_id}@gatekeeper>"
        message.set_content(text + ("" if text.endswith("\n") else "\n"))
        return message

    async def deliver(self, record: Delivery, payload: bytes) -> bytes:
        try:
            message = self._message(record)
        except ValueError as exc:
            # the same order makes the same message: another try cannot do better
            raise DeliveryFailed(
                f"the e-mail cannot be built: {exc}", final="no other try can build it"
            ) from exc
        server = self._server
        context = None
        if server.tls != "none":
            cafile = str(server.ca_file) if server.ca_file else None
            context = ssl.create_default_context(cafile=cafile)
        username, password = self._login or (None, None)
        try:
            await aiosmtplib.send(
                message,
                hostname=server.host,
                port=server.port,
                use_tls=server.tls == "implicit",
                start_tls=server.tls == "starttls",
                tls_context=context,
                username=username,
                password=password,
                timeout=server.timeout_seconds,
            )
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise DeliveryFailed(f"{type(exc).__name__} from {server.host}: {exc}") from exc
        return message.as_bytes()

    async def close(self) -> None:
        """Each e-mail opens and closes its own connection."""


def transports_of(deployment: Deployment, clock: Clock) -> Transports:
    """The transport of every webhook and SMTP channel the deployment names."""
    found: dict[tuple[str, str], Transport] = {}
    for name, tenant in deployment.tenants.items():
        for channel in tenant.channels:
            config = channel.transport
            if isinstance(config, WebhookTransport):
                secrets = deployment.signing_secrets(name, channel.name)
                url = deployment.webhook_url(name, channel.name, config)
                found[(name, channel.name)] = WebhookChannel(config, secrets, clock, url)
            elif isinstance(config, SmtpTransport):
                login = deployment.smtp_login(name, channel.name)
                found[(name, channel.name)] = SmtpChannel(config, login, config.recipients)
        if tenant.status_webhook is not None:
            hook = tenant.status_webhook
            secrets = deployment.signing_secrets(name, STATUS_CHANNEL)
            url = deployment.webhook_url(name, STATUS_CHANNEL, hook)
            found[(name, STATUS_CHANNEL)] = WebhookChannel(hook, secrets, clock, url)
        if tenant.notifications is not None:
            login = deployment.smtp_login(name, "notifications")
            mail = SmtpChannel(tenant.notifications.smtp, login)
            for kind in ("held", "escalated"):
                found[(name, notifications.channel_of(kind))] = mail
            found[(name, notifications.REPORT_CHANNEL)] = mail
    return Transports(found)
