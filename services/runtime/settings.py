"""The process environment, read once into a frozen model.

Only the CLI constructs :class:`Settings`; everything else receives it.
"""

from __future__ import annotations

import tempfile
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Literal

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.runtime.config import DEFAULT_CONFIG_PATH

__all__ = ["HOW_TO_MAKE_A_KEY", "Settings", "SettingsError", "load_settings"]

#: How to make an operator token long enough, for every message about a short one.
HOW_TO_MAKE_A_KEY = "make one with: python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"


def _env(name: str) -> AliasChoices:
    return AliasChoices(name)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    kafka_bootstrap_servers: str | None = Field(
        default=None, validation_alias=_env("KAFKA_BOOTSTRAP_SERVERS")
    )
    config_path: Path = Field(
        default=DEFAULT_CONFIG_PATH, validation_alias=_env("GATEKEEPER_CONFIG")
    )
    ingest_port: int = Field(default=8080, validation_alias=_env("GATEKEEPER_INGEST_PORT"))
    gate_port: int = Field(default=8081, validation_alias=_env("GATEKEEPER_GATE_PORT"))
    publish_port: int = Field(default=8082, validation_alias=_env("GATEKEEPER_PUBLISH_PORT"))
    host: str = Field(default="0.0.0.0", validation_alias=_env("GATEKEEPER_HOST"))
    operator_token: SecretStr | None = Field(
        default=None, validation_alias=_env("GATEKEEPER_OPERATOR_TOKEN")
    )
    operators_file: Path | None = Field(
        default=None, validation_alias=_env("GATEKEEPER_OPERATORS_FILE")
    )
    #: A header set by a trusted authenticating proxy (e.g. oauth2-proxy's
    #: ``X-Forwarded-Email``) that names the operator by e-mail, believed only on
    #: requests from ``trusted_proxy_ips``.
    trusted_proxy_header: str | None = Field(
        default=None, validation_alias=_env("GATEKEEPER_TRUSTED_PROXY_HEADER")
    )
    #: The proxy's addresses or CIDR ranges, comma-separated.
    trusted_proxy_ips: str | None = Field(
        default=None, validation_alias=_env("GATEKEEPER_TRUSTED_PROXY_IPS")
    )
    #: The console's public address, ending in /console: links in notifications and
    #: single sign-on's redirect URI ({console_url}/oidc/callback).
    console_url: str | None = Field(default=None, validation_alias=_env("GATEKEEPER_CONSOLE_URL"))
    #: Single sign-on with OpenID Connect: the provider (discovery from
    #: {issuer}/.well-known/openid-configuration) and the console's client there.
    oidc_issuer: str | None = Field(default=None, validation_alias=_env("GATEKEEPER_OIDC_ISSUER"))
    oidc_client_id: str | None = Field(
        default=None, validation_alias=_env("GATEKEEPER_OIDC_CLIENT_ID")
    )
    oidc_client_secret: SecretStr | None = Field(
        default=None, validation_alias=_env("GATEKEEPER_OIDC_CLIENT_SECRET")
    )
    #: A claim whose values gatekeeper.<tenant>.<role> grant access (Entra ID app roles).
    oidc_roles_claim: str | None = Field(
        default=None, validation_alias=_env("GATEKEEPER_OIDC_ROLES_CLAIM")
    )
    #: The provider's name on the login button: "Logga in med <name>".
    oidc_provider_name: str = Field(
        default="kommunens konto", validation_alias=_env("GATEKEEPER_OIDC_PROVIDER_NAME")
    )
    #: Encrypts and signs console sessions, so any gate process, after any restart,
    #: knows them; every replica needs the same. Unset: a key kept in the data dir.
    session_key: SecretStr | None = Field(
        default=None, validation_alias=_env("GATEKEEPER_SESSION_KEY")
    )
    #: The broker is the embedded single-node one (short group timeouts, one
    #: record per produce batch so its offsets answer truthfully).
    embedded_broker: bool = Field(
        default=False, validation_alias=_env("GATEKEEPER_EMBEDDED_BROKER")
    )
    partitions: int = Field(default=4, ge=1, validation_alias=_env("GATEKEEPER_PARTITIONS"))
    #: Standby copies of each table partition on other replicas (RocksDB store: the
    #: memory store replays from the start anyway, so 0 there).
    standby_replicas: int = Field(
        default=0, ge=0, validation_alias=_env("GATEKEEPER_STANDBY_REPLICAS")
    )
    replication_factor: int = Field(
        default=1, ge=1, validation_alias=_env("GATEKEEPER_REPLICATION_FACTOR")
    )
    data_dir: Path = Field(
        default=Path(tempfile.gettempdir()) / "gatekeeper",
        validation_alias=_env("GATEKEEPER_DATA_DIR"),
    )
    #: Where the gate keeps its item states between changelog writes: "memory"
    #: (rebuilt from the changelog on every start) or "rocksdb" (on disk under
    #: data_dir; with a persistent data_dir a restart reads only the changelog's
    #: tail, and states need not fit in memory).
    gate_store: Literal["memory", "rocksdb"] = Field(
        default="memory", validation_alias=_env("GATEKEEPER_GATE_STORE")
    )
    tick_seconds: float = Field(default=0.5, gt=0, validation_alias=_env("GATEKEEPER_TICK_SECONDS"))
    kafka_write_timeout: float = Field(
        default=10.0, gt=0, validation_alias=_env("GATEKEEPER_KAFKA_WRITE_TIMEOUT")
    )
    log_level: str = Field(default="info", validation_alias=_env("GATEKEEPER_LOG_LEVEL"))

    # Kafka security, named as Kafka clients name it.
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT", validation_alias=_env("KAFKA_SECURITY_PROTOCOL")
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        default=None, validation_alias=_env("KAFKA_SASL_MECHANISM")
    )
    kafka_sasl_username: str | None = Field(
        default=None, validation_alias=_env("KAFKA_SASL_USERNAME")
    )
    kafka_sasl_password: SecretStr | None = Field(
        default=None, validation_alias=_env("KAFKA_SASL_PASSWORD")
    )
    kafka_ssl_cafile: Path | None = Field(default=None, validation_alias=_env("KAFKA_SSL_CAFILE"))
    kafka_ssl_certfile: Path | None = Field(
        default=None, validation_alias=_env("KAFKA_SSL_CERTFILE")
    )
    kafka_ssl_keyfile: Path | None = Field(default=None, validation_alias=_env("KAFKA_SSL_KEYFILE"))

    # Retention of the topics gatekeeper creates, in milliseconds; -1 keeps for ever.
    archive_retention_ms: int = Field(
        default=-1, ge=-1, validation_alias=_env("GATEKEEPER_ARCHIVE_RETENTION_MS")
    )
    decisions_retention_ms: int = Field(
        default=-1, ge=-1, validation_alias=_env("GATEKEEPER_DECISIONS_RETENTION_MS")
    )
    dead_letters_retention_ms: int = Field(
        default=30 * 24 * 3600 * 1000,
        ge=-1,
        validation_alias=_env("GATEKEEPER_DEAD_LETTERS_RETENTION_MS"),
    )
    topic_retention_ms: int = Field(
        default=7 * 24 * 3600 * 1000, ge=-1, validation_alias=_env("GATEKEEPER_TOPIC_RETENTION_MS")
    )
    # A webhook-id is a duplicate for this long after it was accepted (longer than a
    # CMS retries); the ids together take at most this many bytes in each process.
    webhook_id_retention_ms: int = Field(
        default=7 * 24 * 3600 * 1000,
        ge=1000,
        validation_alias=_env("GATEKEEPER_WEBHOOK_ID_RETENTION_MS"),
    )
    webhook_ids_max_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=64 * 1024,
        validation_alias=_env("GATEKEEPER_WEBHOOK_IDS_MAX_BYTES"),
    )
    # A GATEKEEPER_OPERATOR_TOKEN shorter than this stops start-up (0: warned about).
    min_token_length: int = Field(
        default=0, ge=0, le=256, validation_alias=_env("GATEKEEPER_MIN_TOKEN_LENGTH")
    )

    # Consumer group timing. A restarted pod rejoins under its old identity when
    # GATEKEEPER_INSTANCE_ID is stable (static membership, e.g. the pod name).
    instance_id: str | None = Field(default=None, validation_alias=_env("GATEKEEPER_INSTANCE_ID"))
    kafka_session_timeout: float = Field(
        default=8.0, ge=1, validation_alias=_env("GATEKEEPER_KAFKA_SESSION_TIMEOUT")
    )
    kafka_heartbeat_interval: float = Field(
        default=1.0, gt=0, validation_alias=_env("GATEKEEPER_KAFKA_HEARTBEAT_INTERVAL")
    )
    kafka_rebalance_timeout: float = Field(
        default=8.0, ge=1, validation_alias=_env("GATEKEEPER_KAFKA_REBALANCE_TIMEOUT")
    )
    # The longest a stream consumer's fetch waits for data (unset: faust's 1.5 s, or
    # 20 ms with the embedded broker). A Kafka cluster answers as soon as data is
    # there; a broker that holds every fetch for much of its wait wants it short.
    kafka_fetch_max_wait_ms: int | None = Field(
        default=None, ge=1, le=60_000, validation_alias=_env("GATEKEEPER_KAFKA_FETCH_MAX_WAIT_MS")
    )

    @field_validator("trusted_proxy_ips")
    @classmethod
    def _networks(cls, value: str | None) -> str | None:
        for part in (value or "").split(","):
            if part.strip():
                try:
                    ip_network(part.strip(), strict=False)
                except ValueError:
                    raise ValueError(f"{part.strip()!r} is no address or CIDR range") from None
        return value

    def trusted_proxy_networks(self) -> tuple[IPv4Network | IPv6Network, ...]:
        return tuple(
            ip_network(part.strip(), strict=False)
            for part in (self.trusted_proxy_ips or "").split(",")
            if part.strip()
        )

    @model_validator(mode="after")
    def _kafka_security(self) -> Settings:
        if self.trusted_proxy_header and not self.trusted_proxy_networks():
            raise ValueError(
                "GATEKEEPER_TRUSTED_PROXY_HEADER is set without GATEKEEPER_TRUSTED_PROXY_IPS: "
                "name the proxy's addresses, or anyone who reaches the service could send the "
                "header"
            )
        problem = _security_problem(self) or _oidc_problem(self) or _token_problem(self)
        if problem:
            raise ValueError(problem)
        if self.kafka_heartbeat_interval * 3 > self.kafka_session_timeout:
            raise ValueError(
                "GATEKEEPER_KAFKA_HEARTBEAT_INTERVAL must be at most a third of "
                "GATEKEEPER_KAFKA_SESSION_TIMEOUT"
            )
        return self

    def port_of(self, service: str) -> int:
        return {"ingest": self.ingest_port, "gate": self.gate_port, "publish": self.publish_port}[
            service
        ]


