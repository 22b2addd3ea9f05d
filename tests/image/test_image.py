"""The container image, built here from a Debian-made base and run as it would run in a pod.

The base is made with mmdebstrap from Debian's packages (no image registry is
reachable here) and cached outside the repository; `buildah bud` builds the
Dockerfile on it and `buildah run` runs it (podman run cannot set rlimits on
this machine). One build serves every test in this module.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from services.runtime.broker import EmbeddedBroker, free_port
from tests.conftest import SECRETS_ENV, content_event
from tests.harness import post_event, wait_until

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


def test_ingest_in_the_image_accepts_an_event_against_a_separate_broker(
    container: str, tmp_path: Path
) -> None:
    port = free_port()
    with EmbeddedBroker(log_path=tmp_path / "broker.log") as broker:
        env = {
            **SECRETS_ENV,
            "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
            "GATEKEEPER_EMBEDDED_BROKER": "true",
            "GATEKEEPER_PARTITIONS": "2",
            "GATEKEEPER_HOST": "127.0.0.1",
            "GATEKEEPER_INGEST_PORT": str(port),
        }
        with open(tmp_path / "ingest.log", "wb") as log:
            proc = subprocess.Popen(
                _run(container, "gatekeeper", "serve", "ingest", env=env),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        url = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            assert proc.poll() is None, (tmp_path / "ingest.log").read_text()[-3000:]
            try:
                return httpx.get(f"{url}/readyz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        try:
            wait_until(ready, 120, "ingest in the image answering /readyz")
            answer = post_event(url, content_event())
            assert answer.status_code == 202, answer.text
            assert answer.json()["status"] == "accepted"
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    # A read-only root filesystem holds: the container's own layer (what the run
    # changed) has nothing outside the data volume and /tmp.
    merged = subprocess.run(
        [BUILDAH, "mount", container], capture_output=True, text=True, check=True
    ).stdout.strip()
    try:
        layer = Path(merged).parent / "diff"
        written = [
            str(p.relative_to(layer))
            for p in layer.rglob("*")
            if p.is_file()
            and not str(p.relative_to(layer)).startswith(("var/lib/gatekeeper", "tmp"))
        ]
    finally:
        subprocess.run([BUILDAH, "umount", container], capture_output=True, check=False)
    assert layer.is_dir(), layer
    assert written == [], written
