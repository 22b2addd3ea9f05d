"""The event contract: what ContentEvent v1 accepts and refuses, and schema drift."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from schemas import ContentEvent, Image, PublishedNotice
from schemas.events import ItemStatus
from schemas.export import SCHEMA_DIR, main, rendered
from tests.conftest import content_event

EXAMPLES = Path(__file__).resolve().parents[2] / "schemas" / "examples"


@pytest.mark.parametrize(
    "path", sorted(EXAMPLES.glob("content-event-*.json")), ids=lambda p: p.name
)
def test_golden_examples_are_valid(path: Path) -> None:
    event = ContentEvent.model_validate_json(path.read_text())
    assert event.schema_version == 1


def test_the_intranet_example_is_what_a_kafka_channel_receives() -> None:
    notice = PublishedNotice.model_validate_json((EXAMPLES / "published-notice.json").read_text())
    assert notice.sender.organization == "Lerums kommun"
    assert notice.channel == "intranet"


def test_defaults_of_optional_fields() -> None:
    event = ContentEvent.model_validate(content_event())
    assert (event.crisis, event.language, event.images, event.links) == (False, "sv", [], [])
    assert event.summary is not None


def _errors(**overrides: object) -> set[str]:
    with pytest.raises(ValidationError) as caught:
        ContentEvent.model_validate(content_event(**overrides))
    return {".".join(str(p) for p in e["loc"]) for e in caught.value.errors()}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("schema_version", 2),
        ("item_id", ""),
        ("item_id", "has space"),
        ("item_id", "x" * 201),
        ("version", 0),
        ("action", "delete"),
        ("audience", "public"),
        ("publish_at", "2026-01-01T08:00:00"),
        ("publish_at", "next tuesday"),
        ("title", ""),
        ("recipients", ""),
    ],
)
def test_field_rules(field: str, value: object) -> None:
    assert field in _errors(**{field: value})


def test_item_id_allows_the_documented_alphabet() -> None:
    event = ContentEvent.model_validate(content_event(item_id="A-z.0_9:x" + "y" * 191))
    assert len(event.item_id) == 200


def test_unknown_fields_are_refused() -> None:
    assert "publsh_at" in _errors(publsh_at="2026-01-01T08:00:00+01:00")


def test_empty_alt_text_needs_decorative() -> None:
    with pytest.raises(ValidationError, match="decorative"):
        Image(url="https://x/y.png", alt="")
    assert Image(url="https://x/y.png", alt="", decorative=True).alt == ""


def test_events_are_frozen() -> None:
    event = ContentEvent.model_validate(content_event())
    with pytest.raises(ValidationError):
        event.title = "changed"  # type: ignore[misc]


def test_committed_json_schemas_match_the_models() -> None:
    for name, text in rendered().items():
        assert (SCHEMA_DIR / name).read_text() == text, (
            f"{name} drifted; run python -m schemas.export"
        )
    assert main(["--check"]) == 0


def test_content_event_schema_names_every_contract_field() -> None:
    schema = json.loads((SCHEMA_DIR / "content-event.schema.json").read_text())
    assert set(schema["properties"]) == {
        "schema_version",
        "tenant",
        "item_id",
        "version",
        "action",
        "audience",
        "channels",
        "title",
        "body",
        "summary",
        "recipients",
        "publish_at",
        "unit",
        "contact",
        "images",
        "links",
        "crisis",
        "language",
    }


@pytest.mark.parametrize(
    "email", ["a@lerum.se, b@example.org", "a@lerum.se\nBcc: b@example.org", "Anna <a@lerum.se>"]
)
def test_a_contact_is_one_e_mail_address(email: str) -> None:
    # The contact is mailed when the item is held: a list would add recipients.
    with pytest.raises(ValidationError) as refused:
        ContentEvent.model_validate(content_event(contact={"name": "Anna", "email": email}))
    assert [e["loc"] for e in refused.value.errors()] == [("contact", "email")]
    ContentEvent.model_validate(content_event(contact={"name": "Anna", "email": "a@lerum.se"}))


def test_the_shipped_deployment_file_is_valid_by_its_json_schema() -> None:
    import jsonschema
    import yaml

    from services.runtime.config import DEFAULT_CONFIG_PATH

    schema = json.loads((SCHEMA_DIR / "deployment.schema.json").read_text())
    shipped = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    jsonschema.validate(shipped, schema)
    shipped["tenants"]["lerum"]["policy"]["internal_leed"] = "PT1M"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(shipped, schema)


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("item-status-*.json")), ids=lambda p: p.name)
def test_status_examples_are_what_a_cms_status_webhook_receives(path: Path) -> None:
    status = ItemStatus.model_validate_json(path.read_text())
    assert status.status in ("held", "released")
