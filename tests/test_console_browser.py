"""The agent console in a real browser (Debian chromium, headless) against the real app.

A customer complains in the /chat widget; an agent logs in to /console, claims the ticket,
replies (the reply appears in the customer's widget by itself), resolves with an 800 CNY
refund, which waits for approval; a supervisor approves in their own console; the agent closes.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from bot.app import create_app
from bot.settings import Settings
from handoff.api import USERS
from knowledge_base.retrieval import Searcher
from knowledge_base.service import make_searcher
from nlp.analyzer import Analyzer
from tests.handoff.conftest import COMPLAINT

pytestmark = pytest.mark.browser

SCREENSHOT = Path("/tmp/intakebot-console.png")
NUMBER = re.compile(r"TS\d{8}-\d{4}")
PASSWORD = "console-pass"


@pytest.fixture(scope="module")
def searcher() -> Searcher:
    return make_searcher(dense=False)


@pytest.fixture
async def server(tmp_path: Path, analyzer: Analyzer,
                 searcher: Searcher) -> AsyncIterator[tuple[str, web.Application]]:
    """The real application on a free port of 127.0.0.1, with an agent and a supervisor."""
    app = create_app(Settings.from_env({"INTAKEBOT_DATA_DIR": str(tmp_path / "data")}),
                     analyzer=analyzer, searcher=searcher)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    await app[USERS].add("alice", PASSWORD, "agent")
    await app[USERS].add("sue", PASSWORD, "supervisor")
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}", app
    finally:
        await runner.cleanup()


async def log_in(page: Any, base: str, name: str) -> None:
    from playwright.async_api import expect

    response = await page.goto(base + "/console")
    assert response is not None and "script-src 'self'" in response.headers[
        "content-security-policy"]
    await page.fill("#username", name)
    await page.fill("#password", PASSWORD)
    await page.click("#login")
    await expect(page.locator("#whoami")).to_contain_text(name)
    await expect(page.locator("#live")).to_have_text("实时")


async def test_claim_reply_resolve_approve_close(server: tuple[str, web.Application],
                                                 browser: Any) -> None:
    from playwright.async_api import expect

    base, _app = server
    errors: list[str] = []

    # The customer complains in the widget, with some markup in the story.
    customer = await browser.new_page(locale="zh-CN")
    customer.on("pageerror", lambda exc: errors.append(str(exc)))
    await customer.goto(base + "/chat")
    await customer.fill("#input", "我买的电饭煲用了两天就坏了"
                                  "<script>document.title='pwned'</script>，订单号DD2026112012345，商品是美的电饭煲，"
                                  "电话13812345678，我要求退款")
    await customer.click("#send")
    await customer.locator(".chip", has_text="确认").click()
    receipt = customer.locator(".msg-bot .bubble", has_text=NUMBER)
    await expect(receipt).to_have_count(1)
    match = NUMBER.search(await receipt.inner_text())
    assert match
    number = match[0]

    # A wrong password is refused.
    agent = await browser.new_page(locale="zh-CN")
    agent.on("pageerror", lambda exc: errors.append(str(exc)))
    await agent.goto(base + "/console")
    await agent.fill("#username", "alice")
    await agent.fill("#password", "wrong-password")
    await agent.click("#login")
    await expect(agent.locator("#login-error")).not_to_be_empty()

    await log_in(agent, base, "alice")
    item = agent.locator("#queue li", has_text=number)
    await expect(item).to_be_visible()
    await expect(item.locator(".countdown")).to_contain_text("小时")
    await item.click()
    await expect(agent.locator("#ticket-number")).to_have_text(number)
    # The injected script is shown as text and never runs.
    first_line = agent.locator("#transcript li.customer .text").first
    await expect(first_line).to_contain_text("<script>")
    assert await agent.locator("#transcript script").count() == 0
    assert await agent.title() != "pwned"
    await expect(agent.locator("#form input[name=order_id]")).to_have_value("DD2026112012345")

    await agent.click("#claim")
    await expect(agent.locator("#ticket-status")).to_have_text("assigned")
    await expect(agent.locator("#ticket-assignee")).to_contain_text("alice")

    # The reply reaches the customer's widget by itself.
    await agent.fill("#reply", "您好，我是客服 alice，已经为您核实订单。")
    await agent.click("#send")
    await expect(customer.locator(".msg-agent .bubble")).to_have_text(
        "您好，我是客服 alice，已经为您核实订单。")
    await expect(agent.locator("#transcript li.agent .text").last).to_have_text(
        "您好，我是客服 alice，已经为您核实订单。")

    # A banned promise needs a second thought.
    await agent.fill("#reply", "我们绝对保证全额赔偿")
    await agent.click("#send")
    await expect(agent.locator("#wording-warning")).to_be_visible()
    await expect(agent.locator("#wording-phrases")).to_contain_text("绝对保证")
    await agent.fill("#reply", "最终方案以调查结果为准")
    await agent.click("#send")
    await expect(agent.locator("#wording-warning")).to_be_hidden()

    # The investigation record: problem, evidence, responsibility, proposal.
    await agent.fill("#inv-problem", "加热盘故障")
    await agent.select_option("#inv-responsible", "merchant")
    await agent.fill("#inv-proposal", "退货退款")
    await agent.click("#save-investigation")
    await expect(agent.locator("#ticket-status")).to_have_text("investigating")
    await expect(agent.locator("#inv-due")).not_to_be_empty()

    # 800 CNY is above the threshold: the ticket waits for a supervisor.
    await agent.select_option("#solution", "return_refund")
    await agent.fill("#amount", "800")
    await agent.fill("#resolve-note", "退货退款")
    await agent.click("#resolve")
    await expect(agent.locator("#ticket-status")).to_have_text("awaiting_approval")

    supervisor = await browser.new_page(locale="zh-CN")
    supervisor.on("pageerror", lambda exc: errors.append(str(exc)))
    await log_in(supervisor, base, "sue")
    await supervisor.locator("#queue li", has_text=number).click()
    await expect(supervisor.locator("#solution-view")).to_contain_text("800.00")
    await supervisor.click("#approve")
    await expect(supervisor.locator("#ticket-status")).to_have_text("resolved")
    await expect(customer.locator(".msg-agent .bubble").last).to_contain_text("已获批准")
    # The agent's console hears of it live.
    await expect(agent.locator("#ticket-status")).to_have_text("resolved")

    await agent.click("#close")
    await expect(agent.locator("#ticket-status")).to_have_text("closed")
    await expect(agent.locator("#history li").last).to_contain_text("closed")
    await agent.screenshot(path=str(SCREENSHOT), full_page=True)
    assert not errors


async def _api(session: Any, base: str, name: str) -> dict[str, str]:
    """Bearer headers of a staff member, logged in through the API."""
    async with session.post(base + "/api/auth/login",
                            json={"username": name, "password": PASSWORD}) as response:
        assert response.status == 200
        return {"Authorization": "Bearer " + (await response.json())["token"]}


async def _complaint(session: Any, base: str, chat_id: str) -> str:
    """A customer registers a complaint on the web chat API; the ticket id."""
    url = f"{base}/api/webchat/{chat_id}/messages"
    async with session.post(url, json={"text": COMPLAINT}) as response:
        first = await response.json()
    confirm = next(b for r in first["replies"] for b in r["buttons"])
    async with session.post(url, json={"text": confirm}) as response:
        ticket_id: str = (await response.json())["ticket_id"]
    assert ticket_id
    return ticket_id


async def test_merchant_answer_reopen_badges_and_department_queue(
        server: tuple[str, web.Application], browser: Any) -> None:
    import aiohttp
    from playwright.async_api import expect
    from sqlalchemy import update

    from bot.app import TICKETS
    from handoff.tickets import TicketRow

    base, app = server
    await app[USERS].add("lee", PASSWORD, "agent", department="logistics")
    errors: list[str] = []
    async with aiohttp.ClientSession() as session:
        ticket_id = await _complaint(session, base, "browser-aftercare")
        alice_api = await _api(session, base, "alice")

        async def ticket() -> dict[str, Any]:
            async with session.get(f"{base}/api/tickets/{ticket_id}",
                                   headers=alice_api) as response:
                assert response.status == 200
                data: dict[str, Any] = await response.json()
                return data

        number = (await ticket())["number"]

        # An agent of another department sees neither the ticket nor another queue.
        lee = await browser.new_page(locale="zh-CN")
        lee.on("pageerror", lambda exc: errors.append(str(exc)))
        await log_in(lee, base, "lee")
        await expect(lee.locator("#filter-department")).to_have_value("logistics")
        assert await lee.locator("#filter-department").get_attribute("readonly") is not None
        await expect(lee.locator("#queue li")).to_have_count(0)

        agent = await browser.new_page(locale="zh-CN")
        agent.on("pageerror", lambda exc: errors.append(str(exc)))
        await log_in(agent, base, "alice")
        await agent.locator("#queue li", has_text=number).click()
        await expect(agent.locator("#ticket-number")).to_have_text(number)
        await expect(agent.locator("#merchant-answer")).to_be_hidden()
        await expect(agent.locator("#reopen")).to_be_hidden()
        await expect(agent.locator("#ticket-badges .badge")).to_have_count(0)
        await agent.click("#claim")
        await expect(agent.locator("#ticket-status")).to_have_text("assigned")

        # Copied to a merchant: the answer button appears, and records what was answered.
        await agent.fill("#merchant", "美的旗舰店")
        await agent.click("#copy-merchant")
        await expect(agent.locator("#merchant-status")).to_contain_text("美的旗舰店")
        await expect(agent.locator("#merchant-answer")).to_be_visible()
        agent.once("dialog", lambda dialog: dialog.accept("商家同意换货"))
        await agent.click("#merchant-answer")
        await expect(agent.locator("#merchant-answer")).to_be_hidden()
        await expect(agent.locator("#merchant-status")).to_contain_text("已于")
        answered = await ticket()
        assert answered["merchant_answered_at"]
        assert any(n["text"] == "[美的旗舰店] 商家同意换货" for n in answered["notes"])

        # Resolved and closed: reopen appears; cancelling the prompt changes nothing.
        await agent.select_option("#solution", "exchange")
        await agent.click("#resolve")
        await expect(agent.locator("#ticket-status")).to_have_text("resolved")
        await expect(agent.locator("#reopen")).to_be_visible()
        await agent.click("#close")
        await expect(agent.locator("#ticket-status")).to_have_text("closed")
        agent.once("dialog", lambda dialog: dialog.dismiss())
        await agent.click("#reopen")
        await expect(agent.locator("#ticket-status")).to_have_text("closed")
        assert (await ticket())["status"] == "closed"
        agent.once("dialog", lambda dialog: dialog.accept("客户说新机也不能加热"))
        await agent.click("#reopen")
        await expect(agent.locator("#ticket-status")).to_have_text("reopened")
        await expect(agent.locator("#reopen")).to_be_hidden()
        reopened = await ticket()
        assert reopened["status"] == "reopened" and reopened["assignee"] is None
        assert reopened["history"][-1]["result"] == "客户说新机也不能加热"

        # After-care and retention state shows as read-only badges.
        async with app[TICKETS].engine.begin() as conn:
            await conn.execute(update(TicketRow).where(TicketRow.id == ticket_id).values(
                confirmation="denied", reopen_count=2, second_handling=True, legal_hold=True))
        await agent.locator("#queue li", has_text=number).click()
        badges = agent.locator("#ticket-badges .badge")
        await expect(badges).to_have_count(4)
        await expect(badges).to_have_text(["客户表示未解决", "重开 2 次", "二次处理", "法务保全"])
    assert not errors


async def test_the_ticket_shows_its_survey(server: tuple[str, web.Application],
                                           browser: Any) -> None:
    """A supervisor opens a ticket whose customer answered the survey badly: the scores, the
    aspects, the suggestion (as text, not markup) and the second handling it started."""
    from datetime import UTC, datetime

    from playwright.async_api import expect

    from bot.app import AFTERCARE, TICKETS
    from handoff.intake import HandoffReason, TicketDraft

    base, app = server
    registered = await app[TICKETS].register(
        TicketDraft(channel="webchat", chat_id="survey-chat", lang="zh-Hans",
                    description="电饭煲不加热", category="product", subcategory=None,
                    priority="low", priority_reasons=(), sla_hours=24, emotion="neutral",
                    reason=HandoffReason.NEEDS_INVESTIGATION),
        department="quality", receiver="bot", now=datetime.now(UTC))
    ticket = registered.ticket
    aftercare = app[AFTERCARE]
    await aftercare.surveys.start(ticket.id, "chat", datetime.now(UTC))
    await aftercare.answer_survey(ticket.id, {
        "timeliness": 2, "effectiveness": 1, "attitude": 4, "overall": 1,
        "best_aspect": "attitude", "improve_aspect": "result",
        "suggestion": "<img src=x onerror=alert(1)>退款太慢"})
    errors: list[str] = []
    page = await browser.new_page(locale="zh-CN")
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("dialog", lambda dialog: errors.append("dialog: " + dialog.message))
    try:
        await log_in(page, base, "sue")
        await page.locator("#queue li", has_text=ticket.number).click()
        survey = page.locator("#survey")
        await expect(survey.locator("dd")).to_have_count(10)
        await expect(survey.locator("dt")).to_have_text([
            "发送", "回答", "处理及时性", "解决效果", "服务态度", "总体满意度", "最满意", "待改进",
            "建议", "二次处理"])
        values = await survey.locator("dd").all_text_contents()
        assert values[0].endswith("（对话）") and values[1] != "尚未回答"
        assert values[2:] == ["2 / 5", "1 / 5", "4 / 5", "1 / 5", "服务态度", "处理结果",
                              "<img src=x onerror=alert(1)>退款太慢", "已触发（总体满意度过低）"]
        assert await survey.locator("img").count() == 0  # customer text stays text
        await expect(survey.locator(".survey-alert")).to_have_text("已触发（总体满意度过低）")
        await page.screenshot(path="/tmp/intakebot-console-survey.png", full_page=True)
    finally:
        await page.close()
    assert not errors
