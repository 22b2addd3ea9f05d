"""The container image, built here from a Debian-made base and run as it would run in a pod.

The base is made with mmdebstrap from Debian's packages (no image registry is
reachable here) and cached outside the repository; `buildah bud` builds the
Dockerfile on it and `buildah run` runs it (podman run cannot set rlimits on
this machine). One build serves every test in this module.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from kafka import KafkaProducer

from services.runtime import topics
from services.runtime.broker import EmbeddedBroker, free_port
from services.runtime.stamps import stamp_header
from tests.conftest import OPERATOR_AUTH, SECRETS_ENV, content_event
from tests.harness import descendants, post_event, wait_until

ROOT = Path(__file__).resolve().parents[2]
BUILDAH = shutil.which("buildah") or "/usr/bin/buildah"
BASH = shutil.which("bash") or "/bin/bash"
TAG = "localhost/gatekeeper:test"


@pytest.fixture(scope="module")
def image() -> str:
    built = subprocess.run(
        [BASH, str(ROOT / "scripts" / "image"), TAG],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    return built.stdout.strip().splitlines()[-1]


@pytest.fixture
def container(image: str) -> Iterator[str]:
    name = subprocess.run(
        [BUILDAH, "from", "--quiet", image], capture_output=True, text=True, check=True
    ).stdout.strip()
    try:
        yield name
    finally:
        subprocess.run([BUILDAH, "rm", name], capture_output=True, check=False)


def _run(container: str, *argv: str, env: dict[str, str] | None = None) -> list[str]:
    flags = [f"--env={k}={v}" for k, v in (env or {}).items()]
    return [BUILDAH, "run", "--isolation", "chroot", *flags, container, "--", *argv]


def test_the_image_runs_as_uid_10001_without_the_embedded_broker(container: str) -> None:
    whoami = subprocess.run(_run(container, "id", "-u"), capture_output=True, text=True)
    assert whoami.stdout.strip() == "10001"
    # Every service's code imports with what the image installed (its pins).
    services = (
        "import services.ingest.bootstrap, services.gate.bootstrap, services.publish.bootstrap"
    )
    imported = subprocess.run(
        _run(container, "/opt/gatekeeper/bin/python", "-c", services),
        capture_output=True,
        text=True,
    )
    assert imported.returncode == 0, imported.stderr[-2000:]
    local = subprocess.run(
        _run(container, "gatekeeper", "up", env=SECRETS_ENV), capture_output=True, text=True
    )
    assert local.returncode != 0
    # What the program said; buildah adds lines of its own about the exit status.
    assert local.stderr.strip().splitlines()[0] == (
        "gatekeeper: the embedded broker is not installed: pip install 'gatekeeper[local]', "
        "or set KAFKA_BOOTSTRAP_SERVERS to a Kafka cluster"
    )
    config = subprocess.run(
        [BUILDAH, "inspect", "--type", "container", container], capture_output=True, text=True
    )
    oci = json.loads(config.stdout)["OCIv1"]["config"]
    assert oci["Entrypoint"] == ["/opt/gatekeeper/bin/gatekeeper"]
    assert oci["User"] == "10001:10001"
    assert "/var/lib/gatekeeper" in oci["Volumes"]


@contextlib.contextmanager
def _serving(
    container: str, service: str, env: dict[str, str], port: int, log_path: Path
) -> Iterator[tuple[str, int]]:
    """``gatekeeper serve SERVICE`` in the image, as the chart starts it, until it
    answers ``/readyz``; its address and the process id of ``buildah run``. SIGTERM
    at the end."""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            _run(container, "gatekeeper", "serve", service, env=env),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        assert proc.poll() is None, log_path.read_text()[-3000:]
        try:
            return httpx.get(f"{url}/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(ready, 120, f"{service} in the image answering /readyz")
        yield url, proc.pid
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _broker_env(broker: EmbeddedBroker, **more: str) -> dict[str, str]:
    """A service's environment as the chart gives it: a broker it did not start, and
    no embedded-broker flag (the chart's group timings and fetch wait)."""
    return {
        **SECRETS_ENV,
        "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
        "GATEKEEPER_PARTITIONS": "2",
        "GATEKEEPER_HOST": "127.0.0.1",
        **more,
    }


def _written_outside_the_volume(container: str) -> list[str]:
    """What the run wrote to the container's own layer outside the data volume and
    /tmp: nothing, where a read-only root filesystem holds."""
    merged = subprocess.run(
        [BUILDAH, "mount", container], capture_output=True, text=True, check=True
    ).stdout.strip()
    try:
        layer = Path(merged).parent / "diff"
        assert layer.is_dir(), layer
        return [
            str(p.relative_to(layer))
            for p in layer.rglob("*")
            if p.is_file()
            and not str(p.relative_to(layer)).startswith(("var/lib/gatekeeper", "tmp"))
        ]
    finally:
        subprocess.run([BUILDAH, "umount", container], capture_output=True, check=False)


def test_ingest_in_the_image_accepts_an_event_against_a_separate_broker(
    container: str, tmp_path: Path
) -> None:
    port = free_port()
    with EmbeddedBroker(log_path=tmp_path / "broker.log") as broker:
        env = _broker_env(broker, GATEKEEPER_INGEST_PORT=str(port))
        with _serving(container, "ingest", env, port, tmp_path / "ingest.log") as (url, _):
            answer = post_event(url, content_event())
            assert answer.status_code == 202, answer.text
            assert answer.json()["status"] == "accepted"
    written = _written_outside_the_volume(container)
    assert written == [], written


def test_the_gate_in_the_image_lists_what_is_held_through_its_page_reader(
    container: str, tmp_path: Path
) -> None:
    """The gate's page reader is a second process: it runs from the image's
    installation, and the list it reads shows a row another gate process wrote."""
    port = free_port()
    row = {
        "tenant": "lerum",
        "item_id": "badplats",
        "version": 1,
        "audience": "external",
        "title": "Ny badplats vid Aspen",
        "reasons": ["awaiting_internal_notice"],
        "held_since": "2026-06-01T08:00:00+00:00",
    }
    with EmbeddedBroker(log_path=tmp_path / "broker.log") as broker:
        env = _broker_env(broker, GATEKEEPER_GATE_PORT=str(port))
        with _serving(container, "gate", env, port, tmp_path / "gate.log") as (url, run):
            producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks=1)
            producer.send(
                topics.HELD,
                key=b"lerum:badplats",
                value=json.dumps([row]).encode(),
                headers=[stamp_header(time.time())],
            )
            producer.flush()
            producer.close()

            def listed() -> list[dict[str, object]]:
                answer = httpx.get(f"{url}/v1/held", params={"q": "badplats"},
                                   headers=OPERATOR_AUTH, timeout=5)  # fmt: skip
                assert answer.status_code == 200, answer.text
                return list(answer.json()["held"])

            wait_until(lambda: bool(listed()), 30, "the held row listed")
            assert [(r["item_id"], r["title"]) for r in listed()] == [
                ("badplats", "Ny badplats vid Aspen")
            ]
            readers = [
                argv for argv in descendants(run).values() if "services.gate.board_pages" in argv
            ]
        log = (tmp_path / "gate.log").read_text()
    assert len(readers) == 1, readers
    assert readers[0][0].startswith("/opt/gatekeeper/bin/python"), readers
    assert "held.page_worker_failed" not in log
    written = _written_outside_the_volume(container)
    assert written == [], written
