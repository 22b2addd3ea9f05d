"""Personal data is not repeated (CONTRACT 3.8): an identity number in an event reaches
only the held event itself and what channels receive; every decision, finding,
notification and log line the gate writes about it masks it."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import tempfile
from contextlib import redirect_stderr
from pathlib import Path
from typing import Any

import structlog
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.runtime import topics
from services.runtime.config import DEFAULT_CONFIG_PATH, load_deployment
from services.runtime.identity_numbers import contains_identity_number, mask_identity_numbers
from services.runtime.logs import configure_logging
from tests.conftest import SECRETS_ENV, content_event, internal_notice
from tests.properties import examples
from tests.service.conftest import FakeClock
from tests.service.test_gate import LoopbackGate, _hold
from tests.unit.test_content import identity_numbers

LONG = (
    "Kommunstyrelsens förvaltningsorganisation tillhandahåller informationsmaterial "
    "beträffande ansökningsförfarandet för {n} och därtill hörande handläggningsrutiner "
    "samt överklagandeprocesser inom socialförvaltningens verksamhetsområde"
)

PLACES = ("title", "body", "summary", "recipients", "unit", "link_text", "alt", "html", "contact")


def _event(place: str, number: str, **fields: Any) -> dict[str, Any]:
    text = LONG.format(n=number)
    event = content_event(**fields)
    if place in ("title", "recipients", "unit"):
        event[place] = f"Besked till {number}"
    elif place in ("body", "summary"):
        event[place] = f"{text}. {text}."
    elif place == "link_text":
        event["links"] = [{"url": "https://www.lerum.se/a", "text": f"Läs mer om {number}"}]
    elif place == "alt":
        event["images"] = [{"url": "https://www.lerum.se/a.jpg", "alt": f"{number}.jpg"}]
    elif place == "html":
        event["body"] = f"<h3>{number}</h3><p>{text}</p><p><a href='https://x.se'>Här</a></p>"
    else:
        event["contact"] = {"name": f"Handläggare {number}", "email": "a@lerum.se"}
    return event


def _forms(number: str) -> list[str]:
    """The number as written and as its digits alone, with and without century."""
    digits = re.sub(r"\D", "", number)
    return [number, digits, digits[-10:], f"{digits[-10:-4]} {digits[-4:]}"]


def _leaks(text: str, number: str) -> bool:
    return contains_identity_number(text) or any(form in text for form in _forms(number))


def _deployment() -> Any:
    raw = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    raw["tenants"]["lerum"]["notifications"] = {
        "notify_after": "PT10M",
        "desk": ["kommunikation@lerum.se"],
        "smtp": {"host": "127.0.0.1", "port": 25, "from": "publicering@lerum.se"},
    }
    return raw


def _gate(clock: FakeClock) -> LoopbackGate:
    """The gate on in-memory ports, Lerum's desk told of holds by e-mail."""
    path = Path(tempfile.mkdtemp()) / "gatekeeper.yaml"
    path.write_text(yaml.safe_dump(_deployment(), allow_unicode=True))
    return LoopbackGate(load_deployment(path, SECRETS_ENV), clock)


@settings(
    max_examples=examples(60),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(identity_numbers(), st.sampled_from(PLACES), st.sampled_from(["external", "internal"]))
def test_nothing_the_gate_writes_repeats_an_identity_number(
    number: str, place: str, audience: str
) -> None:
    clock = FakeClock()
    gate = _gate(clock)
    base = content_event() if audience == "external" else internal_notice()
    event = _event(place, number, **{k: base[k] for k in ("audience", "channels", "recipients")})
    if place == "recipients":
        event["recipients"] = f"Besked till {number}"

    async def run() -> None:
        fields = {k: v for k, v in event.items() if k != "item_id"}
        await _hold(gate, clock, event["item_id"], **fields)
        for _ in range(3):  # past notify_after and escalate_after, a tick each time
            clock.advance(hours=30)
            await gate.handler.tick_due()

    asyncio.run(run())

    # The held rows carry the held text for the console, like the item table: only
    # while it is held (a tombstone follows); their findings are checked below.
    held = [r for r in gate.outbox.sent if r.topic == topics.HELD and r.value]
    written = [r for r in gate.outbox.sent if r.topic not in (topics.RELEASES, topics.HELD)]
    kinds = {json.loads(r.value or b"{}").get("kind") for r in written}
    assert "held" in kinds, "the content rule holds it: there are findings to write"
    for record in written:
        assert not _leaks((record.value or b"").decode(), number), record.topic
    notifications = [r for r in written if r.topic == topics.NOTIFICATIONS]
    assert notifications, "a notification about the hold was written"
    assert held, "the hold is on the held list"
    for record in held:
        for row in json.loads(record.value or b"[]"):
            assert not _leaks(json.dumps(row["findings"] + row["reasons"]), number)


@given(identity_numbers())
def test_a_traceback_in_a_log_line_is_masked(number: str) -> None:
    out = io.StringIO()
    with redirect_stderr(out):
        configure_logging("gate", "info", console=False)
        try:
            raise ValueError(f"cannot parse {number}")
        except ValueError:
            structlog.get_logger("gatekeeper").exception("parse.failed")
            logging.getLogger("aiokafka").exception("stdlib too")
    structlog.reset_defaults()
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["event"] for line in lines] == ["parse.failed", "stdlib too"]
    for line in lines:
        assert "ValueError" in line["exception"]
        assert not _leaks(json.dumps(line, ensure_ascii=False), number)


@given(identity_numbers())
def test_every_written_form_is_masked(number: str) -> None:
    digits = re.sub(r"\D", "", number)
    spaced = f"{digits[:-4]} {digits[-4:]}"
    for form in (number, spaced, digits):
        assert mask_identity_numbers(f"Ärende {form}, tack") == "Ärende [personnummer], tack"
