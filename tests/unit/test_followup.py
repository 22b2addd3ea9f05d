"""Follow-up figures from a generated history of decisions over three months, each
figure computed again here, independently, the plain way."""

from __future__ import annotations

import math
import statistics
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.events import ContentFinding, Decision
from services.gate.followup import FollowUp, to_csv
from tests.properties import examples

START = datetime(2026, 8, 31, 21, 30, tzinfo=UTC)  # already September in Stockholm
ZONE = ZoneInfo("Europe/Stockholm")
KINDS = ["held", "escalated", "released", "overridden", "rejected_by_operator", "retracted"]
REASONS = ["awaiting_internal_notice", "awaiting_publish_at", "content_check:plain_language"]
UNITS = ["Sektor Lärande", "Sektor Samhällsbyggnad"]


@st.composite
def histories(draw: st.DrawFn) -> list[Decision]:
    out = []
    for n in range(draw(st.integers(0, 40))):
        kind = draw(st.sampled_from(KINDS))
        at = START + timedelta(hours=draw(st.integers(0, 24 * 91)))
        findings = [
            ContentFinding(rule=r, action="warn", message="m", fix="f")
            for r in draw(st.sets(st.sampled_from(["plain_language", "link_text"])))
        ]
        out.append(
            Decision(
                decision_id=f"d{n}",
                kind=kind,
                reason=", ".join(draw(st.sets(st.sampled_from(REASONS), min_size=1))),
                rule="r",
                tenant=draw(st.sampled_from(["lerum", "ale"])),
                item_id=f"i{draw(st.integers(0, 8))}",
                version=draw(st.integers(1, 2)),
                audience=draw(st.sampled_from(["internal", "external"])),
                decided_at=at,
                held_since=at - timedelta(minutes=draw(st.integers(0, 600))),
                crisis=draw(st.booleans()),
                unit=draw(st.sampled_from(UNITS)),
                internal_lead_s=float(draw(st.integers(0, 7200))),
                lix=draw(st.one_of(st.none(), st.floats(10, 80).map(lambda x: round(x, 1)))),
                findings=findings,
            )
        )
    # some decisions come twice, as after a crash
    return out + out[: draw(st.integers(0, 5))]


def _month(d: Decision) -> str:
    return d.decided_at.astimezone(ZONE).strftime("%Y-%m")


def version(d: Decision) -> tuple[str, int, str | None]:
    return (d.item_id, d.version, d.audience)


def _hold_times(history: list[Decision], tenant: str, mine: list[Decision]) -> dict[Any, float]:
    """How long each of *mine* released was held, once its held decision had come."""
    hold_times: dict[Any, float] = {}
    held_before: set[Any] = set()
    eligible: list[Decision] = []
    for d in history:
        if d.tenant != tenant:
            continue
        if d.kind == "held":
            held_before.add(version(d))
        elif d.kind in ("released", "overridden") and d in mine and version(d) in held_before:
            eligible.append(d)
    for d in sorted(eligible, key=_month):
        since = d.held_since
        if since is not None:
            hold_times[version(d)] = (d.decided_at - since).total_seconds()
    return hold_times


def _expected(history: list[Decision], tenant: str, months: set[str], unit: str) -> dict[str, Any]:
    mine = [d for d in history if d.tenant == tenant and _month(d) in months and d.unit == unit]
    # within a month the later decision's figure counts, across months the later month's
    mine.sort(key=_month)
    releases = [
        d for d in mine if d.kind in ("released", "overridden") and d.audience == "external"
    ]
    leads = list({version(d): d.internal_lead_s for d in releases}.values())
    hold_times = _hold_times(history, tenant, mine)
    by_reason: dict[str, set[Any]] = {}
    for d in mine:
        if d.kind == "held":
            for reason in d.reason.split(", "):
                by_reason.setdefault(reason, set()).add(version(d))
    findings: dict[str, set[Any]] = {}
    for d in mine:
        if d.audience == "external":
            for f in d.findings:
                findings.setdefault(f.rule, set()).add(version(d))

    def count(kind: str) -> int:
        return len({version(d) for d in mine if d.kind == kind})

    ordered = sorted(x for x in leads if x is not None)
    lix = {version(d): d.lix for d in mine if d.audience == "external" and d.lix is not None}
    return {
        "unit": unit,
        "external_released": len({version(d) for d in releases}),
        "internal_lead_median_s": statistics.median(ordered) if ordered else None,
        "internal_lead_p90_s": ordered[math.ceil(len(ordered) * 0.9) - 1] if ordered else None,
        "held": count("held"),
        "held_by_reason": {r: len(v) for r, v in sorted(by_reason.items())},
        "held_median_s": statistics.median(hold_times.values()) if hold_times else None,
        "escalated": count("escalated"),
        "overridden": count("overridden"),
        "rejected_by_operator": count("rejected_by_operator"),
        "crisis": len({version(d) for d in releases if d.crisis}),
        "findings_by_rule": {r: len(v) for r, v in sorted(findings.items())},
        "retracted": count("retracted"),
        "mean_lix": round(statistics.fmean(lix.values()), 1) if lix else None,
    }


@settings(max_examples=examples(40), deadline=None)
@given(histories())
def test_every_figure_is_what_the_history_says(history: list[Decision]) -> None:
    followup = FollowUp().add_all(history)
    periods = [("2026-09", None), ("2026-10", None), ("2026-11", None), ("2026-09", "2026-11")]
    for tenant in ("lerum", "ale"):
        for first, last in periods:
            months = {"2026-09", "2026-10", "2026-11"} if last else {first}
            rows = followup.figures(tenant, first, last)
            found = {row.unit: row.model_dump() for row in rows}
            units = {d.unit or "" for d in history if d.tenant == tenant and _month(d) in months}
            assert set(found) == units
            for unit in units:
                assert found[unit] == _expected(history, tenant, months, unit)


def test_the_csv_opens_in_a_swedish_excel() -> None:
    at = datetime(2026, 9, 15, 8, 0, tzinfo=UTC)
    history = [
        Decision(
            decision_id="d1",
            kind="held",
            reason="awaiting_internal_notice",
            rule="internal_before_external",
            tenant="lerum",
            item_id="i1",
            version=1,
            audience="external",
            decided_at=at,
            unit="Sektor Lärande",
        )
    ]
    rows = FollowUp().add_all(history).figures("lerum", "2026-09")
    text = to_csv("lerum", "2026-09", rows)
    assert text.startswith("\ufeff".encode())
    lines = text.decode("utf-8-sig").splitlines()
    assert lines[0].split(";")[:4] == ["tenant", "month", "unit", "external_released"]
    assert lines[1].split(";")[:3] == ["lerum", "2026-09", "Sektor Lärande"]
    assert "awaiting_internal_notice: 1" in lines[1]
