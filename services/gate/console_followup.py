"""The console's "Uppföljning": a month or a period per unit, as charts and tables, and
the same as CSV (CONTRACT 5, follow-up)."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from services.gate import wording
from services.gate.followup import FollowUp
from services.gate.followup_api import MONTH, csv_answer
from services.gate.handler import GateHandler
from services.gate.sessions import Caller
from services.runtime.ports import Clock
from services.runtime.swedish import duration, month_name

__all__ = ["FollowUpPages"]

_ZONE = ZoneInfo("Europe/Stockholm")


class FollowUpPages:
    """The follow-up pages, for the person the console's *who* names, drawn by *page*."""

    def __init__(
        self,
        who: Callable[[web.Request], Caller],
        page: Callable[..., web.Response],
        handler: GateHandler,
        tenants: Collection[str],
        clock: Clock,
        followup: FollowUp,
        ready: Callable[[], bool],
    ) -> None:
        self._who = who
        self._page = page
        self._handler = handler
        self._tenants = tenants
        self._clock = clock
        self._followup = followup
        self._followup_ready = ready

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/console/uppfoljning", self.follow_up)
        app.router.add_get("/console/uppfoljning.csv", self.follow_up_csv)

    def _month_and_tenant(self, request: web.Request, caller: Caller) -> tuple[str, str]:
        visible = caller.identity.visible(sorted(self._tenants))
        if not visible:
            raise web.HTTPNotFound(text="Hittades inte.")
        tenant = request.query.get("tenant") or visible[0]
        if tenant not in visible:
            raise web.HTTPNotFound(text="Hittades inte.")
        month = request.query.get("month", "")
        if not MONTH.match(month):
            month = self._clock().astimezone(_ZONE).strftime("%Y-%m")
        return tenant, month

    @staticmethod
    def _until(request: web.Request, month: str) -> str | None:
        """The last month of a period that starts at *month* ("till"), if one is asked."""
        until = request.query.get("till", "")
        return until if MONTH.match(until) and until > month else None

    async def follow_up(self, request: web.Request) -> web.Response:
        caller = self._who(request)
        tenant, month = self._month_and_tenant(request, caller)
        until = self._until(request, month)
        rows = self._followup.figures(tenant, month, until)
        policy = self._handler.policy(tenant)
        reasons: dict[str, int] = {}
        findings: dict[str, int] = {}
        for row in rows:
            for reason, count in row.held_by_reason.items():
                text = wording.reason_text(reason)
                reasons[text] = reasons.get(text, 0) + count
            for rule, count in row.findings_by_rule.items():
                findings[rule] = findings.get(rule, 0) + count
        return self._page(
            request,
            "followup.html",
            who=caller.identity,
            csrf=caller.csrf,
            tenant=tenant,
            tenants=caller.identity.visible(sorted(self._tenants)),
            organization=policy.organization if policy else tenant,
            month=month,
            month_name=(
                f"{month_name(month)} – {month_name(until)}" if until else month_name(month)
            ),
            until=until or "",
            ready=self._followup_ready(),
            units=[
                {
                    **row.model_dump(),
                    "lead_median": duration(row.internal_lead_median_s),
                    "lead_p90": duration(row.internal_lead_p90_s),
                    "held_median": duration(row.held_median_s),
                }
                for row in rows
            ],
            lead_rows=[
                (row.unit, round(row.internal_lead_median_s / 3600, 1))
                for row in rows
                if row.internal_lead_median_s is not None
            ],
            reason_rows=sorted(reasons.items(), key=lambda r: -r[1]),
            finding_rows=sorted(findings.items(), key=lambda r: -r[1]),
            **self._lead_over_months(tenant, until or month),
        )

    def _lead_over_months(self, tenant: str, month: str) -> dict[str, Any]:
        """The median internal lead per unit over the six months up to *month*, in hours:
        does each unit tell its staff earlier as time goes by?"""
        year, number = (int(p) for p in month.split("-"))
        months = []
        for back in range(5, -1, -1):
            y, m = divmod(year * 12 + number - 1 - back, 12)
            months.append(f"{y}-{m + 1:02d}")
        hours: dict[str, dict[str, float]] = {}
        for when in months:
            for row in self._followup.figures(tenant, when):
                if row.internal_lead_median_s is not None:
                    hours.setdefault(row.unit, {})[when] = round(
                        row.internal_lead_median_s / 3600, 1
                    )
        peak = max((h for by in hours.values() for h in by.values()), default=0.0) or 1.0
        return {
            "trend_months": months,
            "trend_labels": {m: month_name(m) for m in months},
            "trend": sorted(hours.items()),
            "trend_peak": peak,
        }

    async def follow_up_csv(self, request: web.Request) -> web.Response:
        caller = self._who(request)
        tenant, month = self._month_and_tenant(request, caller)
        rows = self._followup.figures(tenant, month, self._until(request, month))
        answer = csv_answer(tenant, month, rows)
        answer.headers["Cache-Control"] = "no-store"
        return answer
