"""Publish's handler: load a delivery's record, apply the rules, write the effects, save.

The only writer of the delivery records. Kafka channels are written at once;
webhook and SMTP deliveries go to :class:`~services.publish.attempts.Attempts`
and their outcomes come back as inputs.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from email.utils import getaddresses

from pydantic import ValidationError

from schemas.events import (
    Contact,
    FollowUpReport,
    ItemStatus,
    Notification,
    ReleaseOrder,
    Sender,
)
from services.publish import delivery, notifications, status
from services.publish.attempts import Attempts
from services.publish.dead import DeadLetters
from services.publish.delivery import Delivery, Outcome
from services.publish.machine import (
    DeadLettered,
    Delivered,
    Duplicate,
    Effect,
    Input,
    Order,
    StartAttempts,
    WriteToTopic,
    decide,
)
from services.publish.telemetry import PublishTelemetry
from services.runtime import topics
from services.runtime.config import STATUS_CHANNEL, Deployment, KafkaTransport, Tenant
from services.runtime.keys import ItemKey
from services.runtime.ports import Clock, InboundRecord, ModelTable, OutboundRecord, Outbox
from services.runtime.stamps import Stamps, stamp_header

__all__ = ["PublishHandler"]


def _one_address(text: str) -> bool:
    found = getaddresses([text])
    return len(found) == 1 and found[0] == ("", text) and "@" in text


def _sender(tenant: Tenant, unit: str) -> Sender:
    """The tenant's sender block, signed by *unit*."""
    sender = tenant.sender
    contact = Contact(
        name=sender.contact.name, email=sender.contact.email, phone=sender.contact.phone
    )
    return Sender(
        organization=sender.organization,
        unit=unit,
        contact=contact,
        logo_url=sender.logo_url,
        website=sender.website,
    )


def _is_report(record: InboundRecord) -> bool:
    kind, marker = topics.REPORT_HEADER
    return record.header(kind) == marker.decode()


def _item_key(record: Delivery) -> bytes:
    return ItemKey(record.order.tenant, record.order.item_id).encode()


