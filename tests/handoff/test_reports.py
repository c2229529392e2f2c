"""Reports: periods, every figure on hand-built tickets (SQLite and PostgreSQL), formats."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, update
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

from handoff.intake import HandoffReason, TicketDraft
from handoff.reports import (
    InvalidReport,
    Period,
    PeriodKind,
    Report,
    build_report,
    choose_period,
    render_text,
)
from handoff.survey import SurveyRow
from handoff.tickets import CHINA_TZ, TicketRow, TicketStore, link_all

WEEK = Period(PeriodKind.WEEK, date(2026, 11, 2), date(2026, 11, 9))


def cst(day: int, hour: int, minute: int = 0, month: int = 11) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=CHINA_TZ)


# ---- periods --------------------------------------------------------------------------------


def test_default_periods_are_the_last_complete_week_and_month() -> None:
    wednesday = date(2026, 11, 11)
    assert choose_period("week", today=wednesday) == WEEK
    month = choose_period("month", today=wednesday)
    assert (month.start, month.end) == (date(2026, 10, 1), date(2026, 11, 1))
    # A Monday's last complete week is the one that ended the day before.
    assert choose_period("week", today=date(2026, 11, 9)) == WEEK


def test_previous_periods() -> None:
    assert WEEK.previous() == Period(PeriodKind.WEEK, date(2026, 10, 26), date(2026, 11, 2))
    march = choose_period("month", "2026-03-15")
    assert (march.previous().start, march.previous().end) == (date(2026, 2, 1), date(2026, 3, 1))
    january = choose_period("month", "2026-01-31")
    assert january.previous().start == date(2025, 12, 1)
    span = choose_period("week", "2026-11-01", "2026-11-11")
    assert span.kind is PeriodKind.CUSTOM and span.days == 10
    assert span.previous() == Period(PeriodKind.CUSTOM, date(2026, 10, 22), date(2026, 11, 1))


def test_period_bounds_are_china_midnights() -> None:
    start, end = WEEK.bounds()
    assert start == datetime(2026, 11, 1, 16, tzinfo=UTC)
    assert end == datetime(2026, 11, 8, 16, tzinfo=UTC)


@pytest.mark.parametrize(("kind", "start", "end", "message"), [
    ("day", None, None, "week or month"),
    ("week", "2026-13-01", None, "ISO date"),
    ("week", None, "2026-11-01", "to needs from"),
    ("week", "2026-11-05", "2026-11-05", "before it starts"),
    ("week", "2020-01-01", "2026-01-01", "at most"),
])
def test_bad_periods_are_refused(kind: str, start: str | None, end: str | None,
                                 message: str) -> None:
    with pytest.raises(InvalidReport, match=message):
        choose_period(kind, start, end)


# ---- the data set ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Gap:
    text: str
    count: int
    first_seen: datetime
    last_seen: datetime


def ticket(registered: datetime, *, customer: str | None, order: str | None = None,
           bot: int = 60, first_response: int | None = None, handling: int | None = None,
           status: str = "new", reopen: int = 0, breaches: list[str] | None = None,
           category: str | None = "product", department: str = "quality",
           priority: str = "low", channel: str = "webchat", product: str | None = None,
           merchant: str | None = None, phone: str | None = None,
           chat: str | None = None) -> dict[str, Any]:
    """A ticket row; durations in seconds: bot time before, response and handling after."""
    at = registered.astimezone(UTC)
    return {
        "id": str(uuid.uuid4()), "number": "TS-" + uuid.uuid4().hex[:12], "status": status,
        "open_key": None, "channel": channel, "chat_id": chat or "chat-" + uuid.uuid4().hex[:8],
        "lang": "zh-Hans", "customer_id": customer, "phone": phone,
        "complained_at": at - timedelta(seconds=bot), "category": category,
        "priority": priority, "priority_reasons": [], "emotion": "neutral",
        "description": "…", "order_id": order, "product": product, "merchant": merchant,
        "department": department, "receiver": "bot", "handoff_reason": "complaint",
        "sla_hours": 24, "sla_due": at + timedelta(hours=24), "registered_at": at,
        "updated_at": at,
        "first_responded_at": None if first_response is None
        else at + timedelta(seconds=first_response),
        "resolved_at": None if handling is None else at + timedelta(seconds=handling),
        "reopen_count": reopen, "breaches": breaches,
    }


def survey(row: dict[str, Any], scores: tuple[int, int, int, int] | None,
           improve: str | None = None, suggestion: str | None = None) -> dict[str, Any]:
    answered = None if scores is None else row["registered_at"] + timedelta(days=2)
    t, e, a, o = scores or (None, None, None, None)
    return {"ticket_id": row["id"], "method": "chat", "sent_at": row["registered_at"],
            "answered_at": answered, "timeliness": t, "effectiveness": e, "attitude": a,
            "overall": o, "improve_aspect": improve, "suggestion": suggestion}


async def seed(engine: AsyncEngine) -> None:
    """Six tickets in WEEK, one in the week before, and neighbours that decide the flags."""
    t1 = ticket(cst(2, 10, 5), customer="A", order="O1", bot=300, first_response=1800,
                handling=7200, status="closed", breaches=[], priority="high",
                product="电饭煲", merchant="M1")
    t2 = ticket(cst(3, 9), customer="B", order="O2", bot=600, first_response=3600,
                handling=36000, status="resolved", reopen=1, breaches=["first_response"],
                category="logistics", department="logistics", priority="medium",
                channel="telegram", product="耳机", merchant="M2")
    t3 = ticket(cst(4, 12), customer="C", order="O3", bot=120, product="电饭煲")
    t4 = ticket(cst(5, 8), customer=None, phone="13800000001", order="O1", bot=60,
                first_response=600, handling=3600, status="closed", breaches=["resolution"],
                category="service", department="operations", priority="high",
                channel="email", merchant="M1")
    t5 = ticket(cst(8, 20), customer=None, phone="13800000001", order="O5", bot=180,
                first_response=900, handling=1800, status="closed", category="after_sales",
                department="after_sales", product="耳机", merchant="M2")
    t6 = ticket(cst(8, 23, 30), customer=None, chat="x", bot=30, category=None)
    # Next week, 30 minutes after WEEK ends: A came back within 7 days, so t1 was not
    # resolved at first contact.
    t7 = ticket(cst(9, 0, 30), customer="A", status="new")
    p1 = ticket(cst(20, 9, month=10), customer="C")  # 15 days before t3: t3 repeats
    p2 = ticket(cst(28, 9, month=10), customer="E", handling=600, status="closed",
                product="电饭煲", merchant="M1", bot=90)
    p3 = ticket(cst(1, 8, month=10), customer="B")  # 33 days before t2: too old to count
    surveys = [survey(t1, (5, 4, 5, 5), "result", "快一点"),
               survey(t2, (2, 3, 4, 3), "response_speed", " 快一点 "),
               survey(t4, None),  # sent, never answered
               survey(p2, (4, 4, 4, 4), "result", "很好")]
    async with engine.begin() as conn:
        await conn.execute(insert(TicketRow), [t1, t2, t3, t4, t5, t6, t7, p1, p2, p3])
        await conn.execute(insert(SurveyRow), surveys)
        await conn.run_sync(link_all)  # the rows went in raw: link them as the migration does


GAPS = [Gap("发票怎么开", 7, cst(1, 0), cst(3, 0)),
        Gap("能用花呗吗", 12, cst(1, 0, month=10), cst(1, 0)),  # not asked in WEEK
        Gap("几点发货", 2, cst(4, 0), cst(6, 0)),
        Gap("明天的问题", 9, cst(10, 0), cst(10, 0))]  # first asked after WEEK


async def make_report(store: TicketStore) -> Report:
    await seed(store.engine)
    return await build_report(store.engine, WEEK, unanswered=GAPS)


async def test_figures(store: TicketStore) -> None:
    report = await make_report(store)
    cur, prev = report.current, report.previous
    assert cur.tickets == 6 and prev.tickets == 1
    assert cur.resolved == 4 and cur.resolution_rate == pytest.approx(4 / 6)
    assert cur.overdue == 2 and cur.overdue_rate == pytest.approx(2 / 6)
    # t3 (C, 15 days after p1), t4 (order O1 of t1), t5 (the same phone as t4).
    assert cur.repeat == 3 and cur.repeat_rate == pytest.approx(0.5)
    # Only t5: t1's customer came back within 7 days, t2 was reopened, t4's came back.
    assert cur.first_contact_resolved == 1
    assert cur.first_contact_resolution_rate == pytest.approx(1 / 6)
    assert cur.responded == 4
    assert cur.avg_bot_seconds == pytest.approx((300 + 600 + 120 + 60 + 180 + 30) / 6, abs=0.01)
    assert cur.avg_first_response_seconds == pytest.approx((1800 + 3600 + 600 + 900) / 4,
                                                           abs=0.01)
    assert cur.avg_handling_seconds == pytest.approx((7200 + 36000 + 3600 + 1800) / 4, abs=0.01)
    assert cur.surveys == 2
    assert cur.satisfaction == pytest.approx(
        {"timeliness": 3.5, "effectiveness": 3.5, "attitude": 4.5, "overall": 4.0})
    assert (prev.resolved, prev.first_contact_resolved, prev.repeat) == (1, 1, 0)
    assert prev.avg_bot_seconds == pytest.approx(90, abs=0.01)
    assert prev.satisfaction["overall"] == pytest.approx(4.0)


async def test_volume_and_change(store: TicketStore) -> None:
    report = await make_report(store)
    by = {name: {c.key: (c.count, c.previous) for c in counts}
          for name, counts in report.volume.items()}
    assert by["category"] == {"product": (2, 1), "logistics": (1, 0), "service": (1, 0),
                              "after_sales": (1, 0), "(none)": (1, 0)}
    assert by["priority"] == {"low": (3, 1), "high": (2, 0), "medium": (1, 0)}
    assert by["channel"] == {"webchat": (4, 1), "telegram": (1, 0), "email": (1, 0)}
    assert [c.key for c in report.volume["product"]] == ["电饭煲", "耳机"]
    assert by["product"] == {"电饭煲": (2, 1), "耳机": (2, 0)}
    assert by["merchant"] == {"M1": (2, 1), "M2": (2, 0)}
    assert report.volume["category"][0].change == pytest.approx(1.0)
    change = report.changes()
    assert change["tickets"] == pytest.approx(5.0)
    assert change["resolution_rate"] == pytest.approx(4 / 6 - 1.0)
    assert change["satisfaction_overall"] == pytest.approx(0.0)
    assert change["avg_first_response_seconds"] is None  # nobody answered the week before
    assert [(c.key, c.count, c.previous) for c in report.improve_aspects] == [
        ("result", 1, 1), ("response_speed", 1, 0)]
    assert [(m.text, m.count) for m in report.suggestions] == [("快一点", 2)]
    assert [(m.text, m.count) for m in report.unanswered] == [("发票怎么开", 7), ("几点发货", 2)]


async def test_an_empty_period_has_no_rates(store: TicketStore) -> None:
    report = await build_report(store.engine, WEEK)
    assert report.current.tickets == 0
    assert report.current.resolution_rate is None
    assert report.current.avg_handling_seconds is None
    assert all(v is None for v in report.changes().values())
    assert json.loads(render_text(report, "json"))["current"]["tickets"] == 0


# ---- formats --------------------------------------------------------------------------------


async def test_text_formats(store: TicketStore) -> None:
    report = await make_report(store)
    data = json.loads(render_text(report, "json"))
    assert data["current"]["tickets"] == 6
    assert data["change"]["tickets"] == 5.0
    assert data["volume"]["product"][0] == {"key": "电饭煲", "count": 2, "previous": 1,
                                            "change": 1.0}
    rows = list(csv.DictReader(io.StringIO(render_text(report, "csv"))))
    figure = {r["key"]: r for r in rows if r["section"] == "figure"}
    assert figure["tickets"]["current"] == "6" and figure["tickets"]["previous"] == "1"
    assert {r["key"] for r in rows if r["section"] == "merchant"} == {"M1", "M2"}
    markdown = render_text(report, "md")
    assert "| tickets | 6 | 1 | 500.0% |" in markdown
    assert "| 发票怎么开 | 7 |" in markdown
    with pytest.raises(InvalidReport):
        render_text(report, "xml")


# ---- the command line -----------------------------------------------------------------------


@pytest.fixture
def seeded_dir(tmp_path: Path) -> Path:
    """A data directory whose database holds the data set (the command runs its own loop)."""

    async def fill() -> None:
        store = await TicketStore.open(f"sqlite+aiosqlite:///{tmp_path / 'intakebot.db'}")
        try:
            await seed(store.engine)
        finally:
            await store.close()

    asyncio.run(fill())
    return tmp_path


def run_cli(*args: str) -> Any:
    from bot.cli import app

    return CliRunner().invoke(app, ["report", *args])


ARGS = ("--period", "week", "--from", "2026-11-04")


@pytest.mark.parametrize("fmt", ["md", "json", "csv"])
def test_cli_text_formats(seeded_dir: Path, fmt: str) -> None:
    result = run_cli(*ARGS, "--format", fmt, "--data-dir", str(seeded_dir))
    assert result.exit_code == 0, result.output
    if fmt == "json":
        assert json.loads(result.stdout)["current"]["tickets"] == 6
    elif fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(result.stdout)))
        assert any(r["key"] == "tickets" and r["current"] == "6" for r in rows)
    else:
        assert "# Complaint report 2026-W45" in result.stdout


def test_cli_html_and_png(seeded_dir: Path) -> None:
    html = seeded_dir / "report.html"
    result = run_cli(*ARGS, "--format", "html", "--out", str(html), "--data-dir",
                     str(seeded_dir))
    assert result.exit_code == 0, result.output
    page = html.read_text(encoding="utf-8")
    assert page.count('<img src="data:image/png;base64,') >= 3
    assert "电饭煲" in page
    png = seeded_dir / "report.png"
    result = run_cli(*ARGS, "--format", "png", "--out", str(png), "--data-dir", str(seeded_dir))
    assert result.exit_code == 0, result.output
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_cli_refuses_bad_input(seeded_dir: Path) -> None:
    result = run_cli("--format", "png", "--data-dir", str(seeded_dir))
    assert result.exit_code == 2 and "--out" in result.output
    result = run_cli("--period", "year", "--data-dir", str(seeded_dir))
    assert result.exit_code == 2 and "week or month" in result.output
    result = run_cli("--format", "pdf", "--data-dir", str(seeded_dir))
    assert result.exit_code == 2 and "format" in result.output


# ---- the repeat and return rules, on tickets registered through the store --------------------


async def register(store: TicketStore, when: datetime, chat: str, *,
                   customer: str | None = None, order: str | None = None) -> str:
    """A ticket registered as the bot does (so `relink` keeps its neighbours); its id."""
    draft = TicketDraft(
        channel="webchat", chat_id=chat, lang="zh-Hans", description="…", category="product",
        subcategory=None, priority="low", priority_reasons=(), sla_hours=24,
        emotion="neutral", reason=HandoffReason.NEEDS_INVESTIGATION, customer_id=customer,
        order_id=order)
    registration = await store.register(draft, department="quality", receiver="bot",
                                        now=when)
    return registration.ticket.id


async def close(store: TicketStore, *ids: str) -> None:
    async with store.engine.begin() as conn:
        await conn.execute(update(TicketRow).where(TicketRow.id.in_(ids)).values(
            status="closed", open_key=None))


async def test_the_repeat_and_return_windows_are_inclusive(store: TicketStore) -> None:
    second = timedelta(seconds=1)
    await register(store, cst(3, 10, month=10), "k1", customer="K")
    await register(store, cst(2, 10), "k2", customer="K")  # exactly 30 days later: a repeat
    await register(store, cst(3, 10, month=10) - second, "l1", customer="L")
    await register(store, cst(2, 10), "l2", customer="L")  # 30 days and a second: not
    await register(store, cst(3, 11, month=10), "o1", customer="P", order="OX")
    await register(store, cst(2, 11), "o2", customer="Q", order="OX")  # same order, 30 days
    r1 = await register(store, cst(2, 12), "r1", customer="R")
    await register(store, cst(9, 12), "r2", customer="R")  # back exactly 7 days later
    s1 = await register(store, cst(2, 13), "s1", customer="S")
    await register(store, cst(9, 13) + second, "s2", customer="S")  # 7 days and a second
    await close(store, r1, s1)
    report = await build_report(store.engine, WEEK)
    assert report.current.tickets == 5
    assert report.current.repeat == 2  # k2 and o2
    assert report.current.first_contact_resolved == 1  # s1


async def test_tickets_registered_out_of_order_or_identified_later(store: TicketStore) -> None:
    from tests.handoff.test_retention import neighbours

    b = await register(store, cst(4, 10), "b", customer="Z")
    d = await register(store, cst(20, 10), "d", customer="Z")
    a = await register(store, cst(20, 10, month=10), "a", customer="Z")  # earlier than b
    assert (await neighbours(store, a))[1:3] == (None, cst(4, 10))
    assert (await neighbours(store, b))[1:3] == (cst(20, 10, month=10), cst(20, 10))
    assert (await neighbours(store, d))[1:3] == (cst(4, 10), None)
    assert (await build_report(store.engine, WEEK)).current.repeat == 1  # b, 15 days after a
    # A conversation registered without an id, then identified as Z: it joins Z's chain.
    e = await register(store, cst(5, 10), "e")
    assert (await neighbours(store, e))[:2] == ("webchat:e", None)
    assert await register(store, cst(5, 11), "e", customer="Z") == e  # the open ticket
    assert (await neighbours(store, e))[:3] == ("Z", cst(4, 10), cst(20, 10))
    assert (await neighbours(store, b))[2] == cst(5, 10)
    assert (await build_report(store.engine, WEEK)).current.repeat == 2  # b and e
