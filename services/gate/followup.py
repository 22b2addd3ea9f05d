"""Follow-up (uppföljning): how the policy is lived, per tenant, month and unit.

A pure fold over the audit trail: every :class:`~schemas.events.Decision` on
``gate.decisions`` is added (one seen again changes nothing: every figure is a
set or a map of item versions), in
the calendar month of its ``decided_at`` in Europe/Stockholm, under the unit of
its event. Counts are of item versions, not deliveries. Built the same way by
the gate as decisions arrive and by ``gatekeeper follow-up rebuild`` from the
start of the topic, so both give the same figures.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from schemas.api import UnitFigures
from schemas.events import Decision

__all__ = ["FollowUp", "UnitFigures", "month_of", "to_csv"]

_ZONE = ZoneInfo("Europe/Stockholm")
#: The reasons a held decision gives, joined by this.
_REASON_SEPARATOR = ", "

Version = tuple[str, int, str]  # item id, version, audience


def month_of(decision: Decision) -> str:
    return decision.decided_at.astimezone(_ZONE).strftime("%Y-%m")


def _p90(values: list[float]) -> float | None:
    """The 90th percentile by nearest rank: a value that occurred."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(math.ceil(0.9 * len(ordered)) - 1, 0)]


def _median(values: list[float]) -> float | None:
    return float(statistics.median(values)) if values else None


@dataclass
class _Unit:
    released: set[Version] = field(default_factory=set)
    leads: dict[Version, float] = field(default_factory=dict)
    held: set[Version] = field(default_factory=set)
    held_by_reason: dict[str, set[Version]] = field(default_factory=lambda: defaultdict(set))
    hold_times: dict[Version, float] = field(default_factory=dict)
    escalated: set[Version] = field(default_factory=set)
    overridden: set[Version] = field(default_factory=set)
    rejected: set[Version] = field(default_factory=set)
    crisis: set[Version] = field(default_factory=set)
    findings: dict[str, set[Version]] = field(default_factory=lambda: defaultdict(set))
    retracted: set[Version] = field(default_factory=set)
    lix: dict[Version, float] = field(default_factory=dict)

    def add(self, d: Decision, was_held: bool) -> None:
        key: Version = (d.item_id, d.version, d.audience or "")
        match d.kind:
            case "held":
                self.held.add(key)
                for reason in d.reason.split(_REASON_SEPARATOR):
                    self.held_by_reason[reason.strip()].add(key)
            case "escalated":
                self.escalated.add(key)
            case "overridden" | "released":
                self._released(d, key, was_held)
            case "rejected_by_operator":
                self.rejected.add(key)
            case "retracted":
                self.retracted.add(key)
        if d.audience == "external":
            for finding in d.findings:
                self.findings[finding.rule].add(key)
            if d.lix is not None:
                self.lix[key] = d.lix

    def _released(self, d: Decision, key: Version, was_held: bool) -> None:
        if d.kind == "overridden":
            self.overridden.add(key)
        if d.audience == "external":
            self.released.add(key)
            if d.internal_lead_s is not None:
                self.leads[key] = d.internal_lead_s
            if d.crisis:
                self.crisis.add(key)
        if d.held_since is not None and was_held:
            self.hold_times[key] = (d.decided_at - d.held_since).total_seconds()

    def merged(self, other: _Unit) -> _Unit:
        """Both months' item versions as one period's (a version counted once)."""

        def union(a: dict[str, set[Version]], b: dict[str, set[Version]]) -> Any:
            out: dict[str, set[Version]] = defaultdict(set)
            for key in (*a, *b):
                out[key] = a.get(key, set()) | b.get(key, set())
            return out

        return _Unit(
            released=self.released | other.released,
            leads={**self.leads, **other.leads},
            held=self.held | other.held,
            held_by_reason=union(self.held_by_reason, other.held_by_reason),
            hold_times={**self.hold_times, **other.hold_times},
            escalated=self.escalated | other.escalated,
            overridden=self.overridden | other.overridden,
            rejected=self.rejected | other.rejected,
            crisis=self.crisis | other.crisis,
            findings=union(self.findings, other.findings),
            retracted=self.retracted | other.retracted,
            lix={**self.lix, **other.lix},
        )

    def figures(self, unit: str) -> UnitFigures:
        leads = list(self.leads.values())
        return UnitFigures(
            unit=unit,
            external_released=len(self.released),
            internal_lead_median_s=_median(leads),
            internal_lead_p90_s=_p90(leads),
            held=len(self.held),
            held_by_reason={r: len(k) for r, k in sorted(self.held_by_reason.items())},
            held_median_s=_median(list(self.hold_times.values())),
            escalated=len(self.escalated),
            overridden=len(self.overridden),
            rejected_by_operator=len(self.rejected),
            crisis=len(self.crisis),
            findings_by_rule={r: len(k) for r, k in sorted(self.findings.items())},
            retracted=len(self.retracted),
            mean_lix=round(statistics.fmean(self.lix.values()), 1) if self.lix else None,
        )


class FollowUp:
    """The figures of every tenant, month and unit, kept as decisions are added."""

    def __init__(self) -> None:
        self._units: dict[tuple[str, str, str], _Unit] = {}
        #: Item versions that waited (a hold may end in a later month than it began).
        self._held: set[tuple[str, str, int, str]] = set()

    def add(self, decision: Decision) -> None:
        if not decision.unit:
            return
        version = (decision.tenant, decision.item_id, decision.version, decision.audience or "")
        if decision.kind == "held":
            self._held.add(version)
        where = (decision.tenant, month_of(decision), decision.unit)
        self._units.setdefault(where, _Unit()).add(decision, version in self._held)

    def add_all(self, decisions: Iterable[Decision]) -> FollowUp:
        for decision in decisions:
            self.add(decision)
        return self

    def months(self, tenant: str) -> list[str]:
        return sorted({m for t, m, _ in self._units if t == tenant})

    def figures(self, tenant: str, month: str, until: str | None = None) -> list[UnitFigures]:
        """Each unit's figures for *tenant* in *month* (YYYY-MM), by unit name; with
        *until*, for the months from *month* to *until* as one period."""
        last = until or month
        period: dict[str, _Unit] = {}
        for (t, m, name), unit in sorted(self._units.items()):
            if t == tenant and month <= m <= last:
                period[name] = period[name].merged(unit) if name in period else unit
        return [unit.figures(name) for name, unit in sorted(period.items())]


_COLUMNS = [
    "unit",
    "external_released",
    "internal_lead_median_s",
    "internal_lead_p90_s",
    "held",
    "held_by_reason",
    "held_median_s",
    "escalated",
    "overridden",
    "rejected_by_operator",
    "crisis",
    "findings_by_rule",
    "retracted",
    "mean_lix",
]


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in value.items())
    if isinstance(value, float):
        return str(round(value, 1)).removesuffix(".0")
    return str(value)


def to_csv(tenant: str, month: str, rows: list[UnitFigures]) -> bytes:
    """Semicolon-separated, UTF-8 with a byte order mark: Excel in Swedish opens it right."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";", lineterminator="\r\n")
    writer.writerow(["tenant", "month", *_COLUMNS])
    for row in rows:
        values = row.model_dump()
        writer.writerow([tenant, month, *(_cell(values[c]) for c in _COLUMNS)])
    return "\ufeff".encode() + out.getvalue().encode("utf-8")
