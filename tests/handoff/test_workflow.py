"""Casework on the ticket store itself, on SQLite and PostgreSQL: claims under contention, the
status machine, SLA breaches on a controllable clock, and live events."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from handoff.desk import SqlTicketDesk
from handoff.errors import Forbidden, InvalidTransition
from handoff.intake import HandoffReason, TicketDraft
from handoff.live import InProcessEvents
from handoff.sla import (
    Breach,
    BusinessHours,
    ManualClock,
    SlaPolicy,
    add_working_days,
    parse_hours,
)
from handoff.tickets import TicketStore
from handoff.users import Role, User, UserStore
from handoff.wording import WordingGuard
from handoff.workflow import TRANSITIONS, Casework

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)  # a Monday


@dataclass
class FakeRelay:
    """Records what would reach the customer's conversation."""

    sent: list[tuple[str, str, str]] = field(default_factory=list)

    async def agent_message(self, channel: str, chat_id: str, text: str, *,
                            message_id: str) -> None:
        self.sent.append(("agent", chat_id, text))

    async def command(self, channel: str, chat_id: str, command: str, *,
                      message_id: str) -> None:
        self.sent.append(("system", chat_id, command))


def draft(chat_id: str = "c1", priority: str = "high", hours: int = 2) -> TicketDraft:
    return TicketDraft(
        channel="webchat", chat_id=chat_id, lang="zh-Hans", description="电饭煲漏电",
        category="product", subcategory=None, priority=priority, priority_reasons=(),
        sla_hours=hours, emotion="anger", reason=HandoffReason.HIGH_PRIORITY)


def agent(name: str, role: Role = Role.AGENT) -> User:
    return User(id=name, username=name, role=role, department=None)


async def registered(store: TicketStore, chat_id: str = "c1") -> str:
    receipt = await SqlTicketDesk(store, clock=lambda: NOW).register(draft(chat_id))
    return receipt.ticket_id


def casework(store: TicketStore, clock: ManualClock,
             events: InProcessEvents | None = None) -> tuple[Casework, FakeRelay]:
    relay = FakeRelay()
    return Casework(store, relay, events or InProcessEvents(), clock=clock), relay


async def test_ten_concurrent_claims_exactly_one_wins(store: TicketStore) -> None:
    work, relay = casework(store, ManualClock(NOW))
    ticket_id = await registered(store)
    results = await asyncio.gather(*(work.claim(ticket_id, agent(f"a{i}")) for i in range(10)),
                                   return_exceptions=True)
    winners = [r for r in results if not isinstance(r, BaseException)]
    losers = [r for r in results if isinstance(r, BaseException)]
    assert len(winners) == 1 and len(losers) == 9
    assert all(isinstance(e, InvalidTransition) and "already claimed" in str(e)
               for e in losers)
    ticket = await store.get(ticket_id)
    assert ticket.assignee == winners[0].assignee and ticket.status == "assigned"
    assert relay.sent == [("system", "c1", "/takeover")]


async def test_status_machine_and_history(store: TicketStore) -> None:
    clock = ManualClock(NOW)
    work, relay = casework(store, clock)
    ticket_id = await registered(store)
    alice, sue = agent("alice"), agent("sue", Role.SUPERVISOR)
    with pytest.raises(InvalidTransition):
        await work.close(ticket_id, sue)
    await work.claim(ticket_id, alice)
    clock.advance(timedelta(minutes=5))
    await work.message(ticket_id, alice, "您好")
    with pytest.raises(Forbidden):
        await work.decide(ticket_id, alice, approve=True)
    from decimal import Decimal

    waiting = await work.resolve(ticket_id, alice, solution="refund", amount=Decimal("800"),
                                 note=None)
    assert waiting.status == "awaiting_approval"
    resolved = await work.decide(ticket_id, sue, approve=True)
    assert resolved.status == "resolved" and resolved.resolved_at == clock.now
    closed = await work.close(ticket_id, alice, feedback="满意")
    assert closed.status == "closed" and not closed.is_open
    assert await store.open_ticket("webchat", "c1") is None
    view = await work.view(ticket_id, sue)
    assert [h["stage"] for h in view["history"]] == [
        "new", "assigned", "awaiting_approval", "resolved", "closed"]
    assert view["history"][-1]["actual_at"] == clock.now.isoformat()
    assert [s[2] for s in relay.sent if s[0] == "system"] == ["/takeover", "/handback"]
    reopened = await work.reopen(ticket_id, sue, reason="客户说没收到退款")
    assert reopened.status == "reopened" and reopened.is_open


