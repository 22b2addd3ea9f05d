"""Names of the pipeline's topics, and their creation through the Kafka admin API."""

from __future__ import annotations

from collections.abc import Iterable

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from services.runtime.config import Deployment, KafkaTransport

__all__ = [
    "ACCEPTED",
    "CMS_EVENTS",
    "CMS_EVENTS_DLQ",
    "DECISIONS",
    "GATE_COMMANDS",
    "MAX_MESSAGE_BYTES",
    "NOTIFICATIONS",
    "PIPELINE_TOPICS",
    "PUBLISH_ARCHIVE",
    "PUBLISH_DLQ",
    "PUBLISH_OUTCOMES",
    "RECEIPTS",
    "RELEASES",
    "ensure_topics",
    "topics_for",
]

CMS_EVENTS = "cms.events"  # ContentEvent v1 from the CMS, raw; key {tenant}:{item_id}
CMS_EVENTS_DLQ = "cms.events.dlq"  # what ingest refused: original bytes, reason in headers
ACCEPTED = "cms.accepted"  # AcceptedEvent: validated, deduplicated, for the gate
GATE_COMMANDS = "gate.commands"  # Tick and ManualRelease, for the gate's own timeline
DECISIONS = "gate.decisions"  # Decision: the audit trail
NOTIFICATIONS = "gate.notifications"  # Notification: e-mails about held items, for publish
RELEASES = "gate.releases"  # ReleaseOrder: what publish may deliver
RECEIPTS = "publish.receipts"  # DeliveryReceipt: what reached a receiver
PUBLISH_ARCHIVE = "publish.archive"  # every publication exactly as sent
PUBLISH_DLQ = "publish.dlq"  # deliveries that failed their last attempt
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
    RELEASES,
    RECEIPTS,
    PUBLISH_ARCHIVE,
    PUBLISH_DLQ,
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


def ensure_topics(
    bootstrap: str, names: Iterable[str], partitions: int, replication_factor: int
) -> list[str]:
    """Create every named topic that does not exist yet; return the ones created."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="gatekeeper-admin")
    try:
        existing = set(admin.list_topics())
        missing = sorted(set(names) - existing)
        created: list[str] = []
        for name in missing:
            try:
                admin.create_topics(
                    [
                        NewTopic(
                            name, num_partitions=partitions, replication_factor=replication_factor
                        )
                    ]
                )
                created.append(name)
            except TopicAlreadyExistsError:
                pass  # another process created it between list and create
        return created
    finally:
        admin.close()
