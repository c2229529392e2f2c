"""The ticket store on SQLite and PostgreSQL: the registration form, numbers, the open ticket."""

from __future__ import annotations

import asyncio
import importlib
import os
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import event, inspect, text
from sqlalchemy.engine import Connection

from handoff.errors import InvalidTicket, TicketNotFound
from handoff.intake import EvidenceRef, HandoffReason, TicketDraft, TranscriptLine
from handoff.tickets import (
    POSTGRES_REPORT_INDEX,
    SQLITE_REPORT_INDEXES,
    VERSION_TABLE,
    Base,
    TicketStatus,
    TicketStore,
)

# The casework and staff tables live in these modules; importing them puts them in Base's
# metadata, so the migration checks below cover revision ho0002 as well.
importlib.import_module("handoff.users")
importlib.import_module("handoff.workflow")
importlib.import_module("handoff.scheduler")
importlib.import_module("handoff.survey")

NOW = datetime(2026, 11, 23, 2, 30, tzinfo=UTC)  # 10:30 in China
EARLIER = NOW - timedelta(minutes=3)
NUMBER = re.compile(r"TS\d{8}-\d{4}")


def draft(chat_id: str = "c1", **changes: object) -> TicketDraft:
    base = TicketDraft(
        channel="webchat", chat_id=chat_id, lang="zh-Hans",
        description="收到的电水壶漏电，手被电了一下", category="product",
        subcategory="quality_defect", priority="high", priority_reasons=("personal_safety",),
        sla_hours=2, emotion="anger", reason=HandoffReason.HIGH_PRIORITY,
        customer_name="王女士", phone="13812345678", order_id="DD20261120001",
        product="电水壶", demand="refund", amount=199.0, currency="CNY",
        evidence=(EvidenceRef("kettle.jpg", "image/jpeg", "a" * 64, 1234),),
        transcript=(
            TranscriptLine("customer", "收到的电水壶漏电，手被电了一下", EARLIER),
            TranscriptLine("system", "非常抱歉给您带来困扰", EARLIER),
        ),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


async def test_register_stores_the_whole_form(store: TicketStore) -> None:
    reg = await store.register(draft(), department="quality", receiver="intakebot", now=NOW)
    ticket = reg.ticket
    assert reg.created
    assert NUMBER.fullmatch(ticket.number) and ticket.number == "TS20261123-0001"
    assert ticket.status == TicketStatus.NEW.value and ticket.is_open
    assert (ticket.channel, ticket.chat_id, ticket.lang) == ("webchat", "c1", "zh-Hans")
    assert (ticket.category, ticket.subcategory) == ("product", "quality_defect")
    assert (ticket.priority, ticket.priority_reasons, ticket.emotion) == (
        "high", ("personal_safety",), "anger")
    assert ticket.customer_name == "王女士" and ticket.phone == "13812345678"
    assert ticket.order_id == "DD20261120001" and ticket.product == "电水壶"
    assert ticket.demand == "refund"
    assert ticket.amount == Decimal("199.00") and ticket.currency == "CNY"
    assert ticket.department == "quality" and ticket.receiver == "intakebot"
    assert ticket.handoff_reason == "high_priority"
    assert ticket.registered_at == NOW
    assert ticket.complained_at == NOW - timedelta(minutes=3)
    assert ticket.sla_hours == 2 and ticket.sla_due == NOW + timedelta(hours=2)
    assert await store.get(ticket.id) == ticket
    assert await store.by_number(ticket.number) == ticket
    assert await store.open_ticket("webchat", "c1") == ticket
    assert await store.open_ticket_id("webchat", "c1") == ticket.id
    assert [(line.author, line.text) for line in await store.transcript(ticket.id)] == [
        ("customer", "收到的电水壶漏电，手被电了一下"), ("system", "非常抱歉给您带来困扰")]
    assert await store.evidence(ticket.id) == [
        EvidenceRef("kettle.jpg", "image/jpeg", "a" * 64, 1234)]
    assert ticket.to_dict()["amount"] == "199.00"


async def test_register_on_an_open_ticket_updates_it(store: TicketStore) -> None:
    first = await store.register(
        draft(order_id=None, product=None, priority="medium", priority_reasons=(), sla_hours=4,
              emotion="neutral"),
        department="quality", receiver="intakebot", now=NOW)
    later = NOW + timedelta(minutes=5)
    more = draft(
        order_id="DD1", product="电水壶", customer_name="李四", priority="high",
        priority_reasons=("personal_safety",), sla_hours=2, emotion="anger",
        evidence=(EvidenceRef("kettle.jpg", "image/jpeg", "a" * 64, 1234),
                  EvidenceRef("cable.png", "image/png", "b" * 64, 99)),
        transcript=(*draft().transcript, TranscriptLine("customer", "订单号 DD1", later)),
    )
    second = await store.register(more, department="quality", receiver="intakebot", now=later)
    assert not second.created
    ticket = second.ticket
    assert (ticket.id, ticket.number) == (first.ticket.id, first.ticket.number)
    assert ticket.order_id == "DD1" and ticket.product == "电水壶"
    assert ticket.customer_name == "王女士"  # filled fields are kept
    assert ticket.priority == "high" and ticket.sla_due == NOW + timedelta(hours=2)
    assert ticket.emotion == "anger" and ticket.updated_at == later
    lines = await store.transcript(ticket.id)
    assert [line.text for line in lines] == [
        "收到的电水壶漏电，手被电了一下", "非常抱歉给您带来困扰", "订单号 DD1"]
    assert [e.filename for e in await store.evidence(ticket.id)] == ["kettle.jpg", "cable.png"]
    # A lower priority never lowers the ticket's.
    third = await store.register(draft(priority="low", sla_hours=24), department="quality",
                                 receiver="intakebot", now=later)
    assert third.ticket.priority == "high" and third.ticket.sla_due == NOW + timedelta(hours=2)
    assert len(await store.recent()) == 1


async def test_unclassified_ticket_is_rerouted_once_classified(store: TicketStore) -> None:
    await store.register(draft(category=None, subcategory=None), department="customer_service",
                         receiver="intakebot", now=NOW)
    reg = await store.register(draft(category="logistics", subcategory="delay"),
                               department="logistics", receiver="intakebot", now=NOW)
    assert (reg.ticket.category, reg.ticket.department) == ("logistics", "logistics")


async def test_complaint_numbers_unique_under_50_concurrent_registrations(
        store: TicketStore) -> None:
    registrations = await asyncio.gather(*[
        store.register(draft(f"chat-{i}"), department="quality", receiver="intakebot", now=NOW)
        for i in range(50)])
    numbers = sorted(r.ticket.number for r in registrations)
    assert numbers == [f"TS20261123-{n:04d}" for n in range(1, 51)]
    assert all(r.created for r in registrations)


async def test_concurrent_registrations_of_one_conversation_make_one_ticket(
        store: TicketStore) -> None:
    registrations = await asyncio.gather(*[
        store.register(draft("same"), department="quality", receiver="intakebot", now=NOW)
        for _ in range(10)])
    assert len({r.ticket.id for r in registrations}) == 1
    assert sum(r.created for r in registrations) == 1
    assert len(await store.transcript(registrations[0].ticket.id)) == 2


async def test_numbers_count_per_day_in_china_time(store: TicketStore) -> None:
    late = datetime(2026, 11, 23, 16, 30, tzinfo=UTC)  # 00:30 on the 24th in China
    a = await store.register(draft("a"), department="quality", receiver="x", now=NOW)
    b = await store.register(draft("b"), department="quality", receiver="x", now=late)
    c = await store.register(draft("c"), department="quality", receiver="x", now=late)
    assert [t.ticket.number for t in (a, b, c)] == [
        "TS20261123-0001", "TS20261124-0001", "TS20261124-0002"]


async def test_append_goes_to_the_open_ticket_only(store: TicketStore) -> None:
    line = TranscriptLine("customer", "还在吗", NOW)
    assert await store.append("webchat", "nobody", line) is None
    reg = await store.register(draft(), department="quality", receiver="x", now=NOW)
    assert await store.append("webchat", "c1", line) == reg.ticket.id
    assert (await store.transcript(reg.ticket.id))[-1].text == "还在吗"


async def test_append_once_skips_a_line_the_ticket_has(store: TicketStore) -> None:
    reg = await store.register(draft(), department="quality", receiver="x", now=NOW)
    line = TranscriptLine("customer", "还在吗", NOW + timedelta(minutes=1))
    assert await store.append("webchat", "c1", line, once=True) == reg.ticket.id
    assert await store.append("webchat", "c1", line, once=True) is None  # handled again
    later = TranscriptLine("customer", "还在吗", NOW + timedelta(minutes=2))  # said again
    assert await store.append("webchat", "c1", later, once=True) == reg.ticket.id
    assert await store.append("webchat", "c1", line) == reg.ticket.id  # without once: kept
    texts = [(t.text, t.at) for t in await store.transcript(reg.ticket.id)]
    assert texts.count(("还在吗", line.at)) == 2 and texts.count(("还在吗", later.at)) == 1


async def test_bad_forms_are_refused(store: TicketStore) -> None:
    with pytest.raises(InvalidTicket):
        await store.register(draft(priority="urgent"), department="q", receiver="x", now=NOW)
    with pytest.raises(InvalidTicket):
        await store.register(draft(chat_id="x" * 200), department="q", receiver="x", now=NOW)
    with pytest.raises(InvalidTicket):
        await store.register(draft(sla_hours=0), department="q", receiver="x", now=NOW)
    with pytest.raises(TicketNotFound):
        await store.get("no-such-ticket")
    with pytest.raises(TicketNotFound):
        await store.by_number("TS19990101-0001")
    assert await store.recent() == []


async def test_outbox_numbers_each_conversation(store: TicketStore) -> None:
    first = await store.outbox.append("webchat", "a", author="system", text="您好",
                                      buttons=["是", "否"])
    await store.outbox.append("webchat", "b", author="system", text="hello")
    second = await store.outbox.append("webchat", "a", author="agent", text="我是客服小王")
    assert (first.seq, second.seq) == (1, 2)
    assert first.buttons == ("是", "否")
    assert [m.text for m in await store.outbox.after("webchat", "a")] == ["您好", "我是客服小王"]
    assert [m.seq for m in await store.outbox.after("webchat", "a", 1)] == [2]
    assert await store.outbox.after("webchat", "nobody") == []
    assert first.to_dict()["buttons"] == ["是", "否"]


async def test_outbox_dedup_key_stores_once(store: TicketStore) -> None:
    sent = await asyncio.gather(*[
        store.outbox.append("webchat", "a", author="system", text="太长了", dedup_key="k1")
        for _ in range(5)])
    assert {m.seq for m in sent} == {1}
    assert len(await store.outbox.after("webchat", "a")) == 1


async def test_outbox_seq_unique_under_concurrency(store: TicketStore) -> None:
    sent = await asyncio.gather(*[
        store.outbox.append("webchat", "a", author="system", text=str(i)) for i in range(30)])
    assert sorted(m.seq for m in sent) == list(range(1, 31))


async def test_outbox_on_one_sqlite_file_from_two_stores(sqlite_url: str) -> None:
    """Two processes on one SQLite file: each store writes its outbox in worker threads
    (`TicketStore.sync_engine`), and the file's lock keeps the numbering whole."""
    first = await TicketStore.open(sqlite_url)
    second = await TicketStore.open(sqlite_url)
    try:
        assert first.sync_engine is not None and second.sync_engine is not None
        sent = await asyncio.gather(*[
            store.outbox.append_many("webchat", "a", author="bot", texts=["a", "b"],
                                     buttons=[(), ()], dedup_keys=[f"{n}.{i}a", f"{n}.{i}b"])
            for i in range(20) for n, store in enumerate((first, second))])
        again = await second.outbox.append_many(  # a redelivery, answered from the rows
            "webchat", "a", author="bot", texts=["a", "b"], buttons=[(), ()],
            dedup_keys=["0.0a", "0.0b"])
    finally:
        await first.close()
        await second.close()
    assert sorted(m.seq for batch in sent for m in batch) == list(range(1, 81))
    assert all(b[1].seq == b[0].seq + 1 for b in sent)  # a batch stays together
    assert [m.seq for m in again] == [m.seq for m in sent[0]]


async def test_hot_ticket_writes_on_one_sqlite_file_from_two_stores(sqlite_url: str) -> None:
    """Registration, transcript appends and the open-ticket query run whole in worker threads
    on the synchronous engine (`TicketStore._transact`); two stores on one file racing on one
    conversation still make one ticket with every line once."""
    first = await TicketStore.open(sqlite_url)
    second = await TicketStore.open(sqlite_url)
    on_sync: list[str] = []
    try:
        for store in (first, second):
            assert store.sync_engine is not None
            event.listen(store.sync_engine, "before_cursor_execute",
                         lambda _c, _cur, statement, *_: on_sync.append(statement.split()[0]))
        registrations = await asyncio.gather(*[
            store.register(draft("same"), department="quality", receiver="x", now=NOW)
            for _ in range(5) for store in (first, second)])
        appended = await asyncio.gather(*[
            store.append("webchat", "same", TranscriptLine("customer", f"第{n}.{i}句", NOW),
                         once=True)
            for i in range(10) for n, store in enumerate((first, second))])
        ticket_id = await second.open_ticket_id("webchat", "same")
        lines = await first.transcript(registrations[0].ticket.id)
    finally:
        await first.close()
        await second.close()
    assert len({r.ticket.id for r in registrations}) == 1
    assert sum(r.created for r in registrations) == 1
    assert ticket_id == registrations[0].ticket.id
    assert appended == [ticket_id] * 20
    assert sorted(line.text for line in lines if line.text.startswith("第")) == sorted(
        f"第{n}.{i}句" for i in range(10) for n in range(2))
    assert {"INSERT", "SELECT", "UPDATE"} <= set(on_sync)


async def test_ping(store: TicketStore) -> None:
    await store.ping()


# Indexes only one database gets (Index.ddl_if), by name.
_ONE_DATABASE_ONLY = {**{columns[0]: "sqlite" for columns in SQLITE_REPORT_INDEXES},
                      POSTGRES_REPORT_INDEX: "postgresql"}


def _diff(conn: Connection) -> list[object]:
    def ours(name: str | None, type_: str, _parents: object) -> bool:
        return type_ != "table" or name in Base.metadata.tables

    def this_dialects(_obj: object, name: str | None, type_: str, _reflected: bool,
                      _compare_to: object) -> bool:
        # Alembic does not read Index.ddl_if: an index made for one database only is left
        # out of the comparison on the others.
        only = _ONE_DATABASE_ONLY.get(name or "") if type_ == "index" else None
        return only is None or only == conn.dialect.name

    context = MigrationContext.configure(
        conn, opts={"version_table": VERSION_TABLE, "include_name": ours,
                    "include_object": this_dialects})
    return list(compare_metadata(context, Base.metadata))


async def test_migrations_match_the_models(sqlite_url: str) -> None:
    store = await TicketStore.open(sqlite_url)
    try:
        async with store._engine.connect() as conn:
            assert await conn.run_sync(_diff) == []
    finally:
        await store.close()


async def test_reopening_is_idempotent_and_shares_the_database_with_the_kb(
        sqlite_url: str) -> None:
    from knowledge_base.store import KnowledgeStore

    tickets = await TicketStore.open(sqlite_url)
    kb = await KnowledgeStore.open(sqlite_url)
    await tickets.close()
    tickets = await TicketStore.open(sqlite_url)
    try:
        async with tickets._engine.connect() as conn:
            names = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
            version = (await conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}"))
                       ).scalar_one()
        assert {"tickets", "alembic_version_handoff", "alembic_version_kb", "kb_entries"} <= names
        assert version == "ho0005"
    finally:
        await tickets.close()
        await kb.close()


@pytest.mark.postgres
async def test_postgres_schema_matches_and_version_table_is_separate(
        pg_connect_args: dict[str, object]) -> None:
    from knowledge_base.store import KnowledgeStore

    url = os.environ.get("TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
    store = await TicketStore.open(url, connect_args=pg_connect_args)
    kb = await KnowledgeStore.open(url, connect_args=pg_connect_args)
    try:
        async with store._engine.connect() as conn:
            assert await conn.run_sync(_diff) == []
            version = (await conn.execute(
                text(f"SELECT version_num FROM {VERSION_TABLE}"))).scalar_one()
        assert version == "ho0005"
    finally:
        await store.close()
        await kb.close()


async def test_sqlite_file_lives_where_asked(tmp_path: Path) -> None:
    store = await TicketStore.open(f"sqlite+aiosqlite:///{tmp_path / 'sub' / 'x.db'}")
    await store.close()
    assert (tmp_path / "sub" / "x.db").exists()
