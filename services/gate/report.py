"""When the monthly follow-up e-mail is due, and what it says, as pure functions.

On the first working day of a month (Monday to Friday, not a Swedish public
holiday), and on any later day of it, the previous month's report is due for
every tenant with a communications desk. The gate asks for it as often as it
likes; publish sends each (tenant, month) once.
"""

from __future__ import annotations

from collections.abc import Container
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from schemas.events import FollowUpReport, ReportUnit
from services.gate.followup import FollowUp

__all__ = ["due_month", "first_working_day", "report_due"]

_ZONE = ZoneInfo("Europe/Stockholm")


def first_working_day(year: int, month: int, holidays: Container[date]) -> date:
    day = date(year, month, 1)
    while day.weekday() >= 5 or day in holidays:
        day += timedelta(days=1)
    return day


def _previous(month_start: date) -> str:
    return (month_start - timedelta(days=1)).strftime("%Y-%m")


def due_month(now: datetime, holidays: Container[date]) -> str | None:
    """The month whose report is due at *now* (the one before), or None before the
    month's first working day."""
    today = now.astimezone(_ZONE).date()
    if today < first_working_day(today.year, today.month, holidays):
        return None
    return _previous(today.replace(day=1))


def report_due(
    tenant: str,
    now: datetime,
    followup: FollowUp,
    holidays: Container[date],
    console_url: str,
) -> FollowUpReport | None:
    """The report on last month for *tenant*, if it is due at *now* and the month had
    decisions to report; else None."""
    month = due_month(now, holidays)
    if month is None:
        return None
    units = [
        ReportUnit(
            unit=row.unit,
            external_released=row.external_released,
            internal_lead_median_s=row.internal_lead_median_s,
            held=row.held,
            escalated=row.escalated,
            overridden=row.overridden,
            rejected_by_operator=row.rejected_by_operator,
        )
        for row in followup.figures(tenant, month)
    ]
    if not units:
        return None  # a month without decisions (or before the first) is not mailed
    return FollowUpReport(
        report_id=f"report:{tenant}:{month}",
        tenant=tenant,
        month=month,
        units=units,
        console_url=f"{console_url}/uppfoljning?tenant={tenant}&month={month}",
        decided_at=now,
    )
