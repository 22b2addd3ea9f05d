"""The CMS's door: requests/s and latency at 1, 10 and 50 clients, beside a bare door.

    python -m bench.door_bench [--rounds 3] [--seconds 5] [--clients 1,10,50]

Each round runs on a fresh embedded broker, one after another: ingest (``gatekeeper
serve ingest``) and the bare door (``bench.baselines door``: aiohttp, the
``standardwebhooks`` verification, ``json.loads`` and aiokafka's ``send_and_wait``).
For each number of clients, each door is loaded by worker processes of
CLIENTS_PER_WORKER clients each: every client keeps one connection and sends
signed internal notices one after another, each with a ``webhook-id`` of its own,
signed before the clock starts (the signing costs the load generator nothing
during the measurement). Latency is from sending a request to its whole answer;
throughput is the answers in SECONDS divided by SECONDS. Every answer must be
202. A lone request is measured apart: one client sending 20 a second, so the
door is idle when each comes. Every round is printed, then the medians, the
ratios and the targets: at least 0.8x the bare door's throughput and a p99 at
most 2x at every number of clients, and a lone request's p50 under 2 ms.

The load generator, the door and the broker share the machine's cores; the
bare door is measured under the same load generator, so the ratios compare like
with like. Each door's CPU per request is printed beside (ingest's includes its
agent's work on each accepted event: validation and the writes to
``cms.accepted`` and ``gate.decisions``).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from standardwebhooks import Webhook

from bench.gate_bench import cpu_seconds, percentile, print_targets
from bench.up_bench import _ready
from services.runtime import topic_admin, topics
from services.runtime.broker import EmbeddedBroker, free_port
from services.runtime.config import DEFAULT_CONFIG_PATH, load_deployment
from tests.conftest import internal_notice
from tests.harness import BENCH_SECRETS, service_env, start_process, stop_process, wait_until

CLIENTS_PER_WORKER = 5
#: the bare door writes here, so ingest's own consumer never reads its records
BARE_TOPIC = "bench.door"
THROUGHPUT_RATIO = 0.8
P99_RATIO = 2.0
LONE_P50_MS = 2.0
#: a lone request: one client, this many requests a second, idle between them
LONE_RATE = 20
#: requests signed per client and second of measurement: more than a door answers
SIGNED_PER_SECOND = 2500


# -- the load generator (a worker process) ------------------------------------------


def signed(
    events: list[dict[str, Any]], tag: str, secret: str = BENCH_SECRETS["GATEKEEPER_SECRET_LERUM"]
) -> list[tuple[bytes, dict[str, str]]]:
    """Each event's body and headers, signed now with *secret* (Lerum's bench secret),
    each with a ``webhook-id`` of its own."""
    webhook = Webhook(secret)
    now = datetime.now(UTC)
    out = []
    for n, event in enumerate(events):
        body = json.dumps(event).encode()
        webhook_id = f"msg_{tag}_{n}_{uuid.uuid4().hex[:8]}"
        headers = {
            "content-type": "application/json",
            "webhook-id": webhook_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": webhook.sign(webhook_id, now, body.decode()),
        }
        out.append((body, headers))
    return out


def _notices(count: int, tag: str) -> list[tuple[bytes, dict[str, str]]]:
    return signed([internal_notice(item_id=f"door-{tag}-{n}") for n in range(count)], tag)


async def _client(
    url: str, requests: list[tuple[bytes, dict[str, str]]], started: asyncio.Future[float],
    seconds: float, pause: float,
) -> dict[str, Any]:  # fmt: skip
    latencies: list[float] = []
    refused = 0
    connector = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(connector=connector) as session:
        warm, measured = requests[:10], requests[10:]
        for body, headers in warm:  # the connection and the door's first requests
            async with session.post(url, data=body, headers=headers) as answer:
                await answer.read()
        start = await started
        await asyncio.sleep(max(0.0, start - time.time()))
        end = start + seconds
        for body, headers in measured:
            if time.time() >= end:
                break
            sent = time.perf_counter()
            async with session.post(url, data=body, headers=headers) as answer:
                await answer.read()
                refused += answer.status != 202
            latencies.append((time.perf_counter() - sent) * 1000)
            if pause:
                await asyncio.sleep(pause)
        else:
            return {"latencies": latencies, "refused": refused, "exhausted": True}
    return {"latencies": latencies, "refused": refused, "exhausted": False}


async def _worker(url: str, clients: int, seconds: float, tag: str, pause: float) -> None:
    """Sign, say so on stdout, read the start time (epoch seconds) on stdin, load."""
    pools = [
        _notices(10 + math.ceil(SIGNED_PER_SECOND * seconds / clients), f"{tag}-{c}")
        for c in range(clients)
    ]
    started: asyncio.Future[float] = asyncio.get_running_loop().create_future()
    runs = asyncio.gather(*(_client(url, pool, started, seconds, pause) for pool in pools))
    print("signed", flush=True)
    started.set_result(float(await asyncio.to_thread(sys.stdin.readline)))
    print(json.dumps(await runs), flush=True)


# -- the bench --------------------------------------------------------------------


def load(url: str, clients: int, seconds: float, tag: str, pause: float = 0.0) -> dict[str, float]:
    """Requests/s, p50 and p99 (ms) of *clients* sending to *url* for *seconds*, each
    waiting *pause* seconds after each answer."""
    workers = math.ceil(clients / CLIENTS_PER_WORKER)
    procs = []
    for w in range(workers):
        own = min(CLIENTS_PER_WORKER, clients - w * CLIENTS_PER_WORKER)
        argv = [sys.executable, "-m", "bench.door_bench", "--worker", url, str(own)]
        argv += [str(seconds), f"{tag}-{w}", str(pause)]
        procs.append(
            subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        )
    for proc in procs:  # every worker has signed its requests
        if proc.stdout is None or proc.stdout.readline().strip() != "signed":
            raise SystemExit("a load worker did not start")
    start = time.time() + 0.3
    for proc in procs:
        if proc.stdin is not None:
            proc.stdin.write(f"{start}\n")
            proc.stdin.flush()
    latencies: list[float] = []
    refused = 0
    for proc in procs:
        out, _ = proc.communicate(timeout=seconds + 120)
        for result in json.loads(out.strip().splitlines()[-1]):
            latencies += result["latencies"]
            refused += result["refused"]
            if result["exhausted"]:
                raise SystemExit("a client ran out of signed requests: raise SIGNED_PER_SECOND")
    if refused:
        raise SystemExit(f"{url}: {refused} answers were not 202")
    latencies.sort()
    return {
        "rps": len(latencies) / seconds,
        "p50": percentile(latencies, 0.5),
        "p99": percentile(latencies, 0.99),
    }


def run_round(number: int, clients: list[int], seconds: float) -> dict[str, dict[int, Any]]:
    workdir = Path(tempfile.mkdtemp(prefix="gatekeeper-door-"))
    with EmbeddedBroker(log_path=workdir / "broker.log") as broker:
        ingest_port, bare_port = free_port(), free_port()
        env = service_env(broker, workdir, GATEKEEPER_INGEST_PORT=str(ingest_port))
        deployment = load_deployment(DEFAULT_CONFIG_PATH, env)
        names = [*topics.topics_for(deployment), BARE_TOPIC]
        topic_admin.ensure_topics(broker.bootstrap, names, 4, 1)
        serve = [sys.executable, "-m", "services.cli", "serve", "ingest"]
        bare = [sys.executable, "-m", "bench.baselines", "door", str(bare_port), BARE_TOPIC]
        doors = {
            "ingest": (start_process(serve, env, workdir / "ingest.log"), ingest_port),
            "bare": (start_process(bare, env, workdir / "bare.log"), bare_port),
        }
        figures: dict[str, dict[int, Any]] = {"ingest": {}, "bare": {}}
        try:
            for name, (_, port) in doors.items():
                ready = f"http://127.0.0.1:{port}/readyz"
                wait_until(functools.partial(_ready, ready), 60, f"{name} to be ready")
            # 0: a lone request, one client sending LONE_RATE a second
            for count in [0, *clients]:
                for name, (_, port) in doors.items():
                    url = f"http://127.0.0.1:{port}/v1/tenants/lerum/events"
                    tag, pause = f"r{number}-{name}-{count}", 1 / LONE_RATE if not count else 0
                    before = cpu_seconds(doors[name][0].pid)
                    got = load(url, max(count, 1), seconds, tag, pause)
                    spent = cpu_seconds(doors[name][0].pid) - before
                    got["cpu_ms"] = spent / (got["rps"] * seconds) * 1000
                    figures[name][count] = got
                    print(
                        f"round {number}: {name:6s} "
                        + (f"{count:2d} clients" if count else f"lone, {LONE_RATE}/s")
                        + f"  {got['rps']:6.0f}/s"
                        f"   p50 {got['p50']:6.1f} ms   p99 {got['p99']:6.1f} ms"
                        f"   CPU {got['cpu_ms']:.2f} ms a request",
                        flush=True,
                    )
        finally:
            for proc, _ in doors.values():
                stop_process(proc)
    return figures


def targets(rounds: list[dict[str, dict[int, Any]]], clients: list[int]) -> list[Any]:
    """Each target beside the median of the rounds."""
    rows = []
    for count in clients:

        def median(name: str, figure: str, c: int = count) -> float:
            return float(statistics.median(r[name][c][figure] for r in rounds))

        rps = median("ingest", "rps") / median("bare", "rps")
        p99 = median("ingest", "p99") / median("bare", "p99")
        rows.append(
            (f"door {count} clients: requests/s vs bare", f"{rps:.2f}x",
             f">= {THROUGHPUT_RATIO}x", rps >= THROUGHPUT_RATIO)
        )  # fmt: skip
        rows.append(
            (f"door {count} clients: p99 vs bare", f"{p99:.2f}x",
             f"<= {P99_RATIO:.0f}x", p99 <= P99_RATIO)
        )  # fmt: skip
    lone = statistics.median(r["ingest"][0]["p50"] for r in rounds)
    bare = statistics.median(r["bare"][0]["p50"] for r in rounds)
    rows.append(
        (f"door, a lone request: p50 (bare {bare:.1f} ms)", f"{lone:.1f} ms",
         f"< {LONE_P50_MS:.0f} ms", lone < LONE_P50_MS)
    )  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", default="1,10,50")
    parser.add_argument("--worker", nargs=5, metavar=("URL", "CLIENTS", "SECONDS", "TAG", "PAUSE"))
    args = parser.parse_args()
    if args.worker:
        url, count, seconds, tag, pause = args.worker
        asyncio.run(_worker(url, int(count), float(seconds), tag, float(pause)))
        return
    clients = [int(c) for c in args.clients.split(",")]
    rows = measure(args.rounds, clients, args.seconds)
    print()
    print_targets(rows)


def measure(rounds: int, clients: list[int], seconds: float = 5.0) -> list[Any]:
    """Every round printed as it goes; each target beside the median of the rounds."""
    return targets([run_round(n + 1, clients, seconds) for n in range(rounds)], clients)


if __name__ == "__main__":
    main()