class PublishHandler:
    """Orders and outcomes in, deliveries out; dead letters listed and redelivered."""

    def __init__(
        self,
        *,
        deployment: Deployment,
        records: ModelTable[Delivery],
        outbox: Outbox,
        attempts: Attempts,
        telemetry: PublishTelemetry,
        clock: Clock,
        ready: Callable[[], bool],
        dead: DeadLetters | None = None,
    ) -> None:
        self._deployment = deployment
        self._records = records
        self._outbox = outbox
        self._attempts = attempts
        self._telemetry = telemetry
        self._clock = clock
        self._ready = ready
        self._scanned = False
        self._dead = dead or DeadLetters()
        self._stamps = Stamps()

    @property
    def attempts(self) -> Attempts:
        """The background attempt loops (a test waits for them to finish)."""
        return self._attempts

    async def handle(self, record: InboundRecord) -> None:
        if record.value is None:
            return
        try:
            if record.topic == topics.RELEASES:
                await self.on_order(ReleaseOrder.model_validate_json(record.value))
            elif record.topic == topics.NOTIFICATIONS and _is_report(record):
                await self.on_report(FollowUpReport.model_validate_json(record.value))
            elif record.topic == topics.NOTIFICATIONS:
                await self.on_notification(Notification.model_validate_json(record.value))
            elif record.topic == topics.STATUS:
                await self.on_status(ItemStatus.model_validate_json(record.value))
            else:
                await self.on_outcome(Outcome.model_validate_json(record.value))
        except ValidationError as exc:
            self._telemetry.undecodable_input(record, exc.error_count())

    async def on_order(self, order: ReleaseOrder) -> None:
        tenant = self._deployment.tenants.get(order.tenant)
        if tenant is None:
            self._telemetry.unknown_tenant(order.tenant, order.item_id)
            return
        for name in order.channels:
            channel = tenant.channel(name)
            if channel is None:
                self._telemetry.unknown_channel(order.tenant, order.item_id, order.event_id, name)
                continue
            transport = channel.transport
            topic = transport.topic if isinstance(transport, KafkaTransport) else None
            await self._step(delivery.delivery_key(order, name), Order(order, name, topic))

    async def on_notification(self, notification: Notification) -> None:
        """An e-mail about a held item, to its contact and the tenant's communications desk."""
        tenant = self._deployment.tenants.get(notification.tenant)
        if tenant is None or tenant.notifications is None:
            self._telemetry.unknown_tenant(notification.tenant, notification.item_id)
            return
        recipients = list(tenant.notifications.desk)
        contact = notification.contact_email
        # one address or none: "a@x, b@y" in an event must not add a recipient
        if contact and _one_address(contact) and contact not in recipients:
            recipients.insert(0, contact)
        order = notifications.order_for(
            notification, _sender(tenant, notification.unit), recipients
        )
        channel = notifications.channel_of(notification.kind)
        inp = Order(order, channel, None, kind="notification")
        await self._step(delivery.delivery_key(order, channel), inp)

    async def on_report(self, report: FollowUpReport) -> None:
        """The monthly follow-up e-mail to the tenant's communications desk, once a month."""
        tenant = self._deployment.tenants.get(report.tenant)
        if tenant is None or tenant.notifications is None:
            self._telemetry.unknown_tenant(report.tenant, report.report_id)
            return
        desk = list(tenant.notifications.desk)
        order = notifications.report_order(report, _sender(tenant, tenant.name), desk)
        channel = notifications.REPORT_CHANNEL
        inp = Order(order, channel, None, kind="notification")
        await self._step(delivery.delivery_key(order, channel), inp)

    async def on_status(self, item: ItemStatus) -> None:
        """A status for the CMS's status webhook, signed and retried like a channel's."""
        tenant = self._deployment.tenants.get(item.tenant)
        if tenant is None or tenant.status_webhook is None:
            self._telemetry.unknown_tenant(item.tenant, item.item_id)
            return
        order = status.order_for(item, _sender(tenant, tenant.name))
        key = status.delivery_key(item)
        inp = Order(order, STATUS_CHANNEL, None, "status", key, status.payload_of(item))
        await self._step(key, inp)

    async def on_outcome(self, outcome: Outcome) -> None:
        if outcome.kind != "redeliver":
            self._attempts.finished(outcome.key)
        if self._records.get(outcome.key.encode()) is None:
            self._telemetry.unknown_delivery(outcome.key)
            return
        await self._step(outcome.key, outcome)

    async def _step(self, key: str, inp: Input) -> None:
        before = self._records.get(key.encode())
        now = self._clock()
        after, effects = decide(before, inp, now)
        records = [r for e in effects for r in self._records_of(e)]
        was_dead = before is not None and before.status == "dead"
        is_dead = after is not None and after.status == "dead"
        dead = after if is_dead else None
        stamp = self._stamps.next(now) if was_dead != is_dead else None
        if stamp is not None:  # every publish process lists it, or no longer
            value = dead.model_dump_json().encode() if dead else None
            records.append(OutboundRecord(topics.DEAD, key.encode(), value, [stamp_header(stamp)]))
        await self._outbox.send_all(records)
        if stamp is not None:
            self._dead.put(key, stamp, dead)
        if after is not None and after != before:
            self._records.put(key.encode(), after)
        for effect in effects:
            self._report(effect)

    def _records_of(self, effect: Effect) -> list[OutboundRecord]:
        match effect:
            case WriteToTopic(record, topic, payload):
                headers = [("gatekeeper-delivery-id", record.delivery_id.encode())]
                return [OutboundRecord(topic, _item_key(record), payload, headers)]
            case Delivered(record, payload, receipt) if receipt is not None:
                archived = delivery.archive_record(record.channel, payload, record.updated_at)
                archived["delivery_id"] = record.delivery_id
                key = _item_key(record)
                return [
                    OutboundRecord(topics.PUBLISH_ARCHIVE, key, json.dumps(archived).encode()),
                    OutboundRecord(topics.RECEIPTS, key, receipt.model_dump_json().encode()),
                ]
            case Duplicate(record, receipt) if receipt is not None:
                value = receipt.model_dump_json().encode()
                return [OutboundRecord(topics.RECEIPTS, _item_key(record), value)]
            case DeadLettered(record, letter):
                value = letter.model_dump_json().encode()
                return [OutboundRecord(topics.PUBLISH_DLQ, _item_key(record), value)]
        return []

    def _report(self, effect: Effect) -> None:
        match effect:
            case WriteToTopic(record, _, _):
                self._telemetry.attempted(record, "delivered", 1)
            case Delivered(record, _, _):
                self._telemetry.delivered(record)
            case Duplicate(record, _):
                self._telemetry.duplicate(record)
            case DeadLettered(record, _):
                self._telemetry.dead_lettered(record)
            case StartAttempts(record, redelivery):
                if redelivery:
                    self._telemetry.redelivering(record)
                self._attempts.start(record)

    async def resume_pending(self) -> None:
        """Take up deliveries left pending by a crash or a rebalance.

        Only a restart, a new partition assignment or a loop that died leaves a
        pending record with no loop behind it, so the table is scanned when the
        worker becomes ready again, not on every tick.
        """
        if not self._ready():
            self._scanned = False
            return
        if self._scanned and not self._attempts.lost:
            return
        self._scanned = True
        self._attempts.lost = False
        for record in self._records.values():
            if record.status == "dead":  # known here before publish.dead named it
                self._dead.put(record.key, 0.0, record)
            if record.status != "pending" or self._attempts.running(record.key):
                continue
            tenant = self._deployment.tenants.get(record.order.tenant)
            channel = tenant.channel(record.channel) if tenant else None
            if channel is not None and isinstance(channel.transport, KafkaTransport):
                continue  # Kafka deliveries complete inside the handler
            self._attempts.start(record)

    def dead_letters(self, tenant: str | None = None) -> list[Delivery]:
        """The dead letters of every publish process, oldest first."""
        return self._dead.all(tenant)

    def dead_letter(self, delivery_id: str) -> Delivery | None:
        return self._dead.by_id(delivery_id)

    async def request_redelivery(self, record: Delivery) -> None:
        """Ask for a dead letter to be tried again."""
        outcome = Outcome(kind="redeliver", key=record.key, at=self._clock())
        value = outcome.model_dump_json().encode()
        await self._outbox.send_all(
            [OutboundRecord(topics.PUBLISH_OUTCOMES, _item_key(record), value)]
        )
