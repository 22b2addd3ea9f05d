"""Publish's handler: load a delivery's record, apply the rules, write the effects, save.

The only writer of the delivery records. Kafka channels are written at once;
webhook and SMTP deliveries go to :class:`~services.publish.attempts.Attempts`
and their outcomes come back as inputs.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
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


def _nothing(_: int) -> None:
    return None


@dataclass
class _Batch:
    """What a batch of inputs decided, written and saved together."""

    index: int = 0
    outbound: list[OutboundRecord] = field(default_factory=list)
    #: each changed delivery record, and the input that last changed it
    puts: dict[str, tuple[int, Delivery]] = field(default_factory=dict)
    dead: list[tuple[str, float, Delivery | None]] = field(default_factory=list)
    effects: list[Effect] = field(default_factory=list)


class PublishHandler:
    """Orders and outcomes in, deliveries out; dead letters listed and redelivered.

    Inputs are decided in batches (:meth:`decide_batch`): every record a batch
    writes goes out in one call, before the delivery records are saved and before
    any attempt starts. ``on_order`` and the other ``on_*`` methods are a batch of
    one input each.
    """

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
        """One input as a batch of its own, saved before this answers."""
        await (await self.decide_batch([record]))

    async def decide_batch(
        self, records: Sequence[InboundRecord], enter: Callable[[int], None] = _nothing
    ) -> Awaitable[None]:
        """Decide inputs in their order and write every effect; put the changed delivery
        records and answer what waits until they are saved. *enter(i)* is called
        before what input *i* left is put (the runner makes that input current)."""
        batch = _Batch()
        for i, record in enumerate(records):
            batch.index = i
            self._collect(batch, record)
        return await self._flush(batch, enter)

    def _collect(self, batch: _Batch, record: InboundRecord) -> None:
        if record.value is None:
            return
        try:
            if record.topic == topics.RELEASES:
                self._order(batch, ReleaseOrder.model_validate_json(record.value))
            elif record.topic == topics.NOTIFICATIONS and _is_report(record):
                self._report_order(batch, FollowUpReport.model_validate_json(record.value))
            elif record.topic == topics.NOTIFICATIONS:
                self._notification(batch, Notification.model_validate_json(record.value))
            elif record.topic == topics.STATUS:
                self._status(batch, ItemStatus.model_validate_json(record.value))
            else:
                self._outcome(batch, Outcome.model_validate_json(record.value))
        except ValidationError as exc:
            self._telemetry.undecodable_input(record, exc.error_count())

    async def _flush(self, batch: _Batch, enter: Callable[[int], None]) -> Awaitable[None]:
        await self._outbox.send_all(batch.outbound)
        for key, stamp, dead in batch.dead:
            self._dead.put(key, stamp, dead)
        for key, (i, after) in batch.puts.items():
            enter(i)
            self._records.put(key.encode(), after)
        for effect in batch.effects:
            self._report(effect)
        return self._records.saved()

    async def _one(self, collect: Callable[[_Batch], None]) -> None:
        batch = _Batch()
        collect(batch)
        await (await self._flush(batch, _nothing))

    async def on_order(self, order: ReleaseOrder) -> None:
        await self._one(lambda batch: self._order(batch, order))

    async def on_notification(self, notification: Notification) -> None:
        await self._one(lambda batch: self._notification(batch, notification))

    async def on_report(self, report: FollowUpReport) -> None:
        await self._one(lambda batch: self._report_order(batch, report))

    async def on_status(self, item: ItemStatus) -> None:
        await self._one(lambda batch: self._status(batch, item))

    async def on_outcome(self, outcome: Outcome) -> None:
        await self._one(lambda batch: self._outcome(batch, outcome))

    def _order(self, batch: _Batch, order: ReleaseOrder) -> None:
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
            self._step(batch, delivery.delivery_key(order, name), Order(order, name, topic))

    def _notification(self, batch: _Batch, notification: Notification) -> None:
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
        self._step(batch, delivery.delivery_key(order, channel), inp)

    def _report_order(self, batch: _Batch, report: FollowUpReport) -> None:
        """The monthly follow-up e-mail to the tenant's communications desk, once a month."""
        tenant = self._deployment.tenants.get(report.tenant)
        if tenant is None or tenant.notifications is None:
            self._telemetry.unknown_tenant(report.tenant, report.report_id)
            return
        desk = list(tenant.notifications.desk)
        order = notifications.report_order(report, _sender(tenant, tenant.name), desk)
        channel = notifications.REPORT_CHANNEL
        inp = Order(order, channel, None, kind="notification")
        self._step(batch, delivery.delivery_key(order, channel), inp)

    def _status(self, batch: _Batch, item: ItemStatus) -> None:
        """A status for the CMS's status webhook, signed and retried like a channel's."""
        tenant = self._deployment.tenants.get(item.tenant)
        if tenant is None or tenant.status_webhook is None:
            self._telemetry.unknown_tenant(item.tenant, item.item_id)
            return
        order = status.order_for(item, _sender(tenant, tenant.name))
        key = status.delivery_key(item)
        inp = Order(order, STATUS_CHANNEL, None, "status", key, status.payload_of(item))
        self._step(batch, key, inp)

    def _outcome(self, batch: _Batch, outcome: Outcome) -> None:
        if outcome.kind != "redeliver":
            self._attempts.finished(outcome.key)
        if self._record(batch, outcome.key) is None:
            self._telemetry.unknown_delivery(outcome.key)
            return
        self._step(batch, outcome.key, outcome)

    def _record(self, batch: _Batch, key: str) -> Delivery | None:
        """A delivery's record as this batch left it so far."""
        if key in batch.puts:
            return batch.puts[key][1]
        return self._records.get(key.encode())

    def _step(self, batch: _Batch, key: str, inp: Input) -> None:
        before = self._record(batch, key)
        now = self._clock()
        after, effects = decide(before, inp, now)
        batch.outbound.extend(r for e in effects for r in self._records_of(e))
        was_dead = before is not None and before.status == "dead"
        is_dead = after is not None and after.status == "dead"
        dead = after if is_dead else None
        if was_dead != is_dead:  # every publish process lists it, or no longer
            stamp = self._stamps.next(now)
            value = dead.model_dump_json().encode() if dead else None
            header = [stamp_header(stamp)]
            batch.outbound.append(OutboundRecord(topics.DEAD, key.encode(), value, header))
            batch.dead.append((key, stamp, dead))
        if after is not None and after != before:
            batch.puts[key] = (batch.index, after)
        batch.effects.extend(effects)

    def _records_of(self, effect: Effect) -> list[OutboundRecord]:
        match effect:
            case WriteToTopic(record, topic, payload):
                headers = [("gatekeeper-delivery-id", record.delivery_id.encode())]
                return [OutboundRecord(topic, _item_key(record), payload, headers)]
            case Delivered(record, payload, receipt) if record.kind == "publication":
                archived = delivery.archive_record(record.channel, payload, record.updated_at)
                archived["delivery_id"] = record.delivery_id
                key = _item_key(record)
                written = [
                    OutboundRecord(topics.PUBLISH_ARCHIVE, key, json.dumps(archived).encode())
                ]
                if receipt is not None:
                    value = receipt.model_dump_json().encode()
                    written.append(OutboundRecord(topics.RECEIPTS, key, value))
                return written
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
