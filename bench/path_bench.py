"""The whole path under load: an internal notice's POST to its external release's
receipt, beside a chain of bare faust hops as long.

    python -m bench.path_bench [--rounds 3] [--rates 10,100,500] [--seconds 5]
                               [--profiles separate,embedded] [--fetch-wait MS]

Each round and profile runs on a fresh embedded broker. The pipeline: ingest,
gate and publish as processes (``gatekeeper serve``): ``separate`` as the chart
starts them (no embedded flag, a stable instance id each, the default group
timings, faust's fetch wait unless FETCH_WAIT ms are given for it and its bare
chain), ``embedded`` as ``gatekeeper up`` starts them. Lerum's ``intranet`` is
a webhook to a receiver process, and its external channels are ``web`` (the
Kafka topic ``external.web``) and ``site`` (a webhook to a second receiver
process); each receiver verifies signatures and answers 200 at once.

At each RATE, RATE x SECONDS items (at least 100): their external versions are
POSTed first and held; then their internal notices are POSTed at RATE a second
(open loop: each at its own moment, whatever the answers before it). An item's
latency is from sending its internal notice's POST to its external release
reaching the ``site`` receiver (and, second figure, its record's timestamp on
``external.web``). The path: the door's write to ``cms.events``, ingest's agent
to ``cms.accepted``, the gate to ``gate.releases``, publish to the intranet and
``publish.receipts``, the gate's release to ``gate.releases``, publish to the
channels: five faust hops and two webhook deliveries.

The baseline in the same round: a bare door (``bench.baselines``) and five bare
faust passthrough hops in three processes, as the pipeline's hops are spread
(door and hop 1; hops 2 and 4; hops 3 and 5), loaded the same way; its latency
is from the POST to the last hop's record timestamp.

Every round is printed, in the first the path's trace at each rate (each hop's
record timestamp for one item, the median item and the slowest), and the CPU
each process spent per item; then the targets: p99 at most 1.5x the bare
chain's at every rate, and at most 100 ms at 100 items/s.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import yaml

from bench.door_bench import signed
from bench.gate_bench import cpu_by_name, percentile, print_targets
from bench.receiver import Receiver
from bench.up_bench import _ready
from services.runtime import topic_admin, topics
from services.runtime.broker import EmbeddedBroker, free_port
from services.runtime.config import DEFAULT_CONFIG_PATH, load_deployment
from tests.conftest import content_event, internal_notice, with_outbound_secrets
from tests.harness import (
    TopicReader,
    read_records,
    service_env,
    start_process,
    stop_process,
    wait_until,
)

OUTBOUND = {
    "GATEKEEPER_OUTBOUND_LERUM": "whsec_YmVuY2gtb3V0Ym91bmQtbGVydW0tc2VjcmV0LTEyMw==",
    "GATEKEEPER_OUTBOUND_ALE": "whsec_YmVuY2gtb3V0Ym91bmQtYWxlLXNlY3JldC0xMjM0NQ==",
}
OPERATOR = {"Authorization": "Bearer bench-operator-token"}
CHAIN = [f"bench.c{n}" for n in range(6)]
#: the bare chain's processes, spread as the pipeline's hops are
CHAIN_PROCESSES = {
    "a": ("DOOR", [f"{CHAIN[0]}:{CHAIN[1]}"]),
    "b": ("-", [f"{CHAIN[1]}:{CHAIN[2]}", f"{CHAIN[3]}:{CHAIN[4]}"]),
    "c": ("-", [f"{CHAIN[2]}:{CHAIN[3]}", f"{CHAIN[4]}:{CHAIN[5]}"]),
}
P99_RATIO = 1.5
P99_AT_100_MS = 100.0
MIN_ITEMS = 100
#: items sent through first, unmeasured, at WARM_UP a second: every partition of
#: every topic written once (a process's first write to one waits for metadata)
WARM_UP = 20


# -- load ---------------------------------------------------------------------------


async def fire(
    url: str, requests: list[tuple[bytes, dict[str, str]]], rate: float | None
) -> list[float]:
    """POST each request, at *rate* a second (open loop) or as fast as 20 connections
    go; the moment each was sent (epoch seconds). Every answer must be 202."""
    sent = [0.0] * len(requests)
    refused: list[int] = []
    gate = asyncio.Semaphore(20 if rate is None else len(requests))
    begin = time.time() + 0.1
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100)) as session:

        async def one(n: int, body: bytes, headers: dict[str, str]) -> None:
            if rate is not None:
                await asyncio.sleep(max(0.0, begin + n / rate - time.time()))
            async with gate:
                sent[n] = time.time()
                async with session.post(url, data=body, headers=headers) as answer:
                    await answer.read()
                    if answer.status != 202:
                        refused.append(answer.status)

        await asyncio.gather(*(one(n, b, h) for n, (b, h) in enumerate(requests)))
    if refused:
        raise SystemExit(f"{url}: {len(refused)} answers were not 202: {refused[:5]}")
    return sent


def _held(gate: str, count: int) -> bool:
    """Whether the gate holds at least *count* items."""
    try:
        answer = httpx.get(f"{gate}/v1/held", params={"limit": "1"}, headers=OPERATOR, timeout=5)
    except httpx.HTTPError:
        return False
    return answer.status_code == 200 and int(answer.json()["count"]) >= count


def _stamps(bootstrap: str, topic: str, keep: Callable[[Any], bool] = bool) -> dict[str, float]:
    """Each key's first record time on *topic* (epoch seconds), keys without the tenant."""
    first: dict[str, float] = {}
    for record in TopicReader(bootstrap).records(topic, timeout_ms=2000):
        if record.key and keep(record):
            first.setdefault(record.key.decode().split(":", 1)[1], record.timestamp / 1000)
    return first


