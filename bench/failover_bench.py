"""Two gate processes, one SIGKILLed while receipts flow: how soon is everything due out?

    python -m bench.failover_bench [--rounds 3] [--rate 1000] [--seconds 10]
                                   [--kill-at 4] [--store memory|rocksdb] [--session 4]
                                   [--standby 0] [--dynamic]

Each round on a fresh embedded broker: RATE * SECONDS external events wait on
``cms.accepted``; two gate processes (``serve gate``, a name and a data directory
each, started one after the other as the chart's StatefulSet starts them, with a
group session and join timeout of SESSION seconds) hold them all between them. Then
the internal notices' delivery receipts arrive at RATE per second for SECONDS,
each releasing one held item (after a second of receipts that are not counted, so
both gates are deciding); KILL_AT seconds in, one gate is SIGKILLed and not
started again. From the records' own timestamps (producer time, one clock):

- release latency (receipt to release) p50 and p99 of the receipts written
  before the kill, and p99 and max of those written after;
- failover: from the kill until every release due at the kill (its receipt
  written before it) and every release after has gone out;
- exactly once: every item released, none by two decisions.

Every round is printed; the bench exits 1 if an item was not released or was
released twice.
"""

from __future__ import annotations

import argparse
import functools
import json
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from bench.gate_bench import PARTITIONS, _receipt, percentile
from bench.up_bench import _ready
from services.runtime import topic_admin, topics
from services.runtime.broker import EmbeddedBroker, free_port
from services.runtime.config import DEFAULT_CONFIG_PATH, load_deployment
from tests.harness import (
    accepted_event,
    read_records,
    service_env,
    start_process,
    stop_process,
    wait_until,
    write_batched,
    write_records,
)

#: Items released before the measured flow, once both gates are up.
WARM = 1000


def _gate(
    env: dict[str, str], workdir: Path, name: str, static: bool
) -> tuple[Any, dict[str, str]]:
    own = env | {
        "GATEKEEPER_GATE_PORT": str(free_port()),
        "GATEKEEPER_DATA_DIR": str(workdir / f"data-{name}"),
    }
    if static:  # as the chart's StatefulSet names its pods
        own["GATEKEEPER_INSTANCE_ID"] = f"{workdir.name}-{name}"
    argv = [sys.executable, "-m", "services.cli", "serve", "gate"]
    return start_process(argv, own, workdir / f"{name}.log"), own


def start_two_gates(
    env: dict[str, str], workdir: Path, gates: list[Any], static: bool = True
) -> None:
    """gate-a, then gate-b once gate-a is ready, as a StatefulSet rolls its pods out;
    each put in *gates* as it starts, for the caller to stop."""
    for name in ("gate-a", "gate-b"):
        gates.append(_gate(env, workdir, name, static))
        url = f"http://127.0.0.1:{gates[-1][1]['GATEKEEPER_GATE_PORT']}/readyz"
        wait_until(functools.partial(_ready, url), 300, f"{url} ready")


def run_round(args: argparse.Namespace, number: int) -> dict[str, float]:
    m = int(args.rate * args.seconds)
    workdir = Path(tempfile.mkdtemp(prefix="gatekeeper-failover-"))
    with EmbeddedBroker(log_path=workdir / "broker.log") as broker:
        env = service_env(
            broker,
            workdir,
            PARTITIONS,
            GATEKEEPER_GATE_STORE=args.store,
            GATEKEEPER_STANDBY_REPLICAS=str(args.standby),
            # As the chart runs them: the survivor's consumer.* lines time the takeover.
            GATEKEEPER_LOG_LEVEL="info",
            # Two members joining a group: longer than the embedded mode's 1 s
            # join, which one revoking its partitions under load overruns.
            GATEKEEPER_KAFKA_SESSION_TIMEOUT=str(args.session),
            GATEKEEPER_KAFKA_REBALANCE_TIMEOUT=str(args.session),
            GATEKEEPER_KAFKA_HEARTBEAT_INTERVAL=str(args.session / 4),
        )
        deployment = load_deployment(DEFAULT_CONFIG_PATH, env)
        topic_admin.ensure_topics(broker.bootstrap, topics.topics_for(deployment), PARTITIONS, 1)
        items = [(f"lerum:bench-{i}".encode(), accepted_event(i)) for i in range(m)]
        warm = [(f"lerum:warm-{i}".encode(), accepted_event(i, "warm-")) for i in range(WARM)]
        write_batched(broker.bootstrap, topics.ACCEPTED, items + warm)
        gates: list[Any] = []
        try:
            start_two_gates(env, workdir, gates, static=not args.dynamic)
            read_records(broker.bootstrap, topics.DECISIONS, m + WARM, 300)  # every item held
            # Both gates deciding, the group settled: a second of receipts, all released.
            warming = [(f"lerum:warm-{i}".encode(), _receipt(i, "warm-")) for i in range(WARM)]
            write_records(broker.bootstrap, topics.RECEIPTS, warming, args.rate)
            warmed = lambda r: r.key.startswith(b"lerum:warm-")  # noqa: E731
            read_records(broker.bootstrap, topics.RELEASES, WARM, 120, warmed)
            receipts = [(f"lerum:bench-{i}".encode(), _receipt(i)) for i in range(m)]
            writer = threading.Thread(
                target=write_records, args=(broker.bootstrap, topics.RECEIPTS, receipts, args.rate)
            )
            writer.start()
            time.sleep(args.kill_at)
            killed_at = time.time() * 1000
            gates[1][0].send_signal(signal.SIGKILL)
            writer.join()
            measured = lambda r: r.key.startswith(b"lerum:bench-")  # noqa: E731
            ins = read_records(broker.bootstrap, topics.RECEIPTS, m, 60, measured)
            outs = _every_release(broker.bootstrap, m, measured)
        finally:
            for proc, _ in reversed(gates):
                stop_process(proc)
    figures = _figures(number, ins, outs, killed_at)
    return figures | _takeover(workdir / "gate-a.log", killed_at, figures["due_out_s"])


