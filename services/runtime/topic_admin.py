"""The pipeline's topics created through the Kafka admin API, with their settings."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from services.runtime.topics import TopicRetention, topic_configs

__all__ = ["ensure_topics"]


def ensure_topics(
    bootstrap: str,
    names: Iterable[str],
    partitions: int,
    replication_factor: int,
    *,
    retention: TopicRetention | None = None,
    client: Mapping[str, Any] | None = None,
) -> list[str]:
    """Create every named topic that does not exist yet, with its settings; return the new.

    A topic that exists is left as it is: change its settings with Kafka's own
    tools. *client* holds kafka-python's security arguments.
    """
    retention = retention or TopicRetention()
    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap, client_id="gatekeeper-admin", **dict(client or {})
    )
    try:
        existing = set(admin.list_topics())
        missing = sorted(set(names) - existing)
        created: list[str] = []
        for name in missing:
            try:
                admin.create_topics(
                    [
                        NewTopic(
                            name,
                            num_partitions=partitions,
                            replication_factor=replication_factor,
                            topic_configs=topic_configs(name, retention),
                        )
                    ]
                )
                created.append(name)
            except TopicAlreadyExistsError:
                pass  # another process created it between list and create
        return created
    finally:
        admin.close()