def _keyed(keys: set[bytes]) -> Callable[[Any], bool]:
    """Whether a record's key is one of *keys*."""
    return lambda record: record.key in keys


def latencies(posted: dict[str, float], arrived: dict[str, float]) -> dict[str, float]:
    """p50, p99 and max (ms) of each posted item's arrival; every item must arrive."""
    missing = [item for item in posted if item not in arrived]
    if missing:
        raise SystemExit(f"{len(missing)} items never arrived, e.g. {missing[:3]}")
    values = sorted((arrived[item] - at) * 1000 for item, at in posted.items())
    return {
        "p50": percentile(values, 0.5),
        "p99": percentile(values, 0.99),
        "max": values[-1],
    }


# -- the pipeline ---------------------------------------------------------------------


def _config(workdir: Path, intranet: str, site: str) -> Path:
    raw = with_outbound_secrets(yaml.safe_load(DEFAULT_CONFIG_PATH.read_text()))
    channels = raw["tenants"]["lerum"]["channels"]
    for channel in channels:
        if channel["name"] == "intranet":
            channel["transport"] = {"kind": "webhook", "url": intranet}
    channels.append(
        {"name": "site", "audience": "external", "transport": {"kind": "webhook", "url": site}}
    )
    path = workdir / "gatekeeper.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True))
    return path


#: GATEKEEPER_KAFKA_FETCH_MAX_WAIT_MS for the separate profile's pipeline and chain
#: alike (unset: faust's own, as the chart leaves it).
FETCH_WAIT: dict[str, str] = {}


def _env(broker: EmbeddedBroker, workdir: Path, profile: str, **extra: str) -> dict[str, str]:
    env = service_env(broker, workdir, 4, **OUTBOUND, **extra)
    if profile == "separate":  # as the chart starts them
        del env["GATEKEEPER_EMBEDDED_BROKER"]
        env |= FETCH_WAIT
    return env


