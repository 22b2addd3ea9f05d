"""Content checks from the tenants' policies."""

from __future__ import annotations

from schemas import ContentEvent
from services.gate.checks import findings
from tests.conftest import content_event

PNR = ("personal_identity_number", "block", (), None)


def _event(**overrides: object) -> ContentEvent:
    return ContentEvent.model_validate(content_event(**overrides))


def test_a_valid_personnummer_in_the_body_is_found() -> None:
    assert findings(_event(body="Ring om 19811218-9876 gäller."), [PNR]) == (
        ("personal_identity_number", "block"),
    )
    assert findings(_event(summary="811218-9876"), [PNR]) == (
        ("personal_identity_number", "block"),
    )


def test_numbers_that_are_not_personnummer_pass() -> None:
    assert findings(_event(body="Ring 0302-521000 eller diarienr 2026-1234."), [PNR]) == ()
    assert findings(_event(body="19811218-9877"), [PNR]) == ()  # bad checksum


def test_other_rules() -> None:
    rules = [
        ("forbidden_words", "block", ("hemligt",), None),
        ("max_title_length", "warn", (), 10),
        ("summary_required", "warn", (), None),
    ]
    assert findings(_event(body="Detta är HEMLIGT.", summary=None), rules) == (
        ("forbidden_words", "block"),
        ("max_title_length", "warn"),
        ("summary_required", "warn"),
    )
    assert findings(_event(title="Kort"), rules) == ()
