"""The hold console in a real headless Chromium, against the real pipeline.

Every page is checked with axe-core (WCAG 2.1 A and AA rules): municipal
services fall under DOS-lagen. One browser serves every test here.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import httpx
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver

from tests.conftest import OPERATOR_TOKENS, content_event
from tests.e2e.chromium import assert_accessible
from tests.harness import Pipeline, TopicReader, post_event, unique_item, wait_until

#: Where the list and item pages are photographed (the README's pictures come from here).
SCREENSHOTS = Path(os.environ.get("GATEKEEPER_SCREENSHOTS", tempfile.gettempdir()))


def login(browser: WebDriver, gate: str, person: str) -> None:
    browser.delete_all_cookies()
    browser.get(f"{gate}/console/login")
    assert_accessible(browser)
    browser.find_element(By.ID, "token").send_keys(OPERATOR_TOKENS[person], Keys.ENTER)
    wait_until(lambda: browser.current_url.endswith("/console"), 10, "the held list")


def hold(pipeline: Pipeline, tenant: str, title: str) -> str:
    item = unique_item("konsol")
    event = content_event(tenant=tenant, item_id=item, title=title)
    ingest = pipeline.services["ingest"].url
    assert post_event(ingest, event, tenant=tenant).status_code == 202
    return item


def held_ids(gate: str, token: str) -> set[str]:
    rows = httpx.get(f"{gate}/v1/held", headers={"Authorization": f"Bearer {token}"}).json()
    return {r["item_id"] for r in rows["held"]}


def test_a_publisher_releases_by_keyboard_and_the_release_names_her(
    pipeline: Pipeline, topics: TopicReader, browser: WebDriver
) -> None:
    gate = pipeline.services["gate"].url
    lerum = hold(pipeline, "lerum", "Nya öppettider i Lerums simhall")
    ale = hold(pipeline, "ale", "Ale kommun bygger ny skola")
    anna = OPERATOR_TOKENS["Anna Andersson"]
    wait_until(lambda: lerum in held_ids(gate, anna), 30, "the Lerum item held")

    login(browser, gate, "Anna Andersson")
    page = browser.page_source
    assert "Nya öppettider i Lerums simhall" in page
    assert "Ale kommun bygger ny skola" not in page, "another tenant's title stays hidden"
    assert "Väntar på intern information" in page
    assert_accessible(browser)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SCREENSHOTS / "console-list.png"))

    browser.find_element(By.LINK_TEXT, "Nya öppettider i Lerums simhall").click()
    wait_until(lambda: lerum in browser.current_url, 10, "the item page")
    assert "Lerums kommun" in browser.find_element(By.CLASS_NAME, "preview").text
    assert_accessible(browser)
    browser.save_screenshot(str(SCREENSHOTS / "console-item.png"))

    # Keyboard only: tab to the reason, type it, tab to the button, press Enter.
    body = browser.find_element(By.TAG_NAME, "body")
    body.click()
    for _ in range(40):
        browser.switch_to.active_element.send_keys(Keys.TAB)
        if browser.switch_to.active_element.get_attribute("id") == "release-reason":
            break
    reason = browser.switch_to.active_element
    assert reason.get_attribute("id") == "release-reason"
    reason.send_keys("Personalen informerades på arbetsplatsträffen")
    reason.send_keys(Keys.TAB)
    button = browser.switch_to.active_element
    assert button.text == "Släpp publiceringen"
    button.send_keys(Keys.ENTER)
    wait_until(lambda: "klart=" in browser.current_url, 15, "back on the list")
    assert "Nya öppettider i Lerums simhall" not in browser.page_source
    assert_accessible(browser)

    key = f"lerum:{lerum}"
    [notice] = topics.wait_for("external.web", key, lambda v: len(v) == 1)
    assert notice["title"] == "Nya öppettider i Lerums simhall"
    decisions = topics.wait_for(
        "gate.decisions", key, lambda v: any(d["kind"] == "overridden" for d in v)
    )
    manual = next(d for d in decisions if d["kind"] == "overridden")
    assert manual["operator"] == "Anna Andersson"
    assert manual["operator_reason"] == "Personalen informerades på arbetsplatsträffen"
    assert ale in held_ids(gate, OPERATOR_TOKENS["Alva Ale"]), "Ale's item is untouched"


def test_a_viewer_cannot_release_and_a_rejection_keeps_the_item_off_every_channel(
    pipeline: Pipeline, topics: TopicReader, browser: WebDriver
) -> None:
    gate = pipeline.services["gate"].url
    item = hold(pipeline, "lerum", "Felaktigt datum för valet")
    anna = OPERATOR_TOKENS["Anna Andersson"]
    wait_until(lambda: item in held_ids(gate, anna), 30, "the item held")

    login(browser, gate, "Viktor Viewer")
    browser.get(f"{gate}/console/items/lerum/{item}")
    assert "Felaktigt datum för valet" in browser.page_source
    assert browser.find_elements(By.ID, "release-reason") == [], "a viewer gets no form"
    assert_accessible(browser)
    refused = httpx.post(
        f"{gate}/v1/held/lerum/{item}/release",
        json={"reason": "x"},
        headers={"Authorization": f"Bearer {OPERATOR_TOKENS['Viktor Viewer']}"},
    )
    assert refused.status_code == 403

    login(browser, gate, "Anna Andersson")
    browser.get(f"{gate}/console/items/lerum/{item}")
    browser.find_element(By.ID, "reject-reason").send_keys("Fel datum, ny version kommer")
    browser.find_element(By.XPATH, "//button[text()='Stoppa publiceringen']").click()
    wait_until(lambda: "klart=rejected" in browser.current_url, 15, "back on the list")
    assert "Publiceringen är stoppad." in browser.page_source
    key = f"lerum:{item}"
    decisions = topics.wait_for(
        "gate.decisions", key, lambda v: any(d["kind"] == "rejected_by_operator" for d in v)
    )
    assert decisions[-1]["operator"] == "Anna Andersson"
    assert item not in held_ids(gate, anna)
    # The internal notice now arrives: a rejected version stays off every channel.
    notice = content_event(
        item_id=item, audience="internal", channels=["intranet"], recipients="Alla medarbetare"
    )
    assert post_event(pipeline.services["ingest"].url, notice).status_code == 202
    topics.wait_for("intranet.notices", key, lambda v: len(v) == 1)
    browser.get(f"{gate}/console/items/lerum/{item}")
    assert "Stoppad av en person" in browser.page_source
    assert_accessible(browser)
    for channel in ("external.web", "external.social", "external.press"):
        assert topics.json_for(channel, key) == []
