"""The gate as operators and the audit see it: held list, manual release, crash safety."""

from __future__ import annotations

import signal
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import yaml

from services.runtime.config import DEFAULT_CONFIG_PATH
from tests.conftest import OPERATOR_AUTH, OPERATOR_TOKEN, content_event, internal_notice
from tests.harness import Pipeline, TopicReader, held_rows, post_event, unique_item, wait_until


def _release(gate: str, tenant: str, item: str, token: str | None, body: object) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return httpx.post(
        f"{gate}/v1/held/{tenant}/{item}/release", json=body, headers=headers, timeout=30
    )


def test_held_list_filters_by_tenant(pipeline: Pipeline) -> None:
    gate, ingest = pipeline.services["gate"].url, pipeline.services["ingest"].url
    item = unique_item("filter")
    assert (
        post_event(ingest, content_event(tenant="ale", item_id=item), tenant="ale").status_code
        == 202
    )
    wait_until(lambda: held_rows(gate, item), 20, "held item")
    assert held_rows(gate, item, "?tenant=ale")[0]["tenant"] == "ale"
    assert held_rows(gate, item, "?tenant=lerum") == []
    assert httpx.get(f"{gate}/v1/held?tenant=oslo", headers=OPERATOR_AUTH).status_code == 404


def test_manual_release_needs_the_operator_token_and_is_audited(
    pipeline: Pipeline, topics: TopicReader
) -> None:
    gate, ingest = pipeline.services["gate"].url, pipeline.services["ingest"].url
    item = unique_item("manual")
    key = f"lerum:{item}"
    assert post_event(ingest, content_event(item_id=item)).status_code == 202
    wait_until(lambda: held_rows(gate, item), 20, "held item")

    for token in (None, "wrong-token"):
        refused = _release(gate, "lerum", item, token, {"reason": "Personalen informerad muntligt"})
        assert refused.status_code == 401
        assert refused.headers["content-type"].startswith("application/problem+json")
    assert held_rows(gate, item), "a refused release changed nothing"
    assert _release(gate, "lerum", item, OPERATOR_TOKEN, {}).status_code == 422
    assert _release(gate, "lerum", "not-held", OPERATOR_TOKEN, {"reason": "x"}).status_code == 404

    released = _release(
        gate, "lerum", item, OPERATOR_TOKEN, {"reason": "Personalen informerad muntligt"}
    )
    assert released.status_code == 200
    assert released.json()["status"] == "released"
    assert held_rows(gate, item) == []
    web = topics.wait_for("external.web", key, lambda v: len(v) == 1)
    assert web[0]["sender"]["organization"] == "Lerums kommun"
    overridden = [d for d in topics.json_for("gate.decisions", key) if d["kind"] == "overridden"]
    assert overridden[0]["operator_reason"] == "Personalen informerad muntligt"
    assert overridden[0]["rule"] == "manual_release"


def test_content_check_blocks_a_personnummer_and_says_why(
    pipeline: Pipeline, topics: TopicReader
) -> None:
    gate, ingest = pipeline.services["gate"].url, pipeline.services["ingest"].url
    item = unique_item("pnr")
    assert post_event(ingest, internal_notice(item_id=item)).status_code == 202
    topics.wait_for("intranet.notices", f"lerum:{item}", lambda v: len(v) == 1)
    event = content_event(item_id=item, body="Kontakta 19811218-9876 för mer information.")
    assert post_event(ingest, event).status_code == 202
    held = wait_until(lambda: held_rows(gate, item), 20, "held item")
    assert held[0]["reasons"] == ["content_check:personal_identity_number"]
    logs = (
        pipeline.services["gate"].log_path.read_text()
        + pipeline.services["ingest"].log_path.read_text()
    )
    assert "19811218-9876" not in logs


@pytest.mark.parametrize("store", ["memory", "rocksdb"])
def test_gate_killed_while_holding_and_after_releasing_loses_nothing_and_repeats_nothing(
    own_pipeline: Pipeline, store: str
) -> None:
    ingest = own_pipeline.add("ingest").start()
    gate = own_pipeline.add("gate", GATEKEEPER_GATE_STORE=store).start()
    own_pipeline.add("publish").start()
    topics = TopicReader(own_pipeline.bootstrap)
    items = [unique_item("crash") for _ in range(6)]
    for item in items:
        assert (
            post_event(
                ingest.url, content_event(item_id=item, channels=["web", "social"])
            ).status_code
            == 202
        )
    wait_until(
        lambda: (
            len(
                [
                    h
                    for h in httpx.get(f"{gate.url}/v1/held", headers=OPERATOR_AUTH).json()["held"]
                    if h["item_id"] in items
                ]
            )
            == 6
        ),
        30,
        "6 held items",
    )

    on_disk = list((own_pipeline.workdir / "data" / "gate").rglob("gate-items-*.db"))
    assert bool(on_disk) == (store == "rocksdb"), on_disk
    gate.stop(signal.SIGKILL)
    gate.start()
    held = {
        h["item_id"]: h
        for h in httpx.get(f"{gate.url}/v1/held", headers=OPERATOR_AUTH).json()["held"]
    }
    assert set(items) <= set(held), "a held item was lost in the crash"
    assert all(held[i]["reasons"] == ["awaiting_internal_notice"] for i in items)

    for item in items:
        assert post_event(ingest.url, internal_notice(item_id=item)).status_code == 202
    # Kill the gate as soon as the first external release is out.
    wait_until(
        lambda: any(topics.json_for("external.web", f"lerum:{i}") for i in items),
        30,
        "a first release",
    )
    gate.stop(signal.SIGKILL)
    gate.start()

    for item in items:
        topics.wait_for("external.web", f"lerum:{item}", lambda v: len(v) >= 1)
        topics.wait_for("external.social", f"lerum:{item}", lambda v: len(v) >= 1)
    web = Counter(r.key for r in topics.records("external.web"))
    social = Counter(r.key for r in topics.records("external.social"))
    intranet = Counter(r.key for r in topics.records("intranet.notices"))
    for item in items:
        key = f"lerum:{item}".encode()
        assert (web[key], social[key], intranet[key]) == (1, 1, 1), item
    wait_until(
        lambda: (
            not [
                h
                for h in httpx.get(f"{gate.url}/v1/held", headers=OPERATOR_AUTH).json()["held"]
                if h["item_id"] in items
            ]
        ),
        10,
        "nothing held",
    )


