"""`gatekeeper up`: one command brings the pipeline up on its own broker and takes it all down."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import SECRETS_ENV, content_event, internal_notice
from tests.harness import TopicReader, post_event, start_up, unique_item, wait_until


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie has exited; only its parent has not reaped it yet.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


@pytest.mark.parametrize("stop", ["sigterm", "ctrl-c"])
def test_up_runs_the_pipeline_on_an_embedded_broker_and_stops_everything(
    tmp_path: Path, stop: str
) -> None:
    up, ports, out, env = start_up(tmp_path)
    try:
        printed = wait_until(
            lambda: (lambda t: t if "running" in t else None)(out.read_text()), 60, "up to start"
        )
        broker = re.search(r"broker on (\S+) \(pid (\d+)\)", printed)
        assert broker is not None, printed
        pids = [int(broker.group(2))] + [
            int(p) for p in re.findall(r"on http://\S+ \(pid (\d+)\)", printed)
        ]
        assert len(pids) == 4
        for name, port in ports.items():
            assert f"{name.lower()} on http://127.0.0.1:{port}" in printed
        ingest = f"http://127.0.0.1:{ports['ingest']}"
        # "running" is said only once all three answer /readyz.
        for port in ports.values():
            assert _ready(f"http://127.0.0.1:{port}"), f"readyz on {port}"
        # No key was set, as in the README: up made one for this run and said it once.
        said = re.search(r"this run's operator key, for the console and the APIs: (\S+)", printed)
        assert said is not None, printed
        key = said.group(1)
        assert len(key) >= 32
        held = f"http://127.0.0.1:{ports['gate']}/v1/held"
        assert httpx.get(held, headers={"Authorization": f"Bearer {key}"}).status_code == 200
        assert httpx.get(held, headers={"Authorization": "Bearer guess"}).status_code == 401

        item = unique_item("up")
        topics = TopicReader(broker.group(1))
        assert post_event(ingest, content_event(item_id=item)).status_code == 202
        notice = tmp_path / "notice.json"
        notice.write_text(json.dumps(internal_notice(item_id=item), ensure_ascii=False))
        sent = subprocess.run(
            [sys.executable, "-m", "services.cli", "send", str(notice), "--tenant", "lerum"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert sent.returncode == 0, sent.stderr
        assert sent.stdout.startswith("202 ")
        assert json.loads(sent.stdout[4:])["status"] == "accepted"
        web = topics.wait_for("external.web", f"lerum:{item}", lambda v: len(v) == 1)
        assert web[0]["sender"]["organization"] == "Lerums kommun"

        started = time.monotonic()
        if stop == "sigterm":
            up.send_signal(signal.SIGTERM)
        else:  # a terminal's Ctrl-C reaches every process of the foreground group
            os.killpg(up.pid, signal.SIGINT)
        assert up.wait(60) == 0
        # Under the 30 s grace period: no service hung on a broker already gone.
        assert time.monotonic() - started < 30
        assert "gatekeeper: stopped" in out.read_text()
        assert [pid for pid in pids if _alive(pid)] == []
    finally:
        if up.poll() is None:
            up.kill()


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_up_refuses_bad_configuration_with_one_message(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(
        "tenants:\n  lerum:\n    name: Lerums kommun\n    secret_env: GATEKEEPER_SECRET_LERUM\n"
        "    sender: {organization: Lerums kommun, logo_url: x, website: y,"
        " contact: {name: K}}\n"
        "    policy: {internal_lead: soon}\n"
        "    channels: [{name: intranet, audience: internal, transport: {kind: kafka, topic: i}}]\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEKEEPER_", "KAFKA_"))}
    env.update(SECRETS_ENV, GATEKEEPER_CONFIG=str(config))
    result = subprocess.run(
        [sys.executable, "-m", "services.cli", "up"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "bad.yaml" in result.stderr
    assert "tenants.lerum.policy.internal_lead" in result.stderr
    assert "broker" not in result.stdout  # nothing was started


def test_a_bad_environment_variable_is_named_and_its_value_not_echoed() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEKEEPER_", "KAFKA_"))}
    env.update(SECRETS_ENV, GATEKEEPER_GATE_STORE="tape-drive", GATEKEEPER_PARTITIONS="many")
    result = subprocess.run(
        [sys.executable, "-m", "services.cli", "serve", "gate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "GATEKEEPER_GATE_STORE: Input should be 'memory' or 'rocksdb'" in lines[0]
    assert "GATEKEEPER_PARTITIONS" in lines[0]
    assert "tape-drive" not in lines[0]
    assert "Traceback" not in result.stderr