def test_every_status_has_transitions_and_closed_only_reopens() -> None:
    assert TRANSITIONS[next(s for s in TRANSITIONS if s.value == "closed")] == {
        next(s for s in TRANSITIONS if s.value == "reopened")}


async def test_sla_breach_on_a_controllable_clock(store: TicketStore) -> None:
    clock = ManualClock(NOW)
    events = InProcessEvents()
    work, _ = casework(store, clock, events)
    ticket_id = await registered(store)
    async with events.subscribe() as queue:
        assert await work.check_sla() == []
        clock.advance(timedelta(hours=2, minutes=1))
        flagged = await work.check_sla()
        assert [(t.id, b) for t, b in flagged] == [(ticket_id, [Breach.FIRST_RESPONSE])]
        event = queue.get_nowait()
        assert event["type"] == "sla_breach" and event["breaches"] == ["first_response"]
        assert await work.check_sla() == []  # flagged once
        clock.advance(timedelta(hours=22))
        assert [b for _, b in await work.check_sla()] == [[Breach.RESOLUTION]]
    ticket = await store.get(ticket_id)
    assert ticket.breaches == ("first_response", "resolution")


async def test_a_first_response_in_time_is_no_breach(store: TicketStore) -> None:
    clock = ManualClock(NOW)
    work, _ = casework(store, clock)
    ticket_id = await registered(store)
    await work.claim(ticket_id, agent("alice"))
    await work.message(ticket_id, agent("alice"), "您好，我来处理")
    clock.advance(timedelta(hours=3))
    assert await work.check_sla() == []


async def test_merchant_copy_breaches_after_24_hours(store: TicketStore) -> None:
    clock = ManualClock(NOW)
    work, _ = casework(store, clock)
    work.sla = SlaPolicy(resolution_hours={"high": 1000, "medium": 1000, "low": 1000})
    ticket_id = await registered(store)
    alice = agent("alice")
    await work.claim(ticket_id, alice)
    await work.message(ticket_id, alice, "您好")
    await work.copy_merchant(ticket_id, alice, "某旗舰店")
    clock.advance(timedelta(hours=25))
    assert [b for _, b in await work.check_sla()] == [[Breach.MERCHANT]]


async def test_a_business_hours_breach_waits_for_the_next_working_day(
        store: TicketStore) -> None:
    office = BusinessHours.parse("09:00-18:00")  # Monday-Friday, Shanghai
    friday_evening = datetime(2026, 11, 27, 9, 30, tzinfo=UTC)  # 17:30 in Shanghai
    clock = ManualClock(friday_evening)
    work, _ = casework(store, clock)
    work.sla = SlaPolicy(business_hours=office)
    desk = SqlTicketDesk(store, clock=clock, due=work.sla.due)
    ticket_id = (await desk.register(draft())).ticket_id
    ticket = await store.get(ticket_id)
    assert ticket.sla_due == datetime(2026, 11, 30, 2, 30, tzinfo=UTC)  # Monday 10:30
    clock.advance(timedelta(hours=3))  # Friday 20:30: calendar time would have breached
    assert await work.check_sla() == []
    clock.now = datetime(2026, 11, 30, 2, 31, tzinfo=UTC)
    assert [b for _, b in await work.check_sla()] == [[Breach.FIRST_RESPONSE]]
    # Staff raising the priority later count from the registration in business time too.
    await work.claim(ticket_id, agent("alice"))
    moved = await work.update(ticket_id, agent("alice"), {"priority": "medium"})
    assert moved.sla_due == datetime(2026, 11, 30, 4, 30, tzinfo=UTC)  # Monday 12:30


