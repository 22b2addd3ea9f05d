"""The gate's operator API: ``GET /v1/held`` and ``POST /v1/held/{tenant}/{item_id}/release``."""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from typing import Any

from aiohttp import web

from services.gate.handler import GateHandler
from services.gate.machine import ItemState
from services.runtime.auth import OperatorAuth
from services.runtime.keys import ItemKey
from services.runtime.web import problem, refuse_operator

__all__ = ["OperatorApi", "held_rows"]


def held_rows(state: ItemState) -> list[dict[str, Any]]:
    """What ``GET /v1/held`` shows of one item: one row per held audience."""
    return [
        {
            "tenant": state.tenant,
            "item_id": state.item_id,
            "version": held.event.version,
            "audience": audience,
            "channels": list(held.event.channels),
            "reasons": list(held.reasons),
            "held_since": held.held_since.isoformat(),
            "publish_at": held.event.publish_at.isoformat(),
            "escalated": held.escalated,
            "event_id": held.event_id,
            "title": held.event.title,
            "warnings": list(held.warnings),
        }
        for audience, held in sorted(state.held.items())
    ]


class OperatorApi:
    """aiohttp routes over a :class:`GateHandler`."""

    #: How long a release request waits to see the item released before answering 202.
    release_wait_seconds = 5.0

    def __init__(self, handler: GateHandler, auth: OperatorAuth, tenants: Collection[str]) -> None:
        self._handler = handler
        self._auth = auth
        self._tenants = tenants

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/v1/held", self.list_held)
        app.router.add_post("/v1/held/{tenant}/{item_id}/release", self.release)

    async def list_held(self, request: web.Request) -> web.Response:
        tenant = request.query.get("tenant")
        if tenant is not None and tenant not in self._tenants:
            return problem(
                404,
                "Unknown tenant",
                f"No tenant {tenant!r}.",
                slug="unknown-tenant",
                instance=request.path_qs,
            )
        rows = [
            row
            for state in self._handler.held()
            if tenant is None or state.tenant == tenant
            for row in held_rows(state)
        ]
        rows.sort(key=lambda r: (r["held_since"], r["tenant"], r["item_id"]))
        return web.json_response({"held": rows, "count": len(rows)})

    async def release(self, request: web.Request) -> web.Response:
        refused = refuse_operator(request, self._auth)
        if refused is not None:
            return refused
        path = request.path
        reason = await _reason(request)
        if reason is None:
            return problem(
                422,
                "Reason required",
                "Give the release a reason.",
                slug="schema-violation",
                instance=path,
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
        key = ItemKey(request.match_info["tenant"], request.match_info["item_id"])
        request_id = await self._handler.request_release(key, reason)
        if request_id is None:
            return problem(
                404,
                "Not held",
                f"Nothing is held for {key.tenant}/{key.item_id}.",
                slug="not-held",
                instance=path,
            )
        answer = {"request_id": request_id, "tenant": key.tenant, "item_id": key.item_id}
        if await self._released(key):
            return web.json_response({"status": "released", **answer})
        return web.json_response({"status": "requested", **answer}, status=202)

    async def _released(self, key: ItemKey) -> bool:
        """Wait a little for the gate's agent to decide the release it was sent."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.release_wait_seconds
        while True:
            current = self._handler.state(key)
            if current is not None and not current.is_held():
                return True
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(0.05)


async def _reason(request: web.Request) -> str | None:
    """The request's non-empty ``reason``, stripped; None when there is none."""
    try:
        payload = await request.json()
    except ValueError:
        return None
    reason = payload.get("reason") if isinstance(payload, dict) else None
    return reason.strip() if isinstance(reason, str) and reason.strip() else None
