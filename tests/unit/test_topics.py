"""The settings each topic is created with: what the archive and the audit trail keep."""

from __future__ import annotations

from services.runtime import topics
from services.runtime.topics import DAY_MS, TopicRetention, topic_configs


def test_the_archive_and_the_audit_trail_are_kept_until_an_operator_decides() -> None:
    retention = TopicRetention()
    for topic in (topics.PUBLISH_ARCHIVE, topics.DECISIONS):
        assert topic_configs(topic, retention)["retention.ms"] == "-1"
        assert topic_configs(topic, retention)["cleanup.policy"] == "delete"


def test_inputs_keep_a_week_and_dead_letters_a_month() -> None:
    retention = TopicRetention()
    assert topic_configs(topics.CMS_EVENTS, retention)["retention.ms"] == str(7 * DAY_MS)
    assert topic_configs(topics.GATE_COMMANDS, retention)["retention.ms"] == str(7 * DAY_MS)
    assert topic_configs("intranet.notices", retention)["retention.ms"] == str(7 * DAY_MS)
    assert topic_configs(topics.PUBLISH_DLQ, retention)["retention.ms"] == str(30 * DAY_MS)


def test_retention_is_configurable_per_kind_of_topic() -> None:
    retention = TopicRetention(archive_ms=10 * 365 * DAY_MS, decisions_ms=DAY_MS, default_ms=1000)
    assert topic_configs(topics.PUBLISH_ARCHIVE, retention)["retention.ms"] == str(3650 * DAY_MS)
    assert topic_configs(topics.DECISIONS, retention)["retention.ms"] == str(DAY_MS)
    assert topic_configs(topics.RELEASES, retention)["retention.ms"] == "1000"


def test_every_topic_takes_the_largest_record_the_services_write() -> None:
    for topic in topics.PIPELINE_TOPICS:
        config = topic_configs(topic, TopicRetention())
        assert int(config["max.message.bytes"]) == topics.MAX_MESSAGE_BYTES
