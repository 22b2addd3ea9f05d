"""Publish's webhook deliveries per second, beside a bare aiohttp client loop.

    python -m bench.publish_bench [--rounds 3] [--orders 2000] [--slow 400]

Each round runs on a fresh embedded broker with publish as a process
(``gatekeeper serve publish``) and two receiver processes (``bench.receiver``):
``fast`` answers at once, ``slow`` after 200 ms; both verify signatures. Lerum's
channels ``fast`` and ``slow`` are webhooks to them. Three phases, each written
to ``gate.releases`` as a backlog:

1. ORDERS orders for ``fast`` alone;
2. SLOW orders for ``slow`` alone;
3. both at once, interleaved: ORDERS for ``fast`` and SLOW for ``slow``.

Deliveries per second are a phase's deliveries to a receiver divided by the span
from the first arrival to the last answer; in phase 3, every delivery to both.
The bare loop, in this process: aiohttp with publish's connection limit (100 per
channel), the same signed bodies POSTed as fast as it goes, to the same receivers.
Targets: publish at least 0.8x the bare loop to each receiver, and phase 3 at
least 0.8x phase 1: one slow receiver does not slow the deliveries to another
channel. Publish's CPU per delivery in phase 1
and the bare loop's per request are printed beside.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from bench.door_bench import signed
from bench.gate_bench import cpu_seconds, print_targets
from bench.path_bench import OUTBOUND, _env
from bench.receiver import Receiver
from bench.up_bench import _ready
from schemas import ReleaseOrder
from services.runtime import topic_admin, topics
from services.runtime.broker import EmbeddedBroker, free_port
from services.runtime.config import DEFAULT_CONFIG_PATH, load_deployment
from tests.conftest import LERUM_SENDER, with_outbound_secrets
from tests.harness import start_process, stop_process, wait_until, write_batched

#: aiohttp's default connection limit, which each webhook channel's session has
CONNECTIONS = 100
RATIO = 0.8
SLOW_S = 0.2


def _order(item: str, channel: str) -> tuple[bytes, bytes]:
    order = ReleaseOrder(
        decision_id=f"d-{item}",
        tenant="lerum",
        item_id=item,
        version=1,
        action="publish",
        audience="external",
        channels=[channel],
        title="Ny förskola i Gråbo",
        body="Lerums kommun öppnar en ny förskola i Gråbo i augusti.",
        recipients="Invånare i Lerum",
        sender=LERUM_SENDER,
        released_at=datetime.now(UTC),
    )
    return f"lerum:{item}".encode(), order.model_dump_json().encode()


def rate(arrived: dict[str, float], items: list[str], answer_s: float = 0.0) -> float:
    """Deliveries per second of *items*: their count over the span from the first
    arrival to the last answer (the receiver answers *answer_s* after arrival)."""
    missing = [i for i in items if i not in arrived]
    if missing:
        raise SystemExit(f"{len(missing)} deliveries never arrived, e.g. {missing[:3]}")
    times = sorted(arrived[i] for i in items)
    return len(times) / (times[-1] - times[0] + answer_s)


def _interleaved(a: list[tuple[str, str]], b: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """*a* and *b* mixed evenly, each in its order."""
    placed = [(n / len(a), o) for n, o in enumerate(a)] + [(n / len(b), o) for n, o in enumerate(b)]
    return [o for _, o in sorted(placed, key=lambda p: p[0])]


def _config(workdir: Path, fast: str, slow: str) -> Path:
    raw = with_outbound_secrets(yaml.safe_load(DEFAULT_CONFIG_PATH.read_text()))
    for name, url in (("fast", fast), ("slow", slow)):
        raw["tenants"]["lerum"]["channels"].append(
            {"name": name, "audience": "external", "transport": {"kind": "webhook", "url": url}}
        )
    path = workdir / "gatekeeper.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True))
    return path


def run_publish(number: int, orders: int, slow: int) -> dict[str, float]:
    workdir = Path(tempfile.mkdtemp(prefix="gatekeeper-publish-"))
    secret = OUTBOUND["GATEKEEPER_OUTBOUND_LERUM"]
    fast_rx, slow_rx = Receiver(free_port(), secret), Receiver(free_port(), secret, SLOW_S)
    phases = {
        "fast": [(f"p{number}-fast-{n}", "fast") for n in range(orders)],
        "slow": [(f"p{number}-slow-{n}", "slow") for n in range(slow)],
        "both": _interleaved(
            [(f"p{number}-both-fast-{n}", "fast") for n in range(orders)],
            [(f"p{number}-both-slow-{n}", "slow") for n in range(slow)],
        ),
    }
    proc = None
    cpu_ms = 0.0
    try:
        with EmbeddedBroker(log_path=workdir / "broker.log") as broker:
            config = _config(workdir, fast_rx.url, slow_rx.url)
            port = free_port()
            env = _env(broker, workdir, "embedded", GATEKEEPER_CONFIG=str(config))
            env["GATEKEEPER_PUBLISH_PORT"] = str(port)
            deployment = load_deployment(config, env)
            topic_admin.ensure_topics(broker.bootstrap, topics.topics_for(deployment), 4, 1)
            argv = [sys.executable, "-m", "services.cli", "serve", "publish"]
            proc = start_process(argv, env, workdir / "publish.log")
            ready = f"http://127.0.0.1:{port}/readyz"
            wait_until(functools.partial(_ready, ready), 120, "publish ready")
            counts = {"fast": 0, "slow": 0}
            for phase in ("fast", "slow", "both"):
                if phase == "fast":
                    before = cpu_seconds(proc.pid)
                write_batched(
                    broker.bootstrap, topics.RELEASES, [_order(*o) for o in phases[phase]]
                )
                for _, channel in phases[phase]:
                    counts[channel] += 1
                for channel, receiver in (("fast", fast_rx), ("slow", slow_rx)):
                    wait_until(
                        functools.partial(receiver.has, counts[channel]), 300, f"{phase} {channel}"
                    )
                if phase == "fast":
                    cpu_ms = (cpu_seconds(proc.pid) - before) / orders * 1000
    finally:
        if proc is not None:
            stop_process(proc)
        fast_at, slow_at = fast_rx.stop(), slow_rx.stop()
    both = phases["both"]
    return {
        "fast": rate(fast_at, [i for i, _ in phases["fast"]]),
        "slow": rate(slow_at, [i for i, _ in phases["slow"]], SLOW_S),
        # every delivery of the mixed phase, both receivers: not held up by the slow one
        "both": rate(fast_at | slow_at, [i for i, _ in both], SLOW_S),
        "cpu_ms": cpu_ms,
    }


async def _bare(url: str, count: int, tag: str) -> None:
    """POST *count* signed notices to *url* over CONNECTIONS connections."""
    notices = [{"item_id": f"{tag}-{n}", "channel": "bare"} for n in range(count)]
    bodies = signed(notices, tag, OUTBOUND["GATEKEEPER_OUTBOUND_LERUM"])
    connector = aiohttp.TCPConnector(limit=CONNECTIONS)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(body: bytes, headers: dict[str, str]) -> None:
            async with session.post(url, data=body, headers=headers) as answer:
                await answer.read()
                if answer.status != 200:
                    raise SystemExit(f"the receiver answered {answer.status}")

        await asyncio.gather(*(one(b, h) for b, h in bodies))


def run_bare(number: int, orders: int, slow: int) -> dict[str, float]:
    secret = OUTBOUND["GATEKEEPER_OUTBOUND_LERUM"]
    fast_rx, slow_rx = Receiver(free_port(), secret), Receiver(free_port(), secret, SLOW_S)
    try:
        before = time.process_time()
        asyncio.run(_bare(fast_rx.url, orders, f"b{number}-fast"))
        cpu_ms = (time.process_time() - before) / orders * 1000
        asyncio.run(_bare(slow_rx.url, slow, f"b{number}-slow"))
    finally:
        fast_at, slow_at = fast_rx.stop(), slow_rx.stop()
    return {
        "fast": rate(fast_at, [f"b{number}-fast-{n}" for n in range(orders)]),
        "slow": rate(slow_at, [f"b{number}-slow-{n}" for n in range(slow)], SLOW_S),
        "cpu_ms": cpu_ms,
    }


def targets(rounds: list[dict[str, Any]]) -> list[Any]:
    def median(side: str, figure: str) -> float:
        return float(statistics.median(r[side][figure] for r in rounds))

    rows = []
    for channel, receiver in (("fast", "at once"), ("slow", "200 ms")):
        ratio = median("publish", channel) / median("bare", channel)
        rows.append(
            (f"webhooks/s, receiver answering {receiver}, vs bare", f"{ratio:.2f}x",
             f">= {RATIO}x", ratio >= RATIO)
        )  # fmt: skip
    alone = median("publish", "fast")
    beside = median("publish", "both") / alone
    rows.append(
        ("deliveries/s, a slow receiver among fast vs fast alone", f"{beside:.2f}x",
         f">= {RATIO}x", beside >= RATIO)
    )  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--orders", type=int, default=2000)
    parser.add_argument("--slow", type=int, default=400)
    args = parser.parse_args()
    rows = measure(args.rounds, args.orders, args.slow)
    print()
    print_targets(rows)


def measure(rounds: int, orders: int = 2000, slow: int = 400) -> list[Any]:
    """Every round printed as it goes; each target beside the median of the rounds."""
    got = []
    for number in range(1, rounds + 1):
        ours = run_publish(number, orders, slow)
        bare = run_bare(number, orders, slow)
        print(
            f"round {number}: publish  fast {ours['fast']:6.0f}/s   slow {ours['slow']:5.0f}/s"
            f"   fast and slow mixed {ours['both']:6.0f}/s"
            f"   CPU {ours['cpu_ms']:.2f} ms per delivery\n"
            f"round {number}: bare     fast {bare['fast']:6.0f}/s   slow {bare['slow']:5.0f}/s"
            f"   CPU {bare['cpu_ms']:.2f} ms per request (the client loop)",
            flush=True,
        )
        got.append({"publish": ours, "bare": bare})
    return targets(got)


if __name__ == "__main__":
    main()
