"""The ticket desk the engine talks to: registration forms in, receipts out."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from handoff.intake import EvidenceRef, Receipt, TicketDesk, TicketDraft, TranscriptLine
from handoff.live import Events
from handoff.routing import Routing
from handoff.tickets import Ticket, TicketStore

log = logging.getLogger(__name__)

DEFAULT_RECEIVER = "intakebot"  # template 1's "receiver": the bot took the complaint in


def _now() -> datetime:
    return datetime.now(UTC)


def receipt(ticket: Ticket) -> Receipt:
    """What the customer is told about a ticket (DOMAIN.md step 3)."""
    return Receipt(ticket_id=ticket.id, number=ticket.number, department=ticket.department,
                   sla_due=ticket.sla_due, handler=ticket.handler)


class SqlTicketDesk(TicketDesk):
    """`handoff.intake.TicketDesk` on the SQL ticket store, routed by category.

    Args:
        store: where tickets live.
        routing: the category -> department table.
        clock: the current time (tests pass a fixed one).
        receiver: who is recorded as having received the complaint.
        events: where the agent consoles hear of new tickets and customer lines.
    """

    def __init__(self, store: TicketStore, routing: Routing | None = None,
                 clock: Callable[[], datetime] = _now, *,
                 receiver: str = DEFAULT_RECEIVER, events: Events | None = None) -> None:
        self.store = store
        self.routing = routing or Routing()
        self.clock = clock
        self.receiver = receiver
        self.events = events

    async def register(self, draft: TicketDraft) -> Receipt:
        """Create the conversation's ticket, or update its open one; the receipt either way.

        Raises:
            handoff.errors.InvalidTicket: the form is malformed.
            handoff.errors.TicketStoreUnavailable: the database failed.
        """
        registration = await self.store.register(
            draft, department=self.routing.department_for(draft.category),
            receiver=self.receiver, now=self.clock())
        ticket = registration.ticket
        log.info("ticket %s %s: %s/%s priority %s, due %s, department %s",
                 ticket.number, "registered" if registration.created else "updated",
                 ticket.category or "-", ticket.subcategory or "-", ticket.priority,
                 ticket.sla_due.isoformat(timespec="minutes"), ticket.department)
        await self._publish(ticket.id, "registered" if registration.created else "updated")
        return receipt(ticket)

    async def append(self, channel: str, chat_id: str, line: TranscriptLine,
                     evidence: tuple[EvidenceRef, ...] = ()) -> None:
        """Add a line (and the files sent with it) to the conversation's open ticket, if any."""
        if await self.store.append(channel, chat_id, line, evidence) and self.events is not None:
            ticket_id = await self.store.open_ticket_id(channel, chat_id)
            if ticket_id is not None:
                await self._publish(ticket_id, "transcript")

    async def _publish(self, ticket_id: str, what: str) -> None:
        if self.events is not None:
            await self.events.publish({"type": "ticket", "event": what, "ticket_id": ticket_id})
