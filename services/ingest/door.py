"""Ingest's HTTP door, ``POST /v1/tenants/{tenant}/events``, in three named steps.

1. :meth:`EventDoor.refuse_early`: tenant, size, media type, signature and
   readiness, each refused with its own problem+json before anything is read
   as an event;
2. :meth:`EventDoor.dedupe`: a ``webhook-id`` answered before, or being
   answered right now by a twin request, is a duplicate;
3. :meth:`EventDoor.accept`: validate, then write the raw event to
   ``cms.events`` and answer 202 only once Kafka acknowledged it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from aiohttp import web
from standardwebhooks import Webhook

from schemas.api import EventAccepted, EventDuplicate
from schemas.events import ContentEvent, ItemStatus, PublishedNotice
from services.ingest import dedupe, signatures
from services.ingest.normalize import Invalid, TenantChannels, check_event
from services.ingest.records import audit_rejection
from services.ingest.seen import SeenIds, SeenWindow
from services.ingest.telemetry import IngestTelemetry
from services.runtime import topics
from services.runtime.kafka_link import KafkaLink
from services.runtime.keys import ItemKey
from services.runtime.openapi import Answer, Operation, Param
from services.runtime.ports import Clock, OutboundRecord, Outbox, TextTable
from services.runtime.web import problem

__all__ = ["OPERATIONS", "WEBHOOKS", "EventDoor"]


#: The longest ``webhook-id`` remembered (CONTRACT 2): an id is a key kept in a
#: table, and an unbounded one is a way to fill it.
MAX_WEBHOOK_ID = 256


@dataclass(frozen=True)
class _Signed:
    """A request that passed the early checks: its body and idempotency key."""

    tenant: str
    body: bytes
    webhook_id: str

    @property
    def key(self) -> str:
        return dedupe.seen_key(self.tenant, self.webhook_id)


#: The longest a write to Kafka may take before the CMS is told 503 (CONTRACT 2:
#: within 1 s), and when it is asked to come back.
WRITE_TIMEOUT_S = 0.8
RETRY_AFTER_S = 5


def _unavailable(path: str, why: str) -> web.Response:
    response = problem(
        503,
        "Kafka unavailable",
        f"Nothing was accepted ({why}); retry in {RETRY_AFTER_S} s.",
        slug="unavailable",
        instance=path,
    )
    response.headers["Retry-After"] = str(RETRY_AFTER_S)
    return response


_SIGNATURE = (
    Param("webhook-id", "header", "the idempotency key, at most 256 characters", True),
    Param("webhook-timestamp", "header", "seconds since 1970; within 5 minutes of now", True),
    Param("webhook-signature", "header", "v1,<base64 HMAC-SHA256 of id.timestamp.body>", True),
)

#: What ``/openapi.json`` says of the door (CONTRACT 2).
OPERATIONS = (
    Operation(
        "POST",
        "/v1/tenants/{tenant}/events",
        "A CMS's event, signed as Standard Webhooks prescribes with the tenant's secret",
        (
            Answer(202, "accepted: durably on Kafka", EventAccepted),
            Answer(200, "a webhook-id accepted before: not processed again", EventDuplicate),
            Answer(400, "the body is not JSON, or the webhook-id is too long"),
            Answer(401, "a missing or bad signature, or a timestamp out of tolerance"),
            Answer(404, "no such tenant"),
            Answer(413, "the body is over the limit (1 MiB by default)"),
            Answer(415, "not application/json"),
            Answer(422, "the event breaks the schema: errors lists every field"),
            Answer(503, "Kafka not reachable: nothing accepted, retry", headers=("Retry-After",)),
        ),
        params=(Param("tenant", "path", "the tenant, as in the deployment file"), *_SIGNATURE),
        body=ContentEvent,
        examples=("content-event-external", "content-event-internal"),
        signed=True,
        tags=("events",),
    ),
)

#: How a receiver of gatekeeper's webhooks answers, and what each answer does.
_RECEIVER_ANSWERS = (
    Answer(200, "taken (any 2xx)", None),
    Answer(410, "gone for good: the delivery ends", None),
    Answer(503, "try again later (also 408, 429, other 5xx)", None, ("Retry-After",)),
)

#: What a webhook channel (CONTRACT 4) and a CMS's status webhook receive, for
#: ``/openapi.json``'s ``webhooks``.
WEBHOOKS = (
    Operation(
        "POST",
        "channelNotice",
        "A publication to a webhook channel, signed with the channel's or the tenant's "
        "outbound secret; the webhook-id stays the same on every retry",
        _RECEIVER_ANSWERS,
        params=_SIGNATURE,
        body=PublishedNotice,
        examples=("published-notice",),
        signed=True,
        tags=("channels",),
    ),
    Operation(
        "POST",
        "cmsStatus",
        "What happened to an item, for the CMS's status webhook (status_webhook in the "
        "deployment file): held with reasons and the console link, released with channels "
        "and time, rejected with the person's reason, escalated. Signed with the status "
        "webhook's own secret, retried like a channel; the webhook-id is the same on every "
        "retry of one status",
        _RECEIVER_ANSWERS,
        params=_SIGNATURE,
        body=ItemStatus,
        examples=("item-status-held", "item-status-released"),
        signed=True,
        tags=("cms",),
    ),
)


class EventDoor:
    def __init__(
        self,
        *,
        verifiers: Mapping[str, Webhook],
        channels: TenantChannels,
        max_body_bytes: int,
        seen: TextTable,
        window: SeenWindow,
        outbox: Outbox,
        telemetry: IngestTelemetry,
        clock: Clock,
        ready: Callable[[], bool],
        link: KafkaLink | None = None,
    ) -> None:
        self._verifiers = verifiers
        self._link = link or KafkaLink()
        self._channels = channels
        self._limit = max_body_bytes
        self._seen = seen
        self._outbox = outbox
        self._telemetry = telemetry
        self._clock = clock
        self._ready = ready
        # ids this process answered lately, before the record path remembers them
        self._recent = SeenIds(dedupe.RecentIds(), window, clock)
        self._inflight: dict[str, asyncio.Future[str | None]] = {}

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/tenants/{tenant}/events", self.post_event)

    async def post_event(self, request: web.Request) -> web.Response:
        tenant = request.match_info["tenant"]
        response = await self._answer(request, tenant)
        self._telemetry.answered(tenant, response.status)
        return response

    async def _answer(self, request: web.Request, tenant: str) -> web.Response:
        signed = await self.refuse_early(request, tenant)
        if isinstance(signed, web.Response):
            return signed
        duplicate = await self.dedupe(signed, request.path)
        if duplicate is not None:
            return duplicate
        return await self.accept(signed, request.path)

    # -- 1. refuse early --------------------------------------------------------------

    async def _read_limited(self, request: web.Request) -> bytes | None:
        if request.content_length is not None and request.content_length > self._limit:
            return None
        body = bytearray()
        async for chunk in request.content.iter_chunked(64 * 1024):
            body.extend(chunk)
            if len(body) > self._limit:
                return None
        return bytes(body)

    async def refuse_early(self, request: web.Request, tenant: str) -> _Signed | web.Response:
        path = request.path
        verifier = self._verifiers.get(tenant)
        if verifier is None:
            return problem(
                404,
                "Unknown tenant",
                f"No tenant {tenant!r}.",
                slug="unknown-tenant",
                instance=path,
            )
        body = await self._read_limited(request)
        if body is None:
            return problem(
                413,
                "Body too large",
                f"The body is over the limit of {self._limit} bytes.",
                slug="body-too-large",
                instance=path,
                extra={"max_body_bytes": self._limit},
            )
        if request.content_type != "application/json":
            return problem(
                415,
                "Unsupported media type",
                f"Content-Type must be application/json, not {request.content_type!r}.",
                slug="unsupported-media-type",
                instance=path,
            )
        given_id = request.headers.get("webhook-id", "")
        if len(given_id) > MAX_WEBHOOK_ID:
            return problem(
                400,
                "webhook-id too long",
                f"The webhook-id header has {len(given_id)} characters; at most "
                f"{MAX_WEBHOOK_ID} are accepted. Nothing was kept of this request.",
                slug="webhook-id-too-long",
                instance=path,
                extra={
                    "errors": [
                        {"field": "webhook-id", "detail": f"at most {MAX_WEBHOOK_ID} characters"}
                    ]
                },
            )
        try:
            webhook_id = signatures.verify(verifier, body, request.headers)
        except signatures.NotText:
            return problem(
                400,
                "Body is not JSON",
                "The body is not UTF-8 text.",
                slug="not-json",
                instance=path,
            )
        except signatures.SignatureRefused as exc:
            return problem(
                401,
                "Signature refused",
                f"Standard Webhooks verification failed: {exc}",
                slug="bad-signature",
                instance=path,
            )
        if not self._ready():
            starting = problem(
                503,
                "Starting",
                "The service is still starting; retry shortly.",
                slug="unavailable",
                instance=path,
            )
            starting.headers["Retry-After"] = str(RETRY_AFTER_S)
            return starting
        return _Signed(tenant, body, webhook_id)

    # -- 2. dedupe --------------------------------------------------------------------

    async def dedupe(self, signed: _Signed, path: str) -> web.Response | None:
        """The answer to a delivery of an id answered before; None for a first delivery."""
        key = signed.key
        earlier = self._recent.get(key) or self._seen.get(key)
        pending = self._inflight.get(key)
        if earlier is None and pending is not None:
            # A twin request is being written right now: answer as it is answered.
            earlier = await asyncio.shield(pending)
            if earlier is None:
                return _unavailable(path, "an earlier delivery of this id failed")
        if earlier is None:
            return None
        self._telemetry.answered_duplicate(signed.tenant, earlier, signed.webhook_id)
        return web.json_response(
            {"status": "duplicate", "event_id": earlier, "webhook_id": signed.webhook_id},
            status=200,
        )

    # -- 3. accept --------------------------------------------------------------------

    async def _refuse_invalid(self, signed: _Signed, result: Invalid, path: str) -> web.Response:
        if result.status == 400:
            response = problem(
                400, "Body is not JSON", result.reason, slug="not-json", instance=path
            )
        else:
            response = problem(
                422,
                "Schema violation",
                f"{len(result.errors)} field(s) break ContentEvent v1.",
                slug="schema-violation",
                instance=path,
                extra={"errors": [e.as_dict() for e in result.errors]},
            )
        self._telemetry.refused(signed.tenant, result.status, [e.field for e in result.errors])
        if result.status == 422:
            try:
                await audit_rejection(
                    self._outbox,
                    self._telemetry,
                    self._clock,
                    signed.body,
                    result,
                    tenant=signed.tenant,
                    item_id=None,
                    event_id=signed.webhook_id,
                    known_tenant=True,
                )
            except Exception as exc:  # the answer stands; the log says what is missing
                self._telemetry.audit_failed(signed.tenant, signed.webhook_id, type(exc).__name__)
        return response

    async def accept(self, signed: _Signed, path: str) -> web.Response:
        result = check_event(signed.body, self._channels, tenant=signed.tenant)
        if isinstance(result, Invalid):
            return await self._refuse_invalid(signed, result, path)
        key = signed.key
        # derived from the id and the event, so the same event delivered after the id
        # was forgotten is the same to the gate, which then records it as already
        # decided, and a different one sent under a reused id is a new event
        event_id = dedupe.event_id_for(key, result.model_dump_json())
        if not self._link.may_try():  # refused at once, not queued behind a dead connection
            return _unavailable(path, self._link.reason() or "Kafka unreachable")
        future: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            await asyncio.wait_for(self._write(signed, result.item_id, event_id), WRITE_TIMEOUT_S)
        except Exception as exc:  # any failure to get Kafka's acknowledgement
            self._link.lost(type(exc).__name__)
            self._telemetry.write_failed(
                signed.tenant, result.item_id, event_id, type(exc).__name__
            )
            return _unavailable(path, "Kafka did not acknowledge the write")
        else:
            self._link.reached()
            self._recent.put(key, event_id)
            future.set_result(event_id)
        finally:
            self._inflight.pop(key, None)
            if not future.done():  # failed or cancelled: a waiting twin must not hang
                future.set_result(None)
        self._telemetry.received(signed.tenant, result.item_id, event_id, signed.webhook_id)
        return web.json_response({"status": "accepted", "event_id": event_id}, status=202)

    async def _write(self, signed: _Signed, item_id: str, event_id: str) -> None:
        await self._outbox.send_all(
            [
                OutboundRecord(
                    topics.CMS_EVENTS,
                    ItemKey(signed.tenant, item_id).encode(),
                    signed.body,
                    [
                        ("webhook-id", signed.webhook_id.encode()),
                        ("gatekeeper-event-id", event_id.encode()),
                        ("gatekeeper-source", b"http"),
                    ],
                )
            ]
        )
