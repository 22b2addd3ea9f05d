"""Two gate processes form one gate: each lists every held item, pages it once, and
releases what the other owns; one killed while internal notices arrive loses nothing
and releases nothing twice. Started as the chart starts them (``serve``, no embedded
flag, a stable instance id and a volume each)."""

from __future__ import annotations

import functools
import signal
import threading
from pathlib import Path

import httpx
import yaml

from services.runtime.broker import free_port
from services.runtime.config import DEFAULT_CONFIG_PATH
from tests.conftest import (
    LERUM_OUTBOUND,
    OPERATOR_AUTH,
    content_event,
    internal_notice,
    with_outbound_secrets,
)
from tests.e2e.receivers import WebhookReceiver
from tests.e2e.test_publish import _order, _release
from tests.harness import (
    Pipeline,
    Service,
    TopicReader,
    all_held,
    post_event,
    unique_item,
    wait_until,
)


def _second_gate(pipeline: Pipeline) -> Service:
    port = free_port()
    env = pipeline.env(
        GATEKEEPER_GATE_PORT=str(port),
        GATEKEEPER_INSTANCE_ID=f"{pipeline.workdir.name}-gate-b",
        GATEKEEPER_DATA_DIR=str(pipeline.workdir / "data-b"),
    )
    return Service("gate", port, env, pipeline.workdir / f"gate-b-{port}.log")


def _mine(rows: list[dict[str, object]], items: set[str]) -> list[str]:
    return sorted(str(r["item_id"]) for r in rows if r["item_id"] in items)


def test_two_gates_list_page_and_act_for_every_item_and_survive_losing_one(
    separate_pipeline: Pipeline,
) -> None:
    pipeline = separate_pipeline
    ingest = pipeline.add("ingest").start()
    pipeline.add("publish").start()
    first = pipeline.add("gate").start()
    second = _second_gate(pipeline).start()
    topics = TopicReader(pipeline.bootstrap)
    try:
        items = [unique_item("replica") for _ in range(16)]
        for item in items:
            assert post_event(ingest.url, content_event(item_id=item)).status_code == 202
        everything = sorted(items)

        # Both processes list every held item, whichever owns it; pages yield each once.
        for gate in (first, second):
            wait_until(
                functools.partial(lambda g: _mine(all_held(g.url), set(items)) == everything, gate),
                60,
                f"every held item listed by {gate.url}",
            )
        paged, cursor = [], None
        while True:
            params = {"limit": "3", **({"cursor": cursor} if cursor else {})}
            page = httpx.get(f"{second.url}/v1/held", params=params, headers=OPERATOR_AUTH).json()
            assert page["as_of"]
            paged += [r["item_id"] for r in page["held"] if r["item_id"] in items]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert sorted(paged) == everything, "each once"

        # Releases through either process reach every item, owned here or there.
        by_hand = items[:6]
        for n, item in enumerate(by_hand):
            gate = (first, second)[n % 2]
            answer = httpx.post(
                f"{gate.url}/v1/held/lerum/{item}/release",
                json={"reason": "Personalen informerades muntligt"},
                headers=OPERATOR_AUTH,
                timeout=30,
            )
            assert answer.status_code in (200, 202), answer.text
        wait_until(lambda: topics.released("external.web", by_hand), 60, "the manual releases")

        # One process is killed while the internal notices of the rest arrive.
        rest = items[6:]

        def tell() -> None:
            for item in rest:
                assert post_event(ingest.url, internal_notice(item_id=item)).status_code == 202

        telling = threading.Thread(target=tell)
        logged_before = len(second.logs())
        telling.start()
        first.stop(signal.SIGKILL)
        telling.join(60)
        counts = wait_until(lambda: topics.released("external.web", items), 120, "every release")
        assert set(counts.values()) == {1}, f"each released once: {counts}"
        # The survivor says when it took the lost partitions over and resumed.
        names = ["consumer.rebalancing", "consumer.assigned", "consumer.resumed"]
        takeover = [e for e in second.logs()[logged_before:] if e["event"] in names]
        assert [e["event"] for e in takeover][-3:] == names
        assert takeover[-2]["partitions"] > takeover[-3]["partitions_revoked"], "it took more"

        def nothing_held(gate: Service) -> bool:
            return _mine(all_held(gate.url), set(items)) == []

        wait_until(lambda: nothing_held(second), 30, "the survivor's list empty")
        first.start()
        wait_until(lambda: nothing_held(first), 60, "the restarted process's list empty")
        assert topics.released("external.web", items) == counts, "nothing released again"
    finally:
        second.stop()


