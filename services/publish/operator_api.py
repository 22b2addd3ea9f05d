"""Publish's operator API: ``GET /v1/dead-letters`` and
``POST /v1/dead-letters/{delivery_id}/redeliver``."""

from __future__ import annotations

from aiohttp import web

from schemas.api import DeadLetterPage, RedeliveryRequested
from services.publish.handler import PublishHandler
from services.runtime.openapi import NO_KEY, THROTTLED, Answer, Operation, Param
from services.runtime.operators import OperatorDirectory
from services.runtime.web import forbidden, identify, problem, unauthorized, unknown_tenant

__all__ = ["OPERATIONS", "OperatorApi"]


#: What ``/openapi.json`` says of publish's dead-letter API.
OPERATIONS = (
    Operation(
        "GET",
        "/v1/dead-letters",
        "Deliveries that failed their last attempt, of the caller's tenants",
        (
            Answer(200, "the dead letters", DeadLetterPage),
            NO_KEY,
            Answer(404, "a tenant the caller does not act for"),
            THROTTLED,
        ),
        params=(Param("tenant", "query", "only this tenant's"),),
        secured=True,
        tags=("dead letters",),
    ),
    Operation(
        "POST",
        "/v1/dead-letters/{delivery_id}/redeliver",
        "Try a dead letter again from the start of its schedule",
        (
            Answer(202, "requested", RedeliveryRequested),
            NO_KEY,
            Answer(403, "a viewer: only a publisher may"),
            Answer(404, "no such dead letter for the caller"),
            THROTTLED,
        ),
        params=(Param("delivery_id", "path", "as GET /v1/dead-letters lists it"),),
        secured=True,
        tags=("dead letters",),
    ),
)


class OperatorApi:
    def __init__(self, handler: PublishHandler, operators: OperatorDirectory) -> None:
        self._handler = handler
        self._operators = operators

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/v1/dead-letters", self.list_dead)
        app.router.add_post("/v1/dead-letters/{delivery_id}/redeliver", self.redeliver)

    async def list_dead(self, request: web.Request) -> web.Response:
        """The dead letters of the caller's tenants (of one, with ``?tenant=``)."""
        who = identify(request, self._operators)
        if who is None:
            return unauthorized(request)
        tenant = request.query.get("tenant")
        if tenant is not None and not who.acts_for(tenant):
            return unknown_tenant(request, tenant, who)
        rows = [
            {
                "delivery_id": r.delivery_id,
                "tenant": r.order.tenant,
                "item_id": r.order.item_id,
                "version": r.order.version,
                "action": r.order.action,
                "channel": r.channel,
                "reason": r.error,
                "attempts": r.attempts,
                "failed_at": r.updated_at.isoformat(),
            }
            for r in self._handler.dead_letters(tenant)
            if who.acts_for(r.order.tenant)
        ]
        return web.json_response({"dead_letters": rows, "count": len(rows)})

    async def redeliver(self, request: web.Request) -> web.Response:
        who = identify(request, self._operators)
        if who is None:
            return unauthorized(request)
        wanted = request.match_info["delivery_id"]
        record = self._handler.dead_letter(wanted)
        if record is None or not who.acts_for(record.order.tenant):
            return problem(
                404,
                "No such dead letter",
                f"No dead letter {wanted!r}.",
                slug="not-found",
                instance=request.path,
            )
        if not who.may_act:
            return forbidden(request, who)
        await self._handler.request_redelivery(record)
        return web.json_response(
            {"status": "redelivery requested", "delivery_id": wanted}, status=202
        )
