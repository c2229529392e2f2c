"""Handling a message again after a crash without doubling its effects on the ticket.

A message is handled again when its handler died (or a store failed) before the dispatcher's
commit: the session is the old one, but the engine's ticket writes of the first attempt may have
been made. The dispatcher hands the engine the message's first received time
(`Deduplicator.first_seen`), so the second attempt produces the very same transcript lines;
registration already merges known lines (`TicketStore.register`), and this desk makes `append`
skip a line the open ticket already has, in the same transaction as the append
(`TicketStore.append(once=True)`). Evidence files are kept once per ticket anyway.
"""

from __future__ import annotations

from handoff.desk import SqlTicketDesk


class ReplaySafeDesk(SqlTicketDesk):
    """The SQL ticket desk whose `append` adds a line (author, text, time) once per ticket."""

    appends_once = True
