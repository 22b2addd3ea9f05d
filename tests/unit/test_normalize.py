"""Ingest's validation: every problem named by field, the same for HTTP and Kafka."""

from __future__ import annotations

import json

from schemas import ContentEvent
from services.ingest.normalize import Invalid, check_event
from services.runtime.keys import ItemKey
from tests.conftest import content_event

TENANTS = {
    "lerum": {"intranet": "internal", "web": "external", "press": "external"},
    "ale": {"intranet": "internal", "web": "external"},
}


def _check(event: object, tenant: str | None = "lerum", item_id: str | None = None) -> object:
    return check_event(json.dumps(event).encode(), TENANTS, tenant=tenant, item_id=item_id)


def _fields(result: object) -> list[str]:
    assert isinstance(result, Invalid)
    return [e.field for e in result.errors]


def test_valid_event_parses() -> None:
    result = _check(content_event())
    assert isinstance(result, ContentEvent)
    assert result.channels == ["web"]


def test_not_json_is_400() -> None:
    for body in (b"{", b"\xff\xfe", b""):
        result = check_event(body, TENANTS, tenant="lerum")
        assert isinstance(result, Invalid)
        assert result.status == 400


def test_json_that_is_not_an_object_is_422() -> None:
    result = check_event(b"[1, 2]", TENANTS, tenant="lerum")
    assert isinstance(result, Invalid)
    assert (result.status, _fields(result)) == (422, ["(body)"])


def test_every_bad_field_is_listed() -> None:
    event = content_event(version="one", audience="staff", channels=["web", "tv"])
    del event["title"]
    fields = _fields(_check(event))
    assert set(fields) == {"version", "audience", "title", "channels[1]"}


def test_nested_fields_are_named_with_their_path() -> None:
    event = content_event(
        images=[{"url": "u", "alt": "ok"}, {"url": "u", "alt": ""}], links=[{"url": "u"}]
    )
    assert set(_fields(_check(event))) == {"images[1].alt", "links[0].text"}


def test_tenant_must_match_the_path() -> None:
    result = _check(content_event(tenant="ale"))
    assert _fields(result) == ["tenant"]
    assert isinstance(result, Invalid)
    assert "'lerum'" in result.errors[0].problem


def test_channels_must_exist_and_match_the_audience() -> None:
    assert _fields(_check(content_event(channels=["intranet"]))) == ["channels[0]"]
    internal = content_event(audience="internal", channels=["intranet", "web"])
    assert _fields(_check(internal)) == ["channels[1]"]
    assert _fields(_check(content_event(channels=[]))) == ["channels"]


def test_press_needs_a_contact() -> None:
    assert _fields(_check(content_event(channels=["press"]))) == ["contact"]
    with_contact = content_event(channels=["press"], contact={"name": "Anna Andersson"})
    assert isinstance(_check(with_contact), ContentEvent)


def test_a_retract_may_name_no_channels() -> None:
    assert isinstance(_check(content_event(action="retract", channels=[])), ContentEvent)


def test_kafka_key_decides_tenant_and_item() -> None:
    assert isinstance(
        _check(content_event(), tenant="lerum", item_id="news-2026-001"), ContentEvent
    )
    assert _fields(_check(content_event(), tenant="lerum", item_id="other")) == ["item_id"]
    assert _fields(_check(content_event(tenant="oslo"), tenant=None)) == ["tenant"]
    assert isinstance(_check(content_event(tenant="ale"), tenant=None), ContentEvent)


def test_a_record_key_names_tenant_and_item_or_nothing() -> None:
    assert ItemKey.parse(b"lerum:news:1") == ItemKey("lerum", "news:1")
    assert ItemKey.parse(b"lerum") is None
    assert ItemKey.parse(b":x") is None
    assert ItemKey.parse(None) is None
    assert ItemKey.parse(b"\xff:x") is None


def test_pointer_is_a_json_pointer() -> None:
    result = _check(content_event(images=[{"url": "u", "alt": ""}]))
    assert isinstance(result, Invalid)
    assert result.errors[0].as_dict()["pointer"] == "#/images/0/alt"


def test_a_refused_event_is_audited_with_what_could_be_read() -> None:
    from datetime import UTC, datetime

    from services.ingest.normalize import rejection

    body = json.dumps(content_event(version=3, audience="external", publish_at="soon")).encode()
    invalid = _check(json.loads(body))
    assert isinstance(invalid, Invalid)
    now = datetime(2026, 3, 1, tzinfo=UTC)
    decision = rejection(body, invalid, tenant="lerum", item_id=None, event_id="msg_1", now=now)
    assert (decision.kind, decision.rule, decision.tenant) == ("rejected", "contract_v1", "lerum")
    assert (decision.item_id, decision.version, decision.audience) == (
        "news-2026-001",
        3,
        "external",
    )
    assert "publish_at" in decision.reason
    assert decision.decided_at == now
    garbage = rejection(
        b"\xff",
        Invalid(400, "body is not JSON"),
        tenant="ale",
        item_id=None,
        event_id="msg_2",
        now=now,
    )
    assert (garbage.item_id, garbage.version, garbage.reason) == ("unknown", 0, "body is not JSON")
    again = rejection(body, invalid, tenant="lerum", item_id=None, event_id="msg_1", now=now)
    assert again.decision_id == decision.decision_id


def test_an_accepted_event_is_audited_with_its_item_version_and_time() -> None:
    from datetime import UTC, datetime

    from schemas.events import AcceptedEvent
    from services.runtime.audit import acceptance

    event = ContentEvent.model_validate(content_event(version=2, audience="external"))
    received = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
    accepted = AcceptedEvent(
        event_id="ev-1",
        tenant="lerum",
        item_id=event.item_id,
        source="http",
        received_at=received,
        event=event,
    )
    decision = acceptance(accepted)
    assert (decision.kind, decision.rule, decision.event_id) == ("accepted", "contract_v1", "ev-1")
    assert (decision.tenant, decision.item_id, decision.version) == ("lerum", event.item_id, 2)
    assert (decision.audience, decision.channels) == ("external", list(event.channels))
    assert (decision.decided_at, decision.publish_at) == (received, event.publish_at)
    other = acceptance(accepted.model_copy(update={"event_id": "ev-2"}))
    assert acceptance(accepted).decision_id == decision.decision_id != other.decision_id


def test_json_nested_too_deeply_is_refused_as_400_not_a_crash() -> None:
    result = check_event(b"[" * 100_000 + b"]" * 100_000, {"lerum": {}}, tenant="lerum")
    assert isinstance(result, Invalid)
    assert result.status == 400
    assert "nested too deeply" in result.reason


def test_a_field_of_the_wrong_type_is_a_422_naming_it_not_a_crash() -> None:
    body = json.dumps(content_event(audience=[], tenant={"x": 1}, channels=[[1]])).encode()
    result = check_event(body, {"lerum": {"web": "external"}}, tenant="lerum")
    assert isinstance(result, Invalid)
    assert result.status == 422
    assert {"audience", "tenant"} <= {e.field for e in result.errors}
