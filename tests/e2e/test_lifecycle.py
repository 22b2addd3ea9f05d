"""An item's life through the whole pipeline: newer versions, stale ones, retract, crisis."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.conftest import content_event, internal_notice
from tests.harness import Pipeline, TopicReader, held_rows, post_event, unique_item, wait_until


def _kinds(topics: TopicReader, key: str) -> list[tuple[str, str | None, int]]:
    return [
        (d["kind"], d["audience"], d["version"]) for d in topics.json_for("gate.decisions", key)
    ]


def test_versions_stale_and_retract(pipeline: Pipeline, topics: TopicReader) -> None:
    ingest = pipeline.services["ingest"].url
    item = unique_item("life")
    key = f"lerum:{item}"
    assert post_event(ingest, internal_notice(item_id=item)).status_code == 202
    topics.wait_for("intranet.notices", key, lambda v: len(v) == 1)

    assert (
        post_event(ingest, content_event(item_id=item, version=2, title="Version 2")).status_code
        == 202
    )
    topics.wait_for("external.web", key, lambda v: len(v) == 1)
    # An older version after a newer one is ignored and recorded as stale.
    assert (
        post_event(ingest, content_event(item_id=item, version=1, title="Gammal")).status_code
        == 202
    )
    wait_until(lambda: ("stale", "external", 1) in _kinds(topics, key), 20, "the stale decision")
    # A newer version goes out too.
    assert (
        post_event(ingest, content_event(item_id=item, version=3, title="Version 3")).status_code
        == 202
    )
    web = topics.wait_for("external.web", key, lambda v: len(v) == 2)
    assert [(n["version"], n["title"]) for n in web] == [(2, "Version 2"), (3, "Version 3")]

    # Retract: forwarded to the channels that published the item.
    retract = content_event(item_id=item, version=3, action="retract", channels=[])
    assert post_event(ingest, retract).status_code == 202
    web = topics.wait_for("external.web", key, lambda v: len(v) == 3)
    assert web[-1]["action"] == "retract"
    intranet = topics.wait_for("intranet.notices", key, lambda v: len(v) == 2)
    assert intranet[-1]["action"] == "retract"
    assert ("retracted", "external", 3) in _kinds(topics, key)


def test_retract_cancels_what_is_held(pipeline: Pipeline, topics: TopicReader) -> None:
    ingest, gate = pipeline.services["ingest"].url, pipeline.services["gate"].url
    item = unique_item("cancel")
    key = f"lerum:{item}"
    assert post_event(ingest, content_event(item_id=item)).status_code == 202
    wait_until(
        lambda: held_rows(gate, item),
        20,
        "held",
    )
    retract = content_event(item_id=item, action="retract", channels=[])
    assert post_event(ingest, retract).status_code == 202
    wait_until(
        lambda: not held_rows(gate, item),
        20,
        "no longer held",
    )
    # Staff are told later: nothing external goes out for the retracted item.
    assert post_event(ingest, internal_notice(item_id=item)).status_code == 202
    topics.wait_for("intranet.notices", key, lambda v: len(v) == 1)
    assert topics.json_for("external.web", key) == []
    assert ("retracted", "external", 1) in _kinds(topics, key)


def test_crisis_lane_releases_at_once_with_the_internal_notice(
    pipeline: Pipeline, topics: TopicReader
) -> None:
    """Lerum allows the crisis lane (shipped config): staff get the notice at the same moment."""
    ingest = pipeline.services["ingest"].url
    item = unique_item("crisis")
    key = f"lerum:{item}"
    event = content_event(item_id=item, crisis=True, title="Vattenläcka: koka vattnet")
    assert post_event(ingest, event).status_code == 202
    web = topics.wait_for("external.web", key, lambda v: len(v) == 1)
    intranet = topics.wait_for("intranet.notices", key, lambda v: len(v) == 1)
    assert web[0]["title"] == intranet[0]["title"]
    released = [d for d in topics.json_for("gate.decisions", key) if d["kind"] == "released"]
    assert {(d["audience"], d["rule"], d["crisis"]) for d in released} == {
        ("internal", "crisis_lane", True),
        ("external", "crisis_lane", True),
    }


def test_crisis_is_held_where_the_lane_is_off(pipeline: Pipeline) -> None:
    """Ale has no crisis lane: a crisis event waits for its internal notice like any other."""
    ingest, gate = pipeline.services["ingest"].url, pipeline.services["gate"].url
    item = unique_item("crisis-ale")
    event = content_event(tenant="ale", item_id=item, crisis=True)
    assert post_event(ingest, event, tenant="ale").status_code == 202
    held = wait_until(
        lambda: held_rows(gate, item, "?tenant=ale"),
        20,
        "held",
    )
    assert held[0]["reasons"] == ["awaiting_internal_notice"]


def test_a_retracted_internal_notice_holds_the_external_until_a_newer_one(
    pipeline: Pipeline, topics: TopicReader
) -> None:
    ingest, gate = pipeline.services["ingest"].url, pipeline.services["gate"].url
    item = unique_item("withdrawn")
    key = f"lerum:{item}"
    assert post_event(ingest, internal_notice(item_id=item)).status_code == 202
    topics.wait_for("publish.receipts", key, lambda v: len(v) == 1)
    due = datetime.now(UTC) + timedelta(seconds=4)
    external = content_event(item_id=item, publish_at=due.isoformat())
    assert post_event(ingest, external).status_code == 202
    wait_until(lambda: held_rows(gate, item), 20, "the external version held for its time")

    retract = internal_notice(item_id=item, action="retract", channels=[])
    assert post_event(ingest, retract).status_code == 202
    notices = topics.wait_for("intranet.notices", key, lambda v: len(v) == 2)
    assert notices[-1]["action"] == "retract"

    def only_retracted() -> bool:  # publish_at has passed and the gate said so
        rows = held_rows(gate, item)
        return bool(rows) and rows[0]["reasons"] == ["internal_notice_retracted"]

    wait_until(only_retracted, 20, "held past publish_at for the retracted notice alone")
    assert datetime.now(UTC) > due
    assert topics.json_for("external.web", key) == []

    assert post_event(ingest, internal_notice(item_id=item, version=2)).status_code == 202
    web = topics.wait_for("external.web", key, lambda v: len(v) == 1)
    assert [(n["version"], n["action"]) for n in web] == [(1, "publish")]
    wait_until(lambda: not held_rows(gate, item), 20, "no longer held")
    assert len(topics.json_for("external.web", key)) == 1, "released once"
