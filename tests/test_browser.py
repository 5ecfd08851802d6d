"""Swagger UI in a real browser: /docs works offline and "Try it out" -> "Execute" predicts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect, sync_playwright

from .conftest import ensure_debian_package
from .live_server import LiveServer, live_server

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
# Without these, Chromium keeps trying to reach Google's services, which this network refuses.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def ensure_chromium() -> None:
    """Debian's Chromium: Playwright cannot download its own browser here, so install it."""
    ensure_debian_package(CHROMIUM, "chromium")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    ensure_chromium()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with live_server(tmp_path_factory.mktemp("gunicorn"), workers=1) as running:
        yield running


def test_try_it_out_executes_a_prediction(
    browser: Browser, server: LiveServer, tmp_path: Path
) -> None:
    page = browser.new_page()
    outside_requests: list[str] = []
    page.on(
        "request",
        lambda request: (
            None
            if request.url.startswith((server.url, "data:"))
            else outside_requests.append(request.url)
        ),
    )
    page.goto(server.url + "/docs")
    operation = page.locator("#operations-predictions-predict")
    operation.locator(".opblock-summary").click()
    operation.get_by_role("button", name="Try it out").click()
    body = operation.locator("textarea.body-param__text")
    expect(body).to_contain_text('"clump_thickness": 4')  # prefilled from the documented example
    operation.get_by_role("button", name="Execute").click()
    live = operation.locator(".live-responses-table .response")
    expect(live.locator(".response-col_status")).to_contain_text("200", timeout=10_000)
    expect(live.locator(".response-col_description")).to_contain_text('"prediction": "benign"')
    page.screenshot(path=str(tmp_path / "swagger.png"), full_page=True)
    assert outside_requests == [], "Swagger UI must work with no internet access"
