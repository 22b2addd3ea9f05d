"""What the gate's RocksDB store buys: restart time and memory, beside the memory store.

    python -m bench.recovery_bench [--items 20000]

For each store, on an embedded broker of its own: ITEMS external events are held by a
gate, the gate is stopped (SIGTERM) and started again on the same data
directory, and the bench measures the time from start to ``/readyz``, the
process's resident memory once ready, and checks that ``GET /v1/held`` lists
every item it held before. Prints both stores and the ratios.
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

from bench.gate_bench import PARTITIONS
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

STORES = ("memory", "rocksdb")
#: about the length of a municipal news item
BODY = "Lerums kommun informerar om förskolans öppettider under sommaren. " * 30


def _get(url: str, token: str = "") -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:  # noqa: S310 (loopback only)
            return int(answer.status), bytes(answer.read())
    except OSError:
        return 0, b""


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def _start_ready(env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], float]:
    """Start the gate; return it and the seconds until it answered /readyz."""
    started = time.monotonic()
    proc = start_process([sys.executable, "-m", "services.cli", "serve", "gate"], env, log)
    url = f"http://127.0.0.1:{env['GATEKEEPER_GATE_PORT']}/readyz"
    while _get(url)[0] != 200:
        if proc.poll() is not None or time.monotonic() - started > 600:
            raise SystemExit(f"the gate did not become ready; see {log}")
        time.sleep(0.05)
    return proc, time.monotonic() - started


def _run(store: str, items: int, workdir: Path) -> dict[str, float]:
    with EmbeddedBroker(log_path=workdir / f"broker-{store}.log") as broker:
        return _measure(store, items, broker, workdir)


def _measure(store: str, items: int, broker: EmbeddedBroker, workdir: Path) -> dict[str, float]:
    prefix = f"{store}-"
    env = service_env(broker, workdir / store, PARTITIONS, GATEKEEPER_GATE_STORE=store)
    deployment = load_deployment(DEFAULT_CONFIG_PATH, env)
    topics.ensure_topics(broker.bootstrap, topics.topics_for(deployment), PARTITIONS, 1)
    print(f"{store}: {items} items to hold ...", flush=True)
    write_records(
        broker.bootstrap,
        topics.ACCEPTED,
        [(f"lerum:{prefix}{i}".encode(), accepted_event(i, prefix, BODY)) for i in range(items)],
        None,
    )
    proc, _ = _start_ready(env, workdir / f"{store}.log")
    try:
        read_records(
            broker.bootstrap,
            topics.DECISIONS,
            items,
            900,
            lambda r: r.key.startswith(f"lerum:{prefix}".encode()),
        )
        before = _rss_mib(proc.pid)
    finally:
        stop_process(proc)
    proc, ready = _start_ready(env, workdir / f"{store}.log")
    try:
        after = _rss_mib(proc.pid)
        status, body = _get(
            f"http://127.0.0.1:{env['GATEKEEPER_GATE_PORT']}/v1/held",
            env["GATEKEEPER_OPERATOR_TOKEN"],
        )
        held = {row["item_id"] for row in json.loads(body)["held"]} if status == 200 else set()
        missing = {f"{prefix}{i}" for i in range(items)} - held
        if missing:
            raise SystemExit(f"{store}: {len(missing)} held items lost in the restart")
    finally:
        stop_process(proc)
    result = {"restart_to_ready_s": ready, "rss_before_mib": before, "rss_after_mib": after}
    print(
        f"  restart to /readyz {ready:6.2f} s   resident memory {before:6.0f} MiB before,"
        f" {after:6.0f} MiB after the restart   all {items} items still held",
        flush=True,
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=20000)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="gatekeeper-recovery-"))
    results = {store: _run(store, args.items, workdir) for store in STORES}
    mem, rdb = results["memory"], results["rocksdb"]
    print(
        f"rocksdb / memory   restart x{rdb['restart_to_ready_s'] / mem['restart_to_ready_s']:.2f}"
        f"   resident memory after restart x{rdb['rss_after_mib'] / mem['rss_after_mib']:.2f}"
    )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
