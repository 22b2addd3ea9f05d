"""Restart time and memory with many held items, by table store.

    python -m bench.recovery_bench [--items 1000000] [--stores rocksdb,memory]

For each store, on an embedded broker of its own: ITEMS external events of
about 2 KB each are held by a gate, the gate is stopped (SIGTERM) and started
again on the same data directory, and the bench measures the time from start to
``/readyz`` (recovered and its hold index rebuilt) and the process's resident
memory while holding and once ready again. It checks that the gate counts
every item as held after the restart (``gatekeeper_gate_held_items``, which the
index rebuilt from the recovered table answers). Inputs are written in chunks
and counted, never all kept in the bench's memory. Prints each store beside
the targets: ready within 60 s, at most 300 MiB resident (for a million items
on RocksDB).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench.gate_bench import PARTITIONS, print_targets
from services.runtime import topic_admin, topics
from services.runtime.broker import EmbeddedBroker
from services.runtime.config import DEFAULT_CONFIG_PATH, load_deployment
from tests.harness import (
    accepted_event,
    service_env,
    start_process,
    stop_process,
    write_batched,
)

READY_TARGET_S = 60.0
RSS_TARGET_MIB = 300.0
#: about the length of a municipal news item
BODY = "Lerums kommun informerar om förskolans öppettider under sommaren. " * 30
CHUNK = 20_000


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:  # noqa: S310 (loopback only)
            return int(answer.status), bytes(answer.read())
    except OSError:
        return 0, b""


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def _held_items(base: str) -> int:
    """What ``gatekeeper_gate_held_items`` says for Lerum, -1 if it does not answer."""
    status, body = _get(f"{base}/metrics")
    if status != 200:
        return -1
    for line in body.decode().splitlines():
        if line.startswith('gatekeeper_gate_held_items{tenant="lerum"}'):
            return int(float(line.rsplit(" ", 1)[1]))
    return -1


def _start_ready(env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], float]:
    """Start the gate; return it and the seconds until it answered /readyz."""
    started = time.monotonic()
    proc = start_process([sys.executable, "-m", "services.cli", "serve", "gate"], env, log)
    url = f"http://127.0.0.1:{env['GATEKEEPER_GATE_PORT']}/readyz"
    while _get(url)[0] != 200:
        if proc.poll() is not None or time.monotonic() - started > 900:
            raise SystemExit(f"the gate did not become ready; see {log}")
        time.sleep(0.05)
    return proc, time.monotonic() - started


def _hold(bootstrap: str, items: int, prefix: str, base: str) -> None:
    """Write ITEMS accepted events in chunks and wait until the gate holds them all."""
    for start in range(0, items, CHUNK):
        chunk = range(start, min(items, start + CHUNK))
        write_batched(
            bootstrap,
            topics.ACCEPTED,
            [(f"lerum:{prefix}{i}".encode(), accepted_event(i, prefix, BODY)) for i in chunk],
        )
    deadline = time.monotonic() + 600 + items / 500
    while (held := _held_items(base)) < items:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {held} of {items} items held in time")
        time.sleep(1)


def measure(store: str, items: int, workdir: Path) -> dict[str, float]:
    with EmbeddedBroker(log_path=workdir / f"broker-{store}.log") as broker:
        env = service_env(broker, workdir / store, PARTITIONS, GATEKEEPER_GATE_STORE=store)
        deployment = load_deployment(DEFAULT_CONFIG_PATH, env)
        topic_admin.ensure_topics(broker.bootstrap, topics.topics_for(deployment), PARTITIONS, 1)
        base = f"http://127.0.0.1:{env['GATEKEEPER_GATE_PORT']}"
        log = workdir / f"{store}.log"
        print(f"{store}: {items} items to hold ...", flush=True)
        started = time.monotonic()
        proc, _ = _start_ready(env, log)
        try:
            _hold(broker.bootstrap, items, f"{store}-", base)
            holding = time.monotonic() - started
            before = rss_mib(proc.pid)
        finally:
            stop_process(proc)
        proc, ready = _start_ready(env, log)
        try:
            after = rss_mib(proc.pid)
            deadline = time.monotonic() + 10  # the gauges are set at the next tick
            while (held := _held_items(base)) != items and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            stop_process(proc)
    if held != items:
        raise SystemExit(f"{store}: {held} of {items} items held after the restart")
    result = {
        "items": items,
        "hold_s": holding,
        "restart_to_ready_s": ready,
        "rss_holding_mib": before,
        "rss_after_restart_mib": after,
    }
    print(
        f"  held all {items} in {holding:.0f} s; restart to /readyz {ready:6.2f} s;"
        f" resident memory {before:6.0f} MiB holding, {after:6.0f} MiB after the restart;"
        f" all {held} still held",
        flush=True,
    )
    return result


def targets(results: dict[str, dict[str, float]]) -> list[tuple[str, str, str, bool]]:
    """Each store's restart and memory beside the targets."""
    rows = []
    for store, r in results.items():
        n = int(r["items"])
        rows += [
            (f"{store}, {n:,} held: restart to ready", f"{r['restart_to_ready_s']:.1f} s",
             "<= 60 s", r["restart_to_ready_s"] <= READY_TARGET_S),
            (f"{store}, {n:,} held: resident memory", f"{r['rss_after_restart_mib']:.0f} MiB",
             "<= 300 MiB", r["rss_after_restart_mib"] <= RSS_TARGET_MIB),
        ]  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--stores", default="rocksdb")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="gatekeeper-recovery-"))
    results = {store: measure(store, args.items, workdir) for store in args.stores.split(",")}
    print_targets(targets(results))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
