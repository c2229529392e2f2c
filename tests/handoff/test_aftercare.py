"""After-care planning and sending on the ticket store (SQLite and PostgreSQL), with a relay that
records: what is told (and what is not told twice), quiet hours, the survey window, e-mail links,
and the customer's answers through casework."""

from __future__ import annotations

import json
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import pytest

from handoff.aftercare import Aftercare, AftercarePolicy, parse_quiet_hours, parse_window
from handoff.desk import SqlTicketDesk
from handoff.live import InProcessEvents
from handoff.scheduler import Scheduler
from handoff.sla import ManualClock
from handoff.tickets import TicketStore
from handoff.users import Role
from handoff.workflow import Casework
from tests.handoff.test_workflow import NOW, FakeRelay, agent, draft

SUPERVISOR = agent("sue", Role.SUPERVISOR)


def build(store: TicketStore, clock: ManualClock, **policy: Any
          ) -> tuple[Aftercare, Casework, FakeRelay]:
    relay = FakeRelay()
    work = Casework(store, relay, InProcessEvents(), clock=clock)
    aftercare = Aftercare(store, work, Scheduler(store, clock=clock),
                          policy=AftercarePolicy(**policy),
                          survey_link=lambda ticket_id: f"https://x.test/survey/{ticket_id}")
    return aftercare, work, relay


def told(relay: FakeRelay) -> list[tuple[str, dict[str, Any]]]:
    """The after-care commands sent, as (command, payload)."""
    out = []
    for kind, _, text in relay.sent:
        name, _, payload = text.partition(" ")
        if kind == "system" and name in ("/notify", "/confirm", "/survey"):
            out.append((name, json.loads(payload)))
    return out


async def register(store: TicketStore, clock: ManualClock, chat_id: str = "c1",
                   channel: str = "webchat") -> str:
    base = draft(chat_id)
    from dataclasses import replace

    receipt = await SqlTicketDesk(store, clock=clock).register(replace(base, channel=channel))
    return receipt.ticket_id


def test_quiet_hours_window_and_parsing() -> None:
    policy = AftercarePolicy()
    china = timedelta(hours=8)
    at = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)  # 23:00 in China
    assert policy.out_of_quiet(at) == datetime(2026, 11, 24, 0, 0, tzinfo=UTC)  # 08:00 next day
    early = datetime(2026, 11, 23, 20, 30, tzinfo=UTC)  # 04:30 on the 24th in China
    assert policy.out_of_quiet(early) == datetime(2026, 11, 24, 8, 0, tzinfo=UTC) - china
    day = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)  # 10:00 in China
    assert policy.out_of_quiet(day) == day
    assert AftercarePolicy(quiet_hours=None).out_of_quiet(at) == at
    lunch = AftercarePolicy(quiet_hours=(time(12), time(14)))  # a daytime quiet span
    assert lunch.out_of_quiet(datetime(2026, 11, 23, 5, 0, tzinfo=UTC)) == datetime(
        2026, 11, 23, 6, 0, tzinfo=UTC)
    assert parse_window("24-48") == (timedelta(hours=24), timedelta(hours=48))
    assert parse_quiet_hours("22:00-08:00") == (time(22), time(8))
    assert parse_quiet_hours("off") is None
    for bad in ("48", "48-24", "a-b", "-1-5"):
        with pytest.raises(ValueError):
            parse_window(bad)
    for bad in ("22", "25:00-08:00", "08:00-08:00"):
        with pytest.raises(ValueError):
            parse_quiet_hours(bad)


async def test_stage_changes_are_told_once_and_decisions_not_twice(store: TicketStore) -> None:
    clock = ManualClock(NOW)
    aftercare, work, relay = build(store, clock)
    await aftercare.tick()  # the first run marks where telling starts
    ticket_id = await register(store, clock)
    await work.claim(ticket_id, agent("alice"))
    await work.update(ticket_id, agent("alice"), {"status": "investigating"})
    await work.resolve(ticket_id, agent("alice"), solution="refund", amount=Decimal("800"),
                       note=None)
    await work.decide(ticket_id, SUPERVISOR, approve=False)
    for _ in range(2):
        await aftercare.tick()
    events = [p["event"] for name, p in told(relay) if name == "/notify"]
    # The rejection moved it back to investigating; decide told that itself.
    assert events == ["assigned", "investigating", "awaiting_approval"]
    assert all(p["lang"] == "zh-Hans" and p["number"] for _, p in told(relay))
    ticket = await store.get(ticket_id)
    assert ticket.customer_updated_at == NOW


