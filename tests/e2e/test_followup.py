"""Follow-up from the running pipeline: what happened to a unit's items this month,
as JSON, as CSV for Excel, and as `gatekeeper follow-up rebuild` reads it again from
the audit trail."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from tests.conftest import OPERATOR_AUTH, content_event, internal_notice
from tests.e2e.chromium import assert_accessible
from tests.e2e.test_console import SCREENSHOTS, login
from tests.harness import Pipeline, TopicReader, post_event, unique_item, wait_until


def _row(gate: str, month: str, unit: str) -> dict[str, Any] | None:
    answer = httpx.get(
        f"{gate}/v1/follow-up", params={"tenant": "lerum", "month": month}, headers=OPERATOR_AUTH
    )
    if answer.status_code != 200:
        return None
    return next((u for u in answer.json()["units"] if u["unit"] == unit), None)


def test_a_unit_s_month_counts_its_releases_holds_and_decisions(
    pipeline: Pipeline, topics: TopicReader, browser: WebDriver
) -> None:
    ingest, gate = pipeline.services["ingest"].url, pipeline.services["gate"].url
    unit = f"Enhet {uuid.uuid4().hex[:8]}"
    told, by_hand, stopped = unique_item("fu-told"), unique_item("fu-hand"), unique_item("fu-stop")
    for item in (told, by_hand, stopped):
        assert post_event(ingest, content_event(item_id=item, unit=unit)).status_code == 202
    for item in (told, by_hand, stopped):
        topics.wait_for(
            "gate.decisions", f"lerum:{item}", lambda v: any(d["kind"] == "held" for d in v)
        )
    assert post_event(ingest, internal_notice(item_id=told, unit=unit)).status_code == 202
    for item, action in ((by_hand, "release"), (stopped, "reject")):
        answer = httpx.post(
            f"{gate}/v1/held/lerum/{item}/{action}",
            json={"reason": "Uppföljningstest"},
            headers=OPERATOR_AUTH,
            timeout=30,
        )
        assert answer.status_code in (200, 202)
    topics.wait_for("external.web", f"lerum:{told}", lambda v: len(v) == 1)
    [held] = [d for d in topics.json_for("gate.decisions", f"lerum:{told}") if d["kind"] == "held"]
    zone = ZoneInfo("Europe/Stockholm")
    month = datetime.fromisoformat(held["decided_at"]).astimezone(zone).strftime("%Y-%m")

    row = wait_until(
        lambda: (r := _row(gate, month, unit)) and r["rejected_by_operator"] == 1 and r,
        30,
        "the month's figures",
    )
    assert row["external_released"] == 2, "released after the notice, and by hand"
    assert row["held"] == 3
    assert row["held_by_reason"] == {"awaiting_internal_notice": 3}
    assert row["overridden"] == 1
    assert row["rejected_by_operator"] == 1
    assert (row["escalated"], row["crisis"], row["retracted"]) == (0, 0, 0)
    assert row["internal_lead_median_s"] is not None, "the told item's lead"
    assert row["internal_lead_median_s"] == row["internal_lead_p90_s"]
    assert row["held_median_s"] is not None

    csv = httpx.get(
        f"{gate}/v1/follow-up",
        params={"tenant": "lerum", "month": month},
        headers={**OPERATOR_AUTH, "Accept": "text/csv"},
    )
    assert csv.headers["content-type"].startswith("text/csv")
    assert csv.content.startswith("\ufeff".encode())
    [line] = [x for x in csv.content.decode("utf-8-sig").splitlines() if f";{unit};" in x]
    cells = line.split(";")
    assert cells[:5] == ["lerum", month, unit, "2", cells[4]]
    assert "awaiting_internal_notice: 3" in cells

    command = ["follow-up", "rebuild", "--tenant", "lerum", "--month", month]
    rebuilt = subprocess.run(
        [sys.executable, "-m", "services.cli", *command],
        env=pipeline.services["gate"].env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert rebuilt.returncode == 0, rebuilt.stderr
    again = next(u for u in json.loads(rebuilt.stdout)["units"] if u["unit"] == unit)
    assert again == row, "the rebuild from the audit trail gives the same figures"

    # The console's page: charts with their tables, the same figures, accessible.
    _check_page(browser, gate, month, unit)

    nobody = httpx.get(f"{gate}/v1/follow-up", params={"tenant": "lerum", "month": month})
    assert nobody.status_code == 401
    bad = httpx.get(
        f"{gate}/v1/follow-up",
        params={"tenant": "lerum", "month": "2026-13"},
        headers=OPERATOR_AUTH,
    )
    assert bad.status_code == 400
    assert bad.json()["errors"][0]["field"] == "month"


def _check_page(browser: WebDriver, gate: str, month: str, unit: str) -> None:
    login(browser, gate, "Anna Andersson")
    browser.get(f"{gate}/console/uppfoljning?month={month}")
    assert_accessible(browser)
    figures = "//table[caption[starts-with(., 'Alla siffror')]]"
    cells = browser.find_elements(By.XPATH, f"{figures}//tr[th[text()='{unit}']]/td")
    shown = [c.text for c in cells]
    assert shown[0] == "2", "externt publicerade"
    assert shown[3:8] == ["3", shown[4], "0", "1", "1"], "kvarhållna, eskalerade, person"
    assert browser.find_elements(By.CSS_SELECTOR, "figure svg[role=img] title")
    reasons = browser.find_element(By.XPATH, "//table[caption[contains(., 'per orsak')]]").text
    assert "Väntar på intern information" in reasons
    trend = "//table[caption[contains(., 'per enhet och månad')]]"
    months = browser.find_elements(By.XPATH, f"{trend}//tr[th[text()='{unit}']]/td")
    assert len(months) == 6, "six months, the chosen one last"
    assert months[-1].text != "–", "this month's lead"
    browser.save_screenshot(str(SCREENSHOTS / "console-followup.png"))
