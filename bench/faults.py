"""Fault rounds: the promise holds whatever is killed, whenever.

    python -m bench.faults [--rounds 2] [--items 100] [--seed N]
                           [--mode embedded|separate] [--store memory|rocksdb]
                           [--kill ingest|gate|publish] [--kafka-outage SECONDS]

Each round runs the three services on a fresh broker of its own: started as
``gatekeeper up`` starts them (``--mode embedded``, the default) or as the
chart starts them (``--mode separate``: ``serve`` without the embedded flag,
a stable instance id each, the default group timeouts), the gate's tables in
memory or on RocksDB (``--store``). With two more
external channels to real webhook receivers, one slow and one failing at
first. It posts N items through ingest: for each an internal notice and an
external publication in random order among all items, some posted twice,
some with a newer version, some retracted, some with publish_at a few seconds
ahead. At a random moment it SIGKILLs a random service and starts it again
(the CMS keeps retrying what was refused meanwhile); ``--kill`` names the
service instead. ``--kafka-outage 60`` cuts every connection between the
services and the broker for 60 s instead of a kill (a proxy of the tests' own
stands between them, and the broker advertises it). Then, from the topics and
the receivers themselves, it checks:

- (``--gates 2``: two gate processes form the gate, and a killed gate is one of
  them) every gate process lists the same held items;
- no external publication went out before its item's internal notice was
  delivered, nor before its publish_at;
- no (item, version, channel) was delivered twice (one delivery id, one
  webhook-id the receiver accepted);
- every item the gate accepted is released, held with a reason, retracted or
  superseded.

It prints a table per round and exits 1 on any violation.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import signal
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import yaml

from services.runtime.broker import EmbeddedBroker, free_port
from services.runtime.config import DEFAULT_CONFIG_PATH
from tests.conftest import (
    LERUM_OUTBOUND,
    content_event,
    internal_notice,
    with_outbound_secrets,
)
from tests.e2e.cutting_proxy import CuttingProxy
from tests.e2e.receivers import WebhookReceiver
from tests.harness import PROFILES, Pipeline, Service, TopicReader, all_held, post_event

SERVICES = ("ingest", "gate", "publish")
EXTERNAL = ("web", "slow", "flaky")


@dataclass
class Posting:
    item: str
    event: dict[str, Any]
    webhook_id: str


@dataclass
class Round:
    number: int
    killed: str = ""
    killed_after: float = 0.0
    posted: int = 0
    retried_posts: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)


def _config(workdir: Path, slow: WebhookReceiver, flaky: WebhookReceiver) -> Path:
    raw = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    lerum = raw["tenants"]["lerum"]
    for name, receiver in (("slow", slow), ("flaky", flaky)):
        lerum["channels"].append(
            {
                "name": name,
                "audience": "external",
                "transport": {
                    "kind": "webhook",
                    "url": receiver.url,
                    "timeout_seconds": 2,
                    "retries": {"schedule": [0, 0.5, 1, 1, 2, 2], "jitter": 0.1},
                },
            }
        )
    lerum["policy"]["content_checks"] = []  # this is about faults, not texts
    path = workdir / "gatekeeper.yaml"
    path.write_text(yaml.safe_dump(with_outbound_secrets(raw), allow_unicode=True))
    return path


def _plan(rng: random.Random, items: int, prefix: str) -> list[Posting]:
    postings: list[Posting] = []
    now = datetime.now(UTC)
    for n in range(items):
        item = f"{prefix}-{n}"
        ahead = rng.random() < 0.2
        publish_at = (now + timedelta(seconds=rng.uniform(2, 6))) if ahead else now
        channels = sorted(rng.sample(EXTERNAL, rng.randint(1, 3)))
        external = content_event(
            item_id=item, channels=channels, publish_at=publish_at.isoformat(), title=f"Nyhet {n}"
        )
        notice = internal_notice(item_id=item, title=f"Nyhet {n}")
        postings += [
            Posting(item, external, f"msg_{item}_e1"),
            Posting(item, notice, f"msg_{item}_i1"),
        ]
        if rng.random() < 0.15:
            postings.append(Posting(item, dict(external), f"msg_{item}_e1"))  # a redelivery
        if rng.random() < 0.15:
            postings.append(Posting(item, {**external, "version": 2}, f"msg_{item}_e2"))
        if rng.random() < 0.1:
            retract = {**external, "action": "retract", "version": 3, "channels": []}
            postings.append(Posting(item, retract, f"msg_{item}_r3"))
    rng.shuffle(postings)
    return postings


def _post(ingest: str, posting: Posting, deadline: float) -> int:
    """Post as a CMS does: again after a refusal or no answer, until the deadline."""
    tries = 0
    while True:
        tries += 1
        try:
            answer = post_event(ingest, posting.event, webhook_id=posting.webhook_id)
            if answer.status_code in (200, 202):
                return tries
            if answer.status_code != 503:
                raise SystemExit(f"ingest refused {posting.webhook_id}: {answer.text}")
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"{posting.webhook_id} was not accepted in time")
        time.sleep(0.2)


def _second_gate(pipeline: Pipeline, config: str, store: str) -> Service:
    """Another gate process, with a volume and a name of its own, as a replica runs."""
    port = free_port()
    env = pipeline.env(
        GATEKEEPER_CONFIG=config,
        GATEKEEPER_LOG_LEVEL="warning",
        GATEKEEPER_GATE_STORE=store,
        GATEKEEPER_GATE_PORT=str(port),
        GATEKEEPER_INSTANCE_ID=f"{pipeline.workdir.name}-gate-b",
        GATEKEEPER_DATA_DIR=str(pipeline.workdir / "data-gate-b"),
    )
    service = Service("gate", port, env, pipeline.workdir / f"gate-b-{port}.log")
    pipeline.services["gate-b"] = service  # stopped with the rest
    return service


def _kill_and_restart(pipeline: Pipeline, name: str) -> None:
    service = pipeline.services[name]
    service.stop(signal.SIGKILL)
    service.start(ready_timeout=120)


def _settle(reader: TopicReader, postings: list[Posting], timeout: float = 240) -> None:
    """Until the outputs stop changing for a while (every retry and release done)."""
    watched = ("gate.decisions", "gate.releases", "publish.receipts", "publish.outcomes")
    last, still_since = None, time.monotonic()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = tuple(len(reader.records(t)) for t in watched)
        if now != last:
            last, still_since = now, time.monotonic()
        elif time.monotonic() - still_since > 8:
            return
        time.sleep(1)


def _json_by_key(reader: TopicReader, topic: str) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in reader.records(topic):
        out[(record.key or b"").decode()].append(
            {"value": json.loads(record.value), "headers": dict(record.headers or ())}
        )
    return out


def _lists_differ(held: dict[str, Any], others: list[str]) -> list[str]:
    """Every gate process lists every held item: the ways they do not."""
    found = []
    for other in others:
        theirs = {row["item_id"] for row in all_held(other)}
        if theirs != set(held):
            found.append(f"the gates' held lists differ: {len(held)} here, {len(theirs)} there")
    return found


def _internal_told(reader: TopicReader) -> dict[str, datetime]:
    """When each item's internal notice was first delivered."""
    internal_at: dict[str, datetime] = {}
    for key, rows in _json_by_key(reader, "publish.receipts").items():
        times = [
            datetime.fromisoformat(r["value"]["delivered_at"])
            for r in rows
            if r["value"]["audience"] == "internal" and r["value"]["action"] == "publish"
        ]
        if times:
            internal_at[key.partition(":")[2]] = min(times)
    return internal_at


