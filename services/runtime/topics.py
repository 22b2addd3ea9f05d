"""Names of the pipeline's topics and the settings each is created with.

Pure; ``services.runtime.topic_admin`` creates them through Kafka's admin API.
"""

from __future__ import annotations

from services.runtime.config import Deployment, KafkaTransport

__all__ = [
    "ACCEPTED",
    "CMS_EVENTS",
    "CMS_EVENTS_DLQ",
    "DEAD",
    "DECISIONS",
    "GATE_COMMANDS",
    "HELD",
    "MAX_MESSAGE_BYTES",
    "NOTIFICATIONS",
    "PIPELINE_TOPICS",
    "PUBLISH_ARCHIVE",
    "PUBLISH_DLQ",
    "PUBLISH_OUTCOMES",
    "RECEIPTS",
    "RECORDED_HEADER",
    "RELEASES",
    "REPORT_HEADER",
    "SESSIONS",
    "STATUS",
    "TopicRetention",
    "topic_configs",
    "topics_for",
]

CMS_EVENTS = "cms.events"  # ContentEvent v1 from the CMS, raw; key {tenant}:{item_id}
CMS_EVENTS_DLQ = "cms.events.dlq"  # what ingest refused: original bytes, reason in headers
ACCEPTED = "cms.accepted"  # AcceptedEvent: validated, deduplicated, for the gate
GATE_COMMANDS = "gate.commands"  # ticks, manual releases and rejections: the gate's own
#: On ``cms.accepted``, marks a Recorded (a version ingest refused, for the item's
#: history) among the AcceptedEvents.
RECORDED_HEADER = ("gatekeeper-kind", b"recorded")
DECISIONS = "gate.decisions"  # Decision: the audit trail
NOTIFICATIONS = "gate.notifications"  # Notification: e-mails about held items, for publish
#: On ``gate.notifications``, marks a FollowUpReport (the monthly follow-up e-mail).
REPORT_HEADER = ("gatekeeper-kind", b"report")
RELEASES = "gate.releases"  # ReleaseOrder: what publish may deliver
STATUS = "gate.status"  # ItemStatus: what the CMS's status webhook is told, for publish
SESSIONS = "gate.sessions"  # console sessions logged out, read whole by every gate process
#: The held rows of every item, by item, compacted: the owner writes, every gate reads.
HELD = "gate.held"
RECEIPTS = "publish.receipts"  # DeliveryReceipt: what reached a receiver
PUBLISH_ARCHIVE = "publish.archive"  # every publication exactly as sent
PUBLISH_DLQ = "publish.dlq"  # deliveries that failed their last attempt
#: The dead letters now, by delivery, compacted: the owner writes, every publish reads.
DEAD = "publish.dead"
PUBLISH_OUTCOMES = "publish.outcomes"  # attempt outcomes and redelivery requests, for publish

#: Room for a 1 MiB CMS body after JSON escaping inside an envelope.
MAX_MESSAGE_BYTES = 8 * 1024 * 1024

PIPELINE_TOPICS = (
    CMS_EVENTS,
    CMS_EVENTS_DLQ,
    ACCEPTED,
    GATE_COMMANDS,
    DECISIONS,
    NOTIFICATIONS,
    STATUS,
    SESSIONS,
    HELD,
    RELEASES,
    RECEIPTS,
    PUBLISH_ARCHIVE,
    PUBLISH_DLQ,
    DEAD,
    PUBLISH_OUTCOMES,
)


def topics_for(deployment: Deployment) -> list[str]:
    """Every topic the pipeline needs: its own and the Kafka channels' of every tenant."""
    channel_topics = {
        c.transport.topic
        for t in deployment.tenants.values()
        for c in t.channels
        if isinstance(c.transport, KafkaTransport)
    }
    return sorted({*PIPELINE_TOPICS, *channel_topics})


DAY_MS = 24 * 60 * 60 * 1000


class TopicRetention:
    """How long each kind of topic keeps its records, in milliseconds (-1: for ever).

    The archive (offentlighetsprincipen) and the audit trail are kept until an
    operator decides otherwise; inputs and internal hand-overs for a week, long
    enough to replay after any outage; dead letters for a month.
    """

    def __init__(
        self,
        archive_ms: int = -1,
        decisions_ms: int = -1,
        dead_letters_ms: int = 30 * DAY_MS,
        default_ms: int = 7 * DAY_MS,
    ) -> None:
        self.archive_ms = archive_ms
        self.decisions_ms = decisions_ms
        self.dead_letters_ms = dead_letters_ms
        self.default_ms = default_ms

    def of(self, topic: str) -> int:
        if topic == PUBLISH_ARCHIVE:
            return self.archive_ms
        if topic == DECISIONS:
            return self.decisions_ms
        if topic in (CMS_EVENTS_DLQ, PUBLISH_DLQ):
            return self.dead_letters_ms
        return self.default_ms


def topic_configs(topic: str, retention: TopicRetention) -> dict[str, str]:
    """The settings a topic is created with: deleted by age, except ``gate.held``,
    compacted like a table's changelog (the newest rows of each item, whatever their
    age). The services' tables make their own changelog topics, compacted too.
    """
    if topic in (HELD, DEAD):  # the newest word on each item or delivery, however old
        return {"cleanup.policy": "compact", "max.message.bytes": str(MAX_MESSAGE_BYTES)}
    return {
        "cleanup.policy": "delete",
        "retention.ms": str(retention.of(topic)),
        "max.message.bytes": str(MAX_MESSAGE_BYTES),
    }
