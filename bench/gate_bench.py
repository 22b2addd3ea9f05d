"""The gate's throughput, CPU per input and release latency beside three baselines.

    python -m bench.gate_bench [--events 6000] [--rate 1000] [--seconds 5] [--rounds 3]

Each round runs on a fresh embedded broker, every processor a process of its own,
one after another, with the services' own broker settings:

Phase 1 (throughput and CPU): EVENTS inputs are written before the processor
starts. Throughput is EVENTS divided by the span between its first and last
output (producer timestamps), so start-up and group joins do not count. CPU per
input is the process's user and system time from its first output seen to its
last, divided by the outputs in between (``/proc/PID/stat``).
Phase 2 (latency): inputs arrive at RATE per second for SECONDS; latency is an
output's timestamp minus its input's. For the gate the inputs of phase 1 are
accepted external events (each held) and those of phase 2 the internal notices'
delivery receipts; each receipt releases one held item, and the latency is
from the receipt to the release.

Baselines: ``faust``, a bare faust agent forwarding every input; ``faust3``,
the same writing three records per input, as many as the gate writes per
accepted event (its decision, the item's state and the item's history);
``aiokafka``, a plain consume-and-produce loop. Every round is printed, then
the medians, the gate's ratios and each figure beside its target.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from schemas.events import DeliveryReceipt
from services.runtime import topic_admin, topics
from services.runtime.broker import EmbeddedBroker
from services.runtime.config import DEFAULT_CONFIG_PATH, load_deployment
from tests.harness import (
    accepted_event,
    read_records,
    service_env,
    start_process,
    stop_process,
    write_batched,
    write_records,
)

PARTITIONS = 4
#: baseline name -> (kind in bench.baselines, sinks besides bench.out.NAME); each
#: baseline reads its own bench.in.NAME, so none sees another's records
BASELINES: dict[str, tuple[str, list[str]]] = {
    "faust": ("faust", []),
    "faust3": ("faust", ["bench.state", "bench.history"]),
    "aiokafka": ("aiokafka", []),
}
FIGURES = ("throughput", "cpu_us", "p50", "p99")
#: the targets: p99 release latency, CPU per gate input, throughput ratios
P99_TARGET_MS = 50.0
CPU_TARGET_US = 350.0
RATIO_TARGETS = {"faust3": 0.9, "faust": 1.0}


def _receipt(i: int, prefix: str = "bench-") -> bytes:
    """The delivery receipt of item *prefix*-*i*'s internal notice."""
    return (
        DeliveryReceipt(
            decision_id=f"d-{prefix}{i}",
            tenant="lerum",
            item_id=f"{prefix}{i}",
            version=1,
            action="publish",
            audience="internal",
            channel="intranet",
            delivered_at=datetime.now(UTC),
        )
        .model_dump_json()
        .encode()
    )


def cpu_seconds(pid: int) -> float:
    """User and system time of process *pid* so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_by_name(pids: dict[str, int | None]) -> dict[str, float]:
    """CPU seconds so far of each named process, and of this one (the load generator).
    Names that differ only in a trailing digit ("receivers", "receivers2") add up."""
    used = {"generator": time.process_time()}
    for name, pid in pids.items():
        if pid is not None:
            key = name.rstrip("0123456789")
            used[key] = used.get(key, 0.0) + cpu_seconds(pid)
    return used


def watch(
    bootstrap: str, topic: str, want: int, pid: int, timeout: float = 300
) -> tuple[list[Any], float]:
    """Read *want* records of *topic* as *pid* writes them; and its CPU per record
    from the first record seen to the last, in microseconds."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    out: list[Any] = []
    first: tuple[int, float] | None = None
    deadline = time.monotonic() + timeout
    while len(out) < want and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=50).values():
            out.extend(records)
        if out and first is None:
            first = (len(out), cpu_seconds(pid))
    last = cpu_seconds(pid)
    consumer.close()
    if len(out) < want or first is None:
        raise SystemExit(f"{topic}: only {len(out)} of {want} records within {timeout:.0f}s")
    return out, (last - first[1]) / max(len(out) - first[0], 1) * 1e6


def _throughput(records: list[Any]) -> float:
    stamps = sorted(r.timestamp for r in records)
    span = max((stamps[-1] - stamps[0]) / 1000.0, 1e-3)
    return float(len(records) / span)


def _latencies(
    inputs: list[Any], outputs: list[Any], key_of: Callable[[Any], bytes]
) -> list[float]:
    sent = {key_of(r): r.timestamp for r in inputs}
    return sorted(r.timestamp - sent[key_of(r)] for r in outputs if key_of(r) in sent)


def percentile(values: list[float], q: float) -> float:
    """The *q* quantile of sorted *values*."""
    return values[min(len(values) - 1, int(q * len(values)))]


def _gate(args: argparse.Namespace, bootstrap: str, pid: int) -> dict[str, float]:
    n, m = args.events, int(args.rate * args.seconds)
    held, cpu = watch(bootstrap, topics.DECISIONS, n, pid)  # one held decision per input
    receipts = [(f"lerum:bench-{i}".encode(), _receipt(i)) for i in range(m)]
    write_records(bootstrap, topics.RECEIPTS, receipts, args.rate)
    ins = read_records(bootstrap, topics.RECEIPTS, m, 60)
    outs = read_records(bootstrap, topics.RELEASES, m, 120)
    lat = _latencies(ins, outs, lambda r: r.key)
    return _figures(held, cpu, lat)


