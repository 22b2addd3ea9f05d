"""How a channel is reached, as the deployment file says it: a Kafka topic, a signed
webhook (the channels' and the CMS's status webhook) or SMTP, with its retries.

Part of the deployment file's models (:mod:`services.runtime.config`), each
validated once at start-up.
"""

from __future__ import annotations

from datetime import timedelta
from ipaddress import ip_address
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

__all__ = [
    "DEFAULT_RETRY_SCHEDULE",
    "STATUS_CHANNEL",
    "ConfigModel",
    "EnvName",
    "KafkaTransport",
    "NotificationSmtp",
    "Retries",
    "SmtpServer",
    "SmtpTransport",
    "StatusWebhook",
    "WebhookTarget",
    "WebhookTransport",
    "url_problem",
]

EnvName = Annotated[str, StringConstraints(pattern=r"^[A-Z_][A-Z0-9_]*$")]

#: Immediately, then after 5 s, 5 min, 30 min, 2 h, 5 h, 10 h and 10 h: about
#: 28 hours in all, so a receiver's bad afternoon or night loses nothing.
DEFAULT_RETRY_SCHEDULE: tuple[timedelta, ...] = tuple(
    timedelta(seconds=s) for s in (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
)


class ConfigModel(BaseModel):
    """A part of the deployment file: immutable, and no key it does not know."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class KafkaTransport(ConfigModel):
    kind: Literal["kafka"]
    topic: str = Field(min_length=1, pattern=r"^[A-Za-z0-9._-]+$")


class Retries(ConfigModel):
    """When a webhook or e-mail delivery is attempted again, and which answers end it.

    ``schedule`` lists the wait before each attempt, the first one included
    (usually 0); each wait gets ``jitter`` (a share, up or down) and a
    receiver's ``Retry-After`` lengthens it. 410 Gone always ends a delivery;
    other 4xx answers end it unless listed in ``retry_statuses``.
    """

    schedule: tuple[timedelta, ...] = Field(default=DEFAULT_RETRY_SCHEDULE, min_length=1)
    jitter: float = Field(default=0.1, ge=0, lt=1)
    retry_statuses: tuple[int, ...] = (408, 429)

    @field_validator("schedule")
    @classmethod
    def _not_negative(cls, value: tuple[timedelta, ...]) -> tuple[timedelta, ...]:
        if any(step < timedelta(0) for step in value):
            raise ValueError("waits must not be negative")
        return value

    @field_validator("retry_statuses")
    @classmethod
    def _client_errors(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(not 400 <= code < 500 or code == 410 for code in value):
            raise ValueError("only 4xx answers other than 410 can be retried (5xx always are)")
        return value


class WebhookTarget(ConfigModel):
    """Where a signed webhook goes, how long an attempt may take, when it is retried."""

    #: https, or http to a loopback address (a receiver on the same host)
    url: str | None = Field(default=None, pattern=r"^https?://")
    #: Instead of url: the variable that holds it, for an address that is itself a
    #: secret (a token in its path); it never appears in logs or dead letters.
    url_env: EnvName | None = None
    timeout_seconds: float = Field(default=10.0, gt=0)
    retries: Retries = Retries()
    #: Cut (or stretch, repeating the last wait) the schedule to this many attempts.
    max_attempts: int | None = Field(default=None, ge=1)
    #: The channel's own signing secret (else the tenant's outbound one), and
    #: the one it replaces while a receiver rotates: both sign every request.
    secret_env: EnvName | None = None
    previous_secret_env: EnvName | None = None

    @field_validator("url")
    @classmethod
    def _https(cls, value: str | None) -> str | None:
        problem = url_problem(value) if value is not None else None
        if problem:
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _one_address(self) -> WebhookTarget:
        if (self.url is None) == (self.url_env is None):
            raise ValueError("give the address as url or as url_env (a variable), one of them")
        return self


def url_problem(value: str) -> str | None:
    """What is wrong with a webhook's address, if anything."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https"):
        return "must start with https://"
    if not parts.hostname:
        return "has no host"
    if parts.scheme == "http" and not _loopback(parts.hostname):
        return (
            "must be https:// (plain http only to a loopback address): a notice and its "
            "signature would cross the network in the clear"
        )
    return None


class WebhookTransport(WebhookTarget):
    kind: Literal["webhook"]


#: The delivery channel of a tenant's status webhook; no configured channel may take it.
STATUS_CHANNEL = "cms-status"


class StatusWebhook(WebhookTarget):
    """The CMS's own endpoint, told when an item is held, released, rejected or escalated.

    It signs with a secret of its own (never the CMS's inbound one), retried on
    the same schedule as the channels.
    """

    secret_env: EnvName


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


class SmtpServer(ConfigModel):
    """A mail relay: where, how securely, as whom."""

    host: str = Field(min_length=1)
    port: int = Field(default=25, ge=1, le=65535)
    from_: str = Field(alias="from", min_length=3)
    #: "starttls" upgrades the connection (port 587, Microsoft 365 and most
    #: relays), "implicit" speaks TLS from the start (port 465), "none" sends
    #: in the clear (a relay on the same host only).
    tls: Literal["starttls", "implicit", "none"] = "starttls"
    #: A CA file for a relay whose certificate the system does not trust.
    ca_file: Path | None = None
    username_env: EnvName | None = None
    password_env: EnvName | None = None
    timeout_seconds: float = Field(default=30.0, gt=0)
    retries: Retries = Retries()
    #: Cut (or stretch, repeating the last wait) the schedule to this many attempts.
    max_attempts: int | None = Field(default=None, ge=1)

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    @model_validator(mode="after")
    def _login(self) -> SmtpServer:
        if (self.username_env is None) != (self.password_env is None):
            raise ValueError("username_env and password_env go together")
        if self.username_env is not None and self.tls == "none":
            raise ValueError("a login needs tls: starttls or implicit, never in the clear")
        return self


class SmtpTransport(SmtpServer):
    kind: Literal["smtp"]
    recipients: tuple[str, ...] = Field(min_length=1)


class NotificationSmtp(SmtpServer):
    """The mail relay notification e-mails go out through."""