async def test_confirmation_and_the_customers_answers(store: TicketStore) -> None:
    clock = ManualClock(NOW)
    aftercare, work, relay = build(store, clock)
    await aftercare.tick()
    ticket_id = await register(store, clock)
    await work.claim(ticket_id, agent("alice"))
    await work.resolve(ticket_id, agent("alice"), solution="apology", amount=None, note=None)
    await aftercare.tick()
    await aftercare.tick()
    asks = [p for name, p in told(relay) if name == "/confirm"]
    assert len(asks) == 1 and (await store.get(ticket_id)).confirmation == "asked"

    assert await aftercare.answer_confirmation(ticket_id, solved=False)
    reopened = await store.get(ticket_id)
    assert (reopened.status, reopened.confirmation, reopened.reopen_count) == (
        "reopened", "denied", 1)
    assert not await aftercare.answer_confirmation(ticket_id, solved=True)  # not resolved now
    await work.claim(ticket_id, agent("alice"))
    await work.resolve(ticket_id, agent("alice"), solution="apology", amount=None, note=None)
    await aftercare.tick()
    assert len([p for name, p in told(relay) if name == "/confirm"]) == 2  # asked again
    assert await aftercare.answer_confirmation(ticket_id, solved=True)
    closed = await store.get(ticket_id)
    assert (closed.status, closed.confirmation, closed.closed_at) == ("closed", "confirmed", NOW)
    before = len(told(relay))
    await aftercare.tick()
    assert [name for name, _ in told(relay)[before:]] == []  # the customer's own acts: silent


async def test_updates_respect_news_and_quiet_hours(store: TicketStore) -> None:
    clock = ManualClock(NOW)  # 10:00 in China
    aftercare, _, relay = build(store, clock, update_every=timedelta(days=3))
    ticket_id = await register(store, clock)
    clock.advance(timedelta(days=3, hours=12))  # 22:00 in China: quiet
    await aftercare.tick()
    assert told(relay) == []
    job = await aftercare.scheduler.get(f"update:{ticket_id}:{int(NOW.timestamp())}")
    assert job is not None and job.due_at == datetime(2026, 11, 27, 0, 0, tzinfo=UTC)
    clock.advance(timedelta(hours=10))  # 08:00
    await aftercare.tick()
    assert [(n, p["event"], p["status"]) for n, p in told(relay)] == [("/notify", "update",
                                                                      "new")]
    clock.advance(timedelta(days=2))
    await aftercare.tick()
    assert len(told(relay)) == 1


async def test_the_survey_window_and_the_email_link(store: TicketStore) -> None:
    clock = ManualClock(NOW)
    aftercare, work, relay = build(store, clock)
    chat = await register(store, clock, "c1")
    mail = await register(store, clock, "m1", channel="email")
    old = await register(store, clock, "c2")
    for ticket_id in (chat, mail, old):
        await work.claim(ticket_id, agent("alice"))
        await work.resolve(ticket_id, agent("alice"), solution="apology", amount=None,
                           note=None)
        await work.close(ticket_id, agent("alice"))
    clock.advance(timedelta(hours=23))
    await aftercare.tick()
    assert [n for n, _ in told(relay) if n == "/survey"] == []
    clock.advance(timedelta(hours=1))
    await aftercare.tick()
    surveys = {p["ticket_id"]: p for n, p in told(relay) if n == "/survey"}
    assert set(surveys) == {chat, mail, old}
    assert "link" not in surveys[chat] and surveys[mail]["link"].endswith(mail)
    assert (await aftercare.surveys.get(mail)).method == "web"  # type: ignore[union-attr]
    await aftercare.tick()
    clock.advance(timedelta(days=5))
    await aftercare.tick()
    assert len([n for n, _ in told(relay) if n == "/survey"]) == 3  # once per ticket


async def test_a_survey_whose_window_passed_is_not_sent(store: TicketStore) -> None:
    clock = ManualClock(NOW)
    aftercare, work, relay = build(store, clock)
    ticket_id = await register(store, clock)
    await work.claim(ticket_id, agent("alice"))
    await work.resolve(ticket_id, agent("alice"), solution="apology", amount=None, note=None)
    await work.close(ticket_id, agent("alice"))
    await aftercare.plan()  # scheduled for +24 h …
    clock.advance(timedelta(hours=50))  # … but the workers were down past the window
    await aftercare.tick()
    assert [n for n, _ in told(relay) if n == "/survey"] == []
    assert await aftercare.surveys.get(ticket_id) is None


async def test_low_overall_score_starts_second_handling_once(store: TicketStore) -> None:
    clock = ManualClock(NOW)
    aftercare, work, _ = build(store, clock)
    ticket_id = await register(store, clock)
    await work.claim(ticket_id, agent("alice"))
    await work.resolve(ticket_id, agent("alice"), solution="apology", amount=None, note=None)
    await work.close(ticket_id, agent("alice"))
    await aftercare.surveys.start(ticket_id, "chat", clock())
    events = work.events
    assert isinstance(events, InProcessEvents)
    async with events.subscribe() as queue:
        await aftercare.answer_survey(ticket_id, {"timeliness": 3})
        survey = await aftercare.answer_survey(ticket_id, {"overall": 1})
        await aftercare.answer_survey(ticket_id, {"overall": 2})
        seen = [queue.get_nowait() for _ in range(queue.qsize())]
    assert survey.second_handling and survey.timeliness == 3
    ticket = await store.get(ticket_id)
    assert ticket.status == "reopened" and ticket.second_handling and ticket.assignee is None
    supervisor = [e for e in seen if e.get("audience") == "supervisor"]
    assert len(supervisor) == 1 and supervisor[0]["overall"] == 1
    audit = await work.audit_log(ticket_id, SUPERVISOR)
    assert [a["action"] for a in audit].count("second_handling") == 1
