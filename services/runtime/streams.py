"""The faust app factory and worker runner every service uses.

All broker tuning lives here: one place decides how the services talk to the
embedded broker versus a real cluster.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import faust
import mode

from services.runtime.settings import Settings
from services.runtime.topics import MAX_MESSAGE_BYTES

__all__ = ["bytes_table", "is_ready", "make_app", "run_worker"]


def make_app(service: str, settings: Settings, **overrides: Any) -> faust.App:
    """A faust app for *service* with no module-level state and no faust web stack."""
    if not settings.kafka_bootstrap_servers:
        raise ValueError("KAFKA_BOOTSTRAP_SERVERS must be set to run a service")
    brokers = [f"kafka://{s.strip()}" for s in settings.kafka_bootstrap_servers.split(",")]
    conf: dict[str, Any] = {
        "broker": brokers,
        "web_enabled": False,
        "autodiscover": False,
        "datadir": str(settings.data_dir / service),
        "topic_partitions": settings.partitions,
        "topic_replication_factor": settings.replication_factor,
        "consumer_auto_offset_reset": "earliest",
        "producer_acks": -1,
        "broker_commit_interval": 0.5,
        "key_serializer": "raw",
        "value_serializer": "raw",
        "producer_max_request_size": MAX_MESSAGE_BYTES,
        "consumer_max_fetch_size": MAX_MESSAGE_BYTES,
    }
    if settings.embedded_broker:
        # One record per produce batch: the embedded broker's ListOffsets answers
        # the last batch's base offset + 1, which is the true end only then, and
        # faust's table recovery relies on it. Short group timeouts because a
        # join there waits for the full rebalance timeout.
        conf |= {
            "producer_max_batch_size": 1,
            "producer_linger_ms": 0,
            "broker_max_poll_interval": 10.0,
            "broker_rebalance_timeout": 3.0,
            "broker_session_timeout": 6.0,
            "broker_heartbeat_interval": 1.0,
        }
    conf |= overrides
    return faust.App(f"gatekeeper-{service}", **conf)


def bytes_table(app: faust.App, name: str, partitions: int) -> Any:
    """A table of bytes to bytes; the service owns the encoding of its values.

    The types are explicit because a table otherwise encodes its changelog as
    JSON, whatever the app's default serializer is.
    """
    return app.Table(
        name,
        default=None,
        partitions=partitions,
        key_type=bytes,
        value_type=bytes,
    )


def is_ready(app: faust.App) -> bool:
    """Partitions assigned and every table recovered: the service answers truthfully."""
    if app.rebalancing or getattr(app, "in_recovery", False):
        return False
    recovery = getattr(app.tables, "recovery", None)
    return recovery is not None and bool(recovery.completed.is_set())


def run_worker(app: faust.App, services: Iterable[mode.ServiceT], loglevel: str) -> None:
    """Run the app and its side services until SIGTERM/SIGINT, then drain and commit."""
    worker = faust.Worker(
        app,
        *services,
        loglevel=loglevel,
        quiet=True,
        override_logging=False,
        redirect_stdouts=False,
    )
    worker.spinner = None  # a terminal spinner would corrupt the JSON log stream
    worker.execute_from_commandline()