async def test_agents_of_a_department_work_on_its_tickets_only(store: TicketStore) -> None:
    work, _ = casework(store, ManualClock(NOW))
    ticket_id = await registered(store)  # a product complaint: quality
    quality = User(id="q", username="quinn", role=Role.AGENT, department="quality")
    logistics = User(id="l", username="lee", role=Role.AGENT, department="logistics")
    anyone = agent("max")
    supervisor = User(id="s", username="sue", role=Role.SUPERVISOR, department="logistics")
    assert [t.id for t in await work.queue(quality)] == [ticket_id]
    assert [t.id for t in await work.queue(anyone)] == [ticket_id]
    assert [t.id for t in await work.queue(supervisor)] == [ticket_id]
    assert await work.queue(logistics) == []
    with pytest.raises(Forbidden, match="own department"):
        await work.queue(logistics, department="quality")
    for action in (work.view(ticket_id, logistics), work.claim(ticket_id, logistics),
                   work.note(ticket_id, logistics, "看看"),
                   work.flag_malicious(ticket_id, logistics, "可疑")):
        with pytest.raises(Forbidden, match="belongs to department quality"):
            await action
    # A held ticket moved to another department stays with its holder until released.
    await work.claim(ticket_id, quality)
    await work.update(ticket_id, quality, {"department": "logistics"})
    assert [t.id for t in await work.queue(quality)] == [ticket_id]
    assert (await work.view(ticket_id, logistics))["department"] == "logistics"
    with pytest.raises(Forbidden, match="handled by quinn"):
        await work.message(ticket_id, logistics, "您好")
    await work.release(ticket_id, quality)
    assert await work.queue(quality) == []
    with pytest.raises(Forbidden):
        await work.view(ticket_id, quality)
    assert (await work.claim(ticket_id, logistics)).assignee == "lee"


async def test_investigation_due_in_working_days() -> None:
    friday = datetime(2026, 11, 27, 2, 0, tzinfo=UTC)
    assert add_working_days(friday, 3) == datetime(2026, 12, 2, 2, 0, tzinfo=UTC)
    assert add_working_days(friday, 5) == datetime(2026, 12, 4, 2, 0, tzinfo=UTC)
    assert parse_hours("high=1, low=9") == {"high": 1, "low": 9}
    with pytest.raises(ValueError):
        parse_hours("urgent=1")


def test_wording_guard() -> None:
    guard = WordingGuard()
    assert guard.violations("我们 绝对 保证") == ("绝对保证",)
    assert guard.violations("最终方案以调查结果为准") == ()
    assert WordingGuard.of(["包赔"]).violations("包赔到底") == ("包赔",)


async def test_users_passwords_and_tokens(store: TicketStore) -> None:
    from handoff.errors import InvalidTicket, Unauthenticated, UserExists

    users = UserStore(store.engine)
    user = await users.add("alice", "long-password", "agent", department="quality")
    with pytest.raises(UserExists):
        await users.add("alice", "long-password", "agent")
    with pytest.raises(InvalidTicket):
        await users.add("bob", "short", "agent")
    with pytest.raises(InvalidTicket):
        await users.add("bob", "long-password", "boss")
    with pytest.raises(Unauthenticated):
        await users.login("alice", "wrong-password")
    token, logged = await users.login("alice", "long-password", now=NOW)
    assert logged == user and (await users.authenticate(token, now=NOW)) == user
    with pytest.raises(Unauthenticated):
        await users.authenticate(token, now=NOW + timedelta(hours=13))
    await users.logout(token)
    with pytest.raises(Unauthenticated):
        await users.authenticate(token, now=NOW)


async def test_nobody_talks_to_the_customer_without_a_claim(store: TicketStore) -> None:
    work, relay = casework(store, ManualClock(NOW))
    ticket_id = await registered(store)
    with pytest.raises(InvalidTransition, match="claim it first"):
        await work.message(ticket_id, agent("sue", Role.SUPERVISOR), "您好")
    with pytest.raises(Forbidden):
        await work.message(ticket_id, agent("alice"), "您好")
    assert relay.sent == []


async def test_sla_timers_survive_a_restart(sqlite_url: str) -> None:
    store = await TicketStore.open(sqlite_url)
    try:
        ticket_id = await registered(store)
    finally:
        await store.close()
    # A new process: nothing in memory, only what the database holds.
    store = await TicketStore.open(sqlite_url)
    try:
        work, _ = casework(store, ManualClock(NOW + timedelta(hours=3)))
        assert [(t.id, b) for t, b in await work.check_sla()] == [
            (ticket_id, [Breach.FIRST_RESPONSE])]
    finally:
        await store.close()
