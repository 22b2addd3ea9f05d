"""When Kafka goes away: fast, honest refusals, a clean stop, and every service back by
itself. The services run as the chart runs them, reaching the broker only through a
proxy that cuts every connection (``tests/e2e/cutting_proxy.py``)."""

from __future__ import annotations

import functools
import signal
import time

import httpx

from services.runtime.broker import EmbeddedBroker
from tests.conftest import content_event, internal_notice
from tests.e2e.cutting_proxy import CuttingProxy
from tests.e2e.test_separate_broker import _held
from tests.harness import Pipeline, Service, TopicReader, post_event, unique_item, wait_until


def _timed_post(url: str, item: str) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    answer = post_event(url, content_event(item_id=item))
    return answer, time.monotonic() - started


def _unready(service: Service) -> httpx.Response | None:
    """The service's /readyz answer once it is 503."""
    answer = httpx.get(f"{service.url}/readyz", timeout=5)
    return answer if answer.status_code == 503 else None


def _taken(ingest: str, item: str) -> bool:
    return post_event(ingest, internal_notice(item_id=item)).status_code == 202


def test_ingest_refuses_within_a_second_while_kafka_is_away_and_accepts_again(
    cut_broker: tuple[EmbeddedBroker, CuttingProxy], cut_pipeline: Pipeline
) -> None:
    _, proxy = cut_broker
    ingest = cut_pipeline.add("ingest").start()
    assert post_event(ingest.url, content_event(item_id=unique_item("before"))).status_code == 202

    proxy.cut()
    answers = [_timed_post(ingest.url, unique_item("away")) for _ in range(3)]
    ready = httpx.get(f"{ingest.url}/readyz", timeout=5)
    health = httpx.get(f"{ingest.url}/healthz", timeout=5)
    proxy.restore()

    for answer, took in answers:
        assert answer.status_code == 503
        assert took < 1.0, f"answered after {took:.2f} s"
        assert answer.headers["content-type"].startswith("application/problem+json")
        assert int(answer.headers["Retry-After"]) >= 1
    assert ready.status_code == 503
    assert "Kafka" in ready.json()["reason"]
    assert health.status_code == 200, "only waiting for Kafka: no reason to restart it"

    back = wait_until(
        lambda: (
            post_event(ingest.url, content_event(item_id=unique_item("back"))).status_code == 202
        ),
        20,
        "ingest to accept again",
        every=0.5,
    )
    assert back
    wait_until(lambda: httpx.get(f"{ingest.url}/readyz", timeout=5).status_code == 200, 20, "ready")


def test_every_service_says_it_waits_for_kafka_and_stops_within_ten_seconds(
    cut_broker: tuple[EmbeddedBroker, CuttingProxy], cut_pipeline: Pipeline
) -> None:
    _, proxy = cut_broker
    services = [cut_pipeline.add(name).start() for name in ("ingest", "gate", "publish")]
    post_event(services[0].url, content_event(item_id=unique_item("inflight")))
    proxy.cut()
    for service in services:  # each says why it cannot work, and stays alive
        unready = wait_until(
            functools.partial(_unready, service),
            10,
            f"{service.name} /readyz to answer 503",
        )
        assert unready.json()["reason"].startswith("Kafka unreachable"), service.name
        assert httpx.get(f"{service.url}/healthz", timeout=5).status_code == 200
    took = {}
    for service in services:
        started = time.monotonic()
        service.stop(signal.SIGTERM, timeout=20)
        took[service.name] = time.monotonic() - started
    assert all(t < 10.0 for t in took.values()), took


def test_gate_and_publish_resume_after_an_outage_without_a_restart(
    cut_broker: tuple[EmbeddedBroker, CuttingProxy], cut_pipeline: Pipeline
) -> None:
    _, proxy = cut_broker
    ingest = cut_pipeline.add("ingest").start()
    gate = cut_pipeline.add("gate").start()
    publish = cut_pipeline.add("publish").start()
    pids = {s.name: s.proc.pid for s in (gate, publish) if s.proc is not None}
    items = [unique_item("outage") for _ in range(5)]
    for item in items:
        assert post_event(ingest.url, content_event(item_id=item)).status_code == 202
    wait_until(lambda: _held(gate.url) >= set(items), 30, "held")

    with proxy.outage():
        time.sleep(12)  # the outage itself, past the 8 s group session: only time passes

    for item in items:
        wait_until(
            functools.partial(_taken, ingest.url, item),
            30,
            f"ingest to take {item}'s notice",
            every=0.5,
        )
    topics = TopicReader(cut_broker[0].bootstrap)

    def released() -> dict[str, int]:
        return topics.released("external.web", items)

    wait_until(released, 90, "every held item released after the outage")
    assert released() == dict.fromkeys(items, 1)
    for service in (gate, publish):
        assert service.proc is not None
        assert service.proc.poll() is None, f"{service.name} exited"
        assert service.proc.pid == pids[service.name], f"{service.name} was restarted"
