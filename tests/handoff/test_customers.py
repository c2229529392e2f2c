"""A customer's data: found by phone, e-mail, id or conversation; exported; erased."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import async_sessionmaker

from channels.mail import FileThreadStore, Thread
from channels.webhook import DeadLetters
from handoff.customers import (
    ERASED,
    CustomerNotFound,
    OnLegalHold,
    OpenComplaint,
    erase,
    export,
    find,
)
from handoff.errors import InvalidTicket
from handoff.evidence import EvidenceStore
from handoff.tickets import Base, TicketRow, TicketStore
from handoff.workflow import AuditRow
from tests.handoff.test_retention import ALICE, BOB, LONG_AGO, NOW, Person, audits, seed


async def everything(store: TicketStore) -> str:
    """Every row of every handoff table, as text to search for personal data."""
    sessions = async_sessionmaker(store.engine)
    parts = []
    async with sessions() as session:
        for table in Base.metadata.sorted_tables:
            for row in (await session.execute(select(table))).all():
                parts.append(json.dumps([str(v) for v in row], ensure_ascii=False))
    return "\n".join(parts)


@pytest.fixture
def evidence(tmp_path: Path) -> EvidenceStore:
    return EvidenceStore(tmp_path / "evidence")


async def test_find_by_phone_email_id_and_conversation(store: TicketStore) -> None:
    first = await seed(store, ALICE, closed_at=LONG_AGO, customer_id="M-778")
    other = await seed(store, BOB, closed_at=LONG_AGO)
    for ident in (ALICE.phone, "+86 138-1234-5678", "WANG@example.com", "M-778",
                  f"webchat:{ALICE.chat_id}"):
        held = await find(store, ident)
        assert held.ticket_ids == (first.id,), ident
        assert held.conversations == (("webchat", ALICE.chat_id),)
    assert (await find(store, BOB.email)).ticket_ids == (other.id,)
    nobody = await find(store, "13000000000")
    assert nobody.ticket_ids == () and nobody.conversations == ()
    for bad in ("", "   ", "x" * 300):
        with pytest.raises(InvalidTicket):
            await find(store, bad)


async def test_export_holds_tickets_transcript_survey_outbox_and_files(
        store: TicketStore, evidence: EvidenceStore, tmp_path: Path) -> None:
    photo = await evidence.put("坏了的锅.jpg", "image/jpeg", b"photo bytes")
    ticket = await seed(store, ALICE, closed_at=LONG_AGO, files=(photo,))
    await seed(store, BOB, closed_at=LONG_AGO)
    files = tmp_path / "files"
    for ident in (ALICE.phone, ALICE.email, f"webchat:{ALICE.chat_id}"):
        document = await export(store, evidence, ident, actor="dpo", now=NOW,
                                files_dir=files)
        json.dumps(document)  # one JSON document
        (item,) = document["tickets"]
        assert item["ticket"]["number"] == ticket.number
        assert item["ticket"]["phone"] == ALICE.phone
        assert [line["author"] for line in item["transcript"]] == ["customer", "bot"]
        assert ALICE.phone in item["transcript"][0]["text"]
        assert item["survey"]["suggestion"].startswith(ALICE.name)
        assert item["investigation"]["proposal"] == f"退款给{ALICE.name}"
        assert item["stages"][0]["stage"] == "closed" and item["notes"]
        (file,) = item["evidence"]
        assert file["sha256"] == photo.sha256 and file["file"] == photo.sha256 + ".jpg"
        assert (files / file["file"]).read_bytes() == b"photo bytes"
        (conversation,) = document["conversations"]
        assert ALICE.name in conversation["messages"][0]["text"]
        assert BOB.name not in json.dumps(document, ensure_ascii=False)
    rows = await audits(store, "customer_exported")
    assert len(rows) == 3 and rows[0].actor == "dpo"
    assert rows[0].detail["tickets"] == [ticket.number]
    assert ALICE.phone not in json.dumps(rows[0].detail)
    with pytest.raises(CustomerNotFound):
        await export(store, evidence, "nobody@example.com", actor="dpo", now=NOW)


async def test_erase_anonymises_every_place_and_keeps_the_audit(
        store: TicketStore, evidence: EvidenceStore, tmp_path: Path) -> None:
    mine = await evidence.put("id.jpg", "image/jpeg", b"alice's id card")
    shared = await evidence.put("receipt.jpg", "image/jpeg", b"a shared receipt")
    first = await seed(store, ALICE, closed_at=LONG_AGO, files=(mine, shared))
    second = await seed(store, ALICE, closed_at=NOW)  # the same conversation, later
    kept = await seed(store, BOB, closed_at=LONG_AGO, files=(shared,))
    async with async_sessionmaker(store.engine)() as session, session.begin():
        session.add(AuditRow(ticket_id=first.id, actor="alice", action="reveal_pii",
                             detail={}, at=LONG_AGO))
    before = await everything(store)
    for value in (ALICE.name, ALICE.phone, ALICE.email, ALICE.chat_id):
        assert value in before

    report = await erase(store, evidence, ALICE.phone, actor="dpo", now=NOW)
    assert set(report.numbers) == {first.number, second.number}
    assert report.counts["tickets"] == 2 and report.counts["ticket_transcript"] == 4
    assert report.counts["handoff_outbox"] == 2 and report.files == (mine.sha256,)
    after = await everything(store)
    for value in (ALICE.name, ALICE.phone, ALICE.email, ALICE.chat_id):
        assert value not in after, value
    for value in (BOB.name, BOB.phone, BOB.email, BOB.chat_id):
        assert value in after, value  # the other customer is untouched
    assert not evidence.exists(mine.sha256) and evidence.exists(shared.sha256)

    erased = await store.get(first.id)
    assert erased.erased_at is not None and erased.customer_name is None
    assert erased.phone is None and erased.description == ERASED
    assert erased.chat_id.startswith("erased-") and erased.chat_id == (
        await store.get(second.id)).chat_id
    assert erased.category == "product_quality" and erased.status == "closed"
    assert [line.text for line in await store.transcript(first.id)] == [ERASED, ERASED]
    assert await store.evidence(first.id) == []
    assert (await store.get(kept.id)).phone == BOB.phone
    # The audit trail is kept and says who erased which tickets.
    assert len(await audits(store, "reveal_pii")) == 1
    (row,) = await audits(store, "customer_erased")
    assert row.actor == "dpo" and set(row.detail["tickets"]) == {first.number, second.number}
    assert row.detail["counts"]["tickets"] == 2

    # Idempotent: nothing is left to find, nothing changes.
    again = await erase(store, evidence, ALICE.phone, actor="dpo", now=NOW)
    assert again.numbers == () and again.counts == {}
    assert await everything(store) == after
    assert len(await audits(store, "customer_erased")) == 1


async def test_legal_hold_blocks_erasure_unless_overridden_with_a_reason(
        store: TicketStore, evidence: EvidenceStore) -> None:
    held = await seed(store, ALICE, closed_at=LONG_AGO, hold=True)
    with pytest.raises(OnLegalHold, match=held.number):
        await erase(store, evidence, ALICE.email, actor="dpo", now=NOW)
    assert (await store.get(held.id)).phone == ALICE.phone  # nothing changed
    with pytest.raises(InvalidTicket, match="reason"):
        await erase(store, evidence, ALICE.email, actor="dpo", now=NOW, override_hold=True)
    report = await erase(store, evidence, ALICE.email, actor="dpo", now=NOW,
                         override_hold=True, reason="court ordered erasure")
    assert report.overridden == (held.number,)
    assert (await store.get(held.id)).phone is None
    (override,) = await audits(store, "erase_hold_override")
    assert override.ticket_id == held.id and override.detail["reason"] == (
        "court ordered erasure")
    flagged = await seed(store, BOB, closed_at=LONG_AGO, malicious=True)
    with pytest.raises(OnLegalHold, match=flagged.number):
        await erase(store, evidence, BOB.phone, actor="dpo", now=NOW)


async def test_an_open_complaint_blocks_erasure(store: TicketStore,
                                                evidence: EvidenceStore) -> None:
    ticket = await seed(store, ALICE, closed_at=None)
    with pytest.raises(OpenComplaint, match=ticket.number):
        await erase(store, evidence, ALICE.phone, actor="dpo", now=NOW)
    async with async_sessionmaker(store.engine)() as session, session.begin():
        await session.execute(update(TicketRow).where(TicketRow.id == ticket.id).values(
            status="closed", open_key=None, closed_at=NOW))
    assert (await erase(store, evidence, ALICE.phone, actor="dpo", now=NOW)).numbers == (
        ticket.number,)


async def test_erase_scrubs_mail_threads_and_webhook_dead_letters(
        store: TicketStore, evidence: EvidenceStore, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    mailer = Person("周六", "13300000000", "zhou@example.com", "<root-1@mail.example>",
                    channel="email")
    hooked = Person("吴七", "13200000000", "wu@example.com", "conv-77", channel="webhook")
    await seed(store, mailer, closed_at=LONG_AGO)
    await seed(store, hooked, closed_at=LONG_AGO)
    threads = FileThreadStore(data_dir / "mail")
    await threads.put(Thread(root_id=mailer.chat_id, address=mailer.email, name=mailer.name,
                             references=(mailer.chat_id, "<reply-1@us.example>")))
    await threads.put(Thread(root_id="<other@mail.example>", address="o@example.com"))
    letters = DeadLetters(data_dir / "webhook" / "dead_letters.jsonl")
    await letters.add({"conversation_id": hooked.chat_id, "text": f"{hooked.name}您好"},
                      error="410", attempts=1)
    await letters.add({"conversation_id": "conv-other", "text": "hello"}, error="410",
                      attempts=1)

    report = await erase(store, evidence, mailer.email, actor="dpo", now=NOW,
                         data_dir=data_dir)
    assert report.counts["mail_threads"] == 1
    assert await threads.get(mailer.chat_id) is None
    assert await threads.root_of("<reply-1@us.example>") is None
    assert await threads.get("<other@mail.example>") is not None

    report = await erase(store, evidence, f"webhook:{hooked.chat_id}", actor="dpo", now=NOW,
                         data_dir=data_dir)
    assert report.counts["webhook_dead_letters"] == 1
    assert [e["delivery"]["conversation_id"] for e in await letters.list()] == ["conv-other"]
    text = (data_dir / "webhook" / "dead_letters.jsonl").read_text("utf-8")
    assert hooked.name not in text


async def test_erasure_moves_the_report_neighbours_off_the_customer(
        store: TicketStore, evidence: EvidenceStore) -> None:
    """The customer key copied the phone: erased, it is the pseudonymous conversation, and the
    erased tickets leave the phone's and the order's chains."""
    from dataclasses import replace
    from datetime import timedelta

    from tests.handoff.test_retention import neighbours

    first = await seed(store, ALICE, closed_at=LONG_AGO)
    other_chat = await seed(store, replace(ALICE, chat_id="chat-wang-2"), closed_at=NOW)
    bob = await seed(store, BOB, closed_at=NOW + timedelta(hours=1))  # the same order, later
    assert (await neighbours(store, other_chat.id))[:2] == (ALICE.phone, first.registered_at)
    assert (await neighbours(store, bob.id))[3] == other_chat.registered_at
    await erase(store, evidence, ALICE.phone, actor="dpo", now=NOW)
    for ticket in (first, other_chat):
        key, *times = await neighbours(store, ticket.id)
        assert str(key).startswith("webchat:erased-") and times == [None, None, None]
    assert (await neighbours(store, bob.id))[3] is None