def _metric(url: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith(f"{name}{{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {name}{{{want}}}")


def test_a_scheduled_item_goes_out_by_itself_when_its_time_comes(
    pipeline: Pipeline, topics: TopicReader
) -> None:
    ingest, gate = pipeline.services["ingest"].url, pipeline.services["gate"].url
    item = unique_item("scheduled")
    at = datetime.now(UTC) + timedelta(seconds=4)
    for event in (internal_notice(item_id=item), content_event(item_id=item)):
        assert post_event(ingest, {**event, "publish_at": at.isoformat()}).status_code == 202
    held = wait_until(lambda: held_rows(gate, item, "?tenant=lerum"), 20, "the held item")
    assert "awaiting_publish_at" in held[0]["reasons"]
    web = topics.wait_for("external.web", f"lerum:{item}", lambda v: len(v) == 1, timeout=30)
    assert datetime.fromisoformat(web[0]["released_at"]) >= at
    intranet = topics.json_for("intranet.notices", f"lerum:{item}")
    assert datetime.fromisoformat(intranet[0]["released_at"]) >= at
    assert held_rows(gate, item) == []


def test_a_hold_past_escalate_after_is_escalated_counted_and_stays_held(
    own_pipeline: Pipeline, tmp_path: Path
) -> None:
    config = tmp_path / "gatekeeper.yaml"
    shipped = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    shipped["tenants"]["lerum"]["policy"]["escalate_after"] = "PT2S"
    config.write_text(yaml.safe_dump(shipped, allow_unicode=True))
    ingest = own_pipeline.add("ingest", GATEKEEPER_CONFIG=str(config)).start()
    gate = own_pipeline.add("gate", GATEKEEPER_CONFIG=str(config)).start()
    topics = TopicReader(own_pipeline.bootstrap)
    assert _metric(gate.url, "gatekeeper_gate_escalations_total", tenant="lerum") == 0
    item = unique_item("late")
    assert post_event(ingest.url, content_event(item_id=item)).status_code == 202

    escalated = topics.wait_for(
        "gate.decisions",
        f"lerum:{item}",
        lambda v: any(d["kind"] == "escalated" for d in v),
        timeout=30,
    )
    decision = next(d for d in escalated if d["kind"] == "escalated")
    assert (decision["rule"], decision["audience"]) == ("escalate_after", "external")
    held = wait_until(lambda: [h for h in held_rows(gate.url, item) if h["escalated"]], 10, "flag")
    assert held[0]["reasons"] == ["awaiting_internal_notice"]
    assert _metric(gate.url, "gatekeeper_gate_escalations_total", tenant="lerum") == 1
    wait_until(
        lambda: (
            _metric(
                gate.url,
                "gatekeeper_gate_holds_by_reason",
                tenant="lerum",
                reason="awaiting_internal_notice",
            )
            == 1
        ),
        10,
        "the holds-by-reason gauge",
    )
    assert _metric(gate.url, "gatekeeper_gate_held_items", tenant="lerum") == 1
    assert _metric(gate.url, "gatekeeper_gate_escalated_holds", tenant="lerum") == 1
    wait_until(
        lambda: _metric(gate.url, "gatekeeper_gate_oldest_hold_age_seconds", tenant="lerum") >= 2,
        10,
        "the oldest hold's age",
    )

    release = _release(gate.url, "lerum", item, OPERATOR_TOKEN, {"reason": "Personalen informerad"})
    assert release.status_code == 200
    wait_until(
        lambda: _metric(gate.url, "gatekeeper_gate_oldest_hold_age_seconds", tenant="lerum") == 0,
        10,
        "the oldest hold's age back to 0",
    )
    assert (
        _metric(
            gate.url,
            "gatekeeper_gate_holds_by_reason",
            tenant="lerum",
            reason="awaiting_internal_notice",
        )
        == 0
    )
    assert _metric(gate.url, "gatekeeper_gate_held_items", tenant="lerum") == 0
    assert _metric(gate.url, "gatekeeper_gate_escalated_holds", tenant="lerum") == 0
