"""How every Kafka client of the services authenticates: TLS, SASL, both or neither.

One description, read from :class:`~services.runtime.settings.Settings`, turned
into what faust (aiokafka) and kafka-python each expect.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass
from typing import Any

from services.runtime.settings import Settings

__all__ = ["KafkaRefused", "KafkaSecurity"]


class KafkaRefused(Exception):
    """The broker could not be trusted or reached securely; the message says which setting."""


@dataclass(frozen=True)
class KafkaSecurity:
    protocol: str = "PLAINTEXT"
    mechanism: str | None = None
    username: str | None = None
    password: str | None = None
    cafile: str | None = None
    certfile: str | None = None
    keyfile: str | None = None

    @classmethod
    def of(cls, settings: Settings) -> KafkaSecurity:
        password = settings.kafka_sasl_password
        return cls(
            protocol=settings.kafka_security_protocol,
            mechanism=settings.kafka_sasl_mechanism,
            username=settings.kafka_sasl_username,
            password=password.get_secret_value() if password else None,
            cafile=str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None,
            certfile=str(settings.kafka_ssl_certfile) if settings.kafka_ssl_certfile else None,
            keyfile=str(settings.kafka_ssl_keyfile) if settings.kafka_ssl_keyfile else None,
        )

    @property
    def tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    def ssl_context(self) -> ssl.SSLContext | None:
        """Verifies the broker's certificate against the CA file (the system's without one)."""
        if not self.tls:
            return None
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.cafile)
        if self.certfile and self.keyfile:
            context.load_cert_chain(self.certfile, self.keyfile)
        return context

    def faust_credentials(self) -> Any:
        """faust's ``broker_credentials``: None for plaintext."""
        from faust.auth import SASLCredentials, SSLCredentials

        if self.protocol == "SSL":
            return SSLCredentials(self.ssl_context())
        if self.protocol.startswith("SASL_"):
            return SASLCredentials(
                username=self.username,
                password=self.password,
                ssl_context=self.ssl_context(),
                mechanism=self.mechanism,
            )
        return None

    def client_kwargs(self) -> dict[str, Any]:
        """kafka-python's keyword arguments for the same."""
        kwargs: dict[str, Any] = {"security_protocol": self.protocol}
        if self.tls:
            kwargs["ssl_context"] = self.ssl_context()
        if self.protocol.startswith("SASL_"):
            kwargs |= {
                "sasl_mechanism": self.mechanism,
                "sasl_plain_username": self.username,
                "sasl_plain_password": self.password,
            }
        return kwargs

    def check_tls(self, bootstrap: str, timeout: float = 10.0) -> None:
        """Shake hands with the first bootstrap broker; refuse a certificate the CA did not sign.

        Kafka clients only report "no brokers available" when verification fails;
        this names the setting to look at.
        """
        context = self.ssl_context()
        if context is None:
            return
        host, _, port = bootstrap.split(",")[0].strip().rpartition(":")
        try:
            with (
                socket.create_connection((host, int(port)), timeout=timeout) as raw,
                context.wrap_socket(raw, server_hostname=host),
            ):
                return
        except ssl.SSLCertVerificationError as exc:
            raise KafkaRefused(
                f"KAFKA_SSL_CAFILE: the broker at {host}:{port} presented a certificate "
                f"that is not trusted ({exc.verify_message})"
            ) from None
        except (OSError, ValueError) as exc:
            raise KafkaRefused(
                f"KAFKA_BOOTSTRAP_SERVERS: no TLS connection to {host}:{port} ({exc})"
            ) from None
