"""The gate's operator API: list, release and reject held items, as a named person.

``GET /v1/held``, ``POST /v1/held/{tenant}/{item_id}/release`` and
``POST /v1/held/{tenant}/{item_id}/reject``. Every request needs an operator's
identity (401); a tenant the person does not act for is not found (404); a
viewer may look but not act (403). Nothing changes on a refusal.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
from datetime import UTC, datetime

from aiohttp import web

from schemas.api import Decided, HeldPage, Reason
from services.gate import paging
from services.gate.handler import GateHandler
from services.runtime.keys import ItemKey, from_segment
from services.runtime.openapi import NO_KEY, THROTTLED, Answer, Operation, Param
from services.runtime.operators import OperatorDirectory
from services.runtime.web import (
    bad_query,
    forbidden,
    identify,
    problem,
    unauthorized,
    unknown_tenant,
)

__all__ = ["OPERATIONS", "OperatorApi"]


_ITEM = (
    Param("tenant", "path", "the item's tenant"),
    Param("item_id", "path", "the item; an id of dots alone is written ~. or ~.."),
)

#: What ``/openapi.json`` says of the operator API (CONTRACT 5).
OPERATIONS = (
    Operation(
        "GET",
        "/v1/held",
        "The held items of the caller's tenants, oldest hold first, a page at a time",
        (
            Answer(200, "a page", HeldPage),
            Answer(400, "a bad limit or cursor: errors names it"),
            NO_KEY,
            Answer(404, "a tenant the caller does not act for"),
            THROTTLED,
        ),
        params=(
            Param("tenant", "query", "only this tenant's"),
            Param("q", "query", "words of the title or the item id, all of them"),
            Param("reason", "query", "only holds with this reason"),
            Param(
                "limit",
                "query",
                "rows a page",
                schema={"type": "integer", "minimum": 1, "maximum": paging.MAX_LIMIT},
            ),
            Param("cursor", "query", "next_cursor of the page before"),
        ),
        secured=True,
        tags=("held",),
    ),
    *(
        Operation(
            "POST",
            f"/v1/held/{{tenant}}/{{item_id}}/{action}",
            summary,
            (
                Answer(200, "decided", Decided),
                Answer(202, "requested; the gate decides it in the item's order", Decided),
                NO_KEY,
                Answer(403, "a viewer: only a publisher may"),
                Answer(404, "nothing held for this item, or not the caller's tenant"),
                Answer(422, "no reason given"),
                THROTTLED,
            ),
            params=_ITEM,
            body=Reason,
            secured=True,
            tags=("held",),
        )
        for action, summary in (
            ("release", "Release what is held, as a named person (decision overridden)"),
            ("reject", "Stop what is held until a newer version (decision rejected_by_operator)"),
        )
    ),
)


def _limit(given: str | None, errors: list[dict[str, str]]) -> int:
    if given is None:
        return paging.DEFAULT_LIMIT
    try:
        limit = int(given)
    except ValueError:
        limit = 0
    if not 1 <= limit <= paging.MAX_LIMIT:
        errors.append(
            {"field": "limit", "detail": f"must be a whole number from 1 to {paging.MAX_LIMIT}"}
        )
        return paging.DEFAULT_LIMIT
    return limit


def _not_found(request: web.Request, tenant: str, item_id: str) -> web.Response:
    return problem(
        404,
        "Not held",
        f"Nothing is held for {tenant}/{item_id}.",
        slug="not-held",
        instance=request.path,
    )


def _reason_required(request: web.Request, what: str) -> web.Response:
    return problem(
        422,
        "Reason required",
        f"Give the {what} a reason.",
        slug="schema-violation",
        instance=request.path,
        extra={
            "errors": [
                {
                    "field": "reason",
                    "pointer": "#/reason",
                    "detail": "a non-empty string is required",
                }
            ]
        },
    )


class OperatorApi:
    """aiohttp routes over a :class:`GateHandler`."""

    #: How long an action waits to see the item leave the held list before answering 202.
    wait_seconds = 5.0

    def __init__(
        self,
        handler: GateHandler,
        operators: OperatorDirectory,
        tenants: Collection[str],
        as_of: Callable[[], datetime] | None = None,
    ) -> None:
        self._handler = handler
        self._operators = operators
        self._tenants = tenants
        #: How current the list is: when the held list last knew every process's holds.
        self._as_of = as_of or (lambda: datetime.now(UTC))

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/v1/held", self.list_held)
        app.router.add_post("/v1/held/{tenant}/{item_id}/release", self.release)
        app.router.add_post("/v1/held/{tenant}/{item_id}/reject", self.reject)

    async def list_held(self, request: web.Request) -> web.Response:
        who = identify(request, self._operators)
        if who is None:
            return unauthorized(request)
        tenant = request.query.get("tenant")
        if tenant is not None and (tenant not in self._tenants or not who.acts_for(tenant)):
            return unknown_tenant(request, tenant, who)
        errors: list[dict[str, str]] = []
        limit = _limit(request.query.get("limit"), errors)
        reason = request.query.get("reason") or None
        try:
            tenants = [tenant] if tenant is not None else who.visible(sorted(self._tenants))
            rows, count, next_cursor = await self._handler.board.read_json(
                "api",
                tenants,
                limit=limit,
                cursor=request.query.get("cursor") or None,
                q=request.query.get("q"),
                reason=reason,
            )
        except paging.BadCursor as exc:
            errors.append({"field": "cursor", "detail": str(exc)})
        if errors:
            return bad_query(request, errors)
        # The rows as the board keeps them, joined as JSON text: a page is not parsed.
        rest = json.dumps(
            {"count": count, "next_cursor": next_cursor, "as_of": self._as_of().isoformat()}
        )
        return web.Response(
            body=b'{"held": [' + rows + b"], " + rest[1:].encode(),
            content_type="application/json",
            charset="utf-8",
        )

    async def release(self, request: web.Request) -> web.Response:
        return await self._act(request, release=True)

    async def reject(self, request: web.Request) -> web.Response:
        return await self._act(request, release=False)

    async def _act(self, request: web.Request, *, release: bool) -> web.Response:
        who = identify(request, self._operators)
        if who is None:
            return unauthorized(request)
        key = ItemKey(request.match_info["tenant"], from_segment(request.match_info["item_id"]))
        if key.tenant not in self._tenants or not who.acts_for(key.tenant):
            return _not_found(request, key.tenant, key.item_id)
        if not who.may_act:
            return forbidden(request, who)
        reason = await _reason(request)
        if reason is None:
            return _reason_required(request, "release" if release else "rejection")
        status, request_id = await self._handler.request(
            key, reason, who, release=release, wait_s=self.wait_seconds
        )
        if request_id is None:
            return _not_found(request, key.tenant, key.item_id)
        answer = {
            "status": status,
            "request_id": request_id,
            "tenant": key.tenant,
            "item_id": key.item_id,
            "operator": who.name,
        }
        return web.json_response(answer, status=202 if status == "requested" else 200)


async def _reason(request: web.Request) -> str | None:
    """The request's non-empty ``reason``, stripped; None when there is none."""
    try:
        payload = await request.json()
    except ValueError:
        return None
    reason = payload.get("reason") if isinstance(payload, dict) else None
    return reason.strip() if isinstance(reason, str) and reason.strip() else None