def run_pipeline(
    number: int, profile: str, rates: list[float], seconds: float, trace: bool
) -> dict[float, dict[str, dict[str, float]]]:
    workdir = Path(tempfile.mkdtemp(prefix=f"gatekeeper-path-{profile}-"))
    secret = OUTBOUND["GATEKEEPER_OUTBOUND_LERUM"]
    intranet, site = Receiver(free_port(), secret), Receiver(free_port(), secret)
    procs = []
    try:
        with EmbeddedBroker(log_path=workdir / "broker.log") as broker:
            config = _config(workdir, intranet.url, site.url)
            ports = {name: free_port() for name in ("ingest", "gate", "publish")}
            base = _env(broker, workdir, profile, GATEKEEPER_CONFIG=str(config))
            deployment = load_deployment(config, base)
            topic_admin.ensure_topics(broker.bootstrap, topics.topics_for(deployment), 4, 1)
            for name, port in ports.items():
                env = base | {f"GATEKEEPER_{name.upper()}_PORT": str(port)}
                if profile == "separate":
                    env["GATEKEEPER_INSTANCE_ID"] = f"{workdir.name}-{name}"
                argv = [sys.executable, "-m", "services.cli", "serve", name]
                procs.append(start_process(argv, env, workdir / f"{name}.log"))
            ingest = f"http://127.0.0.1:{ports['ingest']}/v1/tenants/lerum/events"
            gate = f"http://127.0.0.1:{ports['gate']}"
            for port in ports.values():
                url = f"http://127.0.0.1:{port}/readyz"
                wait_until(functools.partial(_ready, url), 120, f"{url} ready")
            pids: dict[str, int | None] = {
                name: proc.pid for name, proc in zip(ports, procs, strict=True)
            }
            pids |= {"broker": broker.pid, "receivers": intranet.pid, "receivers2": site.pid}
            posted: dict[float, dict[str, float]] = {}
            released = 0
            for rate in [0.0, *rates]:  # 0: the warm-up, unmeasured
                count = WARM_UP if rate == 0.0 else max(MIN_ITEMS, int(rate * seconds))
                tag = f"path-{profile}-{number}-{rate:g}"
                items = [f"{tag}-{n}" for n in range(count)]
                external = [content_event(item_id=i, channels=["web", "site"]) for i in items]
                asyncio.run(fire(ingest, signed(external, f"{tag}-x"), None))
                wait_until(functools.partial(_held, gate, count), 120, f"{count} held")
                notices = signed([internal_notice(item_id=i) for i in items], f"{tag}-i")
                cpu_before, wall_before = cpu_by_name(pids), time.monotonic()
                sent = asyncio.run(fire(ingest, notices, rate or WARM_UP))
                released += count
                wait_until(
                    functools.partial(site.has, released), 180, f"{released} at the receiver"
                )
                if rate != 0.0:
                    _print_cpu(rate, count, cpu_by_name(pids), cpu_before, wall_before)
                if rate != 0.0:
                    posted[rate] = dict(zip(items, sent, strict=True))
            web = _stamps(broker.bootstrap, "external.web")
            if trace:
                for rate in rates:
                    print(f"{profile}, {rate:g} items/s:", end=" ")
                    print_trace(broker.bootstrap, posted[rate])
    finally:
        for proc in procs:
            stop_process(proc)
        arrived_site = site.stop()
        intranet.stop()
    return {
        rate: {"site": latencies(p, arrived_site), "web": latencies(p, web)}
        for rate, p in posted.items()
    }


def _print_cpu(
    rate: float,
    count: int,
    after: dict[str, float],
    before: dict[str, float],
    since: float,
    what: str = "pipeline",
) -> None:
    used = {name: seconds - before[name] for name, seconds in after.items() if name in before}
    wall = time.monotonic() - since
    each = "  ".join(f"{name} {seconds / count * 1000:.2f}" for name, seconds in used.items())
    print(
        f"  {what} {rate:g}/s: CPU ms per item  {each}   cores busy"
        f" {sum(used.values()) / wall:.2f} of {os.cpu_count()}",
        flush=True,
    )


