"""The officers' page in Debian's Chromium (Playwright) against a real collector: sign in once,
alerts raised by the engine appear live, acknowledge and resolve reach the API, a collector
restart is ridden out with a catch-up, a 360 px screenshot, and an axe-core check."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.collector.api.live import LiveCollector, live_token
from tests.helpers import Mosquitto

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[2]
AXE = ROOT / "tests" / "collector" / "api" / "vendor" / "axe.min.js"
SCREENSHOT = ROOT / "docs" / "officer.png"
APPEAR_S = 2.0  # the bound for an engine-raised alert to show on the page


@pytest.fixture
def live(tmp_path: Path, broker: Mosquitto, topic_root: str) -> Iterator[LiveCollector]:
    collector = LiveCollector(tmp_path / "collector", broker, topic_root).start()
    yield collector
    collector.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-dev-shm-usage"],
        )  # fmt: skip
        yield chromium
        chromium.close()


def _phone(browser: Browser, live: LiveCollector) -> Page:
    context = browser.new_context(
        viewport={"width": 360, "height": 780},
        geolocation={"latitude": 51.5003, "longitude": -0.1401},
        permissions=["geolocation"],
        base_url=live.url,
    )
    return context.new_page()


def _open_alert(live: LiveCollector, bay: str) -> dict[str, Any]:
    page = live.wait_for(
        "officer",
        "/api/v1/alerts",
        lambda p: [a for a in p["items"] if a["bay_id"] == bay and a["kind"] == "unpaid"],
        timeout=20,
        status="open",
    )
    return next(a for a in page["items"] if a["bay_id"] == bay and a["kind"] == "unpaid")


def _card(page: Page, alert_id: str) -> Any:
    return page.locator(f'li[data-alert-id="{alert_id}"]')


def _axe(page: Page) -> list[dict[str, Any]]:
    page.evaluate(AXE.read_text(encoding="utf-8"))  # evaluate is not subject to the page's CSP
    result = page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
    )
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]]}
        for v in result
        if v["impact"] in ("serious", "critical")
    ]


def test_officer_page_end_to_end(browser: Browser, live: LiveCollector) -> None:
    page = _phone(browser, live)
    page.goto("/officer")
    expect(page.get_by_label("Your officer token")).to_be_visible()
    assert _axe(page) == []

    page.get_by_label("Your officer token").fill("wrong")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("not valid")
    page.get_by_label("Your officer token").fill(live_token("officer"))
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#conn")).to_have_text("Live")
    assert page.context.cookies()[0]["httpOnly"] is True
    assert page.evaluate("document.cookie") == ""  # the token is out of the script's reach

    # Vehicles arrive in paid bays; nobody pays: the live engine raises `unpaid` (observation 0,
    # raised alert_delay_s after arrival).
    now = int(time.time() * 1000)
    live.publish_event("B001", "occupied", now - 200)
    first = _open_alert(live, "B001")
    expect(_card(page, first["alert_id"])).to_be_visible(timeout=APPEAR_S * 1000)
    live.publish_event("B002", "occupied", int(time.time() * 1000) - 200)
    second = _open_alert(live, "B002")
    expect(_card(page, second["alert_id"])).to_be_visible(timeout=APPEAR_S * 1000)
    expect(page.locator("#count")).to_have_text("2 open alerts")
    # Oldest first; the age ticks.
    assert page.locator("li.alert").first.get_attribute("data-alert-id") == first["alert_id"]
    age = _card(page, first["alert_id"]).locator(".age")
    before = age.inner_text()
    expect(age).not_to_have_text(before, timeout=3000)

    # Nearest first uses the phone's position (granted here).
    page.get_by_label("Nearest first").check()
    expect(page.locator("#geo")).to_contain_text("Using your location")
    expect(_card(page, first["alert_id"]).locator(".distance")).to_contain_text("m away")

    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    assert _axe(page) == []

    # Acknowledge on the page -> acknowledged in the API, with the officer in its history.
    _card(page, first["alert_id"]).get_by_role("button", name="Acknowledge").click()
    expect(_card(page, first["alert_id"]).locator(".state")).to_be_visible()
    with live.client("analyst") as c:
        record = c.get(f"/api/v1/alerts/{first['alert_id']}").json()
    assert record["status"] == "acknowledged"
    assert record["history"][0]["action"] == "ack"
    assert record["history"][0]["officer"] == "officer-1"

    # Resolve with outcome and note -> resolved in the API; it leaves the list.
    card = _card(page, first["alert_id"])
    card.get_by_role("button", name="Resolve").click()
    card.get_by_label("PCN issued").check()
    card.get_by_label("Note (optional)").fill("PCN 0051234")
    assert _axe(page) == []
    card.get_by_role("button", name="Confirm resolve").click()
    expect(card).to_have_count(0)
    with live.client("analyst") as c:
        record = c.get(f"/api/v1/alerts/{first['alert_id']}").json()
    assert (record["status"], record["clear_reason"]) == ("resolved", "resolved")
    assert record["history"][-1]["outcome"] == "pcn_issued"
    assert record["history"][-1]["note"] == "PCN 0051234"

    # The collector restarts; meanwhile B002 leaves and B003 arrives (queued at the broker).
    live.stop()
    expect(page.locator("#conn")).to_have_text("Offline, reconnecting…", timeout=10_000)
    now = int(time.time() * 1000)
    live.publish_event("B002", "vacant", now - 200)
    live.publish_event("B003", "occupied", now - 100)
    live.start()
    expect(page.locator("#conn")).to_have_text("Live", timeout=20_000)
    third = _open_alert(live, "B003")
    expect(_card(page, third["alert_id"])).to_be_visible(timeout=10_000)
    expect(_card(page, second["alert_id"])).to_have_count(0, timeout=10_000)
    expect(page.locator("#count")).to_have_text("1 open alert")

    # Filters: by kind and by zone.
    page.get_by_label("Kind").select_option("overstay")
    expect(page.locator("#count")).to_have_text("No open alerts.")
    page.get_by_label("Kind").select_option("")
    page.get_by_label("Zone").select_option("Z1")
    expect(page.locator("#count")).to_have_text("1 open alert")
    page.context.close()

    # A phone that does not grant its location is told so, and keeps the oldest-first order.
    context = browser.new_context(viewport={"width": 360, "height": 780}, base_url=live.url)
    other = context.new_page()
    other.goto("/officer")
    other.get_by_label("Your officer token").fill(live_token("officer"))
    other.get_by_role("button", name="Sign in").click()
    expect(other.locator("#conn")).to_have_text("Live")
    other.get_by_label("Nearest first").check()
    expect(other.locator("#geo")).to_contain_text("Location not available")
    expect(_card(other, third["alert_id"])).to_be_visible()
    context.close()