Delivered = tuple[str, int, str]


def _delivered(
    reader: TopicReader, receivers: dict[str, WebhookReceiver]
) -> tuple[dict[Delivered, set[str]], list[tuple[str, int, str, datetime]]]:
    """Every publication's delivery ids, and every external one with its release time."""
    deliveries: dict[Delivered, set[str]] = defaultdict(set)
    external: list[tuple[str, int, str, datetime]] = []
    for channel in ("intranet.notices", "external.web"):
        for rows in _json_by_key(reader, channel).values():
            for row in rows:
                notice = row["value"]
                if notice["action"] != "publish":
                    continue
                ident = (notice["item_id"], notice["version"], notice["channel"])
                deliveries[ident].add(row["headers"]["gatekeeper-delivery-id"].decode())
                if channel != "intranet.notices":
                    released = datetime.fromisoformat(notice["released_at"])
                    external.append((notice["item_id"], notice["version"], "web", released))
    for name, receiver in receivers.items():
        for webhook_id, body in receiver.accepted.items():
            notice = json.loads(body)
            if notice["action"] != "publish":
                continue
            deliveries[(notice["item_id"], notice["version"], name)].add(webhook_id)
            released = datetime.fromisoformat(notice["released_at"])
            external.append((notice["item_id"], notice["version"], name, released))
    return deliveries, external