def print_trace(bootstrap: str, posted: dict[str, float]) -> None:
    """Where the time goes: each hop's record timestamp after the internal notice's POST
    was sent, for one item, the median of every item at that rate, and the slowest."""
    item = sorted(posted)[len(posted) // 2]

    def audience(kind: str) -> Callable[[Any], bool]:
        """Records of *kind*'s audience, when it is named."""
        marker = f'"{kind}"'.encode() if kind else b""
        return lambda r: marker in r.value

    hops = [
        ("the door's write to cms.events", "cms.events", "internal"),
        ("ingest's agent to cms.accepted", "cms.accepted", "internal"),
        ("the gate releases the notice", "gate.releases", "internal"),
        ("publish's receipt", "publish.receipts", "internal"),
        ("the gate releases the external", "gate.releases", "external"),
        ("publish writes external.web", "external.web", ""),
    ]
    found = [_stamps(bootstrap, topic, audience(kind)) for _, topic, kind in hops]
    slowest = max(posted, key=lambda i: found[-1].get(i, 0.0) - posted[i])
    print(f"the path at {len(posted)} items, ms after the internal notice's POST was sent:")
    print(f"  {'one item':>9s}  {'median':>7s}  {'slowest':>7s}")
    for (what, _, _), stamps in zip(hops, found, strict=True):
        each = [(stamps[i] - at) * 1000 for i, at in posted.items() if i in stamps]
        one, last = ((stamps.get(i, posted[i]) - posted[i]) * 1000 for i in (item, slowest))
        print(f"  {one:9.1f}  {statistics.median(each):7.1f}  {last:7.1f}  {what}")


# -- the bare chain -------------------------------------------------------------------


def run_chain(
    number: int, profile: str, rates: list[float], seconds: float
) -> dict[float, dict[str, float]]:
    workdir = Path(tempfile.mkdtemp(prefix=f"gatekeeper-chain-{profile}-"))
    procs = []
    figures = {}
    with EmbeddedBroker(log_path=workdir / "broker.log") as broker:
        env = _env(broker, workdir, profile)
        topic_admin.ensure_topics(broker.bootstrap, CHAIN, 4, 1)
        port = free_port()
        for name, (door, pairs) in CHAIN_PROCESSES.items():
            door = f"{port}:{CHAIN[0]}" if door == "DOOR" else door
            argv = [sys.executable, "-m", "bench.baselines", "chain", name, door, *pairs]
            procs.append(start_process(argv, env, workdir / f"chain-{name}.log"))
        try:
            url = f"http://127.0.0.1:{port}/v1/tenants/lerum/events"
            wait_until(functools.partial(_ready, f"http://127.0.0.1:{port}/readyz"), 60, "door")
            for rate in [0.0, *rates]:
                count = WARM_UP if rate == 0.0 else max(MIN_ITEMS, int(rate * seconds))
                tag = f"chain-{profile}-{number}-{rate:g}"
                items = [f"{tag}-{n}" for n in range(count)]
                notices = signed([internal_notice(item_id=i) for i in items], tag)
                pids: dict[str, int | None] = {
                    f"chain {n}": p.pid for n, p in zip("abc", procs, strict=True)
                }
                pids["broker"] = broker.pid
                cpu_before, wall_before = cpu_by_name(pids), time.monotonic()
                sent = asyncio.run(fire(url, notices, rate or WARM_UP))
                keys = {f"lerum:{i}".encode() for i in items}
                through = read_records(broker.bootstrap, CHAIN[-1], count, 180, _keyed(keys))
                arrived = {r.key.decode().split(":", 1)[1]: r.timestamp / 1000 for r in through}
                if rate != 0.0:
                    cpu_after = cpu_by_name(pids)
                    del cpu_after["generator"]  # it reads the last topic too: not counted
                    _print_cpu(rate, count, cpu_after, cpu_before, wall_before, "bare chain")
                    figures[rate] = latencies(dict(zip(items, sent, strict=True)), arrived)
        finally:
            for proc in procs:
                stop_process(proc)
    return figures


# -- the bench --------------------------------------------------------------------------


def _row(number: int, profile: str, rate: float, what: str, f: dict[str, float]) -> None:
    print(
        f"round {number} {profile:8s} {rate:4g}/s  {what:28s} p50 {f['p50']:6.1f} ms"
        f"   p99 {f['p99']:6.1f} ms   max {f['max']:6.1f} ms",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rates", default="10,100,500")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--profiles", default="separate,embedded")
    parser.add_argument(
        "--fetch-wait", type=int, help="the separate profile's fetch wait, ms (faust's: 1500)"
    )
    args = parser.parse_args()
    if args.fetch_wait:
        FETCH_WAIT["GATEKEEPER_KAFKA_FETCH_MAX_WAIT_MS"] = str(args.fetch_wait)
    rates = [float(r) for r in args.rates.split(",")]
    rows = measure(args.rounds, rates, args.seconds, args.profiles.split(","))
    print()
    print_targets(rows)


def measure(
    rounds: int, rates: list[float], seconds: float = 5.0, profiles: list[str] | None = None
) -> list[Any]:
    """Every round printed as it goes; each target beside the median of the rounds."""
    profiles = profiles or ["separate", "embedded"]
    got: list[dict[str, Any]] = []
    for number in range(1, rounds + 1):
        this: dict[str, Any] = {}
        for profile in profiles:
            pipeline = run_pipeline(number, profile, rates, seconds, trace=number == 1)
            chain = run_chain(number, profile, rates, seconds)
            for rate in rates:
                _row(number, profile, rate, "pipeline, webhook receipt", pipeline[rate]["site"])
                _row(number, profile, rate, "pipeline, external.web", pipeline[rate]["web"])
                _row(number, profile, rate, "bare chain", chain[rate])
            this[profile] = {"pipeline": pipeline, "chain": chain}
        got.append(this)
    return targets(got, profiles, rates)


def targets(rounds: list[dict[str, Any]], profiles: list[str], rates: list[float]) -> list[Any]:
    rows = []
    for profile in profiles:
        for rate in rates:
            ours = statistics.median(r[profile]["pipeline"][rate]["site"]["p99"] for r in rounds)
            bare = statistics.median(r[profile]["chain"][rate]["p99"] for r in rounds)
            rows.append(
                (f"path p99 {profile} {rate:g}/s vs bare chain", f"{ours / bare:.2f}x",
                 f"<= {P99_RATIO}x", ours <= P99_RATIO * bare)
            )  # fmt: skip
            if rate == 100:
                rows.append(
                    (f"path p99 {profile} 100/s", f"{ours:.0f} ms",
                     f"<= {P99_AT_100_MS:.0f} ms", ours <= P99_AT_100_MS)
                )  # fmt: skip
    return rows


if __name__ == "__main__":
    main()
