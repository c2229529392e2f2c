"""Retention: durations, purge (dry run and executed), legal hold, evidence files, audit."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import async_sessionmaker

from handoff.errors import InvalidTicket, TicketNotFound
from handoff.evidence import EvidenceStore
from handoff.intake import EvidenceRef, HandoffReason, TicketDraft, TranscriptLine
from handoff.retention import (
    Duration,
    RetentionRefused,
    find_ticket,
    parse_duration,
    purge,
    set_legal_hold,
)
from handoff.survey import SurveyRow
from handoff.tickets import (
    CounterRow,
    EvidenceRow,
    OutboxRow,
    Ticket,
    TicketRow,
    TicketStore,
    TranscriptRow,
)
from handoff.workflow import AuditRow, InvestigationRow, NoteRow, StageRow

NOW = datetime(2030, 6, 15, 12, 0, tzinfo=UTC)
LONG_AGO = NOW - timedelta(days=4 * 365)
RECENTLY = NOW - timedelta(days=400)


@dataclass(frozen=True)
class Person:
    name: str
    phone: str
    email: str
    chat_id: str
    channel: str = "webchat"


ALICE = Person("王小明", "13812345678", "wang@example.com", "chat-wang")
BOB = Person("李大海", "13987654321", "li@example.com", "chat-li")


async def seed(store: TicketStore, person: Person, *, closed_at: datetime | None,
               files: tuple[EvidenceRef, ...] = (), hold: bool = False,
               malicious: bool = False, customer_id: str | None = None) -> Ticket:
    """A ticket with every kind of related row, each naming the person and their phone."""
    registered = (closed_at or NOW) - timedelta(days=3)
    story = f"我是{person.name}，电话{person.phone}，电饭煲坏了"
    draft = TicketDraft(
        channel=person.channel, chat_id=person.chat_id, lang="zh", description=story,
        category="product_quality", subcategory=None, priority="medium",
        priority_reasons=(), sla_hours=24, emotion="neutral",
        reason=HandoffReason.NEEDS_INVESTIGATION, customer_name=person.name,
        phone=person.phone, email=person.email, customer_id=customer_id,
        order_id="DD2026112012345", demand_note=f"请联系{person.name}", evidence=files,
        transcript=(TranscriptLine("customer", story, registered),
                    TranscriptLine("bot", f"{person.name}您好，已登记", registered)))
    ticket = (await store.register(draft, department="quality", receiver="intakebot",
                                   now=registered)).ticket
    sessions = async_sessionmaker(store.engine)
    async with sessions() as session, session.begin():
        if closed_at is not None:
            await session.execute(update(TicketRow).where(TicketRow.id == ticket.id).values(
                status="closed", closed_at=closed_at, open_key=None, legal_hold=hold,
                malicious=malicious, malicious_reason=f"{person.name} 职业索赔" if malicious
                else None, solution_note=f"已电话{person.phone}沟通"))
        session.add(StageRow(ticket_id=ticket.id, stage="closed", owner="alice",
                             result=f"refund to {person.name}", feedback=f"{person.name}满意",
                             next_action=f"call {person.phone}", actor="alice",
                             at=closed_at or registered))
        session.add(NoteRow(ticket_id=ticket.id, author="alice",
                            text=f"{person.name} 的手机 {person.phone}", at=registered))
        session.add(InvestigationRow(
            ticket_id=ticket.id, problem=f"{person.name}的电饭煲", evidence="照片",
            responsible="merchant", proposal=f"退款给{person.name}", complex=False,
            customer_told=True, due=registered, updated_by="alice", updated_at=registered))
        session.add(SurveyRow(ticket_id=ticket.id, method="chat", overall=5,
                              suggestion=f"{person.name}: 请打{person.phone}"))
    await store.outbox.append(person.channel, person.chat_id, author="bot",
                              text=f"{person.name}您好，您的电话{person.phone}已登记",
                              now=registered)
    return await store.get(ticket.id)


async def count(store: TicketStore, table: type[object], **where: object) -> int:
    sessions = async_sessionmaker(store.engine)
    query = select(func.count()).select_from(table)
    for name, value in where.items():
        query = query.where(getattr(table, name) == value)
    async with sessions() as session:
        return int((await session.execute(query)).scalar_one())


async def audits(store: TicketStore, action: str) -> list[AuditRow]:
    sessions = async_sessionmaker(store.engine)
    async with sessions() as session:
        return list((await session.execute(
            select(AuditRow).where(AuditRow.action == action).order_by(AuditRow.id))).scalars())


@pytest.fixture
def evidence(tmp_path: Path) -> EvidenceStore:
    return EvidenceStore(tmp_path / "evidence")


def test_durations_parse_and_count_back_by_the_calendar() -> None:
    assert parse_duration("3y") == Duration(3, "y")
    assert parse_duration(" 36M ") == Duration(36, "m")
    assert parse_duration("1095d") == Duration(1095, "d")
    leap = datetime(2028, 2, 29, tzinfo=UTC)
    assert Duration(3, "y").before(leap) == datetime(2025, 2, 28, tzinfo=UTC)
    assert Duration(36, "m").before(leap) == Duration(3, "y").before(leap)
    assert Duration(1, "m").before(datetime(2030, 3, 31, tzinfo=UTC)) == datetime(
        2030, 2, 28, tzinfo=UTC)
    assert Duration(10, "d").before(NOW) == NOW - timedelta(days=10)
    for bad in ("", "3", "y", "3w", "-3y", "0d", "3y2m", "1" * 7 + "d"):
        with pytest.raises(InvalidTicket):
            parse_duration(bad)


async def test_a_period_under_three_years_is_refused_unless_forced(
        store: TicketStore, evidence: EvidenceStore) -> None:
    await seed(store, ALICE, closed_at=RECENTLY)
    for short in ("2y", "35m", "1094d"):
        with pytest.raises(RetentionRefused, match="at least 3 years"):
            await purge(store, evidence, parse_duration(short), NOW, dry_run=False)
    assert await count(store, TicketRow) == 1
    forced = await purge(store, evidence, parse_duration("1y"), NOW, dry_run=False,
                         force_below_minimum=True, actor="sue")
    assert forced.counts["tickets"] == 1
    (row,) = await audits(store, "retention_purge")
    assert row.actor == "sue" and row.detail["forced"] is True


async def test_dry_run_reports_and_execute_deletes_only_old_closed_unheld_tickets(
        store: TicketStore, evidence: EvidenceStore) -> None:
    shared = await evidence.put("shared.jpg", "image/jpeg", b"shared photo")
    own = await evidence.put("own.jpg", "image/jpeg", b"only the old ticket's photo")
    old = await seed(store, ALICE, closed_at=LONG_AGO, files=(shared, own))
    kept = await seed(store, BOB, closed_at=RECENTLY, files=(shared,))
    held = await seed(store, Person("张三", "13700000000", "z@example.com", "chat-z"),
                      closed_at=LONG_AGO, hold=True)
    flagged = await seed(store, Person("赵四", "13600000000", "s@example.com", "chat-s"),
                         closed_at=LONG_AGO, malicious=True)
    still_open = await seed(store, Person("钱五", "13500000000", "q@example.com", "chat-q"),
                            closed_at=None)
    # A chat that never became a ticket, long quiet: its outbox ages out too.
    await store.outbox.append("webchat", "faq-only", author="bot", text="您好",
                              now=LONG_AGO)
    await store.outbox.append("webchat", "faq-recent", author="bot", text="您好", now=RECENTLY)
    old_audit = AuditRow(ticket_id=old.id, actor="alice", action="reveal_pii", detail={},
                         at=LONG_AGO)
    async with async_sessionmaker(store.engine)() as session, session.begin():
        session.add(old_audit)
    before = {table: await count(store, table) for table in (
        TicketRow, TranscriptRow, EvidenceRow, StageRow, NoteRow, InvestigationRow,
        SurveyRow, OutboxRow, AuditRow)}

    dry = await purge(store, evidence, parse_duration("3y"), NOW)
    assert dry.dry_run and dry.numbers == (old.number,)
    assert set(dry.held) == {held.number, flagged.number}
    assert dry.counts == {"tickets": 1, "ticket_transcript": 2, "ticket_evidence": 2,
                          "ticket_stages": 1, "ticket_notes": 1, "ticket_investigations": 1,
                          "ticket_surveys": 1, "handoff_outbox": 2, "evidence_files": 1}
    assert {table: await count(store, table) for table in before} == before
    assert evidence.exists(own.sha256) and await audits(store, "retention_purge") == []

    done = await purge(store, evidence, parse_duration("36m"), NOW, dry_run=False,
                       actor="cli:ops")
    assert not done.dry_run and done.numbers == (old.number,)
    assert done.counts == dry.counts and done.files == (own.sha256,)
    with pytest.raises(TicketNotFound):
        await store.get(old.id)
    for survivor in (kept, held, flagged, still_open):
        assert (await store.get(survivor.id)).number == survivor.number
    for table in (TranscriptRow, EvidenceRow, StageRow, NoteRow, InvestigationRow, SurveyRow):
        assert await count(store, table, ticket_id=old.id) == 0
        assert await count(store, table) == before[table] - dry.counts[table.__tablename__]
    assert await count(store, OutboxRow, chat_id=ALICE.chat_id) == 0
    assert await count(store, OutboxRow, chat_id="faq-only") == 0
    assert await count(store, OutboxRow, chat_id="faq-recent") == 1
    assert await count(store, OutboxRow, chat_id="chat-z") == 1
    # The file a kept ticket shares survives; the old ticket's own file is gone.
    assert evidence.exists(shared.sha256) and not evidence.exists(own.sha256)
    assert not evidence.path(own.sha256).with_name(own.sha256 + ".json").exists()
    # Audit rows are kept, and the purge wrote its own.
    assert await count(store, AuditRow, action="reveal_pii") == 1
    (row,) = await audits(store, "retention_purge")
    assert row.actor == "cli:ops" and row.ticket_id is None
    assert row.detail["tickets"] == [old.number] and row.detail["counts"] == done.counts
    assert row.detail["older_than"] == "36m" and row.detail["forced"] is False

    again = await purge(store, evidence, parse_duration("3y"), NOW, dry_run=False)
    assert again.numbers == () and again.counts["tickets"] == 0


async def test_legal_hold_is_set_released_and_audited(store: TicketStore,
                                                      evidence: EvidenceStore) -> None:
    ticket = await seed(store, ALICE, closed_at=LONG_AGO)
    assert (await find_ticket(store, ticket.number)).id == ticket.id
    assert (await find_ticket(store, ticket.id)).number == ticket.number
    with pytest.raises(TicketNotFound):
        await find_ticket(store, "TS20000101-0001")
    with pytest.raises(InvalidTicket, match="reason"):
        await set_legal_hold(store, ticket.id, hold=True, actor="sue", reason=" ", now=NOW)
    held = await set_legal_hold(store, ticket.id, hold=True, actor="sue",
                                reason="court case 2030-17", now=NOW)
    assert held.legal_hold
    assert (await purge(store, evidence, parse_duration("3y"), NOW, dry_run=False)
            ).held == (ticket.number,)
    assert (await store.get(ticket.id)).legal_hold
    released = await set_legal_hold(store, ticket.id, hold=False, actor="sue",
                                    reason="case closed", now=NOW)
    assert not released.legal_hold
    rows = await audits(store, "legal_hold") + await audits(store, "legal_hold_released")
    assert [(r.actor, r.ticket_id, r.detail["reason"]) for r in rows] == [
        ("sue", ticket.id, "court case 2030-17"), ("sue", ticket.id, "case closed")]
    assert (await purge(store, evidence, parse_duration("3y"), NOW, dry_run=False)
            ).numbers == (ticket.number,)


async def test_outbox_numbering_survives_a_purge(store: TicketStore,
                                                 evidence: EvidenceStore) -> None:
    await seed(store, ALICE, closed_at=LONG_AGO)
    await purge(store, evidence, parse_duration("3y"), NOW, dry_run=False)
    assert await count(store, CounterRow, name=f"outbox:webchat:{ALICE.chat_id}") == 1
    later = await store.outbox.append("webchat", ALICE.chat_id, author="bot", text="hi")
    assert later.seq == 2  # a returning customer's web chat never sees seq go backwards


async def neighbours(store: TicketStore, ticket_id: str) -> tuple[object, ...]:
    """A ticket's customer key and its customer's previous/next and order's previous times."""
    async with store.engine.connect() as conn:
        row = (await conn.execute(select(
            TicketRow.customer_key, TicketRow.previous_customer_ticket_at,
            TicketRow.next_customer_ticket_at, TicketRow.previous_order_ticket_at)
            .where(TicketRow.id == ticket_id))).one()
    return tuple(None if v is None else v.replace(tzinfo=UTC) if isinstance(v, datetime)
                 else v for v in row)


async def test_a_purge_takes_the_purged_tickets_out_of_the_report_neighbours(
        store: TicketStore, evidence: EvidenceStore) -> None:
    old = await seed(store, ALICE, closed_at=LONG_AGO)
    recent = await seed(store, ALICE, closed_at=RECENTLY)  # same phone and order, later
    assert await neighbours(store, old.id) == (ALICE.phone, None, recent.registered_at, None)
    assert await neighbours(store, recent.id) == (ALICE.phone, old.registered_at, None,
                                                  old.registered_at)
    await purge(store, evidence, parse_duration("3y"), NOW, dry_run=False)
    assert await neighbours(store, recent.id) == (ALICE.phone, None, None, None)
