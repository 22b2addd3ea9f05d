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
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from services.runtime.policy_config import (
    ContentCheck,
    Policy,
    SenderIdentity,
    SpokespersonConfig,
)
from services.runtime.transport_config import (
    DEFAULT_RETRY_SCHEDULE,
    STATUS_CHANNEL,
    ConfigModel,
    EnvName,
    KafkaTransport,
    NotificationSmtp,
    Retries,
    SmtpServer,
    SmtpTransport,
    StatusWebhook,
    WebhookTarget,
    WebhookTransport,
    url_problem,
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
    "SpokespersonConfig",
    "StatusWebhook",
    "Tenant",
    "WebhookTransport",
    "check_file",
    "load_deployment",
    "unset_variables",
]

DEFAULT_CONFIG_PATH = Path(__file__).resolve().parent.parent / "gatekeeper.yaml"

Name = Annotated[str, StringConstraints(min_length=1, pattern=r"^[a-z0-9][a-z0-9_-]*$")]


class ConfigError(Exception):
    """The deployment file is unusable; the message says where and why."""


Transport = Annotated[
    KafkaTransport | WebhookTransport | SmtpTransport, Field(discriminator="kind")
]


class Notifications(ConfigModel):
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


class Channel(ConfigModel):
    name: Name
    audience: Literal["internal", "external"]
    transport: Transport


class Tenant(ConfigModel):
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
    spokespersons: tuple[SpokespersonConfig, ...] = ()

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


class IngestLimits(ConfigModel):
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)


class Deployment(ConfigModel):
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

    def webhook_url(self, tenant: str, channel: str, target: WebhookTarget) -> str:
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


def _webhook_targets(tenant_name: str, tenant: Tenant) -> list[tuple[str, WebhookTarget]]:
    """Every webhook the tenant signs, with the key that names it in the file."""
    found: list[tuple[str, WebhookTarget]] = [
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