def _second(pipeline: Pipeline, name: str, **extra: str) -> Service:
    port = free_port()
    env = pipeline.env(
        **{
            f"GATEKEEPER_{name.upper()}_PORT": str(port),
            "GATEKEEPER_INSTANCE_ID": f"{pipeline.workdir.name}-{name}-b",
            "GATEKEEPER_DATA_DIR": str(pipeline.workdir / f"data-{name}-b"),
            **extra,
        }
    )
    return Service(name, port, env, pipeline.workdir / f"{name}-b-{port}.log")


def _seen_read(ingest: Service) -> float:
    """How many records of the accepted ids' changelog this ingest process has read."""
    for line in httpx.get(f"{ingest.url}/metrics").text.splitlines():
        if line.startswith("gatekeeper_mirror_records_total{") and "seen" in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_any_ingest_answers_a_redelivery_duplicate_and_any_publish_lists_dead_letters(
    separate_pipeline: Pipeline, tmp_path: Path
) -> None:
    pipeline = separate_pipeline
    receiver = WebhookReceiver(LERUM_OUTBOUND, default="410").start()
    seconds: list[Service] = []
    try:
        config = with_outbound_secrets(yaml.safe_load(DEFAULT_CONFIG_PATH.read_text()))
        config["tenants"]["lerum"]["channels"].append(
            {
                "name": "gone",
                "audience": "external",
                "transport": {"kind": "webhook", "url": receiver.url},
            }
        )
        path = tmp_path / "gatekeeper.yaml"
        path.write_text(yaml.safe_dump(config, allow_unicode=True))
        seconds.append(_second(pipeline, "ingest", GATEKEEPER_CONFIG=str(path)))
        seconds.append(_second(pipeline, "publish", GATEKEEPER_CONFIG=str(path)))
        ingests = [
            pipeline.add("ingest", GATEKEEPER_CONFIG=str(path)).start(),
            seconds[0].start(),
        ]
        publishes = [
            pipeline.add("publish", GATEKEEPER_CONFIG=str(path)).start(),
            seconds[1].start(),
        ]

        # A CMS delivers an id to one ingest process, and again to the other.
        event = content_event(item_id=unique_item("twice"))
        first = post_event(ingests[0].url, event, webhook_id="msg_replicated_0001")
        assert first.status_code == 202
        wait_until(lambda: _seen_read(ingests[1]) >= 1, 30, "the other to read the id")
        again = post_event(ingests[1].url, event, webhook_id="msg_replicated_0001")
        assert again.status_code == 200
        assert again.json()["status"] == "duplicate"
        assert again.json()["event_id"] == first.json()["event_id"]

        # A delivery dies on one publish process; both list it, either redelivers it.
        item = unique_item("dead")
        _release(pipeline.bootstrap, _order(item, ["gone"]))

        def listed(service: Service) -> list[dict[str, object]]:
            answer = httpx.get(f"{service.url}/v1/dead-letters", headers=OPERATOR_AUTH)
            return [d for d in answer.json()["dead_letters"] if d["item_id"] == item]

        for service in publishes:
            wait_until(functools.partial(listed, service), 60, f"the dead letter on {service.url}")
        [letter] = listed(publishes[1])
        receiver.default = "200"
        answer = httpx.post(  # the second process asks the owner, whichever that is
            f"{publishes[1].url}/v1/dead-letters/{letter['delivery_id']}/redeliver",
            headers=OPERATOR_AUTH,
            timeout=30,
        )
        assert answer.status_code in (200, 202), answer.text
        wait_until(lambda: receiver.accepted, 60, "the redelivery received")
        for service in publishes:
            wait_until(
                functools.partial(lambda s: not listed(s), service),
                30,
                f"gone from {service.url}'s list",
            )
    finally:
        receiver.stop()
        for service in seconds:  # the pipeline stops its own
            if service.proc is not None and service.proc.poll() is None:
                service.stop()
