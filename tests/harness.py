"""Real processes on a real broker: start services, sign requests, read topics."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import httpx
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from prometheus_client import CollectorRegistry
from standardwebhooks import Webhook

from schemas.events import AcceptedEvent, ContentEvent
from services.gate.assembly import gate_handler
from services.gate.content import ContentRule
from services.gate.handler import GateHandler
from services.gate.history import History
from services.gate.state import ItemState
from services.runtime.broker import EmbeddedBroker, free_port
from services.runtime.config import Deployment
from services.runtime.memory import DictModelTable, MemoryOutbox
from tests.conftest import OPERATOR_AUTH, OPERATORS_YAML, SECRETS_ENV

SECRETS = {
    "lerum": SECRETS_ENV["GATEKEEPER_SECRET_LERUM"],
    "ale": SECRETS_ENV["GATEKEEPER_SECRET_ALE"],
}


def wait_until(check: Callable[[], Any], timeout: float, what: str, every: float = 0.1) -> Any:
    """Poll *check* until it returns something truthy; fail with *what* at the deadline."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


@dataclass
class Service:
    name: str
    port: int
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, ready_timeout: float = 90.0) -> Service:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "services.cli", "serve", self.name],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_until(self.ready, ready_timeout, f"{self.name} /readyz")
        return self

    def ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"{self.name} exited: {self.log_path.read_text()[-3000:]}")
        try:
            return httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout)
        self.proc = None
        return code

    def logs(self) -> list[dict[str, Any]]:
        lines = []
        for line in self.log_path.read_text().splitlines():
            if line.startswith("{"):
                lines.append(json.loads(line))
        return lines


#: How the services are started: "embedded" as ``gatekeeper up`` starts them (the
#: embedded broker's short group timeouts and fetch waits), "separate" as the chart
#: starts them (``serve`` against a broker they did not start, no embedded flag, a
#: stable instance id per service, the default group timeouts).
PROFILES = ("embedded", "separate")


@dataclass
class Pipeline:
    bootstrap: str
    workdir: Path
    services: dict[str, Service] = field(default_factory=dict)
    profile: str = "embedded"

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GATEKEEPER_")}
        env.update(SECRETS_ENV)
        operators = self.workdir / "operators.yaml"
        if not operators.exists():
            operators.write_text(OPERATORS_YAML)
        env["GATEKEEPER_OPERATORS_FILE"] = str(operators)
        env.update(
            KAFKA_BOOTSTRAP_SERVERS=self.bootstrap,
            GATEKEEPER_DATA_DIR=str(self.workdir / "data"),
            GATEKEEPER_PARTITIONS="2",
            GATEKEEPER_HOST="127.0.0.1",
            GATEKEEPER_TICK_SECONDS="0.2",
        )
        if self.profile == "embedded":
            env["GATEKEEPER_EMBEDDED_BROKER"] = "true"
        env.update(extra)
        return env

    def add(self, name: str, **extra: str) -> Service:
        port = free_port()
        own = {f"GATEKEEPER_{name.upper()}_PORT": str(port)}
        if self.profile == "separate":  # the chart's pod name: one per service here
            own["GATEKEEPER_INSTANCE_ID"] = f"{self.workdir.name}-{name}"
        env = self.env(**{**own, **extra})
        service = Service(name, port, env, self.workdir / f"{name}-{port}.log")
        self.services[name] = service
        return service

    def stop_all(self) -> None:
        for service in self.services.values():
            if service.proc is not None:
                try:
                    service.stop(timeout=30)
                except subprocess.TimeoutExpired:
                    service.stop(signal.SIGKILL)


def sign(tenant: str, body: bytes, webhook_id: str, at: datetime | None = None) -> dict[str, str]:
    at = at or datetime.now(UTC)
    signature = Webhook(SECRETS[tenant]).sign(webhook_id, at, body.decode())
    return {
        "content-type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signature,
    }


