"""The process environment, read once into a frozen model.

Only the CLI constructs :class:`Settings`; everything else receives it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.runtime.config import DEFAULT_CONFIG_PATH

__all__ = ["Settings", "SettingsError", "load_settings"]


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
    #: ``X-Forwarded-Email``) that names the operator by e-mail. Only set it when
    #: every request to the gate passes that proxy.
    trusted_proxy_header: str | None = Field(
        default=None, validation_alias=_env("GATEKEEPER_TRUSTED_PROXY_HEADER")
    )
    #: The console's public address, for links in notifications.
    console_url: str | None = Field(default=None, validation_alias=_env("GATEKEEPER_CONSOLE_URL"))
    #: The broker is the embedded single-node one (short group timeouts, one
    #: record per produce batch so its offsets answer truthfully).
    embedded_broker: bool = Field(
        default=False, validation_alias=_env("GATEKEEPER_EMBEDDED_BROKER")
    )
    partitions: int = Field(default=4, ge=1, validation_alias=_env("GATEKEEPER_PARTITIONS"))
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
    retry_base_seconds: float = Field(
        default=0.5, gt=0, validation_alias=_env("GATEKEEPER_RETRY_BASE_SECONDS")
    )
    retry_cap_seconds: float = Field(
        default=60.0, gt=0, validation_alias=_env("GATEKEEPER_RETRY_CAP_SECONDS")
    )
    log_level: str = Field(default="info", validation_alias=_env("GATEKEEPER_LOG_LEVEL"))

    def port_of(self, service: str) -> int:
        return {"ingest": self.ingest_port, "gate": self.gate_port, "publish": self.publish_port}[
            service
        ]


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
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
            for error in exc.errors()
        )
        raise SettingsError(f"environment: {problems}") from None
