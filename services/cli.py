"""``gatekeeper up`` runs the whole pipeline; ``gatekeeper serve NAME`` runs one service.

This module and the services' ``__main__`` are the only places that read the
environment.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import structlog
from prometheus_client import CollectorRegistry

from services.runtime import topic_admin, topics
from services.runtime.broker import BrokerMissing, EmbeddedBroker, die_with_parent
from services.runtime.config import (
    ConfigError,
    Deployment,
    check_file,
    load_deployment,
    unset_variables,
)
from services.runtime.kafka_security import KafkaRefused, KafkaSecurity
from services.runtime.logs import configure_logging
from services.runtime.operators import OperatorsFileError
from services.runtime.settings import HOW_TO_MAKE_A_KEY, Settings, SettingsError, load_settings

if TYPE_CHECKING:
    import faust
    import mode

__all__ = ["main"]

SERVICES = ("ingest", "gate", "publish")


def _fail(message: str) -> int:
    print(f"gatekeeper: {message}", file=sys.stderr)
    return 2


#: A shared key is guessed sooner the shorter it is; 32 characters of a random
#: generator are out of reach. A shorter one is warned about here, and refused
#: by the settings where GATEKEEPER_MIN_TOKEN_LENGTH asks (the chart sets 32).
MIN_TOKEN_LENGTH = 32
SHORT_TOKEN = (
    f"GATEKEEPER_OPERATOR_TOKEN is shorter than {MIN_TOKEN_LENGTH} characters: {HOW_TO_MAKE_A_KEY}"
)


def _short(settings: Settings) -> bool:
    token = settings.operator_token
    return token is not None and len(token.get_secret_value()) < MIN_TOKEN_LENGTH


def _serve(name: str) -> int:
    settings = load_settings()
    configure_logging(name, settings.log_level)
    if _short(settings):
        structlog.get_logger("gatekeeper").warning("auth.short_operator_token", problem=SHORT_TOKEN)
    try:
        deployment = load_deployment(settings.config_path)
    except ConfigError as exc:
        return _fail(str(exc))
    if not settings.kafka_bootstrap_servers:
        return _fail("KAFKA_BOOTSTRAP_SERVERS is not set (gatekeeper up starts a broker itself)")
    try:
        _ensure_topics(settings, deployment, settings.kafka_bootstrap_servers)
    except KafkaRefused as exc:
        return _fail(str(exc))
    (settings.data_dir / name).mkdir(parents=True, exist_ok=True)
    from services.runtime.faust_compat import UntestedFaust
    from services.runtime.metrics import service_registry

    registry = service_registry(name, _version())
    from services.runtime.app import run_worker

    try:
        app, services = _build(name, settings, deployment, registry)
    except (UntestedFaust, OperatorsFileError) as exc:
        return _fail(str(exc))
    from services.runtime.stores import stores_ahead

    ahead = stores_ahead(app, settings)
    for store in ahead:
        structlog.get_logger("gatekeeper").error(
            "store.ahead_of_changelog",
            topic=store.topic,
            partition=store.partition,
            store_offset=store.kept,
            log_end=store.end,
            path=str(store.path),
            detail=str(store),
        )
    if ahead:
        return _fail(f"{name} did not start: " + "; ".join(str(s) for s in ahead))
    run_worker(app, services, settings.log_level)
    return 0


def _ensure_topics(settings: Settings, deployment: Deployment, bootstrap: str) -> None:
    security = KafkaSecurity.of(settings)
    security.check_tls(bootstrap)
    retention = topics.TopicRetention(
        archive_ms=settings.archive_retention_ms,
        decisions_ms=settings.decisions_retention_ms,
        dead_letters_ms=settings.dead_letters_retention_ms,
        default_ms=settings.topic_retention_ms,
    )
    topic_admin.ensure_topics(
        bootstrap,
        topics.topics_for(deployment),
        settings.partitions,
        settings.replication_factor,
        retention=retention,
        client=security.client_kwargs(),
    )


def _build(
    name: str, settings: Settings, deployment: Deployment, registry: CollectorRegistry
) -> tuple[faust.App, Sequence[mode.ServiceT]]:
    if name == "ingest":
        from services.ingest.bootstrap import build as build_ingest

        ingest = build_ingest(settings, deployment, registry)
        return ingest.app, ingest.services
    if name == "gate":
        from services.gate.bootstrap import build as build_gate

        gate = build_gate(settings, deployment, registry)
        return gate.app, gate.services
    from services.publish.bootstrap import build as build_publish

    publish = build_publish(settings, deployment, registry)
    return publish.app, publish.services


def _answers_ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
            return int(r.status) == 200
    except OSError:
        return False


def _wait_ready(
    settings: Settings,
    children: dict[str, subprocess.Popen[bytes]],
    stopping: Callable[[], bool],
) -> bool:
    """Until every service answers /readyz; False when one exited or a stop came first."""
    waiting = set(children)
    while waiting:
        if stopping() or any(c.poll() is not None for c in children.values()):
            return False
        waiting = {n for n in waiting if not _answers_ready(settings.port_of(n))}
        time.sleep(0.1)
    return True


def _any_exited(children: dict[str, subprocess.Popen[bytes]]) -> bool:
    for name, child in children.items():
        if child.poll() is not None:
            print(
                f"gatekeeper: {name} exited with {child.returncode}; stopping",
                file=sys.stderr,
                flush=True,
            )
            return True
    return False


def _stop_children(children: dict[str, subprocess.Popen[bytes]]) -> None:
    """SIGTERM, so each drains and commits; SIGKILL whatever is still there after 30 s."""
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


def _up() -> int:
    settings = load_settings()
    try:
        deployment = load_deployment(settings.config_path)
    except ConfigError as exc:
        return _fail(str(exc))
    env = dict(os.environ)
    env.setdefault("GATEKEEPER_DATA_DIR", tempfile.mkdtemp(prefix="gatekeeper-"))
    generated = None
    if not settings.operator_token and not settings.operators_file:
        # A key of this run only, shown once on the terminal that started it.
        generated = env["GATEKEEPER_OPERATOR_TOKEN"] = secrets.token_urlsafe(32)
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
        _ensure_topics(settings, deployment, bootstrap)
        for name in SERVICES:
            children[name] = subprocess.Popen(
                [sys.executable, "-m", "services.cli", "serve", name],
                env=env,
                preexec_fn=die_with_parent,
            )
            port = settings.port_of(name)
            print(
                f"gatekeeper: {name} on http://127.0.0.1:{port} (pid {children[name].pid})",
                flush=True,
            )
        print(
            f"gatekeeper: hold console on http://127.0.0.1:{settings.gate_port}/console",
            flush=True,
        )
        if generated:
            print(
                "gatekeeper: neither GATEKEEPER_OPERATOR_TOKEN nor GATEKEEPER_OPERATORS_FILE "
                f"is set; this run's operator key, for the console and the APIs: {generated}",
                flush=True,
            )
        elif _short(settings):
            print(f"gatekeeper: warning: {SHORT_TOKEN}", file=sys.stderr, flush=True)
        if _wait_ready(settings, children, lambda: stopping):
            print("gatekeeper: running; all three ready. Ctrl-C stops everything", flush=True)
        while not stopping:
            stopping = _any_exited(children)
            time.sleep(0.2)
        failed = any(c.poll() not in (None, 0) for c in children.values())
        return 1 if failed else 0
    finally:
        _stop_children(children)
        if broker is not None:
            broker.stop()
        print("gatekeeper: stopped", flush=True)


def _dead_letters(action: str, delivery_id: str | None, url: str | None, tenant: str | None) -> int:
    settings = load_settings()
    base = (url or f"http://127.0.0.1:{settings.publish_port}").rstrip("/")
    if not base.startswith(("http://", "https://")):
        return _fail(f"--url must be an http(s) URL, not {base!r}")
    token = settings.operator_token.get_secret_value() if settings.operator_token else ""
    authorization = {"Authorization": f"Bearer {token}"}
    # The scheme is checked above, so urllib cannot be sent to file: or the like.
    if action == "list":
        query = f"?{urllib.parse.urlencode({'tenant': tenant})}" if tenant else ""
        request = urllib.request.Request(  # noqa: S310
            f"{base}/v1/dead-letters{query}", headers=authorization
        )
    else:
        if not delivery_id:
            return _fail("redeliver needs the DELIVERY_ID shown by 'dead-letters list'")
        request = urllib.request.Request(  # noqa: S310
            f"{base}/v1/dead-letters/{urllib.parse.quote(delivery_id)}/redeliver",
            method="POST",
            headers=authorization,
        )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            body = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        detail = json.loads(exc.read() or b"{}").get("detail", exc.reason)
        return _fail(f"{exc.code}: {detail}")
    except urllib.error.URLError as exc:
        return _fail(f"publish at {base} is not reachable: {exc.reason}")
    if action == "redeliver":
        print(f"{body['delivery_id']}: {body['status']}")
        return 0
    rows = body["dead_letters"]
    for row in rows:
        print(
            f"{row['delivery_id']}  {row['tenant']}/{row['item_id']} v{row['version']} "
            f"{row['action']} -> {row['channel']}  after {row['attempts']} attempt(s) "
            f"at {row['failed_at']}: {row['reason']}"
        )
    print(f"{len(rows)} dead letter(s)")
    return 0


def _version() -> str:
    try:
        return importlib.metadata.version("gatekeeper")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _send(path: Path, tenant: str, url: str | None) -> int:
    settings = load_settings()
    base = url or f"http://127.0.0.1:{settings.ingest_port}"
    if not base.startswith(("http://", "https://")):
        return _fail(f"--url must be an http(s) URL, not {base!r}")
    try:
        deployment = load_deployment(settings.config_path)
    except ConfigError as exc:
        return _fail(str(exc))
    from services.send import send_event

    return send_event(path, tenant, base, deployment)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gatekeeper", description=__doc__)
    parser.add_argument("--version", action="version", version=f"gatekeeper {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="run the whole pipeline on this machine")
    serve = sub.add_parser("serve", help="run one service, as a pod does")
    serve.add_argument("service", choices=SERVICES)
    dead = sub.add_parser("dead-letters", help="list publish's dead letters, or redeliver one")
    dead.add_argument("action", choices=["list", "redeliver"])
    dead.add_argument("delivery_id", nargs="?", help="with redeliver: which one")
    dead.add_argument("--url", help="publish's base URL (default: this machine's publish port)")
    dead.add_argument("--tenant", help="with list: only this tenant's")
    send = sub.add_parser("send", help="sign an event file as a tenant's CMS and post it")
    send.add_argument("file", type=Path, help="a ContentEvent v1 JSON file")
    send.add_argument("--tenant", required=True, help="the tenant whose secret signs it")
    send.add_argument("--url", help="ingest's base URL (default: this machine's ingest port)")
    follow = sub.add_parser("follow-up", help="the follow-up figures, from the audit trail")
    follow.add_argument("action", choices=["rebuild"])
    follow.add_argument("--tenant", required=True)
    follow.add_argument("--month", required=True, help="YYYY-MM, in Europe/Stockholm")
    config = sub.add_parser("config", help="check a deployment file")
    config.add_argument("action", choices=["check"])
    config.add_argument("file", type=Path, help="the deployment file (YAML)")
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except (SettingsError, BrokerMissing, KafkaRefused) as exc:
        return _fail(str(exc))


def _run(args: argparse.Namespace) -> int:
    if args.command == "up":
        return _up()
    if args.command == "send":
        return _send(args.file, args.tenant, args.url)
    if args.command == "dead-letters":
        return _dead_letters(args.action, args.delivery_id, args.url, args.tenant)
    if args.command == "config":
        return _check_config(args.file)
    if args.command == "follow-up":
        return _rebuild_follow_up(args.tenant, args.month)
    return _serve(args.service)


def _read_to_end(consumer: Any, tp: Any) -> bool:
    end = consumer.highwater(tp)  # None until a fetch has answered for it
    return end is not None and consumer.position(tp) >= end


def _rebuild_follow_up(tenant: str, month: str) -> int:
    """Read gate.decisions from its beginning to the end a fetch reports, fold it as the
    gate does, and print the month's figures as GET /v1/follow-up answers them."""
    from kafka import KafkaConsumer, TopicPartition

    from schemas.api import FollowUpAnswer
    from schemas.events import Decision
    from services.gate.followup import FollowUp

    settings = load_settings()
    if not settings.kafka_bootstrap_servers:
        return _fail("KAFKA_BOOTSTRAP_SERVERS is not set")
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=50,
        **KafkaSecurity.of(settings).client_kwargs(),
    )
    followup = FollowUp()
    try:
        parts = consumer.partitions_for_topic(topics.DECISIONS) or set()
        assigned = [TopicPartition(topics.DECISIONS, p) for p in sorted(parts)]
        consumer.assign(assigned)
        consumer.seek_to_beginning()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=200).values():
                for record in records:
                    try:
                        followup.add(Decision.model_validate_json(record.value or b""))
                    except ValueError:
                        continue
            ends = [consumer.highwater(tp) for tp in assigned]
            if all(
                e is not None and consumer.position(tp) >= e
                for e, tp in zip(ends, assigned, strict=True)
            ):
                break
        else:
            return _fail("gate.decisions could not be read to its end within 120 s")
    finally:
        consumer.close()
    answer = FollowUpAnswer(tenant=tenant, month=month, units=followup.figures(tenant, month))
    print(answer.model_dump_json(indent=2))
    return 0


def _check_config(path: Path) -> int:
    """0 and one line for a valid file; else 1 and one line per problem, naming the key."""
    problems = check_file(path)
    for problem in problems:
        print(f"{path}: {problem}" if not problem.startswith(str(path)) else problem)
    if problems:
        return 1
    for warning in unset_variables(path):
        print(f"{path}: warning: {warning}")
    print(f"{path}: valid")
    return 0


if __name__ == "__main__":
    sys.exit(main())
