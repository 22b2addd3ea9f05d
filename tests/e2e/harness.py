"""Real processes on a real broker: start services, sign requests, read topics."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from kafka import KafkaConsumer, TopicPartition
from standardwebhooks import Webhook

from services.runtime.broker import free_port
from tests.conftest import SECRETS_ENV

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


@dataclass
class Pipeline:
    bootstrap: str
    workdir: Path
    services: dict[str, Service] = field(default_factory=dict)

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GATEKEEPER_")}
        env.update(SECRETS_ENV)
        env.update(
            KAFKA_BOOTSTRAP_SERVERS=self.bootstrap,
            GATEKEEPER_EMBEDDED_BROKER="true",
            GATEKEEPER_DATA_DIR=str(self.workdir / "data"),
            GATEKEEPER_PARTITIONS="2",
            GATEKEEPER_HOST="127.0.0.1",
            GATEKEEPER_TICK_SECONDS="0.2",
        )
        env.update(extra)
        return env

    def add(self, name: str, **extra: str) -> Service:
        port = free_port()
        env = self.env(**{f"GATEKEEPER_{name.upper()}_PORT": str(port), **extra})
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
            out = []
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

    def wait_for(
        self,
        topic: str,
        key: str,
        predicate: Callable[[list[dict[str, Any]]], bool],
        timeout: float = 30.0,
    ) -> list[dict[str, Any]]:
        return wait_until(
            lambda: (lambda v: v if predicate(v) else None)(self.json_for(topic, key)),
            timeout,
            f"{topic} records for {key}",
        )


def unique_item(prefix: str = "item") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def pipeline_iter(workdir: Path, bootstrap: str) -> Iterator[Pipeline]:
    pipeline = Pipeline(bootstrap, workdir)
    try:
        yield pipeline
    finally:
        pipeline.stop_all()
