"""Gate throughput and release latency beside two baselines, on one embedded broker.

    python -m bench.gate_bench [--events 3000] [--rate 1000] [--seconds 3] [--rounds 3]

Phase 1 (throughput): EVENTS records are written before each processor starts;
throughput is EVENTS divided by the span between its first and last output
(producer timestamps), so start-up and group joins do not count.
Phase 2 (latency): records arrive at RATE per second for SECONDS; latency is an
output's timestamp minus its input's. For the gate the inputs are the internal
notices' delivery receipts and the outputs the external releases they trigger.
Each round runs on a fresh broker; the figures printed last are the medians of
the rounds and the gate's ratios to each baseline. Baselines: a bare faust
passthrough (``faust``), the same writing every input twice (``faust2``, the
gate's record count: a decision and the item's state) and a plain aiokafka
consume-and-produce loop (``aiokafka``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from schemas.events import DeliveryReceipt
from services.runtime import topics
from services.runtime.broker import EmbeddedBroker
from services.runtime.config import DEFAULT_CONFIG_PATH, load_deployment
from tests.harness import (
    accepted_event,
    read_records,
    service_env,
    start_process,
    stop_process,
    write_records,
)

PARTITIONS = 4
#: baseline name -> (kind in bench.baselines, sinks besides bench.out.NAME); each
#: baseline reads its own bench.in.NAME, so none sees another's records
BASELINES: dict[str, tuple[str, list[str]]] = {
    "faust": ("faust", []),
    "faust2": ("faust", ["bench.state"]),
    "aiokafka": ("aiokafka", []),
}


def _receipt(i: int) -> bytes:
    return (
        DeliveryReceipt(
            decision_id=f"d{i}",
            tenant="lerum",
            item_id=f"bench-{i}",
            version=1,
            action="publish",
            audience="internal",
            channel="intranet",
            delivered_at=datetime.now(UTC),
        )
        .model_dump_json()
        .encode()
    )


def _throughput(records: list[Any]) -> float:
    stamps = sorted(r.timestamp for r in records)
    span = max((stamps[-1] - stamps[0]) / 1000.0, 1e-3)
    return len(records) / span


def _latencies(
    inputs: list[Any], outputs: list[Any], key_of: Callable[[Any], bytes]
) -> list[float]:
    sent = {key_of(r): r.timestamp for r in inputs}
    return sorted(r.timestamp - sent[key_of(r)] for r in outputs if key_of(r) in sent)


def _pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))]


def _round(args: argparse.Namespace, number: int) -> dict[str, dict[str, float]]:
    """One round on a fresh broker: every processor, one after another."""
    n, m = args.events, int(args.rate * args.seconds)
    workdir = Path(tempfile.mkdtemp(prefix="gatekeeper-bench-"))
    with EmbeddedBroker(log_path=workdir / "broker.log") as broker:
        env = service_env(broker, workdir, PARTITIONS)
        deployment = load_deployment(DEFAULT_CONFIG_PATH, env)
        own = [f"bench.{way}.{name}" for name in BASELINES for way in ("in", "out")]
        names = [*topics.topics_for(deployment), "bench.state", *own]
        topics.ensure_topics(broker.bootstrap, names, PARTITIONS, 1)
        items = max(n, m)
        print(f"round {number}: writing {n} events for the throughput phase ...", flush=True)
        write_records(
            broker.bootstrap,
            topics.ACCEPTED,
            [(f"lerum:bench-{i}".encode(), accepted_event(i)) for i in range(items)],
            None,
        )
        for name in BASELINES:
            burst = [(f"k{i}".encode(), accepted_event(i)) for i in range(n)]
            write_records(broker.bootstrap, f"bench.in.{name}", burst, None)

        results: dict[str, dict[str, float]] = {}
        runs = {"gate": [sys.executable, "-m", "services.cli", "serve", "gate"]} | {
            name: [
                *(sys.executable, "-m", "bench.baselines", kind),
                *(f"bench.in.{name}", f"bench.out.{name}", *extra),
            ]
            for name, (kind, extra) in BASELINES.items()
        }
        for name, argv in runs.items():
            proc = start_process(argv, env, workdir / f"{name}.log")
            try:
                if name == "gate":
                    held = read_records(broker.bootstrap, topics.DECISIONS, items, 300)
                    rate = _throughput(held)  # one decision (held) per input
                    # Receipts at a steady rate; each releases one held item.
                    receipts = [(f"lerum:bench-{i}".encode(), _receipt(i)) for i in range(m)]
                    write_records(broker.bootstrap, topics.RECEIPTS, receipts, args.rate)
                    ins = read_records(broker.bootstrap, topics.RECEIPTS, m, 60)
                    outs_ = read_records(broker.bootstrap, topics.RELEASES, m, 120)
                    lat = _latencies(ins, outs_, lambda r: r.key)
                else:
                    in_topic, out_topic = f"bench.in.{name}", f"bench.out.{name}"
                    done = read_records(broker.bootstrap, out_topic, n, 300)
                    rate = _throughput(done)
                    paced = [(f"lat{i}".encode(), accepted_event(i)) for i in range(m)]
                    write_records(broker.bootstrap, in_topic, paced, args.rate)
                    ins = read_records(
                        broker.bootstrap, in_topic, m, 60, lambda r: r.key.startswith(b"lat")
                    )
                    outs_ = read_records(
                        broker.bootstrap, out_topic, m, 120, lambda r: r.key.startswith(b"lat")
                    )
                    lat = _latencies(ins, outs_, lambda r: r.key)
                results[name] = {"throughput": rate, "p50": _pct(lat, 0.5), "p99": _pct(lat, 0.99)}
                _line(name, results[name], f"({len(lat)} samples)")
            finally:
                stop_process(proc)
    return results


def _line(name: str, r: dict[str, float], note: str = "") -> None:
    print(
        f"  {name:8s} {r['throughput']:8.0f} events/s   p50 {r['p50']:5.0f} ms"
        f"   p99 {r['p99']:5.0f} ms  {note}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rounds = [_round(args, k + 1) for k in range(args.rounds)]
    median = {
        name: {
            figure: statistics.median(r[name][figure] for r in rounds)
            for figure in ("throughput", "p50", "p99")
        }
        for name in rounds[0]
    }
    print(f"median of {len(rounds)} rounds:")
    for name, figures in median.items():
        _line(name, figures)
    gate = median["gate"]
    for base in BASELINES:
        b = median[base]
        print(
            f"gate / {base:8s} throughput x{gate['throughput'] / b['throughput']:.2f}"
            f"   p99 latency x{gate['p99'] / max(b['p99'], 1):.2f}"
        )
    print(json.dumps({"rounds": rounds, "median": median}))


if __name__ == "__main__":
    main()
