"""The deployment file (``GATEKEEPER_CONFIG``): tenants, policies and channels.

Parsed and checked once at start-up. Anything wrong stops the process with one
:class:`ConfigError` whose message names the file, the key and the problem, so
nothing ever runs half-configured.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping
from datetime import timedelta
from ipaddress import ip_address
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "DEFAULT_RETRY_SCHEDULE",
    "STATUS_CHANNEL",
    "Channel",
    "ConfigError",
    "ContentCheck",
    "Deployment",
    "KafkaTransport",
    "NotificationSmtp",
    "Notifications",
    "Policy",
    "Retries",
    "SenderIdentity",
    "SmtpServer",
    "SmtpTransport",
    "Spokesperson",
    "StatusWebhook",
    "Tenant",
    "WebhookTransport",
    "check_file",
    "load_deployment",
    "unset_variables",
]

DEFAULT_CONFIG_PATH = Path(__file__).resolve().parent.parent / "gatekeeper.yaml"

Name = Annotated[str, StringConstraints(min_length=1, pattern=r"^[a-z0-9][a-z0-9_-]*$")]
EnvName = Annotated[str, StringConstraints(pattern=r"^[A-Z_][A-Z0-9_]*$")]


class ConfigError(Exception):
    """The deployment file is unusable; the message says where and why."""


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ContactConfig(_Model):
    name: str = Field(min_length=1)
    email: str | None = None
    phone: str | None = None


class SenderIdentity(_Model):
    """How the municipality must appear as sender (avsändare)."""

    organization: str = Field(min_length=1)
    logo_url: str = Field(min_length=1)
    website: str = Field(min_length=1)
    contact: ContactConfig


ContentRuleName = Literal[
    "plain_language",
    "link_text",
    "alt_text",
    "personal_identity_number",
    "heading_levels",
    "social_limits",
    "press_spokesperson",
    "forbidden_words",
    "max_title_length",
    "summary_required",
]


class ContentCheck(_Model):
    """One content rule, where it applies and what a match does: ``block`` holds the
    item with the rule as reason, ``warn`` releases it with the finding on the decision.

    ``channels`` and ``audience`` narrow where the rule applies (default: every
    channel of both audiences); the other keys are the rule's parameters.
    """

    rule: ContentRuleName
    action: Literal["block", "warn"]
    channels: tuple[str, ...] = ()
    audience: Literal["internal", "external"] | None = None
    #: plain_language: highest LIX, words in one sentence, words in the text
    lix_max: float | None = Field(default=None, gt=0)
    sentence_words_max: int | None = Field(default=None, ge=1)
    words_max: int | None = Field(default=None, ge=1)
    #: alt_text: longest alt text a screen reader reads well
    alt_max_length: int = Field(default=150, ge=1)
    #: social_limits: characters, links and hashtags; max_title_length: characters
    max_length: int | None = Field(default=None, ge=1)
    max_links: int | None = Field(default=None, ge=0)
    max_hashtags: int | None = Field(default=None, ge=0)
    #: forbidden_words: word -> what to write instead ("" to just strike it)
    replacements: Mapping[str, str] = Field(default_factory=dict)
    #: forbidden_words (older form): words to avoid, with no suggestion
    words: tuple[str, ...] = ()
    #: max_title_length (older form of max_length)
    limit: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _parameters(self) -> ContentCheck:
        if self.rule == "forbidden_words" and not (self.words or self.replacements):
            raise ValueError("forbidden_words needs 'replacements' (word: suggestion) or 'words'")
        if self.rule == "max_title_length" and self.limit is None and self.max_length is None:
            raise ValueError("max_title_length needs 'max_length'")
        if self.rule == "plain_language" and not (
            self.lix_max or self.sentence_words_max or self.words_max
        ):
            raise ValueError("plain_language needs lix_max, sentence_words_max or words_max")
        if self.rule == "social_limits" and not (
            self.max_length or self.max_links is not None or self.max_hashtags is not None
        ):
            raise ValueError("social_limits needs max_length, max_links or max_hashtags")
        return self


class Spokesperson(_Model):
    name: str = Field(min_length=1)
    email: str | None = None


class Policy(_Model):
    internal_lead: timedelta = timedelta(0)
    escalate_after: timedelta = timedelta(hours=4)
    crisis_lane: bool = False
    content_checks: tuple[ContentCheck, ...] = ()

    @field_validator("internal_lead", "escalate_after")
    @classmethod
    def _not_negative(cls, value: timedelta) -> timedelta:
        if value < timedelta(0):
            raise ValueError("must not be negative")
        return value


class KafkaTransport(_Model):
    kind: Literal["kafka"]
    topic: str = Field(min_length=1, pattern=r"^[A-Za-z0-9._-]+$")


#: Immediately, then after 5 s, 5 min, 30 min, 2 h, 5 h, 10 h and 10 h: about
#: 28 hours in all, so a receiver's bad afternoon or night loses nothing.
DEFAULT_RETRY_SCHEDULE: tuple[timedelta, ...] = tuple(
    timedelta(seconds=s) for s in (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
)


class Retries(_Model):
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


class _WebhookTarget(_Model):
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
    def _one_address(self) -> _WebhookTarget:
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


class WebhookTransport(_WebhookTarget):
    kind: Literal["webhook"]


#: The delivery channel of a tenant's status webhook; no configured channel may take it.
STATUS_CHANNEL = "cms-status"


class StatusWebhook(_WebhookTarget):
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


class SmtpServer(_Model):
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


Transport = Annotated[
    KafkaTransport | WebhookTransport | SmtpTransport, Field(discriminator="kind")
]


class NotificationSmtp(SmtpServer):
    """The mail relay notification e-mails go out through."""


class Notifications(_Model):
    """E-mail to the item's contact and the communications desk about what waits.

    Sent once when an item has waited ``notify_after`` for something a person
    must do (not merely for its publication time), and once more at escalation.
    """

    notify_after: timedelta = timedelta(minutes=30)
    desk: tuple[str, ...] = Field(min_length=1)
    smtp: NotificationSmtp

    @field_validator("notify_after")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be positive")
        return value


class Channel(_Model):
    name: Name
    audience: Literal["internal", "external"]
    transport: Transport


class Tenant(_Model):
    name: str = Field(min_length=1, description="display name, e.g. Lerums kommun")
    sender: SenderIdentity
    secret_env: EnvName
    outbound_secret_env: EnvName | None = None
    policy: Policy = Policy()
    channels: tuple[Channel, ...] = Field(min_length=1)
    notifications: Notifications | None = None
    #: The CMS's endpoint told what happens to each item (held, released, rejected,
    #: escalated), so an editor sees it where they work.
    status_webhook: StatusWebhook | None = None
    #: Who may be a press release's contact (press_spokesperson).
    spokespersons: tuple[Spokesperson, ...] = ()

    @model_validator(mode="after")
    def _channels(self) -> Tenant:
        names = [c.name for c in self.channels]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"channel names must be unique; repeated: {', '.join(dupes)}")
        if STATUS_CHANNEL in names:
            raise ValueError(f"the channel name {STATUS_CHANNEL} is the status webhook's own")
        if not any(c.audience == "internal" for c in self.channels):
            raise ValueError("a tenant needs at least one internal channel for its notices")
        return self

    def channel(self, name: str) -> Channel | None:
        return next((c for c in self.channels if c.name == name), None)


class IngestLimits(_Model):
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)


class Deployment(_Model):
    """The whole file, plus the tenants' secrets resolved from the environment."""

    tenants: Mapping[Name, Tenant] = Field(min_length=1)
    ingest: IngestLimits = IngestLimits()
    secrets: Mapping[str, str] = Field(default_factory=dict, exclude=True)
    outbound_secrets: Mapping[str, str] = Field(default_factory=dict, exclude=True)
    #: "{tenant}/{channel}" -> the channel's signing secrets, newest first
    channel_secrets: Mapping[str, tuple[str, ...]] = Field(default_factory=dict, exclude=True)
    #: "{tenant}/{channel}" or "{tenant}/notifications" -> (SMTP user, password)
    smtp_logins: Mapping[str, tuple[str, str]] = Field(default_factory=dict, exclude=True)
    #: "{tenant}/{channel}" -> a webhook's address read from its url_env
    webhook_urls: Mapping[str, str] = Field(default_factory=dict, exclude=True)

    def secret(self, tenant: str) -> str:
        return self.secrets[tenant]

    def outbound_secret(self, tenant: str) -> str:
        return self.outbound_secrets[tenant]

    def signing_secrets(self, tenant: str, channel: str) -> tuple[str, ...]:
        """The secrets that sign a webhook channel's requests: its own, else the tenant's
        outbound one (never the CMS's: :func:`load_deployment` refuses that)."""
        return self.channel_secrets.get(f"{tenant}/{channel}") or (self.outbound_secret(tenant),)

    def webhook_url(self, tenant: str, channel: str, target: _WebhookTarget) -> str:
        """Where a webhook goes: its url, or what its url_env held at start-up."""
        return target.url or self.webhook_urls[f"{tenant}/{channel}"]

    def smtp_login(self, tenant: str, name: str) -> tuple[str, str] | None:
        return self.smtp_logins.get(f"{tenant}/{name}")


