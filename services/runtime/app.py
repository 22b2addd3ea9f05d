"""The faust app factory and the worker every service runs.

All broker tuning lives here: one place decides how the services talk to the
embedded broker versus a real cluster, and only speed differs between them.
"""

from __future__ import annotations

import gc
import os
import sys
import time
from collections.abc import Iterable
from typing import Any

import faust
import mode
import structlog

from services.runtime.faust_compat import (
    check_version,
    exact_log_ends,
    fetch_wait,
    is_ready,
    no_gap_acks,
    stop_within,
    without_spinner,
)
from services.runtime.kafka_security import KafkaSecurity
from services.runtime.ports import InboundRecord
from services.runtime.settings import Settings
from services.runtime.topics import MAX_MESSAGE_BYTES

__all__ = ["STOP_WITHIN_S", "inbound", "is_ready", "make_app", "run_worker"]


def make_app(service: str, settings: Settings, **overrides: Any) -> faust.App:
    """A faust app for *service* with no module-level state and no faust web stack."""
    check_version()
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
        # A crashed member's partitions move after session_timeout, not faust's
        # default minute; with a stable instance id a restarted pod rejoins as
        # itself without a rebalance at all.
        "broker_session_timeout": settings.kafka_session_timeout,
        "broker_heartbeat_interval": settings.kafka_heartbeat_interval,
        "broker_rebalance_timeout": settings.kafka_rebalance_timeout,
        # With replicas on RocksDB, a standby keeps each partition's table warm on
        # another replica, so failover reads only the changelog's tail there.
        "table_standby_replicas": settings.standby_replicas,
    }
    security = KafkaSecurity.of(settings)
    credentials = security.faust_credentials()
    if credentials is not None:
        conf["broker_credentials"] = credentials
    if settings.instance_id:
        conf["consumer_group_instance_id"] = f"{settings.instance_id}-{service}"
    # Table recovery reads each changelog to the end a fetch reports, not only
    # to what ListOffsets answers: a broker may answer the last batch's base
    # offset + 1 (the embedded one does), and the changelogs go out in batches.
    # This concerns correctness, so it holds whatever the broker.
    exact_log_ends(settings.kafka_bootstrap_servers, security.client_kwargs())
    # Nothing is committed that no agent handled, whatever the broker.
    no_gap_acks()
    # How long a fetch waits for data: as set, else 20 ms on the embedded broker
    # (speed alone: that broker holds a fetch for much of its wait, a floor under
    # every hop), else faust's own.
    fetch_wait(settings.kafka_fetch_max_wait_ms or (20 if settings.embedded_broker else None))
    if settings.embedded_broker:
        # What follows is about speed alone. A join there waits about half the
        # session timeout (whole seconds: 3 s at 6 s, 1 s at 2 s), and a killed
        # member's partitions wait for it all, so both are short; heartbeats
        # come from the consumer's own thread, every 0.3 s. A member is let go
        # only after two minutes without a fetch: one slow to drain a backlog (a
        # million held items at start) is not one that hangs.
        # A group timing set in the environment wins (several replicas of a
        # service on this broker want longer joins).
        given = settings.model_fields_set
        conf |= {"broker_max_poll_interval": 120.0} | {
            option: value
            for option, field, value in (
                ("broker_rebalance_timeout", "kafka_rebalance_timeout", 1.0),
                ("broker_session_timeout", "kafka_session_timeout", 2.0),
                ("broker_heartbeat_interval", "kafka_heartbeat_interval", 0.3),
            )
            if field not in given
        }
    conf |= overrides
    app = faust.App(f"gatekeeper-{service}", **conf)
    log_rebalances(app)
    return app


def log_rebalances(app: faust.App) -> None:
    """Log each step of a rebalance, for whoever follows a failover: the group
    changed (``consumer.rebalancing``), this process got its partitions
    (``consumer.assigned``), its tables are recovered and its streams resume
    (``consumer.resumed``), each with the seconds since the step before."""
    log = structlog.get_logger("gatekeeper")
    since = [time.monotonic()]

    def step() -> float:
        now, before = time.monotonic(), since[0]
        since[0] = now
        return round(now - before, 3)

    # Each is called as (sender, *the signal's arguments, signal=..., **more).
    def rebalancing(_: Any, /, *revoked: Any, signal: Any, **__: Any) -> None:
        step()
        log.info("consumer.rebalancing", partitions_revoked=len(revoked[0]))

    def assigned(sender: Any, /, *assigned: Any, signal: Any, **__: Any) -> None:
        standbys = len(sender.assignor.assigned_standbys())
        log.info(
            "consumer.assigned", partitions=len(assigned[0]), standbys=standbys, after_s=step()
        )

    def resumed(_: Any, /, *__: Any, signal: Any, **___: Any) -> None:
        log.info("consumer.resumed", after_s=step())

    app.on_partitions_revoked.connect(rebalancing)
    app.on_partitions_assigned.connect(assigned)
    app.on_rebalance_complete.connect(resumed)


def inbound(event: Any) -> InboundRecord:
    """What a handler needs of a faust event's message."""
    msg = event.message
    return InboundRecord(
        topic=msg.topic,
        partition=msg.partition,
        offset=msg.offset,
        key=msg.key,
        value=msg.value,
        headers=tuple(msg.headers or ()),
    )


#: A pod's grace period is 30 s by default and CONTRACT 6 promises 10 s: past
#: this, a stop that waits for an unreachable Kafka is cut short. Nothing is lost:
#: what was not acknowledged to the CMS is sent again, and what was decided but
#: not committed is read and decided again after the restart (and caught as a
#: repeat downstream).
STOP_WITHIN_S = 8.0


def _stop_now() -> None:
    structlog.get_logger("gatekeeper").warning(
        "worker.stop_cut_short", after_s=STOP_WITHIN_S, why="Kafka did not answer on the way out"
    )
    sys.stderr.flush()
    os._exit(1)


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
    without_spinner(worker)
    stop_within(worker, STOP_WITHIN_S, _stop_now)
    # What was made until now (modules, schemas, the app) lives as long as the
    # process: out of the collector's sight, a full collection no longer walks
    # it, which stalled every input behind it for up to 90 ms.
    gc.collect()
    gc.freeze()
    worker.execute_from_commandline()