def _fates(
    result: Round, reader: TopicReader, postings: list[Posting], held: dict[str, Any]
) -> dict[str, int]:
    """How many items ended released, held or retracted; a violation for any other end."""
    decisions = _json_by_key(reader, "gate.decisions")
    ends = {"released", "overridden", "retracted", "stale", "rejected_by_operator"}
    counts: dict[str, int] = defaultdict(int)
    for item in sorted({p.item for p in postings}):
        kinds = [d["value"]["kind"] for d in decisions.get(f"lerum:{item}", [])]
        if "retracted" in kinds:
            counts["retracted"] += 1
        elif item in held:
            counts["held"] += 1
            if not held[item]:
                result.violations.append(f"{item} held without a reason")
        elif any(k in ends for k in kinds) and "accepted" in kinds:
            counts["released"] += 1
        else:
            result.violations.append(f"{item}: accepted but neither released, held nor retracted")
    return counts


def _check(
    result: Round,
    reader: TopicReader,
    postings: list[Posting],
    receivers: dict[str, WebhookReceiver],
    gates: list[str],
) -> None:
    publish_at = {
        (p.item, p.event["version"]): datetime.fromisoformat(p.event["publish_at"])
        for p in postings
        if p.event["audience"] == "external"
    }
    internal_at = _internal_told(reader)
    deliveries, external = _delivered(reader, receivers)
    for item, version, channel, released in external:
        told = internal_at.get(item)
        if told is None or released < told:
            result.violations.append(f"{item} v{version} to {channel} before its internal notice")
        due = publish_at.get((item, version))
        if due is not None and released < due:
            result.violations.append(f"{item} v{version} to {channel} before its publish_at")
    for (item, version, channel), ids in deliveries.items():
        if len(ids) > 1:
            result.violations.append(f"{item} v{version} delivered to {channel} {len(ids)} times")
    held = {row["item_id"]: row["reasons"] for row in all_held(gates[0])}
    result.violations += _lists_differ(held, gates[1:])
    counts = _fates(result, reader, postings, held)
    counts["deliveries"] = len(deliveries)
    counts["dead letters"] = len(reader.records("publish.dlq"))
    result.counts = dict(counts)


@dataclass(frozen=True)
class Faults:
    """How a round runs its services and what goes wrong in it."""

    mode: str = "embedded"
    store: str = "memory"
    #: the service to kill (None: one at random)
    kill: str | None = None
    #: instead of a kill, cut every connection to Kafka for this many seconds
    outage: float = 0.0
    #: gate processes forming one gate; with two, a killed gate is one replica of them
    gates: int = 1


def _outage(proxy: CuttingProxy, seconds: float) -> None:
    with proxy.outage():
        time.sleep(seconds)  # the outage's length is the point, not a wait for a result


def _fault(pipeline: Pipeline, faults: Faults, proxy: CuttingProxy | None, name: str) -> None:
    if proxy is not None:
        _outage(proxy, faults.outage)
    else:
        _kill_and_restart(pipeline, name)


@contextlib.contextmanager
def _broker(workdir: Path, faults: Faults) -> Iterator[tuple[str, str, CuttingProxy | None]]:
    """The round's broker: its own address, the one the services use, and the proxy
    between them when the round cuts Kafka off."""
    if not faults.outage:
        with EmbeddedBroker(log_path=workdir / "broker.log") as broker:
            yield broker.bootstrap, broker.bootstrap, None
        return
    port = free_port()
    with EmbeddedBroker(log_path=workdir / "broker.log", advertised_port=port) as broker:
        proxy = CuttingProxy(broker.port, port).start()
        try:
            yield broker.bootstrap, f"127.0.0.1:{port}", proxy
        finally:
            proxy.stop()