#: The survivor's log events of a takeover, in their order.
TAKEOVER = ("consumer.rebalancing", "consumer.assigned", "consumer.resumed")


def _takeover(log: Path, killed_at: float, due_out_s: float) -> dict[str, float]:
    """Where the failover's time went, from the survivor's log: from the kill until it
    heard of the rebalance (the lost member's session), until it got its partitions
    (the join), until its tables were recovered, and until everything due was out."""
    seen: dict[str, list[float]] = defaultdict(list)
    for line in log.read_text().splitlines():
        event = json.loads(line) if line.startswith("{") else {}
        if event.get("event") in TAKEOVER:
            ms = datetime.fromisoformat(event["timestamp"]).replace(tzinfo=UTC).timestamp() * 1000
            if ms >= killed_at:
                seen[event["event"]].append(ms)
    if len(seen) < len(TAKEOVER):
        print(f"  the survivor logged only {sorted(seen)} after the kill", flush=True)
        return {}
    # The first rebalance after the kill; the last assignment and resume: the group
    # that settled (a join repeats when the member list changes meanwhile).
    at = {
        "consumer.rebalancing": min(seen["consumer.rebalancing"]),
        "consumer.assigned": max(seen["consumer.assigned"]),
        "consumer.resumed": max(seen["consumer.resumed"]),
    }
    steps = {
        "session_s": (at["consumer.rebalancing"] - killed_at) / 1000,
        "join_s": (at["consumer.assigned"] - at["consumer.rebalancing"]) / 1000,
        "recovery_s": (at["consumer.resumed"] - at["consumer.assigned"]) / 1000,
    }
    steps["backlog_s"] = due_out_s - sum(steps.values())
    print(
        "  after the kill: "
        + ", ".join(f"{k.removesuffix('_s')} {v:.1f} s" for k, v in steps.items()),
        flush=True,
    )
    return steps


def _every_release(bootstrap: str, m: int, measured: Any) -> list[Any]:
    """The release records until *m* items have one (some have two: sent again)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    tps = [
        TopicPartition(topics.RELEASES, p)
        for p in consumer.partitions_for_topic(topics.RELEASES) or ()
    ]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    out: list[Any] = []
    keys: set[bytes] = set()
    deadline = time.monotonic() + 300
    while len(keys) < m and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=200).values():
            mine = [r for r in records if measured(r)]
            out += mine
            keys |= {r.key for r in mine}
    consumer.close()
    return out


def _figures(number: int, ins: list[Any], outs: list[Any], killed_at: float) -> dict[str, float]:
    sent = {r.key: r.timestamp for r in ins}
    decisions: dict[bytes, set[str]] = defaultdict(set)
    first_out: dict[bytes, int] = {}
    for r in outs:
        decisions[r.key].add(json.loads(r.value)["decision_id"])
        first_out[r.key] = min(first_out.get(r.key, r.timestamp), r.timestamp)
    before = sorted(first_out[k] - t for k, t in sent.items() if t < killed_at and k in first_out)
    after = sorted(first_out[k] - t for k, t in sent.items() if t >= killed_at and k in first_out)
    result = {
        "before_p50": percentile(before, 0.5),
        "before_p99": percentile(before, 0.99),
        "after_p99": percentile(after, 0.99),
        "after_max": after[-1],
        "all_out_s": (max(first_out.values()) - killed_at) / 1000,
        "due_out_s": (
            max(first_out[k] for k, t in sent.items() if t < killed_at and k in first_out)
            - killed_at
        )
        / 1000,
        "unreleased": len(set(sent) - set(first_out)),
        "twice": sum(1 for ids in decisions.values() if len(ids) > 1),
        "resent": len(outs) - len(first_out),
    }
    print(
        f"round {number}: before the kill p50 {result['before_p50']:.0f} ms,"
        f" p99 {result['before_p99']:.0f} ms; after it p99 {result['after_p99']:.0f} ms,"
        f" max {result['after_max']:.0f} ms; every release due at the kill out"
        f" {result['due_out_s']:.1f} s after it, all out {result['all_out_s']:.1f} s after it;"
        f" {result['unreleased']:.0f} not released, {result['twice']:.0f} released twice,"
        f" {result['resent']:.0f} release records sent again",
        flush=True,
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--kill-at", type=float, default=4.0)
    parser.add_argument("--store", choices=("memory", "rocksdb"), default="memory")
    parser.add_argument("--session", type=float, default=4.0, help="group session, seconds")
    parser.add_argument(
        "--standby", type=int, default=0, help="standby copies of each table partition"
    )
    parser.add_argument(
        "--dynamic",
        action="store_true",
        help="no GATEKEEPER_INSTANCE_ID: dynamic group membership, not the chart's static",
    )
    args = parser.parse_args()
    rounds = [run_round(args, k + 1) for k in range(args.rounds)]
    figures = ("before_p99", "after_p99", "after_max", "due_out_s", "all_out_s", "session_s")
    for figure in (*figures, "join_s", "recovery_s", "backlog_s"):
        got = [r[figure] for r in rounds if figure in r]
        if got:
            print(f"{figure:12s} median {statistics.median(got):8.1f}")
    print(json.dumps({"rounds": rounds}))
    bad = sum(r["unreleased"] + r["twice"] for r in rounds)
    raise SystemExit(1 if bad else 0)


if __name__ == "__main__":
    main()
