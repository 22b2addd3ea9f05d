"""``GET /v1/follow-up?tenant=T&month=YYYY-MM``: the follow-up figures of one tenant's
month, per unit, as JSON or (``Accept: text/csv``) CSV for Excel.

Any operator of the tenant may read them, a viewer too; another tenant is not
found (404), like everywhere in the operator API.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection

from aiohttp import web

from schemas.api import FollowUpAnswer, UnitFigures
from services.gate.followup import FollowUp, to_csv
from services.runtime.openapi import NO_KEY, THROTTLED, Answer, Operation, Param
from services.runtime.operators import OperatorDirectory
from services.runtime.web import bad_query, identify, problem, unauthorized, unknown_tenant

__all__ = ["MONTH", "OPERATIONS", "FollowUpApi", "csv_answer"]

#: A calendar month as the API and the console take it.
MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")

OPERATIONS = (
    Operation(
        "GET",
        "/v1/follow-up",
        "Follow-up: one tenant's month per unit (releases, internal lead, holds and why, "
        "escalations, manual decisions, crisis releases, findings, retracts); "
        "Accept: text/csv gives the same rows for Excel",
        (
            Answer(200, "the month's figures", FollowUpAnswer),
            Answer(400, "tenant or month missing or malformed: errors names it"),
            NO_KEY,
            Answer(404, "a tenant the caller does not act for"),
            THROTTLED,
            Answer(
                503, "the audit trail is still being read after a start", headers=("Retry-After",)
            ),
        ),
        params=(
            Param("tenant", "query", "the tenant", True),
            Param(
                "month",
                "query",
                "the calendar month, YYYY-MM, in Europe/Stockholm",
                True,
                schema={"type": "string", "pattern": MONTH.pattern},
            ),
        ),
        secured=True,
        tags=("follow-up",),
    ),
)


def csv_answer(tenant: str, month: str, rows: list[UnitFigures]) -> web.Response:
    """The figures as a CSV file for Excel, named for the tenant and month."""
    name = f"uppfoljning-{tenant}-{month}.csv"
    return web.Response(
        body=to_csv(tenant, month, rows),
        content_type="text/csv",
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


class FollowUpApi:
    def __init__(
        self,
        followup: FollowUp,
        caught_up: Callable[[], bool],
        operators: OperatorDirectory,
        tenants: Collection[str],
    ) -> None:
        self._followup = followup
        self._caught_up = caught_up
        self._operators = operators
        self._tenants = tenants

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/v1/follow-up", self.month)

    async def month(self, request: web.Request) -> web.Response:
        who = identify(request, self._operators)
        if who is None:
            return unauthorized(request)
        tenant, month = request.query.get("tenant"), request.query.get("month")
        errors = []
        if not tenant:
            errors.append({"field": "tenant", "detail": "is required"})
        if not month or not MONTH.match(month):
            errors.append({"field": "month", "detail": "must be YYYY-MM, e.g. 2026-03"})
        if errors or tenant is None or month is None:
            return bad_query(request, errors)
        if tenant not in self._tenants or not who.acts_for(tenant):
            return unknown_tenant(request, tenant, who)
        if not self._caught_up():
            response = problem(
                503,
                "Not yet",
                "The audit trail is still being read after a start; try again shortly.",
                slug="unavailable",
                instance=request.path_qs,
            )
            response.headers["Retry-After"] = "2"
            return response
        rows = self._followup.figures(tenant, month)
        if "text/csv" in request.headers.get("Accept", ""):
            return csv_answer(tenant, month, rows)
        answer = FollowUpAnswer(tenant=tenant, month=month, units=rows)
        return web.json_response(answer.model_dump(mode="json"))