def post_event(
    ingest_url: str,
    event: dict[str, Any] | bytes,
    *,
    tenant: str = "lerum",
    webhook_id: str | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    body = event if isinstance(event, bytes) else json.dumps(event).encode()
    sent = sign(tenant, body, webhook_id or f"msg_{uuid.uuid4().hex}")
    sent.update(headers or {})
    return httpx.post(
        f"{ingest_url}/v1/tenants/{tenant}/events", content=body, headers=sent, timeout=30
    )


class TopicReader:
    """Reads whole topics from the beginning without joining a consumer group."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap

    def records(self, topic: str, timeout_ms: int = 500) -> list[Any]:
        consumer = KafkaConsumer(
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            consumer_timeout_ms=timeout_ms,
        )
        try:
            partitions = consumer.partitions_for_topic(topic) or set()
            tps = [TopicPartition(topic, p) for p in partitions]
            consumer.assign(tps)
            consumer.seek_to_beginning(*tps)
            out: list[Any] = []
            while True:
                batch = consumer.poll(timeout_ms=timeout_ms)
                if not batch:
                    return out
                for records in batch.values():
                    out.extend(records)
        finally:
            consumer.close()

    def json_for(self, topic: str, key: str) -> list[dict[str, Any]]:
        found = [r for r in self.records(topic) if r.key == key.encode()]
        found.sort(key=lambda r: (r.timestamp, r.offset))
        return [json.loads(r.value) for r in found]

    def released(self, topic: str, items: list[str]) -> dict[str, int]:
        """How many records *topic* holds for each of *items* (Lerum's), once each has at
        least one; empty until then (a check for :func:`wait_until`)."""
        counts = dict.fromkeys(items, 0)
        for record in self.records(topic):
            item = (record.key or b"").decode().partition(":")[2]
            if item in counts:
                counts[item] += 1
        return counts if all(counts.values()) else {}

    def wait_for(
        self,
        topic: str,
        key: str,
        predicate: Callable[[list[dict[str, Any]]], bool],
        timeout: float = 30.0,
    ) -> list[dict[str, Any]]:
        def matching() -> list[dict[str, Any]] | None:
            found = self.json_for(topic, key)
            return found if predicate(found) else None

        found = wait_until(matching, timeout, f"{topic} records for {key}")
        return cast(list[dict[str, Any]], found)


#: Quiet secrets for benchmark runs; tests use tests.conftest.SECRETS_ENV.
BENCH_SECRETS = {
    "GATEKEEPER_SECRET_LERUM": "whsec_" + "YmVuY2gtc2VjcmV0LWJlbmNoLXNlY3JldC0xMjM0NTY=",
    "GATEKEEPER_SECRET_ALE": "whsec_" + "YmVuY2gtc2VjcmV0LWJlbmNoLXNlY3JldC0xMjM0NTY=",
    "GATEKEEPER_OPERATOR_TOKEN": "bench-operator-token",
}


def accepted_event(
    i: int, prefix: str = "bench-", body: str = "Lerums kommun informerar."
) -> bytes:
    event = ContentEvent.model_validate(
        {
            "schema_version": 1,
            "tenant": "lerum",
            "item_id": f"{prefix}{i}",
            "version": 1,
            "action": "publish",
            "audience": "external",
            "channels": ["web"],
            "title": "Nyhet",
            "body": body,
            "recipients": "Invånare",
            "publish_at": "2026-01-01T00:00:00+00:00",
            "unit": "Kommunstyrelsen",
        }
    )
    now = datetime.now(UTC)
    return (
        AcceptedEvent(
            event_id=f"e-{prefix}{i}",
            tenant="lerum",
            item_id=f"{prefix}{i}",
            source="kafka",
            received_at=now,
            event=event,
        )
        .model_dump_json()
        .encode()
    )


def _producer(bootstrap: str) -> KafkaProducer:
    # One record per batch: a paced write leaves at its moment, not with the next.
    return KafkaProducer(bootstrap_servers=bootstrap, batch_size=0, linger_ms=0, acks=1)


def write_records(
    bootstrap: str, topic: str, values: list[tuple[bytes, bytes]], rate: float | None
) -> None:
    producer = _producer(bootstrap)
    start = time.perf_counter()
    for n, (key, value) in enumerate(values):
        if rate:
            due = start + n / rate
            while time.perf_counter() < due:
                time.sleep(max(0.0, min(due - time.perf_counter(), 0.001)))
        producer.send(topic, key=key, value=value)
    producer.flush()
    producer.close()


def write_batched(bootstrap: str, topic: str, values: list[tuple[bytes, bytes]]) -> None:
    """Write *values* in batches of many records, as a busy producer does."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, batch_size=256 * 1024)
    for key, value in values:
        producer.send(topic, key=key, value=value)
    producer.flush()
    producer.close()


def read_records(
    bootstrap: str,
    topic: str,
    want: int,
    timeout: float,
    keep: Callable[[Any], bool] = lambda r: True,
) -> list[Any]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(out) < want and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=200).values():
            out.extend(r for r in records if keep(r))
    consumer.close()
    if len(out) < want:
        raise SystemExit(f"{topic}: only {len(out)} of {want} records within {timeout:.0f}s")
    return out


def start_process(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)


def descendants(ancestor: int) -> dict[int, list[str]]:
    """The command line of each process *ancestor* started, and of those they
    started in turn (a gate's page reader; what runs in a container)."""
    parents: dict[int, int] = {}
    argvs: dict[int, list[str]] = {}
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            parents[int(proc.name)] = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            argvs[int(proc.name)] = (proc / "cmdline").read_bytes().decode().split("\0")
        except (OSError, ValueError, IndexError):
            continue  # ended meanwhile

    def under(pid: int) -> bool:
        while pid > 1:
            pid = parents.get(pid, 0)
            if pid == ancestor:
                return True
        return False

    return {pid: argv for pid, argv in argvs.items() if under(pid)}


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()


def service_env(
    broker: EmbeddedBroker, data_dir: Path, partitions: int = 4, **extra: str
) -> dict[str, str]:
    """The environment of a service on *broker*, quiet, with a gate port of its own."""
    return {
        **os.environ,
        **BENCH_SECRETS,
        "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
        "GATEKEEPER_EMBEDDED_BROKER": "true",
        "GATEKEEPER_PARTITIONS": str(partitions),
        "GATEKEEPER_DATA_DIR": str(data_dir),
        "GATEKEEPER_HOST": "127.0.0.1",
        "GATEKEEPER_GATE_PORT": str(free_port()),
        "GATEKEEPER_LOG_LEVEL": "warning",
        **extra,
    }


def start_up(
    workdir: Path,
) -> tuple[subprocess.Popen[bytes], dict[str, int], Path, dict[str, str]]:
    """``gatekeeper up`` as a person runs it in a terminal (its own process group), on
    free ports and *workdir*: the process, the services' ports, its output file and
    its environment."""
    ports = {name: free_port() for name in ("ingest", "gate", "publish")}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEKEEPER_", "KAFKA_"))}
    env.update(SECRETS_ENV)
    del env["GATEKEEPER_OPERATOR_TOKEN"]  # as in the README: up makes a key of its own
    env.update({f"GATEKEEPER_{name.upper()}_PORT": str(port) for name, port in ports.items()})
    env.update(GATEKEEPER_DATA_DIR=str(workdir), GATEKEEPER_HOST="127.0.0.1")
    out = workdir / "up.out"
    with open(out, "wb") as sink:
        up = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "up"],
            start_new_session=True,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    return up, ports, out, env


