"""A real headless Chromium for the console's tests, and axe-core's check of a page
(WCAG 2.1 A and AA rules: municipal services fall under DOS-lagen)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.webdriver.remote.webdriver import WebDriver

AXE = Path(__file__).resolve().parents[1] / "browser" / "node_modules" / "axe-core" / "axe.min.js"


def open_browser() -> Iterator[WebDriver]:
    """Headless Chromium, Swedish, quit when the generator ends."""
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,900",
        "--lang=sv-SE",
    ):
        options.add_argument(flag)
    service = webdriver.ChromeService(executable_path=shutil.which("chromedriver"))
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def axe_violations(browser: WebDriver) -> list[dict[str, Any]]:
    browser.execute_script(AXE.read_text())
    result: dict[str, Any] = browser.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        const tags = ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'];
        axe.run(document, {runOnly: {type: 'tag', values: tags}})
           .then(r => done(r), e => done({violations: [{id: 'axe-error', help: String(e)}]}));
        """
    )
    return [
        {"id": v["id"], "help": v["help"], "nodes": [n.get("html") for n in v.get("nodes", [])]}
        for v in result["violations"]
    ]


def assert_accessible(browser: WebDriver) -> None:
    violations = axe_violations(browser)
    assert violations == [], json.dumps(violations, ensure_ascii=False, indent=1)
