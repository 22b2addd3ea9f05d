"""The content checks on the test corpus: checks per second, and what they cost the gate.

    python -m bench.content_bench [--rounds 3] [--seconds 2] [--events 2000]

Each round measures (a) the shipped rules checking the corpus texts, in this
process; (b) the gate's handler alone deciding corpus events with in-memory
ports, with the shipped rules and with none (the checks' share of the
handler's own work, with no Kafka in it); and (c) the real gate process on a
fresh embedded broker reading EVENTS corpus events from cms.accepted, with
the shipped configuration and with one without content rules: the gate's
throughput kept with the checks on. Prints every round, then the medians.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from schemas.events import AcceptedEvent, ContentEvent
from services.gate.content import check
from services.gate.handler import GateHandler
from services.gate.tenants import content_rules_of
from services.runtime import topic_admin, topics
from services.runtime.broker import EmbeddedBroker
from services.runtime.config import DEFAULT_CONFIG_PATH, load_deployment
from services.runtime.logs import configure_logging
from services.runtime.ports import InboundRecord
from tests.conftest import SECRETS_ENV, content_event
from tests.harness import (
    memory_gate,
    read_records,
    service_env,
    start_process,
    stop_process,
    write_records,
)

CORPUS = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "content_corpus.yaml"


def _events() -> list[ContentEvent]:
    cases = yaml.safe_load(CORPUS.read_text())
    return [
        ContentEvent.model_validate(
            content_event(tenant=c["tenant"], item_id=c["name"], **c["event"])
        )
        for c in cases
    ]


def _per_second(action: Callable[[], object], seconds: float) -> float:
    done, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        action()
        done += 1
    return done / elapsed


def _handler(rules: dict[str, Any]) -> GateHandler:
    return memory_gate(load_deployment(DEFAULT_CONFIG_PATH, SECRETS_ENV), rules=rules)


def _records(events: list[ContentEvent], count: int) -> list[InboundRecord]:
    out = []
    for n in range(count):
        event = events[n % len(events)].model_copy(update={"item_id": f"bench-{n}"})
        accepted = AcceptedEvent(
            event_id=f"e{n}",
            tenant=event.tenant,
            item_id=event.item_id,
            source="kafka",
            received_at=datetime.now(UTC),
            event=event,
        )
        key = f"{event.tenant}:{event.item_id}".encode()
        value = accepted.model_dump_json().encode()
        out.append(InboundRecord(topics.ACCEPTED, 0, n, key, value))
    return out


def _gate_inputs_per_second(rules: dict[str, Any], records: list[InboundRecord]) -> float:
    """Inputs decided per second by one handler, in one event loop, as the service does."""
    handler = _handler(rules)

    async def run() -> float:
        started = time.perf_counter()
        for record in records:
            await handler.handle(record)
        return len(records) / (time.perf_counter() - started)

    return asyncio.run(run())


def _real_gate(config: Path, events: list[ContentEvent], count: int, workdir: Path) -> float:
    """Events per second the gate process decides, from its first decision to its last."""
    workdir.mkdir(parents=True, exist_ok=True)
    with EmbeddedBroker(log_path=workdir / "broker.log") as broker:
        env = service_env(broker, workdir, 4, GATEKEEPER_CONFIG=str(config))
        env.update(SECRETS_ENV)
        deployment = load_deployment(config, env)
        topic_admin.ensure_topics(broker.bootstrap, topics.topics_for(deployment), 4, 1)
        records = _records(events, count)
        write_records(
            broker.bootstrap,
            topics.ACCEPTED,
            [(r.key or b"", r.value or b"") for r in records],
            None,
        )
        argv = [sys.executable, "-m", "services.cli", "serve", "gate"]
        proc = start_process(argv, env, workdir / "gate.log")
        try:
            held = read_records(
                broker.bootstrap, topics.DECISIONS, count, 600, lambda r: b"bench-" in r.key
            )
        finally:
            stop_process(proc)
    stamps = sorted(r.timestamp for r in held)
    return float(len(held) / max((stamps[-1] - stamps[0]) / 1000.0, 1e-3))


def _without_rules(workdir: Path) -> Path:
    raw = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    for tenant in raw["tenants"].values():
        tenant["policy"]["content_checks"] = []
    path = workdir / "no-rules.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--inputs", type=int, default=3000)
    parser.add_argument("--events", type=int, default=2000)
    args = parser.parse_args()
    deployment = load_deployment(DEFAULT_CONFIG_PATH, SECRETS_ENV)
    rules = content_rules_of(deployment)
    configure_logging("bench", "warning", console=False)  # as the services run in the benches
    events = _events()
    texts = itertools.cycle(events)
    records = _records(events, args.inputs)
    rows = []
    for number in range(1, args.rounds + 1):
        checks = _per_second(lambda: check(e := next(texts), rules[e.tenant]), args.seconds)
        with_rules = _gate_inputs_per_second(rules, records)
        without = _gate_inputs_per_second({}, records)
        share = 1 - with_rules / without
        workdir = Path(tempfile.mkdtemp(prefix="gatekeeper-content-"))
        real_with = _real_gate(DEFAULT_CONFIG_PATH, events, args.events, workdir / "with")
        real_without = _real_gate(_without_rules(workdir), events, args.events, workdir / "none")
        kept = real_with / real_without
        rows.append((checks, with_rules, without, share, real_with, real_without, kept))
        print(
            f"round {number}: {checks:,.0f} checks/s ({1e6 / checks:.0f} µs each); handler "
            f"{with_rules:,.0f} vs {without:,.0f} inputs/s, the checks {share:.0%} of it; "
            f"gate process {real_with:,.0f} vs {real_without:,.0f} events/s ({kept:.2f}x kept)",
            flush=True,
        )
    m = [statistics.median(col) for col in zip(*rows, strict=True)]
    print(
        f"\nmedians of {args.rounds} rounds: {m[0]:,.0f} checks/s; the handler alone "
        f"{m[1]:,.0f} vs {m[2]:,.0f} inputs/s (the checks {m[3]:.0%} of its own work); the "
        f"gate process {m[4]:,.0f} vs {m[5]:,.0f} events/s: {m[6]:.2f}x of its throughput kept "
        f"(target: over 0.5x, the checks must not halve it)"
    )


if __name__ == "__main__":
    main()
