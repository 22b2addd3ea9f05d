"""A second gate joining a busy one: is every accepted item still decided?

    python -m bench.join_bench [--rounds 6] [--items 10000]

Each round on a fresh embedded broker: ITEMS external events wait on
``cms.accepted``; gate A starts and begins holding them, gate B joins once A is
ready (a rebalance while A works through the backlog), and the bench waits until
``gate.decisions`` names every item or 90 s pass. An item with no decision is
printed with its place on ``cms.accepted`` and what ``gate.held`` and the
items' changelog hold for it, and the round counts as failed. The group
timings are 4 s, as ``bench.failover_bench`` runs two gates. Exits 1 if any
round failed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.failover_bench import start_two_gates
from bench.gate_bench import PARTITIONS
from services.runtime import topic_admin, topics
from services.runtime.broker import EmbeddedBroker
from services.runtime.config import DEFAULT_CONFIG_PATH, load_deployment
from tests.harness import (
    TopicReader,
    accepted_event,
    service_env,
    stop_process,
    write_batched,
)

CHANGELOG = "gatekeeper-gate-gate-items-changelog"


def _by_key(bootstrap: str, topic: str) -> dict[bytes, list[Any]]:
    """Each key's (partition, offset) on *topic*, read whole."""
    found: dict[bytes, list[Any]] = {}
    for r in TopicReader(bootstrap).records(topic, timeout_ms=3000):
        found.setdefault(r.key, []).append((r.partition, r.offset))
    return found


def run_round(number: int, items: int) -> bool:
    workdir = Path(tempfile.mkdtemp(prefix="gatekeeper-join-"))
    with EmbeddedBroker(log_path=workdir / "broker.log") as broker:
        env = service_env(
            broker,
            workdir,
            PARTITIONS,
            GATEKEEPER_KAFKA_SESSION_TIMEOUT="4",
            GATEKEEPER_KAFKA_REBALANCE_TIMEOUT="4",
            GATEKEEPER_KAFKA_HEARTBEAT_INTERVAL="1",
        )
        deployment = load_deployment(DEFAULT_CONFIG_PATH, env)
        topic_admin.ensure_topics(broker.bootstrap, topics.topics_for(deployment), PARTITIONS, 1)
        events = [(f"lerum:bench-{i}".encode(), accepted_event(i)) for i in range(items)]
        write_batched(broker.bootstrap, topics.ACCEPTED, events)
        gates: list[Any] = []
        try:
            start_two_gates(env, workdir, gates)
            deadline = time.monotonic() + 90
            decided = _by_key(broker.bootstrap, topics.DECISIONS)
            while len(decided) < items and time.monotonic() < deadline:
                decided = _by_key(broker.bootstrap, topics.DECISIONS)
            accepted = _by_key(broker.bootstrap, topics.ACCEPTED)
            missing = sorted(k for k in accepted if k not in decided)
            print(f"round {number}: {len(decided)} of {items} items decided", flush=True)
            if missing:
                changelog = _by_key(broker.bootstrap, CHANGELOG)
                held = _by_key(broker.bootstrap, topics.HELD)
                for key in missing[:5]:
                    print(
                        f"  {key.decode()}: on cms.accepted at {accepted[key]}, its state on"
                        f" the changelog {changelog.get(key)}, on gate.held {held.get(key)};"
                        f" logs in {workdir}",
                        flush=True,
                    )
            return not missing
        finally:
            for proc, _ in reversed(gates):
                stop_process(proc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--items", type=int, default=10_000)
    args = parser.parse_args()
    results = [run_round(k + 1, args.items) for k in range(args.rounds)]
    failed = results.count(False)
    print(f"{failed} of {len(results)} round(s) with an item left undecided")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
