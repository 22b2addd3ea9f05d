"""An AsyncAPI 3 description of every Kafka topic gatekeeper reads or writes, each
message's key, headers and payload schema (made from the models), for the
intranet team and a CMS that produces to Kafka. ``python -m schemas.export``
writes it to ``schemas/asyncapi.yaml``; ``--check`` fails on drift."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, TypeAdapter

from schemas import events
from schemas.api import HeldRow

__all__ = ["document"]

_KEY = "{tenant}:{item_id}"

#: address -> (message name, payload model or None for raw bytes, what it is,
#: who writes it, who reads it, headers)
_TOPICS: list[tuple[str, str, Any, str, str, str, dict[str, str]]] = [
    (
        "cms.events",
        "ContentEvent",
        events.ContentEvent,
        "Events from the CMS, as sent: over HTTP through ingest, or produced here by a "
        "trusted CMS (validated the same way; refused ones go to cms.events.dlq).",
        "a CMS, ingest",
        "ingest",
        {"webhook-id": "the idempotency key (HTTP path)", "gatekeeper-source": "http or kafka"},
    ),
    (
        "cms.events.dlq",
        "RefusedEvent",
        None,
        "What ingest refused from cms.events: the original bytes; the reason in headers.",
        "ingest",
        "ops",
        {"dlq-reason": "why", "dlq-errors": "JSON: every field and its problem"},
    ),
    (
        "cms.accepted",
        "AcceptedEvent",
        events.AcceptedEvent,
        "Validated, deduplicated events for the gate; a refused version of a known item "
        "travels here too as a Recorded, with the header gatekeeper-kind: recorded.",
        "ingest",
        "gate",
        {"gatekeeper-kind": "recorded, on a Recorded; absent on an event"},
    ),
    (
        "gate.commands",
        "GateCommand",
        TypeAdapter(events.GateCommand),
        "The gate's own timeline: ticks, and the operators' releases and rejections "
        "with the person. Only the gate writes it.",
        "gate",
        "gate",
        {},
    ),
    (
        "gate.decisions",
        "Decision",
        events.Decision,
        "Every decision, for ever: the audit trail.",
        "ingest, gate",
        "auditors, follow-up",
        {},
    ),
    (
        "gate.notifications",
        "Notification",
        events.Notification,
        "E-mails about held items for publish to send; with the header "
        "gatekeeper-kind: report, a FollowUpReport (the monthly follow-up e-mail to the "
        "communications desk) instead.",
        "gate",
        "publish",
        {},
    ),
    (
        "gate.status",
        "ItemStatus",
        events.ItemStatus,
        "What a tenant's CMS status webhook is told (held, released, rejected, escalated), "
        "for publish to deliver, signed, to the tenants that name one.",
        "gate",
        "publish",
        {},
    ),
    (
        "gate.sessions",
        "SessionEnded",
        None,
        "The gate's own: console sessions logged out (key: the session id; value: "
        '{"until": the time the session would have ended}), read whole by every gate '
        "process so that a logout holds on all of them. Internal to the gate.",
        "gate",
        "gate",
        {},
    ),
    (
        "gate.held",
        "HeldRows",
        TypeAdapter(list[HeldRow]),
        "Compacted: the held rows of every item (GET /v1/held's rows, with a preview of the "
        "text), or a tombstone once nothing of it is held; the header gatekeeper-stamp is the "
        "owner's time, so an older record never replaces a newer. Written by the gate process "
        "that owns the item, read whole by every gate process: the held list of any of them "
        "is complete.",
        "gate",
        "gate",
        {"gatekeeper-stamp": "the owner's time of the record, seconds since the epoch"},
    ),
    (
        "gate.releases",
        "ReleaseOrder",
        events.ReleaseOrder,
        "What publish may deliver, and to which channels.",
        "gate",
        "publish",
        {},
    ),
    (
        "publish.receipts",
        "DeliveryReceipt",
        events.DeliveryReceipt,
        "What reached a receiver: the gate counts an internal notice as told from here.",
        "publish",
        "gate",
        {},
    ),
    (
        "publish.archive",
        "ArchivedPublication",
        events.PublishedNotice,
        "Every publication exactly as sent, for ever (offentlighetsprincipen).",
        "publish",
        "archivists",
        {"gatekeeper-delivery-id": "one per (item, version, channel)"},
    ),
    (
        "publish.dead",
        "DeadLetterNow",
        None,
        "Publish's own: compacted, the dead letters now, by delivery (a tombstone once a "
        "redelivery takes one up), the header gatekeeper-stamp the owner's time; read whole "
        "by every publish process, so each lists every dead letter. Internal to publish.",
        "publish",
        "publish",
        {"gatekeeper-stamp": "the owner's time of the record, seconds since the epoch"},
    ),
    (
        "publish.outcomes",
        "AttemptOutcome",
        None,
        "Publish's own: the outcome of each delivery attempt and operators' redelivery "
        "requests, read back in the item's order. Internal to publish.",
        "publish",
        "publish",
        {},
    ),
    (
        "publish.dlq",
        "DeadLetter",
        events.DeadLetter,
        "Deliveries that failed their last attempt.",
        "publish",
        "ops",
        {},
    ),
    (
        "intranet.notices",
        "IntranetNotice",
        events.PublishedNotice,
        "The internal notices, for the intranet. A notice may arrive twice after a "
        "crash: keep the delivery ids shown. For low latency, consume with a short "
        "fetch wait (fetch_max_wait_ms of 5 to 20; kafka-python's 500 adds up to that "
        "much to every notice on a broker that holds a fetch for its whole wait).",
        "publish",
        "the intranet",
        {"gatekeeper-delivery-id": "the same on a redelivery: deduplicate on it"},
    ),
    *(
        (
            f"external.{name}",
            f"{name.capitalize()}Publication",
            events.PublishedNotice,
            f"Publications for the {name} channel, released only after staff were told.",
            "publish",
            f"the {name} channel",
            {"gatekeeper-delivery-id": "the same on a redelivery: deduplicate on it"},
        )
        for name in ("web", "social", "press")
    ),
]


def _schema(model: Any, schemas: dict[str, Any], name: str) -> dict[str, Any]:
    if isinstance(model, TypeAdapter):
        found = model.json_schema(ref_template="#/components/schemas/{model}")
    else:
        assert issubclass(model, BaseModel)
        found = model.model_json_schema(ref_template="#/components/schemas/{model}")
        name = model.__name__
    for key, definition in found.pop("$defs", {}).items():
        schemas.setdefault(key, definition)
    schemas.setdefault(name, found)
    return {"$ref": f"#/components/schemas/{name}"}


def _topic_binding(address: str) -> dict[str, Any]:
    """The topic as gatekeeper creates it: partitions (``GATEKEEPER_PARTITIONS``, its
    default here), cleanup policy, retention and largest record."""
    from services.runtime.settings import Settings
    from services.runtime.topics import TopicRetention, topic_configs

    configs = topic_configs(address, TopicRetention())
    return {
        "topic": address,
        "partitions": Settings.model_fields["partitions"].default,
        "topicConfiguration": {
            "cleanup.policy": configs["cleanup.policy"].split(","),
            **({"retention.ms": int(configs["retention.ms"])} if "retention.ms" in configs else {}),
            "max.message.bytes": int(configs["max.message.bytes"]),
        },
        "bindingVersion": "0.5.0",
    }


def document(version: str) -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    channels: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for address, name, model, about, writers, readers, headers in _TOPICS:
        channel = address.replace(".", "_")
        payload = (
            _schema(model, schemas, name)
            if model is not None
            else {"description": "not a public format: " + about.split(":")[0]}
        )
        message: dict[str, Any] = {
            "name": name,
            "contentType": "application/json",
            "payload": payload,
            "bindings": {
                "kafka": {
                    "key": {"type": "string", "description": f"{_KEY}, as UTF-8"},
                    "bindingVersion": "0.5.0",
                }
            },
        }
        if headers:
            message["headers"] = {
                "type": "object",
                "properties": {h: {"type": "string", "description": d} for h, d in headers.items()},
            }
        messages[name] = message
        channels[channel] = {
            "address": address,
            "description": f"{about} Written by {writers}; read by {readers}.",
            "messages": {name: {"$ref": f"#/components/messages/{name}"}},
            "bindings": {"kafka": _topic_binding(address)},
        }
        reference = {"$ref": f"#/channels/{channel}"}
        message_ref = [{"$ref": f"#/channels/{channel}/messages/{name}"}]
        if "ingest" in writers or "gate" in writers or "publish" in writers:
            operations[f"send_{channel}"] = {
                "action": "send",
                "channel": reference,
                "messages": message_ref,
            }
        if readers in ("ingest", "gate", "publish"):
            operations[f"receive_{channel}"] = {
                "action": "receive",
                "channel": reference,
                "messages": message_ref,
            }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "gatekeeper's Kafka topics",
            "version": version,
            "description": (
                "Every topic gatekeeper reads or writes: what is on it, its key and headers, "
                "who writes and who reads it. Keys are {tenant}:{item_id}; the topics of one "
                "item are co-partitioned."
            ),
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        # AsyncAPI's schema object names a discriminator by its property alone
        "components": {"messages": messages, "schemas": _discriminators(schemas)},
    }


def _discriminators(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: (
                v["propertyName"]
                if k == "discriminator" and isinstance(v, dict)
                else _discriminators(v)
            )
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_discriminators(v) for v in value]
    return value
