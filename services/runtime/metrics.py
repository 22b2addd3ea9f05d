"""Metrics every service exposes besides its own: the process, the interpreter's
garbage collector, the build, and consumer lag per topic partition."""

from __future__ import annotations

from collections.abc import Iterator

import faust
from prometheus_client import (
    CollectorRegistry,
    Gauge,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from services.runtime.faust_compat import committed_and_end_offsets

__all__ = ["ConsumerLag", "service_registry"]


def service_registry(service: str, version: str) -> CollectorRegistry:
    """A registry with ``process_*``, ``python_gc_*``, ``python_info`` and
    ``gatekeeper_build_info`` already in it."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    GCCollector(registry=registry)
    PlatformCollector(registry=registry)
    build = Gauge(
        "gatekeeper_build_info",
        "Always 1; the labels say which gatekeeper runs.",
        ["version", "service"],
        registry=registry,
    )
    build.labels(version, service).set(1)
    return registry


class ConsumerLag(Collector):
    """Records not yet committed, per topic partition this worker consumes.

    Computed at scrape time from the high-water marks the consumer's fetches
    report and the offsets it committed; a progress figure, never used to decide.
    """

    def __init__(self, app: faust.App) -> None:
        self._app = app

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "gatekeeper_consumer_lag_records",
            "Records behind the end of each consumed topic partition.",
            labels=["topic", "partition"],
        )
        committed, ends = committed_and_end_offsets(self._app)
        for tp, end in sorted(ends.items()):
            done = committed.get(tp, 0)
            family.add_metric([tp.topic, str(tp.partition)], float(max(end - done, 0)))
        yield family
