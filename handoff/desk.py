"""The ticket desk the engine talks to: registration forms in, receipts out."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from handoff.aftercare import Aftercare
from handoff.errors import InvalidTransition, TicketNotFound
from handoff.intake import EvidenceRef, Receipt, TicketDesk, TicketDraft, TranscriptLine
from handoff.live import Events
from handoff.routing import Routing
from handoff.tickets import DueTime, Ticket, TicketStore

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
        aftercare: records the customer's answers to the confirmation and the survey.
        due: the first-response due time from the registration time and the priority's hours
            (`handoff.sla.SlaPolicy.due`: business hours when configured); calendar hours if None.
    """

    appends_once = False  # whether `append` skips a line the ticket has (TicketStore.append)

    def __init__(self, store: TicketStore, routing: Routing | None = None,
                 clock: Callable[[], datetime] = _now, *,
                 receiver: str = DEFAULT_RECEIVER, events: Events | None = None,
                 aftercare: Aftercare | None = None, due: DueTime | None = None) -> None:
        self.store = store
        self.routing = routing or Routing()
        self.clock = clock
        self.receiver = receiver
        self.events = events
        self.aftercare = aftercare
        self.due = due

    async def register(self, draft: TicketDraft) -> Receipt:
        """Create the conversation's ticket, or update its open one; the receipt either way.

        Raises:
            handoff.errors.InvalidTicket: the form is malformed.
            handoff.errors.TicketStoreUnavailable: the database failed.
        """
        registration = await self.store.register(
            draft, department=self.routing.department_for(draft.category),
            receiver=self.receiver, now=self.clock(), due=self.due)
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
        ticket_id = await self.store.append(channel, chat_id, line, evidence,
                                            once=self.appends_once)
        if ticket_id is not None:
            await self._publish(ticket_id, "transcript")

    async def ticket_open(self, ticket_id: str) -> bool:
        """Whether the ticket is still open (False once closed, or when unknown)."""
        try:
            return (await self.store.get(ticket_id)).is_open
        except TicketNotFound:
            return False

    async def answer_confirmation(self, ticket_id: str, solved: bool) -> bool:
        """Close (solved) or reopen (not solved) the resolved ticket; False if it moved on."""
        return await self._aftercare().answer_confirmation(ticket_id, solved)

    async def answer_survey(self, ticket_id: str, answers: Mapping[str, object]) -> bool:
        """Record survey answers; True when they started second handling.

        Raises:
            handoff.errors.InvalidTicket: a bad answer.
            handoff.errors.TicketNotFound: no survey was sent for this ticket.
        """
        before = await self._aftercare().surveys.get(ticket_id)
        survey = await self._aftercare().answer_survey(ticket_id, answers)
        return survey.second_handling and not (before is not None and before.second_handling)

    def _aftercare(self) -> Aftercare:
        if self.aftercare is None:
            raise InvalidTransition("after-care is not set up on this ticket desk")
        return self.aftercare

    async def _publish(self, ticket_id: str, what: str) -> None:
        if self.events is not None:
            await self.events.publish({"type": "ticket", "event": what, "ticket_id": ticket_id})