def _security_problem(s: Settings) -> str | None:
    """The first contradiction in the Kafka security settings, naming the variable."""
    protocol = s.kafka_security_protocol
    sasl = protocol.startswith("SASL_")
    tls = protocol.endswith("SSL")
    if sasl:
        for name, value in (
            ("KAFKA_SASL_MECHANISM", s.kafka_sasl_mechanism),
            ("KAFKA_SASL_USERNAME", s.kafka_sasl_username),
            ("KAFKA_SASL_PASSWORD", s.kafka_sasl_password),
        ):
            if not value:
                return f"{name} is required with KAFKA_SECURITY_PROTOCOL={protocol}"
    else:
        for name, value in (
            ("KAFKA_SASL_MECHANISM", s.kafka_sasl_mechanism),
            ("KAFKA_SASL_USERNAME", s.kafka_sasl_username),
            ("KAFKA_SASL_PASSWORD", s.kafka_sasl_password),
        ):
            if value:
                return f"{name} is set, but KAFKA_SECURITY_PROTOCOL={protocol} uses no SASL"
    files = (
        ("KAFKA_SSL_CAFILE", s.kafka_ssl_cafile),
        ("KAFKA_SSL_CERTFILE", s.kafka_ssl_certfile),
        ("KAFKA_SSL_KEYFILE", s.kafka_ssl_keyfile),
    )
    for name, path in files:
        if path is not None and not tls:
            return f"{name} is set, but KAFKA_SECURITY_PROTOCOL={protocol} uses no TLS"
        if path is not None and not path.is_file():
            return f"{name}: no file at {path}"
    if (s.kafka_ssl_certfile is None) != (s.kafka_ssl_keyfile is None):
        return "KAFKA_SSL_CERTFILE and KAFKA_SSL_KEYFILE go together: set both or neither"
    return None


