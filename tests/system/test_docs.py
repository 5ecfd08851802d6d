"""The documentation: README a front door, the site built (`make docs`, strict), every alert's
runbook an anchor that exists in the built site, and the site rendering in a real browser."""

from __future__ import annotations

import functools
import http.server
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.threaded import threaded_server

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "build" / "site"
MAX_README_LINES = 200


def built_site() -> Path:
    if not (SITE / "index.html").exists():
        pytest.fail("build/site is missing: `make docs` builds it (make test does first)")
    return SITE


def test_readme_is_a_short_front_door_whose_links_exist() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= MAX_README_LINES
    for command in ("make run", "make test", "curl -s http://127.0.0.1:8080/v1/predictions"):
        assert command in readme
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme)
    local = [link for link in links if not link.startswith("http")]
    assert len(local) >= 10, "a map of the documentation"
    for link in local:
        assert (ROOT / link).exists(), f"README links to {link}, which does not exist"


def test_every_page_of_the_site_is_in_its_navigation() -> None:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())

    def pages(items: list[object]) -> Iterator[str]:
        for item in items:
            for value in item.values() if isinstance(item, dict) else [item]:
                yield from pages(value) if isinstance(value, list) else [str(value)]

    listed = set(pages(config["nav"]))
    written = {path.name for path in (ROOT / "docs").glob("*.md")}
    assert listed == written


def test_every_alerts_runbook_url_resolves_in_the_built_site() -> None:
    site = built_site()
    rules = yaml.safe_load((ROOT / "monitoring" / "rules.yaml").read_text())
    alerts = [rule for group in rules["groups"] for rule in group["rules"] if "alert" in rule]
    assert alerts
    for alert in alerts:
        url = alert["annotations"]["runbook_url"]
        path, _, anchor = url.partition("#")
        page = site / path / "index.html"
        assert page.exists(), f"{alert['alert']}: {url} has no page in the site"
        assert f'id="{anchor}"' in page.read_text(), f"{alert['alert']}: no anchor #{anchor}"


@pytest.fixture(scope="module")
def site_url() -> Iterator[str]:
    """The built site over HTTP on loopback, as `make docs-serve` would show it."""

    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            """No line per request on the test's output."""

    handler = functools.partial(QuietHandler, directory=str(built_site()))
    with threaded_server(handler) as url:
        yield url


@pytest.mark.slow
def test_the_site_renders_in_chromium(site_url: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    from tests.system.test_browser import CHROMIUM, CHROMIUM_ARGS, ensure_chromium

    ensure_chromium()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(site_url + "/")
            expect(page.locator("article h1")).to_have_text(re.compile("^Oncology classifier"))
            expect(page.locator("article h2", has_text="Two commands")).to_be_visible()
            page.screenshot(path=str(tmp_path / "home.png"))
            page.goto(site_url + "/monitoring/#featuredrift")
            expect(page.locator("article h1")).to_have_text(re.compile("^Monitoring"))
            expect(page.locator("h3#featuredrift")).to_be_in_viewport()
            expect(page.locator("nav.md-nav--primary")).to_contain_text("Operations")
            page.screenshot(path=str(tmp_path / "monitoring.png"))
        finally:
            browser.close()
