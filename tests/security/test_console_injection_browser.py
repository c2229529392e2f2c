"""HTML and script injected in a customer's message render as text in the agent console.

A customer registers a complaint over the web chat API with markup in the story, the product
name, a follow-up line and the agent-facing ticket fields; an agent opens it in /console in a real
chromium. Nothing injected may run, and no injected element may exist in the page.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bot.app import create_app
from bot.settings import Settings
from handoff.api import USERS
from knowledge_base.service import make_searcher
from nlp.analyzer import Analyzer

pytestmark = pytest.mark.browser

PASSWORD = "console-pass-1"
PAYLOADS = [
    '<img src=x onerror="window.__pwned=1">',
    "<script>window.__pwned=2</script>",
    '<svg onload="window.__pwned=3"></svg>',
    '"><iframe src="javascript:window.__pwned=4"></iframe>',
]


@pytest.fixture
async def server(tmp_path: Path, analyzer: Analyzer) -> AsyncIterator[tuple[str, web.Application]]:
    app = create_app(Settings.from_env({"INTAKEBOT_DATA_DIR": str(tmp_path / "data")}),
                     analyzer=analyzer, searcher=make_searcher(dense=False))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    await app[USERS].add("alice", PASSWORD, "agent")
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}", app
    finally:
        await runner.cleanup()


async def test_customer_markup_is_shown_as_text_and_never_runs(
        server: tuple[str, web.Application], browser: Any) -> None:
    from playwright.async_api import expect

    base, _app = server
    chat = f"{base}/api/webchat/xss-{uuid.uuid4().hex[:8]}/messages"
    story = ("我买的电饭煲" + PAYLOADS[0] + "用了两天就坏了" + PAYLOADS[1]
             + "，订单号DD2026112012345，商品是美的电饭煲" + PAYLOADS[2]
             + "，电话13812345678，我要求退款")
    async with aiohttp.ClientSession() as http:
        async with http.post(chat, json={"text": story}) as response:
            first = await response.json()
        confirm = next(b for r in first["replies"] for b in r["buttons"])
        async with http.post(chat, json={"text": confirm}) as response:
            assert (await response.json())["ticket_id"]
        async with http.post(chat, json={"text": "补充：" + PAYLOADS[3]}) as response:
            assert response.status == 200

    page = await browser.new_page(locale="zh-CN")
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: dialogs.append(dialog.message))
    await page.goto(base + "/console")
    await page.fill("#username", "alice")
    await page.fill("#password", PASSWORD)
    await page.click("#login")
    await expect(page.locator("#whoami")).to_contain_text("alice")
    await page.locator("#queue li").first.click()
    transcript = page.locator("#transcript")
    await expect(transcript).to_contain_text("<img src=x onerror=")
    await expect(transcript).to_contain_text("<script>window.__pwned=2</script>")
    await expect(transcript).to_contain_text("<iframe")
    await page.wait_for_timeout(500)  # let an image error or a load handler fire, if any
    assert await page.evaluate("window.__pwned") is None
    for selector in ("img[src=x]", "#transcript script", "svg[onload]", "iframe"):
        assert await page.locator(selector).count() == 0, selector
    assert not dialogs and not errors
