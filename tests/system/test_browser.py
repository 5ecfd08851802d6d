"""Swagger UI in a real browser: /docs works offline and "Try it out" -> "Execute" predicts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect, sync_playwright

from harness.live_server import LiveServer, live_server
from tests.helpers import require_debian_package

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
    """Debian's Chromium: Playwright cannot download its own browser here."""
    require_debian_package(CHROMIUM, "chromium")


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


@pytest.fixture(scope="module")
def secured_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, str]]:
    from webservice.tokens import new_token

    folder = tmp_path_factory.mktemp("secured")
    token, line = new_token("swagger-user")
    (folder / "tokens").write_text(line + "\n")
    environment = {"ONCOLOGY_TOKENS_FILE": str(folder / "tokens")}
    with live_server(folder, workers=1, env=environment) as running:
        yield running, token


def test_authorize_then_execute_against_a_server_with_tokens(
    browser: Browser, secured_server: tuple[LiveServer, str], tmp_path: Path
) -> None:
    server, token = secured_server
    page = browser.new_page()
    page.goto(server.url + "/docs")
    operation = page.locator("#operations-predictions-predict")
    operation.locator(".opblock-summary").click()
    expect(operation.locator(".authorization__btn")).to_be_visible()  # a protected operation
    operation.get_by_role("button", name="Try it out").click()
    operation.get_by_role("button", name="Execute").click()
    live = operation.locator(".live-responses-table .response")
    expect(live.locator(".response-col_status")).to_contain_text("401", timeout=10_000)

    page.locator(".auth-wrapper .authorize").click()
    dialog = page.locator(".modal-ux")
    dialog.locator("input").first.fill(f"Bearer {token}")
    dialog.get_by_role("button", name="Authorize", exact=True).click()
    expect(dialog.get_by_role("button", name="Logout")).to_be_visible()
    dialog.get_by_role("button", name="Close").click()
    operation.get_by_role("button", name="Execute").click()
    expect(live.locator(".response-col_status")).to_contain_text("200", timeout=10_000)
    expect(live.locator(".response-col_description")).to_contain_text('"prediction": "benign"')
    page.screenshot(path=str(tmp_path / "swagger-authorized.png"), full_page=True)
    callers = [record["caller"] for record in server.access_log() if record["status"] != 404]
    assert callers[-1] == "swagger-user" and "unauthenticated" in callers
