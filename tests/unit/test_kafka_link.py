"""Whether a service can reach Kafka: refused at once while it cannot, one try a
second to find it back, and how long since it last could."""

from __future__ import annotations

from services.runtime.kafka_link import KafkaLink


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_while_lost_one_write_a_second_is_tried_and_the_rest_refused_at_once() -> None:
    clock = Clock()
    link = KafkaLink(clock)
    assert link.may_try()
    assert link.reason() is None
    link.lost("KafkaConnectionError")
    tries = []
    for _ in range(30):  # three seconds of requests, ten a second
        tries.append(link.may_try())
        clock.now += 0.1
    assert sum(tries) == 3
    assert link.reason() == "Kafka unreachable for 3 s (KafkaConnectionError)"
    link.reached()
    assert link.may_try()
    assert not link.down


def test_seconds_since_contact_counts_from_the_last_success() -> None:
    clock = Clock()
    link = KafkaLink(clock)
    clock.now += 5
    link.lost("timeout")
    clock.now += 55
    assert link.seconds_since_contact() == 60
    link.reached()
    assert link.seconds_since_contact() == 0
