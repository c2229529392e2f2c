"""The report page in a real browser (Debian chromium, headless) against the real app.

A supervisor signs in to /console, follows the link to /console/reports (the same token, no
second login), picks a week, and sees the figures and the charts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from bot.app import create_app
from bot.settings import Settings
from handoff.api import CASEWORK, USERS
from knowledge_base.retrieval import Searcher
from knowledge_base.service import make_searcher
from nlp.analyzer import Analyzer
from tests.handoff.test_reports import seed

pytestmark = pytest.mark.browser

SCREENSHOT = Path("/tmp/intakebot-reports.png")
PASSWORD = "reports-pass"


@pytest.fixture(scope="module")
def searcher() -> Searcher:
    return make_searcher(dense=False)


@pytest.fixture
async def server(tmp_path: Path, analyzer: Analyzer,
                 searcher: Searcher) -> AsyncIterator[str]:
    """The real application on a free port with the report tests' tickets and a supervisor."""
    app = create_app(Settings.from_env({"INTAKEBOT_DATA_DIR": str(tmp_path / "data")}),
                     analyzer=analyzer, searcher=searcher)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    await app[USERS].add("sue", PASSWORD, "supervisor")
    await app[USERS].add("ann", PASSWORD, "agent")
    await seed(app[CASEWORK].store.engine)
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


async def test_a_supervisor_sees_the_charts(server: str, browser: Any) -> None:
    from playwright.async_api import expect

    page = await browser.new_page(locale="zh-CN")
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(server + "/console")
    await page.fill("#username", "sue")
    await page.fill("#password", PASSWORD)
    await page.click("#login")
    await expect(page.locator("#whoami")).to_contain_text("sue")
    await page.click("#reports-link")
    await expect(page.locator("#report-view")).to_be_visible()
    await expect(page.locator("#whoami")).to_contain_text("supervisor")

    await page.fill("#from", "2026-11-04")
    await page.click("#load")
    # Drawing nine charts takes a few seconds on a busy machine.
    await expect(page.locator("#report-title")).to_contain_text("2026-W45", timeout=60_000)
    tickets = page.locator("#summary tbody tr").first
    await expect(tickets).to_contain_text("6")
    chart = page.locator('img[data-chart="category"]')
    await expect(chart).to_be_visible()
    width = await chart.evaluate("img => img.naturalWidth")
    assert width > 300
    await expect(page.locator("#volumes")).to_contain_text("电饭煲")
    await expect(page.locator("#suggestions")).to_contain_text("快一点")
    await page.screenshot(path=str(SCREENSHOT), full_page=True)
    assert errors == []


async def test_an_agent_is_told_no(server: str, browser: Any) -> None:
    from playwright.async_api import expect

    page = await browser.new_page(locale="zh-CN")
    await page.goto(server + "/console/reports")
    await page.fill("#username", "ann")
    await page.fill("#password", PASSWORD)
    await page.click("#login")
    await expect(page.locator("#report-error")).to_contain_text("agent may not",
                                                              timeout=30_000)
