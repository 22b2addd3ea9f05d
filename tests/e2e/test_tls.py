"""The services through TLS: a terminator in front of the embedded broker, certificates
made here, a CA that signed them and one that did not."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.runtime.broker import EmbeddedBroker, free_port
from tests.conftest import content_event
from tests.e2e.certs import make_ca, make_server_cert
from tests.harness import Pipeline, held_rows, post_event, unique_item, wait_until


@pytest.fixture
def tls_bootstrap(tmp_path: Path) -> Iterator[str]:
    """The embedded broker behind stunnel, advertising the TLS port; yields that address."""
    make_ca(tmp_path, "ca")
    make_ca(tmp_path, "rogue-ca")
    make_server_cert(tmp_path, "ca")
    tls_port = free_port()
    with EmbeddedBroker(log_path=tmp_path / "broker.log", advertised_port=tls_port) as broker:
        conf = tmp_path / "stunnel.conf"
        conf.write_text(
            f"foreground = yes\npid =\n[kafka]\naccept = 127.0.0.1:{tls_port}\n"
            f"connect = 127.0.0.1:{broker.port}\n"
            f"cert = {tmp_path / 'server.pem'}\nkey = {tmp_path / 'server.key'}\n"
        )
        stunnel = shutil.which("stunnel4") or shutil.which("stunnel") or "stunnel4"
        with open(tmp_path / "stunnel.log", "wb") as log:
            proc = subprocess.Popen([stunnel, str(conf)], stdout=log, stderr=subprocess.STDOUT)
        try:
            yield f"127.0.0.1:{tls_port}"
        finally:
            proc.terminate()
            proc.wait(10)


def test_the_services_work_through_tls_and_refuse_an_unknown_ca(
    tls_bootstrap: str, tmp_path: Path
) -> None:
    workdir = tmp_path / "pipeline"
    workdir.mkdir()
    pipeline = Pipeline(tls_bootstrap, workdir)
    tls = {"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CAFILE": str(tmp_path / "ca.pem")}
    try:
        ingest = pipeline.add("ingest", **tls).start()
        gate = pipeline.add("gate", **tls).start()
        item = unique_item("tls")
        assert post_event(ingest.url, content_event(item_id=item)).status_code == 202
        wait_until(
            lambda: held_rows(gate.url, item),
            60,
            "the event through TLS to the gate's held list",
        )
    finally:
        pipeline.stop_all()

    rogue = pipeline.env(
        KAFKA_SECURITY_PROTOCOL="SSL", KAFKA_SSL_CAFILE=str(tmp_path / "rogue-ca.pem")
    )
    refused = subprocess.run(
        [sys.executable, "-m", "services.cli", "serve", "ingest"],
        env=rogue,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode != 0
    last = refused.stderr.strip().splitlines()[-1]
    assert last.startswith("gatekeeper: KAFKA_SSL_CAFILE: the broker at")
    assert "not trusted" in last


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "KAFKA_SASL_MECHANISM is required"),
        (
            {"KAFKA_SECURITY_PROTOCOL": "PLAINTEXT", "KAFKA_SASL_USERNAME": "gatekeeper"},
            "KAFKA_SASL_USERNAME is set, but KAFKA_SECURITY_PROTOCOL=PLAINTEXT",
        ),
        ({"KAFKA_SECURITY_PROTOCOL": "TLS"}, "KAFKA_SECURITY_PROTOCOL: Input should be"),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CERTFILE": "/etc/hostname"},
            "KAFKA_SSL_CERTFILE and KAFKA_SSL_KEYFILE go together",
        ),
    ],
)
def test_a_bad_combination_stops_start_up_with_one_line_naming_the_setting(
    env: dict[str, str], named: str, tmp_path: Path
) -> None:
    pipeline = Pipeline("127.0.0.1:9", tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "services.cli", "serve", "gate"],
        env=pipeline.env(**env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert named in lines[0]