def all_held(gate: str, query: str = "", timeout: float = 30) -> list[dict[str, Any]]:
    """Every row ``GET /v1/held`` lists, page after page, asked as the shared operator;
    empty while the gate does not answer 200."""
    rows: list[dict[str, Any]] = []
    params = {**dict(urllib.parse.parse_qsl(query.lstrip("?"))), "limit": "1000"}
    while True:
        answer = httpx.get(f"{gate}/v1/held", params=params, headers=OPERATOR_AUTH, timeout=timeout)
        if answer.status_code != 200:
            return []
        found = answer.json()
        rows += found["held"]
        if not found["next_cursor"]:
            return rows
        params["cursor"] = found["next_cursor"]


def held_rows(gate: str, item: str, query: str = "") -> list[dict[str, Any]]:
    """The rows ``GET /v1/held`` shows for *item*, asked as the shared operator."""
    return [h for h in all_held(gate, query) if h["item_id"] == item]


def unique_item(prefix: str = "item") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def pipeline_iter(workdir: Path, bootstrap: str, profile: str = "embedded") -> Iterator[Pipeline]:
    pipeline = Pipeline(bootstrap, workdir, profile=profile)
    try:
        yield pipeline
    finally:
        pipeline.stop_all()


def memory_gate(
    deployment: Deployment,
    *,
    rules: Mapping[str, tuple[ContentRule, ...]] | None = None,
    outbox: MemoryOutbox | None = None,
    registry: CollectorRegistry | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> GateHandler:
    """The gate's handler on in-memory ports: the deployment's policies and (unless
    given) its content rules, always ready."""
    return gate_handler(
        deployment,
        items=DictModelTable(ItemState),
        history=DictModelTable(History),
        outbox=outbox or MemoryOutbox(),
        registry=registry or CollectorRegistry(),
        clock=clock,
        ready=lambda: True,
        rules=rules,
    )
