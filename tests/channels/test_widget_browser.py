"""The /chat widget in a real browser (Debian chromium, headless) against the real app."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from bot.app import EVIDENCE, TICKETS, create_app
from bot.settings import Settings
from knowledge_base.retrieval import Searcher
from nlp.analyzer import Analyzer

pytestmark = pytest.mark.browser

SCREENSHOT = Path("/tmp/intakebot-widget.png")
NUMBER = re.compile(r"TS\d{8}-\d{4}")
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")


@pytest.fixture
async def server(tmp_path: Path, analyzer: Analyzer,
                 searcher: Searcher) -> AsyncIterator[tuple[str, web.Application]]:
    """The real application on a free port of 127.0.0.1."""
    app = create_app(Settings.from_env({"INTAKEBOT_DATA_DIR": str(tmp_path / "data")}),
                     analyzer=analyzer, searcher=searcher)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}", app
    finally:
        await runner.cleanup()


async def test_a_complaint_in_the_widget(server: tuple[str, web.Application],
                                         browser: Any) -> None:
    from playwright.async_api import expect

    base, app = server
    page = await browser.new_page(viewport={"width": 420, "height": 760}, locale="zh-CN")
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    response = await page.goto(base + "/chat")
    assert response is not None and "script-src 'self'" in response.headers[
        "content-security-policy"]
    await expect(page.locator(".chat-title")).to_have_text("在线客服")
    await expect(page.locator("#send")).to_have_text("发送")

    await page.fill("#input", "我买的电饭煲用了两天就坏了，完全不能加热。订单号DD2026112012345，"
                              "商品是美的电饭煲，电话13812345678，我要求换货")
    await page.click("#send")
    await expect(page.locator(".msg-customer .bubble").first).to_contain_text("电饭煲")
    await expect(page.locator(".msg-bot .bubble").first).to_contain_text("抱歉")
    chip = page.locator(".chip", has_text="确认")
    await expect(chip).to_be_visible()
    await expect(page.locator(".msg-bot .bubble").last).to_contain_text("DD2026112012345")

    await chip.click()
    await expect(page.locator(".msg-customer .bubble").last).to_have_text("确认")
    receipt = page.locator(".msg-bot .bubble", has_text=NUMBER)
    await expect(receipt).to_have_count(1)
    await expect(page.locator(".chip")).to_have_count(0)
    conversation = await page.evaluate("window.intakebotChat.conversation")
    ticket = await app[TICKETS].open_ticket("webchat", conversation)
    assert ticket is not None and ticket.number in await receipt.inner_text()
    await page.screenshot(path=str(SCREENSHOT), full_page=True)

    # A photo is uploaded as evidence and shown in the customer's bubble.
    await page.set_input_files("#file", files=[
        {"name": "crack.png", "mimeType": "image/png", "buffer": PNG}])
    await expect(page.locator(".msg-customer .bubble img")).to_have_count(1)
    await expect(page.locator(".msg-customer.pending")).to_have_count(0)
    assert app[EVIDENCE].exists(hashlib.sha256(PNG).hexdigest())

    # Customer text is text, never markup.
    await page.fill("#input", "<b id='x'>加粗</b><img src=x onerror=\"document.title='pwned'\">")
    await page.press("#input", "Enter")
    await expect(page.locator(".msg-customer .bubble").last).to_contain_text("<b id='x'>")
    assert await page.locator(".msg-customer").last.locator("b, img").count() == 0
    assert await page.locator("#x").count() == 0
    assert await page.title() != "pwned"
    await expect(page.locator(".msg-customer.pending")).to_have_count(0)
    sent = await app[TICKETS].outbox.after("webchat", conversation)
    await expect(page.locator(".msg-bot")).to_have_count(len(sent))

    # A reload keeps the conversation and its history (localStorage) and shows nothing twice.
    bubbles = await page.locator(".msg").count()
    await page.reload()
    await expect(page.locator(".msg")).to_have_count(bubbles)
    assert await page.evaluate("window.intakebotChat.conversation") == conversation
    assert not errors


async def test_the_widget_in_an_iframe_gets_live_agent_messages(
        server: tuple[str, web.Application], browser: Any) -> None:
    from playwright.async_api import expect

    from bot.app import WEBCHAT
    from channels.messages import Author, ConversationRef, OutgoingMessage

    base, app = server
    page = await browser.new_page()
    await page.route(base + "/shop", lambda route: route.fulfill(
        content_type="text/html",
        body=f'<h1>Shop</h1><iframe src="{base}/chat?conversation=shop-1&lang=en" '
             'width="400" height="600"></iframe>'))
    await page.goto(base + "/shop")
    frame = page.frame_locator("iframe")
    await expect(frame.locator(".chat-title")).to_have_text("Customer service")
    await frame.locator("#input").fill("How do I get an invoice?")
    await frame.locator("#send").click()
    await expect(frame.locator(".msg-bot").first).to_be_visible()
    # An agent's message reaches the open page by itself (WebSocket push).
    await app[WEBCHAT].output.send(OutgoingMessage(
        ConversationRef("webchat", "shop-1"), "Hi, I am Li from customer service.",
        author=Author.AGENT))
    await expect(frame.locator(".msg-agent .bubble")).to_have_text(
        "Hi, I am Li from customer service.")
    await expect(frame.locator(".msg-agent .who")).to_have_text("Agent")