def _round(number: int, items: int, rng: random.Random, faults: Faults) -> Round:
    result = Round(number)
    workdir = Path(tempfile.mkdtemp(prefix=f"gatekeeper-faults-{number}-"))
    slow = WebhookReceiver(LERUM_OUTBOUND, default="slow").start()
    flaky = WebhookReceiver(LERUM_OUTBOUND, script=["500"] * (items // 3)).start()
    try:
        with _broker(workdir, faults) as (own, reached, proxy):
            pipeline = Pipeline(reached, workdir, profile=faults.mode)
            config = str(_config(workdir, slow, flaky))
            for name in SERVICES:
                pipeline.add(
                    name,
                    GATEKEEPER_CONFIG=config,
                    GATEKEEPER_LOG_LEVEL="warning",
                    GATEKEEPER_GATE_STORE=faults.store,
                ).start()
            if faults.gates == 2:
                _second_gate(pipeline, config, faults.store).start()
            try:
                postings = _plan(rng, items, f"r{number}-{rng.randrange(10**6)}")
                victim = faults.kill or rng.choice(SERVICES)
                result.killed = "kafka" if proxy is not None else victim
                kill_at = rng.randrange(len(postings) // 4, 3 * len(postings) // 4)
                started = time.monotonic()
                fault: threading.Thread | None = None
                ingest = pipeline.services["ingest"].url
                for n, posting in enumerate(postings):
                    if n == kill_at:
                        result.killed_after = time.monotonic() - started
                        fault = threading.Thread(
                            target=_fault, args=(pipeline, faults, proxy, victim)
                        )
                        fault.start()
                    tries = _post(ingest, posting, time.monotonic() + 180 + faults.outage)
                    result.retried_posts += tries - 1
                    result.posted += 1
                if fault is not None:
                    fault.join(180 + faults.outage)
                reader = TopicReader(own)
                _settle(reader, postings)
                gates = [s.url for n, s in pipeline.services.items() if n.startswith("gate")]
                _check(result, reader, postings, {"slow": slow, "flaky": flaky}, gates)
            finally:
                pipeline.stop_all()
    finally:
        slow.stop()
        flaky.stop()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--items", type=int, default=100)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--mode", choices=PROFILES, default="embedded")
    parser.add_argument("--store", choices=("memory", "rocksdb"), default="memory")
    parser.add_argument("--kill", choices=SERVICES, default=None)
    parser.add_argument(
        "--kafka-outage",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="instead of a kill, cut every connection to Kafka for this long",
    )
    parser.add_argument(
        "--gates",
        type=int,
        choices=(1, 2),
        default=1,
        help="gate processes forming one gate; with 2, a killed gate is one of them",
    )
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(2**32)  # noqa: S311
    rng = random.Random(seed)  # noqa: S311  (a reproducible fault plan, not security)
    print(
        f"fault rounds: {args.rounds} of {args.items} items, seed {seed}, "
        f"{args.mode} mode, gate store {args.store}"
        + (f", {args.gates} gate processes" if args.gates > 1 else "")
        + (f", Kafka cut off for {args.kafka_outage:.0f} s" if args.kafka_outage else ""),
        flush=True,
    )
    failed = 0
    header = f"{'round':>5} {'killed':>8} {'at':>6} {'posted':>6} {'re-posts':>8}  outcome"
    print(header, flush=True)
    for number in range(1, args.rounds + 1):
        faults = Faults(args.mode, args.store, args.kill, args.kafka_outage, args.gates)
        result = _round(number, args.items, rng, faults)
        counts = ", ".join(f"{k} {v}" for k, v in sorted(result.counts.items()))
        print(
            f"{number:>5} {result.killed:>8} {result.killed_after:>5.1f}s {result.posted:>6} "
            f"{result.retried_posts:>8}  {counts}; violations {len(result.violations)}",
            flush=True,
        )
        for violation in result.violations[:20]:
            print(f"      VIOLATION {violation}", flush=True)
        failed += bool(result.violations)
    print(f"{failed} of {args.rounds} round(s) with violations")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
