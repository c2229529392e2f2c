"""After-care on the whole application over HTTP: a customer on the web chat, staff on the ticket
API, and a movable clock. Stage notices, the closing confirmation, progress updates, the
satisfaction survey (buttons and the signed web form) and second handling."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import pytest
from aiohttp.test_utils import TestClient

from bot.app import AFTERCARE, create_app
from bot.settings import Settings
from handoff.api import EVENTS
from handoff.live import Event
from handoff.sla import ManualClock
from knowledge_base.retrieval import Searcher
from knowledge_base.service import make_searcher
from nlp.analyzer import Analyzer
from tests.handoff.conftest import Desk

ZONE = ZoneInfo("Asia/Shanghai")


@pytest.fixture(scope="module")
def searcher() -> Searcher:
    return make_searcher(dense=False)


@pytest.fixture
async def desk(tmp_path: Path, analyzer: Analyzer, searcher: Searcher,
               aiohttp_client: Callable[..., Awaitable[TestClient[Any, Any]]]) -> Desk:
    clock = ManualClock()
    settings = Settings.from_env({
        "INTAKEBOT_DATA_DIR": str(tmp_path / "data"), "INTAKEBOT_SLA_CHECK_SECONDS": "3600",
        "INTAKEBOT_SCHEDULER_SECONDS": "3600", "INTAKEBOT_PUBLIC_URL": "https://help.example"})
    app = create_app(settings, analyzer=analyzer, searcher=searcher, clock=clock)
    desk = Desk(await aiohttp_client(app), clock)
    await tick(desk)  # as the start-up loop does: from now on every stage change is told
    await desk.add_user("alice", "agent", "quality")
    await desk.add_user("sue", "supervisor")
    return desk


async def tick(desk: Desk) -> int:
    ran: int = await desk.app[AFTERCARE].tick()
    return ran


def to_local(clock: ManualClock, hour: int) -> None:
    """Move the clock forward to the next `hour`:00 in China."""
    local = clock.now.astimezone(ZONE)
    target = local.replace(hour=hour, minute=0, second=0, microsecond=0)
    if target <= local:
        target += timedelta(days=1)
    clock.now = target.astimezone(clock.now.tzinfo)


async def ticket(desk: Desk, ticket_id: str) -> dict[str, Any]:
    data: dict[str, Any] = await desk.call("GET", f"/api/tickets/{ticket_id}", "sue")
    return data


async def claimed_and_resolved(desk: Desk) -> tuple[str, str]:
    chat_id, ticket_id = await desk.complaint()
    url = f"/api/tickets/{ticket_id}"
    await desk.call("POST", url + "/claim", "alice")
    await desk.call("POST", url + "/resolve", "alice",
                    json={"solution": "exchange", "note": "已安排换新"})
    return chat_id, ticket_id


def drain(queue: asyncio.Queue[Event]) -> list[Event]:
    events = []
    while not queue.empty():
        events.append(queue.get_nowait())
    return events


async def test_stage_notice_then_confirmation_yes_closes_the_ticket(desk: Desk) -> None:
    chat_id, ticket_id = await desk.complaint()
    number = (await ticket(desk, ticket_id))["number"]
    await desk.call("POST", f"/api/tickets/{ticket_id}/claim", "alice")
    before = len(await desk.outbox(chat_id))
    await tick(desk)
    told = (await desk.outbox(chat_id))[before:]
    assert len(told) == 1 and number in told[0]["text"] and "专人接手" in told[0]["text"]
    assert (await ticket(desk, ticket_id))["history"][-1]["stage"] == "assigned"

    await desk.call("POST", f"/api/tickets/{ticket_id}/resolve", "alice",
                    json={"solution": "exchange", "note": "已安排换新"})
    await tick(desk)
    asked = (await desk.outbox(chat_id))[-1]
    assert "是否已解决" in asked["text"] and asked["buttons"] == ["是", "否"]
    await tick(desk)  # asked once
    assert (await desk.outbox(chat_id))[-1]["seq"] == asked["seq"]

    answer = await desk.say(chat_id, asked["buttons"][0])
    assert any("已为您办结" in r["text"] for r in answer["replies"])
    closed = await ticket(desk, ticket_id)
    assert closed["status"] == "closed"
    assert closed["history"][-1]["actor"] == "intakebot"
    audit = await desk.call("GET", f"/api/tickets/{ticket_id}/audit", "sue")
    assert "customer_confirmed" in [a["action"] for a in audit["audit"]]
    seq = (await desk.outbox(chat_id))[-1]["seq"]
    await tick(desk)  # the customer's own close is not told back to them
    assert (await desk.outbox(chat_id))[-1]["seq"] == seq
    # The conversation is free again: a new message starts a new intake.
    again = await desk.say(chat_id, "我要投诉，快递三天了还没到")
    assert again["ticket_id"] is None and again["replies"]


async def test_confirmation_no_reopens_and_tells_the_owner(desk: Desk) -> None:
    chat_id, ticket_id = await claimed_and_resolved(desk)
    await tick(desk)
    async with desk.app[EVENTS].subscribe() as queue:
        answer = await desk.say(chat_id, "否")
        events = drain(queue)
    assert any("重新打开" in r["text"] for r in answer["replies"])
    reopened = await ticket(desk, ticket_id)
    assert reopened["status"] == "reopened" and reopened["assignee"] is None
    assert any(n["author"] == "intakebot" for n in reopened["notes"])
    told = [e for e in events if e.get("event") == "customer_denied"]
    assert told and told[0]["to"] == "alice" and told[0]["ticket_id"] == ticket_id
    # The owner claims it again and can resolve again: a new confirmation is asked.
    await desk.call("POST", f"/api/tickets/{ticket_id}/claim", "alice")
    await desk.call("POST", f"/api/tickets/{ticket_id}/resolve", "alice",
                    json={"solution": "refund", "amount": 99})
    await tick(desk)
    assert "是否已解决" in (await desk.outbox(chat_id))[-1]["text"]


async def test_an_open_ticket_without_news_gets_an_update_once(desk: Desk) -> None:
    chat_id, ticket_id = await desk.complaint()
    await tick(desk)
    before = len(await desk.outbox(chat_id))
    desk.clock.advance(timedelta(days=2))
    await tick(desk)
    assert len(await desk.outbox(chat_id)) == before  # not yet
    desk.clock.advance(timedelta(days=1))
    to_local(desk.clock, 10)  # past the 3 days, and out of the quiet hours
    await tick(desk)
    sent = (await desk.outbox(chat_id))[before:]
    assert len(sent) == 1 and "进展通知" in sent[0]["text"] and "等待受理" in sent[0]["text"]
    await tick(desk)
    desk.clock.advance(timedelta(days=1))
    await tick(desk)
    assert len(await desk.outbox(chat_id)) == before + 1  # not twice
    data = await ticket(desk, ticket_id)
    assert data["status"] == "new"


async def test_an_agent_message_counts_as_news(desk: Desk) -> None:
    chat_id, ticket_id = await desk.complaint()
    await desk.call("POST", f"/api/tickets/{ticket_id}/claim", "alice")
    to_local(desk.clock, 10)
    await tick(desk)  # the "assigned" notice
    desk.clock.advance(timedelta(days=2))
    await desk.call("POST", f"/api/tickets/{ticket_id}/messages", "alice",
                    json={"text": "您好，我们正在核实物流信息。"})
    before = len(await desk.outbox(chat_id))
    desk.clock.advance(timedelta(days=2))  # 4 days after the notice, 2 after the agent
    await tick(desk)
    assert len(await desk.outbox(chat_id)) == before
    desk.clock.advance(timedelta(days=1, hours=1))  # 3 days after the agent's message
    await tick(desk)
    sent = (await desk.outbox(chat_id))[before:]
    assert len(sent) == 1 and "进展通知" in sent[0]["text"]


async def test_the_survey_waits_out_the_quiet_hours_and_starts_second_handling(
        desk: Desk) -> None:
    chat_id, ticket_id = await claimed_and_resolved(desk)
    await tick(desk)
    to_local(desk.clock, 23)
    await desk.call("POST", f"/api/tickets/{ticket_id}/close", "alice",
                    json={"feedback": "客户满意"})
    await tick(desk)
    assert "已办结" in (await desk.outbox(chat_id))[-1]["text"]  # staff closed it: told
    before = len(await desk.outbox(chat_id))
    desk.clock.advance(timedelta(hours=24))  # 23:00 the next day: quiet hours
    await tick(desk)
    assert len(await desk.outbox(chat_id)) == before
    job = await desk.app[AFTERCARE].scheduler.get(f"survey:{ticket_id}")
    assert job is not None and job.due_at.astimezone(ZONE).hour == 8
    to_local(desk.clock, 8)
    await tick(desk)
    sent = (await desk.outbox(chat_id))[before:]
    assert [m["buttons"] for m in sent][-1] == ["1", "2", "3", "4", "5", "结束问卷"]

    async with desk.app[EVENTS].subscribe() as queue:
        for score in ("5", "4", "3"):
            await desk.say(chat_id, score)
        low = await desk.say(chat_id, "2")
        events = drain(queue)
    assert any("资深专员" in r["text"] for r in low["replies"])
    assert any(e.get("type") == "second_handling" and e.get("audience") == "supervisor"
               for e in events)
    again = await ticket(desk, ticket_id)
    assert again["status"] == "reopened"
    await desk.say(chat_id, "服务态度")
    await desk.say(chat_id, "处理结果")
    thanks = await desk.say(chat_id, "跳过")
    assert any("感谢您的评价" in r["text"] for r in thanks["replies"])
    survey = await desk.app[AFTERCARE].surveys.get(ticket_id)
    assert survey is not None and survey.method == "chat" and survey.second_handling
    assert (survey.timeliness, survey.effectiveness, survey.attitude, survey.overall) == (
        5, 4, 3, 2)
    assert (survey.best_aspect, survey.improve_aspect, survey.suggestion) == (
        "attitude", "result", None)
    audit = await desk.call("GET", f"/api/tickets/{ticket_id}/audit", "sue")
    assert "second_handling" in [a["action"] for a in audit["audit"]]
    count = len(await desk.outbox(chat_id))
    desk.clock.advance(timedelta(hours=12))
    await tick(desk)
    assert not any("1/7" in m["text"] for m in (await desk.outbox(chat_id))[count:])


async def test_the_signed_survey_link_and_its_web_form(desk: Desk) -> None:
    chat_id, ticket_id = await claimed_and_resolved(desk)
    await tick(desk)
    await desk.say(chat_id, "是")
    aftercare = desk.app[AFTERCARE]
    await aftercare.surveys.start(ticket_id, "web", desk.clock())
    assert aftercare.survey_link is not None
    link = aftercare.survey_link(ticket_id)
    assert link.startswith("https://help.example/survey/")
    path = urlsplit(link).path
    client = desk.client

    page = await client.get(path)
    text = await page.text()
    assert page.status == 200 and (await ticket(desk, ticket_id))["number"] in text
    assert 'name="overall"' in text

    missing = await client.post(path, data={"timeliness": "5"})
    assert missing.status == 400 and "1-5" in await missing.text()
    bad = await client.post(path, data={"timeliness": "5", "effectiveness": "5",
                                        "attitude": "5", "overall": "9"})
    assert bad.status == 400 and "overall" in await bad.text()
    assert (await aftercare.surveys.get(ticket_id)).answered_at is None  # type: ignore[union-attr]

    forged = path[:-3] + ("AAA" if not path.endswith("AAA") else "BBB")
    assert (await client.get(forged)).status == 403
    assert (await client.post(forged, data={"overall": "5"})).status == 403
    assert (await client.get("/survey/not-a-token")).status == 403

    done = await client.post(path, data={
        "timeliness": "4", "effectiveness": "3", "attitude": "5", "overall": "4",
        "best_aspect": "attitude", "improve_aspect": "speed", "suggestion": "物流再快点"})
    assert done.status == 200 and "感谢" in await done.text()
    survey = await aftercare.surveys.get(ticket_id)
    assert survey is not None and survey.overall == 4 and survey.suggestion == "物流再快点"
    assert not survey.second_handling
    reused = await client.post(path, data={"timeliness": "1", "effectiveness": "1",
                                           "attitude": "1", "overall": "1"})
    assert reused.status == 409
    assert (await aftercare.surveys.get(ticket_id)).overall == 4  # type: ignore[union-attr]

    later = aftercare.survey_link(ticket_id)
    desk.clock.advance(timedelta(days=15))
    assert (await client.get(urlsplit(later).path)).status == 410


def test_aftercare_settings_are_parsed_and_checked(tmp_path: Path) -> None:
    from datetime import time

    base = {"INTAKEBOT_DATA_DIR": str(tmp_path)}
    default = Settings.from_env(base)
    assert default.update_days == 3 and default.survey_window_hours == (24, 48)
    assert default.quiet_hours == (time(22), time(8)) and default.timezone == "Asia/Shanghai"
    assert default.scheduler_seconds == 30 and default.public_url is None
    custom = Settings.from_env({**base, "INTAKEBOT_UPDATE_DAYS": "2",
                                "INTAKEBOT_SURVEY_WINDOW_HOURS": "36-72",
                                "INTAKEBOT_QUIET_HOURS": "off",
                                "INTAKEBOT_TIMEZONE": "Europe/Berlin",
                                "INTAKEBOT_PUBLIC_URL": "https://x.example/"})
    assert custom.survey_window_hours == (36, 72) and custom.quiet_hours is None
    assert custom.public_url == "https://x.example" and custom.business_hours is None
    for name, value in (("INTAKEBOT_UPDATE_DAYS", "soon"), ("INTAKEBOT_UPDATE_DAYS", "0"),
                        ("INTAKEBOT_SURVEY_WINDOW_HOURS", "48-24"),
                        ("INTAKEBOT_QUIET_HOURS", "late"), ("INTAKEBOT_TIMEZONE", "Mars/Base")):
        with pytest.raises(ValueError, match=name):
            Settings.from_env({**base, name: value})