class SettingsError(Exception):
    """An environment variable is unusable; the message names each one and why."""


def load_settings() -> Settings:
    """The environment as :class:`Settings`; else one error naming every bad variable.

    The values themselves stay out of the message: one of them may be a secret.
    """
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            (f"{'.'.join(str(p) for p in error['loc'])}: " if error["loc"] else "")
            + error["msg"].removeprefix("Value error, ")
            for error in exc.errors()
        )
        raise SettingsError(f"environment: {problems}") from None


def _token_problem(settings: Settings) -> str | None:
    """GATEKEEPER_MIN_TOKEN_LENGTH, when set, refuses a shorter operator token."""
    token = settings.operator_token
    if token is not None and len(token.get_secret_value()) < settings.min_token_length:
        return (
            f"GATEKEEPER_OPERATOR_TOKEN is shorter than GATEKEEPER_MIN_TOKEN_LENGTH "
            f"({settings.min_token_length} characters); {HOW_TO_MAKE_A_KEY}"
        )
    return None


def _oidc_problem(settings: Settings) -> str | None:
    """Single sign-on is all three of issuer, client id and secret, and a console address
    the provider can send the person back to."""
    names = {
        "GATEKEEPER_OIDC_ISSUER": settings.oidc_issuer,
        "GATEKEEPER_OIDC_CLIENT_ID": settings.oidc_client_id,
        "GATEKEEPER_OIDC_CLIENT_SECRET": settings.oidc_client_secret,
    }
    if settings.session_key is not None and len(settings.session_key.get_secret_value()) < 32:
        return "GATEKEEPER_SESSION_KEY must be at least 32 characters"
    given = [name for name, value in names.items() if value]
    if not given:
        return None
    if len(given) < len(names):
        missing = ", ".join(name for name in names if name not in given)
        return f"single sign-on needs {', '.join(names)}: {missing} is not set"
    url = settings.console_url or ""
    if not url.rstrip("/").endswith("/console") or not url.startswith(("https://", "http://")):
        return (
            "GATEKEEPER_CONSOLE_URL must be the console's public address ending in /console "
            "(the provider sends people back to {GATEKEEPER_CONSOLE_URL}/oidc/callback)"
        )
    return None
