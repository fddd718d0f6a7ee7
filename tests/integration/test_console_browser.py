"""The fleet console in a real headless Chromium (Debian's chromium and chromium-driver, driven
by Selenium) against the demo fleet published to Kafka and projected: the page loads, its GPU
table shows `/v1/gpus`, the request form (used with the keyboard) returns the demo request's
providers, and it fits a narrow window (the GPU table without scrolling). Screenshots go to
$HWLEDGER_TEST_ARTIFACTS/console (default build/test-artifacts/console)."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from hwledger.deploy.kafka_admin import ensure_topic
from hwledger.seeds.demo import demo_fleet_events
from tests.integration.query_support import fresh_schema, load, service_thread

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="no chromium and chromedriver on PATH: install Debian's chromium and "
           "chromium-driver (.ci/run does where apt-get can)")]
ROOT = Path(__file__).parents[2]
DEMO_REQUEST = json.loads(resources.files("hwledger.seeds").joinpath(
    "demo_request.json").read_text())


def artifacts() -> Path:
    base = os.environ.get("HWLEDGER_TEST_ARTIFACTS") or ROOT / "build" / "test-artifacts"
    folder = Path(base) / "console"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def console_url(database_url: str, kafka_config: dict[str, Any]) -> Iterator[str]:
    """The query service (real clock) over the demo fleet, published and projected."""
    topic = f"hwledger.test.{uuid.uuid4().hex[:12]}"
    ensure_topic(kafka_config, topic, 3)
    with fresh_schema(database_url) as schema:
        load(database_url, schema, kafka_config, topic, demo_fleet_events(datetime.now(UTC)))
        with service_thread(database_url, schema, None) as url:
            yield url


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)),
                              options=options)
    driver.set_window_size(1280, 1000)
    try:
        yield driver
    finally:
        driver.quit()


def opened(browser: WebDriver, url: str) -> WebDriver:
    """The console at `url`, once its first reads have rendered."""
    browser.get(url + "/")
    WebDriverWait(browser, 20).until(
        lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-loaded") == "true")
    return browser


def rows(browser: WebDriver, table: str) -> list[Any]:
    return browser.find_elements(By.CSS_SELECTOR, f"#{table} tbody tr")


@pytest.mark.slow
def test_the_page_loads_the_demo_fleet(browser: WebDriver, console_url: str) -> None:
    page = opened(browser, console_url)
    listed = httpx.get(f"{console_url}/v1/providers?limit=1000").json()
    assert page.title == "hwledger fleet console"
    assert not page.find_element(By.ID, "console-error").is_displayed()
    shown = {r.get_attribute("data-owner"): r.find_element(By.CSS_SELECTOR, ".badge").text
             for r in rows(page, "provider-table")}
    assert shown == {p["owner"]: p["staleness"] for p in listed["providers"]}
    assert len(shown) == 36 and set(shown.values()) == {"fresh"}
    position = listed["asOf"]["position"]
    assert position > 0
    assert f"projection position {position}" in page.find_element(By.ID, "projection").text


@pytest.mark.slow
def test_the_gpu_table_shows_the_counts_of_the_api(browser: WebDriver, console_url: str
                                                  ) -> None:
    page = opened(browser, console_url)
    answer = httpx.get(f"{console_url}/v1/gpus").json()

    def figures(row: Any) -> tuple[int, int, int]:
        return tuple(int(row.find_element(By.CSS_SELECTOR, f".{name}").text)
                     for name in ("installed", "free", "providers"))  # type: ignore[return-value]

    table = {r.get_attribute("data-gpu"): figures(r) for r in rows(page, "gpu-table")}
    assert table == {f"{g['vendor']}/{g['model']}/{g['ram']}/{g['interface']}":
                     (g["installed"], g["free"], g["providers"]) for g in answer["gpus"]}
    totals = answer["totals"]
    assert [page.find_element(By.ID, f"total-{name}").text for name in
            ("installed", "free", "providers")] == [str(totals[name]) for name in
                                                    ("installed", "free", "providers")]
    assert totals["free"] < totals["installed"], "the demo's unfinished runs hold GPUs"


def screened(page: WebDriver) -> set[str]:
    WebDriverWait(page, 20).until(
        lambda d: "candidate(s)" in d.find_element(By.ID, "request-status").text)
    return {str(r.get_attribute("data-owner")) for r in rows(page, "candidates")}


def test_the_form_returns_the_demo_requests_providers_by_keyboard(
        browser: WebDriver, console_url: str) -> None:
    page = opened(browser, console_url)
    expected = {exact: {p["owner"] for p in httpx.post(
        f"{console_url}/v1/bid-screening?exact={str(exact).lower()}",
        json=DEMO_REQUEST).json()["providers"]} for exact in (False, True)}
    assert expected[True] and expected[True] < expected[False]
    spec = page.find_element(By.ID, "group-spec")
    spec.click()
    page.execute_script("arguments[0].value = arguments[1]", spec,
                        json.dumps(DEMO_REQUEST, indent=1))
    spec.send_keys(Keys.TAB)
    page.switch_to.active_element.send_keys(Keys.SPACE)  # the exact checkbox
    assert page.find_element(By.ID, "exact").is_selected()
    page.switch_to.active_element.send_keys(Keys.TAB)
    page.switch_to.active_element.send_keys(Keys.ENTER)  # the Screen button
    assert screened(page) == expected[True]
    placements = [r.find_elements(By.TAG_NAME, "td")[3].text for r in rows(page, "candidates")]
    assert all(" \u00d7 " in p for p in placements), placements
    page.find_element(By.ID, "exact").click()
    page.find_element(By.ID, "screen").click()
    assert screened(page) == expected[False]


def test_the_page_fits_a_narrow_window_and_is_kept_as_screenshots(
        browser: WebDriver, console_url: str) -> None:
    folder = artifacts()
    try:
        for name, width in (("narrow", 390), ("wide", 1280)):
            browser.set_window_size(width, 1400)
            page = opened(browser, console_url)
            overflow = page.execute_script(
                "return document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, f"{name}: the page is {overflow}px wider than the window"
            hidden = page.execute_script(
                "const box = document.getElementById('gpu-table').parentElement;"
                "return box.scrollWidth - box.clientWidth")
            assert hidden <= 0, f"{name}: the GPU table needs {hidden}px of scrolling"
            path = folder / f"console-{name}.png"
            assert page.save_screenshot(str(path)) and path.stat().st_size > 10_000
    finally:
        browser.set_window_size(1280, 1000)
