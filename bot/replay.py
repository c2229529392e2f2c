"""Handling a message again after a crash without doubling its effects on the ticket.

A message is handled again when its handler died (or a store failed) before the dispatcher's
commit: the session is the old one, but the engine's ticket writes of the first attempt may have
been made. The dispatcher hands the engine the message's first received time
(`Deduplicator.first_seen`), so the second attempt produces the very same transcript lines;
registration already merges known lines (`TicketStore.register`), and this desk makes `append`
skip a line the open ticket already has. Evidence files are kept once per ticket anyway.
"""

from __future__ import annotations

from datetime import UTC

from sqlalchemy.exc import SQLAlchemyError

from handoff.desk import SqlTicketDesk
from handoff.errors import TicketStoreUnavailable
from handoff.intake import EvidenceRef, TranscriptLine


class ReplaySafeDesk(SqlTicketDesk):
    """The SQL ticket desk whose `append` adds a line (author, text, time) once per ticket."""

    async def append(self, channel: str, chat_id: str, line: TranscriptLine,
                     evidence: tuple[EvidenceRef, ...] = ()) -> None:
        # The conversation's lock is held: no other handler appends to this ticket meanwhile.
        try:
            ticket_id = await self.store.open_ticket_id(channel, chat_id)
            known = [] if ticket_id is None else await self.store.transcript(ticket_id)
            at = line.at.astimezone(UTC)
            if ticket_id is not None and any(
                    k.author == line.author and k.text == line.text and k.at.astimezone(UTC) == at
                    for k in known):
                if evidence:
                    await self.store.add_evidence(ticket_id, evidence)
                return
        except SQLAlchemyError as exc:
            raise TicketStoreUnavailable(f"the ticket database failed: {exc}") from exc
        await super().append(channel, chat_id, line, evidence)
