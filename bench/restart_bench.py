"""How soon each service answers again: first start, and after a SIGKILL.

    python -m bench.restart_bench [--rounds 3]

For each broker mode and service: start it, time to ``/readyz``; SIGKILL it,
start it again, time to ``/readyz`` and to its first new output (an event
through ingest reaching ``gate.decisions``, the gate's hold decision, publish's
delivery of a release). Modes: ``embedded`` (the short group timeouts of
``gatekeeper up``) and ``separate`` (a broker given by KAFKA_BOOTSTRAP_SERVERS,
the services' own defaults, as in a cluster) and ``static`` (the same with a
stable GATEKEEPER_INSTANCE_ID, as the chart sets it). Prints every round.
"""

from __future__ import annotations

import argparse
import functools
import json
import signal
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from services.runtime import topic_admin, topics
from services.runtime.broker import EmbeddedBroker, free_port
from services.runtime.config import DEFAULT_CONFIG_PATH, load_deployment
from tests.conftest import SECRETS_ENV, content_event
from tests.harness import TopicReader, post_event, service_env, start_process, unique_item

SERVICES = ("ingest", "gate", "publish")
TARGET_S = 20.0


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
            return int(r.status) == 200
    except OSError:
        return False


def _held(reader: TopicReader, key: str) -> bool:
    """Whether the gate has written a held decision for *key*."""
    return any(d["kind"] == "held" for d in reader.json_for(topics.DECISIONS, key))


def _until(check: Callable[[], bool], timeout: float = 300) -> float:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise SystemExit(f"not within {timeout}s")
        time.sleep(0.05)
    return time.monotonic() - started


def _round(mode: str, workdir: Path) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    with EmbeddedBroker(log_path=workdir / "broker.log") as broker:
        extra = {"GATEKEEPER_EMBEDDED_BROKER": "true" if mode == "embedded" else "false"}
        if mode == "static":  # as the chart runs it: each pod joins under its own name
            extra["GATEKEEPER_INSTANCE_ID"] = f"bench-{workdir.name}"
        ports = {name: free_port() for name in SERVICES}
        env = service_env(
            broker,
            workdir,
            2,
            **extra,
            **{f"GATEKEEPER_{n.upper()}_PORT": str(p) for n, p in ports.items()},
        )
        env.update(SECRETS_ENV)  # post_event signs with the test tenants' secrets
        deployment = load_deployment(DEFAULT_CONFIG_PATH, env)
        topic_admin.ensure_topics(broker.bootstrap, topics.topics_for(deployment), 2, 1)
        reader = TopicReader(broker.bootstrap)
        procs = {}
        for name in SERVICES:
            argv = [sys.executable, "-m", "services.cli", "serve", name]
            procs[name] = start_process(argv, env, workdir / f"{mode}-{name}.log")
            out[name] = {"first_start_s": _until(functools.partial(_ready, ports[name]))}
        ingest = f"http://127.0.0.1:{ports['ingest']}"
        for name in SERVICES:
            procs[name].send_signal(signal.SIGKILL)
            procs[name].wait()
            killed = time.monotonic()
            argv = [sys.executable, "-m", "services.cli", "serve", name]
            procs[name] = start_process(argv, env, workdir / f"{mode}-{name}.log")
            _until(functools.partial(_ready, ports[name]))
            out[name]["restart_to_ready_s"] = time.monotonic() - killed
            item = unique_item("restart")
            while (answer := post_event(ingest, content_event(item_id=item))).status_code != 202:
                if answer.status_code != 503:
                    raise SystemExit(f"ingest answered {answer.status_code}: {answer.text}")
                time.sleep(0.05)
            key = f"lerum:{item}"
            _until(functools.partial(_held, reader, key))
            out[name]["kill_to_first_output_s"] = time.monotonic() - killed
        for proc in procs.values():
            proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            proc.wait(60)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--modes", default="embedded,separate,static")
    args = parser.parse_args()
    results: dict[str, list[dict[str, dict[str, float]]]] = {
        mode: [] for mode in args.modes.split(",")
    }
    for number in range(args.rounds):
        for mode in results:
            workdir = Path(tempfile.mkdtemp(prefix=f"gatekeeper-restart-{mode}-"))
            result = _round(mode, workdir)
            results[mode].append(result)
            print(f"round {number + 1} {mode}: {json.dumps(result)}", flush=True)
    print(f"\nmedians of {args.rounds} rounds (target: at most {TARGET_S:.0f} s)")
    print(f"{'mode':<10}{'service':<9}{'first start':>13}{'restart':>10}{'kill->output':>14}")
    for mode, rounds in results.items():
        for name in SERVICES:
            cells = [
                statistics.median(r[name][k] for r in rounds)
                for k in ("first_start_s", "restart_to_ready_s", "kill_to_first_output_s")
            ]
            print(f"{mode:<10}{name:<9}" + "".join(f"{c:>12.1f} s" for c in cells))


if __name__ == "__main__":
    main()
