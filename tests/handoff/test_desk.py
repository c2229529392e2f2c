"""SqlTicketDesk: the engine's registration forms become routed tickets with receipts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from handoff.desk import SqlTicketDesk
from handoff.intake import EvidenceRef, HandoffReason, TicketDesk, TicketDraft, TranscriptLine
from handoff.routing import Routing
from handoff.tickets import TicketStore

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)


def draft(category: str | None, chat_id: str = "c1") -> TicketDraft:
    return TicketDraft(
        channel="webchat", chat_id=chat_id, lang="zh-Hans", description="快递一直没到",
        category=category, subcategory=None, priority="medium", priority_reasons=(),
        sla_hours=4, emotion="anxiety", reason=HandoffReason.NEEDS_INVESTIGATION,
        order_id="DD123")


async def test_register_routes_and_returns_a_receipt(store: TicketStore) -> None:
    desk: TicketDesk = SqlTicketDesk(store, Routing(), lambda: NOW)
    receipt = await desk.register(draft("logistics"))
    assert receipt.department == "logistics"
    assert receipt.number == "TS20261123-0001"
    assert receipt.sla_due == NOW + timedelta(hours=4)
    assert receipt.handler is None
    again = await desk.register(draft("logistics"))
    assert again == receipt
    ticket = await store.get(receipt.ticket_id)
    assert ticket.receiver == "intakebot"


async def test_custom_routing_and_unclassified(store: TicketStore) -> None:
    desk = SqlTicketDesk(store, Routing({"logistics": "warehouse"}, "front_desk"), lambda: NOW)
    assert (await desk.register(draft("logistics", "a"))).department == "warehouse"
    assert (await desk.register(draft(None, "b"))).department == "front_desk"


async def test_append_adds_to_the_open_ticket(store: TicketStore) -> None:
    desk = SqlTicketDesk(store, clock=lambda: NOW)
    await desk.append("webchat", "c1", TranscriptLine("customer", "before", NOW))
    receipt = await desk.register(draft("product"))
    await desk.append("webchat", "c1", TranscriptLine("customer", "after", NOW))
    assert [line.text for line in await store.transcript(receipt.ticket_id)] == ["after"]


async def test_files_sent_with_a_line_become_evidence_once(store: TicketStore) -> None:
    desk = SqlTicketDesk(store, clock=lambda: NOW)
    receipt = await desk.register(draft("product"))
    photo = EvidenceRef("broken.jpg", "image/jpeg", "cd" * 32, 4096)
    await desk.append("webchat", "c1", TranscriptLine("customer", "", NOW), (photo,))
    await desk.append("webchat", "c1", TranscriptLine("customer", "again", NOW), (photo,))
    assert [e.sha256 for e in await store.evidence(receipt.ticket_id)] == ["cd" * 32]
