"""A probe that asks the brokers for metadata every second and keeps a
:class:`~services.runtime.kafka_link.KafkaLink` up to date, and its metric."""

from __future__ import annotations

import asyncio
from typing import Any

import mode
from aiokafka import AIOKafkaClient
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from services.runtime.kafka_link import KafkaLink
from services.runtime.kafka_security import KafkaSecurity
from services.runtime.settings import Settings

__all__ = ["KafkaProbe", "register_link_metric"]

#: How often the brokers are asked, and how long an answer may take.
PROBE_EVERY_S = 1.0
PROBE_TIMEOUT_S = 1.0


class KafkaProbe(mode.Service):
    """Metadata from the brokers every second, on a client of its own."""

    def __init__(self, settings: Settings, link: KafkaLink, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._settings = settings
        self._link = link
        self._client: AIOKafkaClient | None = None

    async def _probe(self) -> None:
        """One metadata request on a kept connection; a new client after a failure."""
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_S * 2):
                if self._client is None:
                    self._client = AIOKafkaClient(
                        bootstrap_servers=self._settings.kafka_bootstrap_servers,
                        client_id="gatekeeper-probe",
                        request_timeout_ms=int(PROBE_TIMEOUT_S * 1000),
                        **KafkaSecurity.of(self._settings).client_kwargs(),
                    )
                    await self._client.bootstrap()
                else:
                    await self._client.fetch_all_metadata()
            self._link.reached()
        except Exception as exc:  # any failure to get an answer is a lost link
            self._link.lost(type(exc).__name__)
            await self._close()

    async def _close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    async def on_stop(self) -> None:
        await self._close()

    @mode.Service.task
    async def _watch(self) -> None:
        while not self.should_stop:
            await self._probe()
            await self.sleep(PROBE_EVERY_S)


class _LinkCollector(Collector):
    def __init__(self, link: KafkaLink) -> None:
        self._link = link

    def collect(self) -> Any:
        gauge = GaugeMetricFamily(
            "gatekeeper_kafka_seconds_since_contact",
            "Seconds since this service last reached Kafka (a produce, or the probe's answer).",
        )
        gauge.add_metric([], self._link.seconds_since_contact())
        yield gauge


def register_link_metric(registry: CollectorRegistry, link: KafkaLink) -> None:
    registry.register(_LinkCollector(link))
