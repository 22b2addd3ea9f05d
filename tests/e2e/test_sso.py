"""Single sign-on, as a communicator lives it: a real OpenID provider on localhost, the
console on 127.0.0.1 (two sites, as in a municipality), a real headless Chromium.

Log in with the municipality account and see one's own tenant's held items under
one's own name; stay logged in across a restart of the gate; log out here and at
the provider; a person the operators file does not know sees nothing; a person the
provider grants a role by its roles claim sees that tenant; and a key rotation at
the provider while the gate runs changes nothing for anyone.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from tests.conftest import OPERATORS_YAML, content_event
from tests.e2e.chromium import assert_accessible
from tests.e2e.oidc import OidcProvider, signing_key
from tests.harness import Pipeline, Service, post_event, unique_item, wait_until

SESSION_KEY = base64.b64encode(b"the-console-session-key-of-this-test-0").decode()
#: Sara is in the operators file without a key: she logs in only through the provider.
SSO_ONLY = """
  - {name: Sara Svensson, email: Sara.Svensson@Lerum.se, tenants: [lerum], role: publisher}
"""


def _sign_in(browser: WebDriver, gate: Service, who: str) -> None:
    """From the console's address, through the provider's screens, back to the console."""
    browser.get(f"{gate.url}/console")
    wait_until(lambda: "/console/login" in browser.current_url, 15, "the login page")
    browser.find_element(By.ID, "sso").click()
    wait_until(lambda: browser.find_elements(By.NAME, "login"), 15, "the provider's login")
    assert browser.current_url.startswith("http://localhost:"), "the provider is another site"
    browser.find_element(By.NAME, "login").send_keys(who)
    browser.find_element(By.NAME, "password").send_keys("any password")
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_until(lambda: _consent_or_back(browser, gate), 15, "the consent screen or the console")
    if not browser.current_url.startswith(gate.url):
        browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_until(lambda: browser.current_url.startswith(gate.url), 15, "back at the console")


def _consent_or_back(browser: WebDriver, gate: Service) -> bool:
    if browser.current_url.startswith(gate.url):
        return True
    try:
        return "Authorize" in browser.title or bool(
            not browser.find_elements(By.NAME, "login")
            and browser.find_elements(By.CSS_SELECTOR, "button[type=submit]")
        )
    except WebDriverException:  # the page changed under the look
        return False


def _page(browser: WebDriver) -> str:
    return str(browser.find_element(By.TAG_NAME, "body").text)


@pytest.fixture
def sso(own_pipeline: Pipeline, tmp_path: Path) -> Iterator[tuple[OidcProvider, Service, Service]]:
    (own_pipeline.workdir / "operators.yaml").write_text(OPERATORS_YAML + SSO_ONLY)
    ingest = own_pipeline.add("ingest").start()
    gate = own_pipeline.add("gate")
    provider = OidcProvider(
        tmp_path,
        console=f"{gate.url}/console",
        people={
            "sara.svensson@lerum.se": {"name": "Sara Svensson"},
            "okand.person@lerum.se": {"name": "Okänd Person"},
            "rut.roll@ale.se": {"name": "Rut Roll", "roles": ["gatekeeper.ale.viewer"]},
        },
        keys=[signing_key("first")],
    ).start()
    gate.env.update(provider.env(), GATEKEEPER_SESSION_KEY=SESSION_KEY)
    gate.start()
    yield provider, ingest, gate
    provider.stop()


def test_a_communicator_goes_from_the_console_to_her_held_list_with_her_account(
    sso: tuple[OidcProvider, Service, Service], own_pipeline: Pipeline, browser: WebDriver
) -> None:
    provider, ingest, gate = sso
    mine, theirs = unique_item("sso-lerum"), unique_item("sso-ale")
    assert (
        post_event(ingest.url, content_event(item_id=mine, title="Ny förskola")).status_code == 202
    )
    ale = content_event(tenant="ale", item_id=theirs, title="Ales nyhet")
    assert post_event(ingest.url, ale, tenant="ale").status_code == 202

    browser.delete_all_cookies()
    browser.get(f"{gate.url}/console/login")
    assert browser.find_element(By.ID, "sso").text == "Logga in med Testkommunens konto"
    assert browser.find_elements(By.ID, "token"), "the key form stays, second"
    assert_accessible(browser)

    _sign_in(browser, gate, "sara.svensson@lerum.se")
    wait_until(lambda: "Ny förskola" in _page(browser), 30, "her held item")
    page = _page(browser)
    assert "Sara Svensson" in page, "under her own name, matched without regard to case"
    assert "Ales nyhet" not in page, "only her own tenant's items"
    assert_accessible(browser)
    cookie = browser.get_cookie("gk_session")
    assert cookie is not None
    assert cookie["sameSite"] == "Strict"

    # The gate restarts: she is still logged in.
    gate.stop()
    gate.start()
    browser.get(f"{gate.url}/console")
    assert "Sara Svensson" in _page(browser)
    assert "Ny förskola" in _page(browser)

    # She logs out: here, and at the provider, which sends her back to the login page.
    browser.find_element(By.XPATH, "//button[text()='Logga ut']").click()
    wait_until(lambda: browser.find_elements(By.CSS_SELECTOR, "button[value=yes]"), 15, "bye")
    browser.find_element(By.CSS_SELECTOR, "button[value=yes]").click()
    wait_until(lambda: browser.current_url == f"{gate.url}/console/login", 15, "the login page")
    copied = httpx.get(
        f"{gate.url}/console", cookies={"gk_session": cookie["value"]}, follow_redirects=False
    )
    assert copied.status_code == 303, "the old cookie is worth nothing after logout"
    browser.find_element(By.ID, "sso").click()
    wait_until(lambda: browser.find_elements(By.NAME, "login"), 15, "asked to log in again")

    # Someone the operators file does not know: a Swedish 403 and nothing else.
    browser.delete_all_cookies()
    _sign_in(browser, gate, "okand.person@lerum.se")
    page = _page(browser)
    assert "Du har ingen behörighet till publiceringskonsolen" in page
    assert "Ny förskola" not in page
    assert_accessible(browser)
    browser.get(f"{gate.url}/console")
    assert "/console/login" in browser.current_url

    # The provider rotates its keys while the gate runs; logins verify with the new one.
    provider.rotate([signing_key("second")])
    browser.delete_all_cookies()
    _sign_in(browser, gate, "rut.roll@ale.se")
    wait_until(lambda: "Ales nyhet" in _page(browser), 30, "Ale's item, by the roles claim")
    page = _page(browser)
    assert "Rut Roll (läsare)" in page
    assert "Ny förskola" not in page
    assert not browser.find_elements(By.XPATH, "//button[text()='Släpp']")


def test_a_person_removed_from_the_operators_file_is_logged_out_without_a_restart(
    sso: tuple[OidcProvider, Service, Service], own_pipeline: Pipeline, browser: WebDriver
) -> None:
    _, _, gate = sso
    browser.delete_all_cookies()
    _sign_in(browser, gate, "sara.svensson@lerum.se")
    wait_until(lambda: "Sara Svensson" in _page(browser), 30, "her list")
    operators = own_pipeline.workdir / "operators.yaml"
    kept = yaml.safe_load(operators.read_text())
    kept["operators"] = [o for o in kept["operators"] if o["name"] != "Sara Svensson"]
    operators.write_text(yaml.safe_dump(kept, allow_unicode=True))

    def logged_out() -> bool:
        browser.get(f"{gate.url}/console")
        return "/console/login" in browser.current_url

    wait_until(logged_out, 15, "her session ended", every=0.5)
