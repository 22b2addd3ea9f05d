"""What a CMS's status webhook is told about each decision, as a pure function."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from schemas.events import ContentEvent, Decision
from services.gate.state import AWAITING_INTERNAL_NOTICE, AWAITING_PUBLISH_AT, Held
from services.gate.status import status_of
from tests.conftest import content_event

T = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
URL = "https://publicering.lerum.se/console/items/lerum/a-1"


def _decision(kind: str, **fields: Any) -> Decision:
    base: dict[str, Any] = {
        "decision_id": f"d-{kind}",
        "kind": kind,
        "reason": AWAITING_INTERNAL_NOTICE,
        "rule": "internal_before_external",
        "tenant": "lerum",
        "item_id": "a-1",
        "version": 1,
        "audience": "external",
        "channels": ["web"],
        "event_id": "e-1",
        "decided_at": T,
    }
    return Decision.model_validate({**base, **fields})


def _held(*reasons: str) -> Held:
    event = ContentEvent.model_validate(content_event(item_id="a-1"))
    return Held(event_id="e-1", event=event, held_since=T, reasons=reasons)


def test_a_hold_tells_why_in_swedish_with_the_console_link() -> None:
    held = _held(AWAITING_INTERNAL_NOTICE, AWAITING_PUBLISH_AT)
    told = status_of(_decision("held"), held, URL)
    assert told is not None
    assert told.status == "held"
    assert [(r.code, r.text) for r in told.reasons] == [
        (AWAITING_INTERNAL_NOTICE, "Väntar på intern information"),
        (AWAITING_PUBLISH_AT, "Väntar på publiceringstid"),
    ]
    assert told.console_url == URL
    assert told.channels == []
    assert told.released_at is None
    assert told.status_id == "d-held", "a status sent again keeps its id"


def test_a_release_by_the_rule_or_by_a_person_is_released_with_channels_and_time() -> None:
    by_rule = status_of(_decision("released", channels=["web", "social"]), None, URL)
    assert by_rule is not None
    assert (by_rule.status, by_rule.channels, by_rule.released_at) == (
        "released",
        ["web", "social"],
        T,
    )
    assert by_rule.reasons == []
    assert by_rule.console_url is None
    by_person = status_of(
        _decision("overridden", operator="Anna Andersson", operator_reason="Muntligt"), None, URL
    )
    assert by_person is not None
    assert (by_person.status, by_person.operator, by_person.operator_reason) == (
        "released",
        "Anna Andersson",
        "Muntligt",
    )


def test_a_rejection_names_the_person_and_reason_without_an_identity_number() -> None:
    told = status_of(
        _decision(
            "rejected_by_operator",
            operator="Anna Andersson",
            operator_reason="Gäller 19121212-1212, fel person",
        ),
        None,
        URL,
    )
    assert told is not None
    assert told.status == "rejected"
    assert told.operator == "Anna Andersson"
    assert told.operator_reason is not None
    assert "1212" not in told.operator_reason
    assert "fel person" in told.operator_reason


@pytest.mark.parametrize("kind", ["accepted", "stale", "retracted", "notified", "rejected"])
def test_bookkeeping_decisions_tell_the_cms_nothing(kind: str) -> None:
    assert status_of(_decision(kind), _held(AWAITING_INTERNAL_NOTICE), URL) is None


def test_an_escalation_tells_what_still_waits() -> None:
    told = status_of(_decision("escalated"), _held(AWAITING_PUBLISH_AT), URL)
    assert told is not None
    assert told.status == "escalated"
    assert [r.code for r in told.reasons] == [AWAITING_PUBLISH_AT]