def _key(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for part in loc:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        elif part in {"kafka", "webhook", "smtp"} and parts and parts[-1].endswith("transport"):
            continue  # the discriminator tag pydantic adds is not a key of the file
        else:
            parts.append(("." if parts else "") + str(part))
    return "".join(parts)


def _check_secret(value: str) -> str | None:
    if not value.startswith("whsec_"):
        return "is not a Standard Webhooks secret (whsec_ followed by base64)"
    try:
        raw = base64.b64decode(value.removeprefix("whsec_"), validate=True)
    except binascii.Error:
        return "is not a Standard Webhooks secret: the part after whsec_ is not base64"
    if len(raw) < 16:
        return "is too short: a webhook secret needs at least 16 random bytes"
    return None


def unset_variables(path: Path, environ: Mapping[str, str] | None = None) -> list[str]:
    """The environment variables a valid file names for secrets that are not set here:
    warnings, not problems (they belong to the machine that runs it)."""
    env = os.environ if environ is None else environ
    deployment = Deployment.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    named: list[tuple[str, str]] = []
    for name, tenant in deployment.tenants.items():
        named.append((f"tenants.{name}.secret_env", tenant.secret_env))
        if tenant.outbound_secret_env:
            named.append((f"tenants.{name}.outbound_secret_env", tenant.outbound_secret_env))
        for where, target in _webhook_targets(name, tenant):
            for key in ("secret_env", "previous_secret_env", "url_env"):
                var = getattr(target, key)
                if var:
                    named.append((f"{where}.{key}", var))
    return [f"{key}: {var} is not set here" for key, var in named if not env.get(var)]


def check_file(path: Path) -> list[str]:
    """Every problem of the deployment file itself, one line each naming the key; the
    secrets it names in environment variables are not looked up (they belong to the
    machine that runs it, not to the file)."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return [f"{path}: file not found"]
    except yaml.YAMLError as exc:
        return [f"{path}: not valid YAML: {exc}"]
    if not isinstance(raw, dict):
        return [f"{path}: the top level must be a mapping with a 'tenants' key"]
    try:
        deployment = Deployment.model_validate(raw)
    except ValidationError as exc:
        return [f"{_key(e['loc']) or '(top)'}: {e['msg']}" for e in exc.errors()]
    problems: list[str] = []
    for name, tenant in deployment.tenants.items():
        for index, channel in enumerate(tenant.channels):
            transport = channel.transport
            if (
                isinstance(transport, WebhookTransport)
                and transport.secret_env is None
                and tenant.outbound_secret_env is None
            ):
                problems.append(
                    f"tenants.{name}.channels[{index}].transport: a webhook channel signs with "
                    "its own secret_env or the tenant's outbound_secret_env, and neither is set"
                )
    return problems


def load_deployment(path: Path, environ: Mapping[str, str] | None = None) -> Deployment:
    """Read, validate and resolve the deployment file, or raise one ConfigError."""
    env = os.environ if environ is None else environ
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found (set GATEKEEPER_CONFIG)") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping with a 'tenants' key")
    try:
        deployment = Deployment.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{_key(e['loc']) or '(top)'}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"{path}: {problems}") from None
    secrets: dict[str, str] = {}
    outbound: dict[str, str] = {}
    channel_secrets: dict[str, tuple[str, ...]] = {}
    logins: dict[str, tuple[str, str]] = {}
    urls: dict[str, str] = {}
    problems_found: list[str] = []
    for tenant_name, tenant in deployment.tenants.items():
        checks = [("secret_env", tenant.secret_env, secrets)]
        if tenant.outbound_secret_env:
            checks.append(("outbound_secret_env", tenant.outbound_secret_env, outbound))
        for key, var, sink in checks:
            value = env.get(var)
            where = f"tenants.{tenant_name}.{key}"
            if not value:
                problems_found.append(f"{where}: environment variable {var} is not set")
                continue
            problem = _check_secret(value)
            if problem:
                problems_found.append(f"{where}: environment variable {var} {problem}")
                continue
            sink[tenant_name] = value
        inbound = secrets.get(tenant_name)
        if inbound is not None and outbound.get(tenant_name) == inbound:
            problems_found.append(
                f"tenants.{tenant_name}.outbound_secret_env: {tenant.outbound_secret_env} holds "
                f"the same secret as {tenant.secret_env}; a receiver of our webhooks could "
                "then sign events as the CMS: give outbound webhooks a secret of their own"
            )
            outbound.pop(tenant_name)
        _channel_credentials(tenant_name, tenant, env, channel_secrets, logins, problems_found)
        _webhook_addresses(tenant_name, tenant, env, urls, problems_found)
        _signing_problems(tenant_name, tenant, inbound, outbound, channel_secrets, problems_found)
    if problems_found:
        raise ConfigError(f"{path}: {'; '.join(problems_found)}")
    return deployment.model_copy(
        update={
            "secrets": secrets,
            "outbound_secrets": outbound,
            "channel_secrets": channel_secrets,
            "smtp_logins": logins,
            "webhook_urls": urls,
        }
    )


def _signing_problems(
    tenant_name: str,
    tenant: Tenant,
    inbound: str | None,
    outbound: Mapping[str, str],
    channel_secrets: Mapping[str, tuple[str, ...]],
    problems: list[str],
) -> None:
    """Every webhook channel signs with its own secret or the tenant's outbound one,
    never with the secret the CMS signs its events with."""
    for (where, _), channel in zip(
        _webhook_targets(tenant_name, tenant), _webhook_channels(tenant), strict=True
    ):
        own = channel_secrets.get(f"{tenant_name}/{channel}")
        if own is None and tenant_name not in outbound and tenant.outbound_secret_env is None:
            problems.append(
                f"{where}: a webhook channel signs with its own secret_env or the tenant's "
                "outbound_secret_env, and neither is set (the CMS's secret is never used)"
            )
        elif own is not None and inbound is not None and inbound in own:
            problems.append(
                f"{where}.secret_env: holds the same secret as {tenant.secret_env}; a receiver "
                "of these webhooks could then sign events as the CMS"
            )


def _webhook_addresses(
    tenant_name: str,
    tenant: Tenant,
    env: Mapping[str, str],
    urls: dict[str, str],
    problems: list[str],
) -> None:
    """Resolve each url_env; the problem names the key and the variable, never the value."""
    for (where, target), channel in zip(
        _webhook_targets(tenant_name, tenant), _webhook_channels(tenant), strict=True
    ):
        if target.url_env is None:
            continue
        value = env.get(target.url_env)
        problem = "is not set" if not value else url_problem(value)
        if problem or value is None:
            problems.append(f"{where}.url_env: environment variable {target.url_env} {problem}")
            continue
        urls[f"{tenant_name}/{channel}"] = value


def _webhook_targets(tenant_name: str, tenant: Tenant) -> list[tuple[str, _WebhookTarget]]:
    """Every webhook the tenant signs, with the key that names it in the file."""
    found: list[tuple[str, _WebhookTarget]] = [
        (f"tenants.{tenant_name}.channels[{index}].transport", channel.transport)
        for index, channel in enumerate(tenant.channels)
        if isinstance(channel.transport, WebhookTransport)
    ]
    if tenant.status_webhook is not None:
        found.append((f"tenants.{tenant_name}.status_webhook", tenant.status_webhook))
    return found


def _webhook_channels(tenant: Tenant) -> list[str]:
    """The delivery channel of each of :func:`_webhook_targets`, in the same order."""
    names = [c.name for c in tenant.channels if isinstance(c.transport, WebhookTransport)]
    return names + ([STATUS_CHANNEL] if tenant.status_webhook is not None else [])


def _channel_credentials(
    tenant_name: str,
    tenant: Tenant,
    env: Mapping[str, str],
    channel_secrets: dict[str, tuple[str, ...]],
    logins: dict[str, tuple[str, str]],
    problems: list[str],
) -> None:
    """Resolve each channel's signing secrets and each relay's login from the environment."""
    servers: list[tuple[str, SmtpServer]] = [
        (c.name, c.transport) for c in tenant.channels if isinstance(c.transport, SmtpTransport)
    ]
    if tenant.notifications is not None:
        servers.append(("notifications", tenant.notifications.smtp))
    for (where, target), channel in zip(
        _webhook_targets(tenant_name, tenant), _webhook_channels(tenant), strict=True
    ):
        found: list[str] = []
        for key in ("secret_env", "previous_secret_env"):
            var = getattr(target, key)
            if var is None:
                continue
            value = env.get(var)
            problem = "is not set" if not value else _check_secret(value)
            if problem or value is None:
                problems.append(f"{where}.{key}: environment variable {var} {problem}")
                continue
            found.append(value)
        if found:
            channel_secrets[f"{tenant_name}/{channel}"] = tuple(found)
    for name, server in servers:
        if server.username_env is None or server.password_env is None:
            continue
        user, password = env.get(server.username_env), env.get(server.password_env)
        for var, value in ((server.username_env, user), (server.password_env, password)):
            if not value:
                problems.append(f"tenants.{tenant_name}: SMTP login for {name}: {var} is not set")
        if user and password:
            logins[f"{tenant_name}/{name}"] = (user, password)
