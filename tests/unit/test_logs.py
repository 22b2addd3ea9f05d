"""Log lines are JSON with the ids ops search by, and never carry secrets or identity numbers."""

from __future__ import annotations

import json
import logging

import pytest
import structlog

from services.runtime.logs import configure_logging, drop_secrets, redact_identity_numbers


def test_identity_numbers_are_masked_everywhere() -> None:
    event = {
        "event": "x",
        "body": "Kontakta 19811218-9876 eller 811218+9876",
        "nested": {"list": ["201701102384"]},
        "count": 12,
    }
    masked = redact_identity_numbers(None, "info", event)
    assert "9876" not in json.dumps(masked)
    assert "2384" not in json.dumps(masked)
    assert masked["count"] == 12


def test_phone_numbers_and_ids_are_left_alone() -> None:
    event = {
        "phone": "0302-52 10 00",
        "item_id": "news-2026-001",
        "event_id": "6f1d7c1e-3c52",
        "hex": "news-9a1234567890",
        "offset": "4455667788",
        "bad_checksum": "19811218-9877",
    }
    assert redact_identity_numbers(None, "info", event) == event


def test_secret_keys_are_redacted() -> None:
    event = {
        "webhook_secret": "whsec_abc",
        "operator_token": "t",
        "signature": "v1,x",
        "tenant": "ale",
    }
    assert drop_secrets(None, "info", event) == {
        "webhook_secret": "[redacted]",
        "operator_token": "[redacted]",
        "signature": "[redacted]",
        "tenant": "ale",
    }


def test_lines_are_json_with_ids(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("ingest")
    try:
        structlog.get_logger("t").info(
            "event.accepted",
            tenant="lerum",
            item_id="n-1",
            event_id="e-1",
            body="pnr 19811218-9876",
        )
        logging.getLogger("aiokafka").warning("broker gone")
    finally:
        structlog.reset_defaults()
        structlog.contextvars.clear_contextvars()
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert lines[0]["event"] == "event.accepted"
    assert (lines[0]["tenant"], lines[0]["item_id"], lines[0]["event_id"]) == (
        "lerum",
        "n-1",
        "e-1",
    )
    assert lines[0]["service"] == "ingest"
    assert "9876" not in lines[0]["body"]
    assert lines[1]["event"] == "broker gone"
    assert lines[1]["level"] == "warning"


def test_on_a_terminal_the_lines_are_for_people_and_still_masked(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("gate", console=True)
    try:
        structlog.get_logger("t").info("decision.held", tenant="lerum", body="19811218-9876")
        line = capsys.readouterr().err.strip()
    finally:  # the configuration holds capsys's stream, which closes with this test
        structlog.reset_defaults()
        logging.getLogger().handlers.clear()
    assert "decision.held" in line
    assert "tenant=lerum" in line
    assert not line.startswith("{")
    assert "9876" not in line


def test_the_version_is_the_package_s(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import version

    from services.cli import main

    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"gatekeeper {version('gatekeeper')}"