def _baseline(args: argparse.Namespace, bootstrap: str, pid: int, name: str) -> dict[str, float]:
    n, m = args.events, int(args.rate * args.seconds)
    in_topic, out_topic = f"bench.in.{name}", f"bench.out.{name}"
    done, cpu = watch(bootstrap, out_topic, n, pid)
    paced = [(f"lat{i}".encode(), accepted_event(i)) for i in range(m)]
    write_records(bootstrap, in_topic, paced, args.rate)
    is_paced: Callable[[Any], bool] = lambda r: r.key.startswith(b"lat")  # noqa: E731
    ins = read_records(bootstrap, in_topic, m, 60, is_paced)
    outs = read_records(bootstrap, out_topic, m, 120, is_paced)
    return _figures(done, cpu, _latencies(ins, outs, lambda r: r.key))


def _figures(done: list[Any], cpu: float, lat: list[float]) -> dict[str, float]:
    return {
        "throughput": _throughput(done),
        "cpu_us": cpu,
        "p50": percentile(lat, 0.5),
        "p99": percentile(lat, 0.99),
        "samples": len(lat),
    }


def run_round(args: argparse.Namespace, number: int) -> dict[str, dict[str, float]]:
    """One round on a fresh broker: every processor, one after another."""
    n, m = args.events, int(args.rate * args.seconds)
    workdir = Path(tempfile.mkdtemp(prefix="gatekeeper-bench-"))
    with EmbeddedBroker(log_path=workdir / "broker.log") as broker:
        env = service_env(broker, workdir, PARTITIONS)
        deployment = load_deployment(DEFAULT_CONFIG_PATH, env)
        own = [f"bench.{way}.{name}" for name in BASELINES for way in ("in", "out")]
        names = [*topics.topics_for(deployment), "bench.state", "bench.history", *own]
        topic_admin.ensure_topics(broker.bootstrap, names, PARTITIONS, 1)
        items = max(n, m)
        print(f"round {number}: writing {n} inputs for each processor ...", flush=True)
        write_batched(
            broker.bootstrap,
            topics.ACCEPTED,
            [(f"lerum:bench-{i}".encode(), accepted_event(i)) for i in range(items)],
        )
        for name in BASELINES:
            burst = [(f"k{i}".encode(), accepted_event(i)) for i in range(n)]
            write_batched(broker.bootstrap, f"bench.in.{name}", burst)

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
                    results[name] = _gate(args, broker.bootstrap, proc.pid)
                else:
                    results[name] = _baseline(args, broker.bootstrap, proc.pid, name)
                _line(name, results[name])
            finally:
                stop_process(proc)
    return results


def _line(name: str, r: dict[str, float]) -> None:
    samples = f"({r['samples']:.0f} latency samples)" if "samples" in r else ""
    print(
        f"  {name:8s} {r['throughput']:6.0f} inputs/s   CPU {r['cpu_us']:4.0f} µs/input"
        f"   p50 {r['p50']:4.0f} ms   p99 {r['p99']:4.0f} ms  {samples}",
        flush=True,
    )


def summary(rounds: list[dict[str, dict[str, float]]]) -> dict[str, Any]:
    """Medians of the rounds, the gate's ratios, and each target with its figure."""
    median = {
        name: {f: statistics.median(r[name][f] for r in rounds) for f in FIGURES}
        for name in rounds[0]
    }
    gate = median["gate"]
    ratios = {base: gate["throughput"] / median[base]["throughput"] for base in BASELINES}
    targets = [
        ("release latency p99, median of rounds", f"{gate['p99']:.0f} ms", "<= 50 ms",
         gate["p99"] <= P99_TARGET_MS),
        ("CPU per gate input, median of rounds", f"{gate['cpu_us']:.0f} µs", "<= 350 µs",
         gate["cpu_us"] <= CPU_TARGET_US),
    ] + [
        (f"throughput / {base}", f"x{ratios[base]:.2f}", f">= x{want:.1f}", ratios[base] >= want)
        for base, want in RATIO_TARGETS.items()
    ]  # fmt: skip
    return {"median": median, "ratios": ratios, "targets": targets}


def print_summary(result: dict[str, Any], rounds: int) -> None:
    print(f"median of {rounds} rounds:")
    for name, figures in result["median"].items():
        _line(name, figures)
    for base, ratio in result["ratios"].items():
        print(f"gate / {base:8s} throughput x{ratio:.2f}")
    print_targets(result["targets"])


def print_targets(targets: list[tuple[str, str, str, bool]]) -> None:
    print(f"{'figure':44s} {'measured':>10s}  {'target':>10s}  met")
    for what, measured, target, met in targets:
        print(f"{what:44s} {measured:>10s}  {target:>10s}  {'yes' if met else 'NO'}")


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    """The bench's arguments, from *argv* (the command line when None)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=6000)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    return parser.parse_args(argv)


def main() -> None:
    args = arguments()
    rounds = [run_round(args, k + 1) for k in range(args.rounds)]
    result = summary(rounds)
    print_summary(result, len(rounds))
    print(json.dumps({"rounds": rounds, "median": result["median"], "ratios": result["ratios"]}))


if __name__ == "__main__":
    main()
