"""``gatekeeper up`` runs the whole pipeline; ``gatekeeper serve NAME`` runs one service.

This module and the services' ``__main__`` are the only places that read the
environment.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from prometheus_client import CollectorRegistry

from services.runtime import topics
from services.runtime.broker import EmbeddedBroker
from services.runtime.config import ConfigError, Deployment, KafkaTransport, load_deployment
from services.runtime.logs import configure_logging
from services.runtime.settings import Settings

__all__ = ["main"]

SERVICES = ("ingest", "gate", "publish")


def _fail(message: str) -> int:
    print(f"gatekeeper: {message}", file=sys.stderr)
    return 2


def _topics_of(deployment: Deployment) -> list[str]:
    channel_topics = {
        c.transport.topic
        for t in deployment.tenants.values()
        for c in t.channels
        if isinstance(c.transport, KafkaTransport)
    }
    return sorted({*topics.PIPELINE_TOPICS, *channel_topics})


def _serve(name: str) -> int:
    settings = Settings()
    configure_logging(name, settings.log_level)
    try:
        deployment = load_deployment(settings.config_path)
    except ConfigError as exc:
        return _fail(str(exc))
    if not settings.kafka_bootstrap_servers:
        return _fail("KAFKA_BOOTSTRAP_SERVERS is not set (gatekeeper up starts a broker itself)")
    topics.ensure_topics(
        settings.kafka_bootstrap_servers,
        _topics_of(deployment),
        settings.partitions,
        settings.replication_factor,
    )
    (settings.data_dir / name).mkdir(parents=True, exist_ok=True)
    registry = CollectorRegistry()
    from services.runtime.streams import run_worker

    if name == "ingest":
        from services.ingest.bootstrap import build as build_ingest

        built = build_ingest(settings, deployment, registry)
        app, services = built.app, built.services
    elif name == "gate":
        from services.gate.bootstrap import build as build_gate

        gate = build_gate(settings, deployment, registry)
        app, services = gate.app, gate.services
    else:
        from services.publish.bootstrap import build as build_publish

        publish = build_publish(settings, deployment, registry)
        app, services = publish.app, publish.services
    run_worker(app, services, settings.log_level)
    return 0


def _die_with_parent() -> None:
    """Ask Linux to SIGTERM this child when its parent dies, so none is orphaned."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _up() -> int:
    settings = Settings()
    try:
        deployment = load_deployment(settings.config_path)
    except ConfigError as exc:
        return _fail(str(exc))
    env = dict(os.environ)
    env.setdefault("GATEKEEPER_DATA_DIR", tempfile.mkdtemp(prefix="gatekeeper-"))
    broker: EmbeddedBroker | None = None
    children: dict[str, subprocess.Popen[bytes]] = {}
    stopping = False

    def stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        bootstrap = settings.kafka_bootstrap_servers
        if not bootstrap:
            broker = EmbeddedBroker(log_path=Path(env["GATEKEEPER_DATA_DIR"]) / "broker.log")
            broker.start()
            bootstrap = broker.bootstrap
            env["KAFKA_BOOTSTRAP_SERVERS"] = bootstrap
            env["GATEKEEPER_EMBEDDED_BROKER"] = "true"
            print(
                f"gatekeeper: embedded Kafka-compatible broker on {bootstrap} (pid {broker.pid})",
                flush=True,
            )
        else:
            print(f"gatekeeper: using Kafka at {bootstrap}", flush=True)
        topics.ensure_topics(
            bootstrap, _topics_of(deployment), settings.partitions, settings.replication_factor
        )
        for name in SERVICES:
            children[name] = subprocess.Popen(
                [sys.executable, "-m", "services.cli", "serve", name],
                env=env,
                preexec_fn=_die_with_parent,
            )
            port = settings.port_of(name)
            print(
                f"gatekeeper: {name} on http://127.0.0.1:{port} (pid {children[name].pid})",
                flush=True,
            )
        if not settings.operator_token:
            print(
                "gatekeeper: GATEKEEPER_OPERATOR_TOKEN is not set; manual release is refused",
                flush=True,
            )
        print("gatekeeper: running; Ctrl-C stops everything", flush=True)
        while not stopping:
            for name, child in children.items():
                if child.poll() is not None:
                    print(
                        f"gatekeeper: {name} exited with {child.returncode}; stopping",
                        file=sys.stderr,
                        flush=True,
                    )
                    stopping = True
                    break
            time.sleep(0.2)
        failed = any(c.poll() not in (None, 0) for c in children.values())
        return 1 if failed else 0
    finally:
        for child in children.values():
            if child.poll() is None:
                child.terminate()
        deadline = time.monotonic() + 30
        for child in children.values():
            try:
                child.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        if broker is not None:
            broker.stop()
        print("gatekeeper: stopped", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gatekeeper", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="run the whole pipeline on this machine")
    serve = sub.add_parser("serve", help="run one service, as a pod does")
    serve.add_argument("service", choices=SERVICES)
    args = parser.parse_args(argv)
    if args.command == "up":
        return _up()
    return _serve(args.service)


if __name__ == "__main__":
    sys.exit(main())
