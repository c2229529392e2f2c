"""Retention: purging closed complaints older than the SOP minimum, and legal hold.

DOMAIN.md keeps all conversations, evidence and investigation material for at least three
years, so a purge refuses a shorter period unless forced. What goes, per purged ticket: the
ticket with its transcript, evidence rows, stages, notes, investigation and survey, and evidence
files no ticket left references. A conversation's outbox goes once no remaining ticket uses that
conversation and its newest message is older than the cutoff (that also ages out chats that
never became a ticket). Audit rows are never deleted; each executed purge adds one. The purged
tickets' customers and orders get their report neighbours recomputed (`handoff.tickets.relink`),
so no remaining ticket keeps a purged ticket's registration time.

Legal hold keeps a ticket whatever its age: a supervisor sets it (`set_legal_hold`), and a
ticket flagged malicious (`Casework.flag_malicious`) is held as well, since it is kept for legal
review; `is_held` is the one rule both purge and erasure follow.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, tuple_, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from handoff.errors import InvalidTicket, TicketNotFound, TicketStoreUnavailable
from handoff.evidence import EvidenceStore
from handoff.survey import SurveyRow
from handoff.tickets import (
    EvidenceRow,
    OutboxRow,
    Ticket,
    TicketRow,
    TicketStatus,
    TicketStore,
    TranscriptRow,
    _ticket,
    _utc,
    relink,
)
from handoff.workflow import AuditRow, InvestigationRow, NoteRow, StageRow

MINIMUM_YEARS = 3  # DOMAIN.md: evidence retention ≥ 3 years
MAX_REASON = 500
_CHUNK = 500  # ids per IN (...) list: far below SQLite's and asyncpg's parameter limits
_DURATION = re.compile(r"\s*(\d{1,5})\s*([ymd])\s*", re.IGNORECASE)

# The tables a purge deletes from, in the order the report lists them.
TICKET_TABLES: tuple[type[Any], ...] = (
    TranscriptRow, EvidenceRow, StageRow, NoteRow, InvestigationRow, SurveyRow)


class RetentionRefused(InvalidTicket):
    """A purge was asked for a period shorter than the SOP minimum (three years)."""


@dataclass(frozen=True, slots=True)
class Duration:
    """A calendar period: whole years, months or days back from a moment."""

    amount: int
    unit: str  # y | m | d

    def __str__(self) -> str:
        return f"{self.amount}{self.unit}"

    def before(self, moment: datetime) -> datetime:
        """The moment this period earlier (the 29th of February falls back to the 28th)."""
        if self.unit == "d":
            return moment - timedelta(days=self.amount)
        months = self.amount * (12 if self.unit == "y" else 1)
        index = moment.year * 12 + moment.month - 1 - months
        year, month = divmod(index, 12)
        day = min(moment.day, calendar.monthrange(year, month + 1)[1])
        return moment.replace(year=year, month=month + 1, day=day)


# Three years of 365 days, so that 1095d, 36m and 3y all meet it whatever leap days fall in.
MINIMUM = Duration(MINIMUM_YEARS * 365, "d")


def parse_duration(text: str) -> Duration:
    """``3y``, ``36m`` or ``1095d`` as a `Duration`.

    Raises:
        InvalidTicket: the text is not a number followed by y, m or d.
    """
    match = _DURATION.fullmatch(text)
    if match is None or int(match.group(1)) <= 0:
        raise InvalidTicket(
            f"bad period {text!r}: write a positive number of years, months or days "
            "(3y, 36m, 1095d)")
    return Duration(int(match.group(1)), match.group(2).lower())


def is_held(ticket: Ticket | TicketRow) -> bool:
    """Whether the ticket must be kept and left as it is (legal hold or flagged malicious)."""
    return bool(ticket.legal_hold or ticket.malicious)


@dataclass(frozen=True, slots=True)
class PurgeReport:
    """What a purge removed, or would remove when it is a dry run."""

    cutoff: datetime
    older_than: str
    dry_run: bool
    numbers: tuple[str, ...]
    counts: dict[str, int]
    held: tuple[str, ...]  # old enough, kept because of a hold
    files: tuple[str, ...] = field(default=())  # SHA-256 of evidence files deleted

    def to_dict(self) -> dict[str, Any]:
        return {"cutoff": self.cutoff.isoformat(), "older_than": self.older_than,
                "dry_run": self.dry_run, "tickets": list(self.numbers),
                "counts": dict(self.counts), "held": list(self.held),
                "evidence_files": list(self.files)}


def _chunks(items: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start:start + _CHUNK]


async def _count(session: AsyncSession, table: type[Any], ids: Sequence[str]) -> int:
    total = 0
    for part in _chunks(ids):
        total += int((await session.execute(
            select(func.count()).select_from(table).where(table.ticket_id.in_(part))
        )).scalar_one())
    return total


async def _referenced(session: AsyncSession, shas: Iterable[str]) -> set[str]:
    """Which of these evidence files some ticket still references."""
    found: set[str] = set()
    listed = sorted(set(shas))
    for part in _chunks(listed):
        found.update((await session.execute(
            select(EvidenceRow.sha256).where(EvidenceRow.sha256.in_(part)).distinct()
        )).scalars())
    return found


def delete_unreferenced_files(evidence: EvidenceStore, shas: Iterable[str]) -> list[str]:
    """Delete the evidence files (and their sidecars) whose SHA-256 is given; the deleted ones.

    The caller has checked in the committed database that no ticket references them.
    """
    deleted = []
    for sha in sorted(set(shas)):
        path = evidence.path(sha)
        existed = path.is_file()
        path.unlink(missing_ok=True)
        path.with_name(path.name + ".json").unlink(missing_ok=True)
        if existed:
            deleted.append(sha)
    return deleted


async def _stale_conversations(session: AsyncSession, cutoff: datetime,
                               purged: Sequence[str]) -> list[tuple[str, str]]:
    """Conversations whose newest outbox message is older than `cutoff` and that no ticket
    outside `purged` uses."""
    newest = (select(OutboxRow.channel, OutboxRow.chat_id)
              .group_by(OutboxRow.channel, OutboxRow.chat_id)
              .having(func.max(OutboxRow.sent_at) < cutoff))
    candidates = [(c, i) for c, i in (await session.execute(newest)).all()]
    if not candidates:
        return []
    kept: set[tuple[str, str]] = set()
    purged_set = set(purged)
    for start in range(0, len(candidates), _CHUNK):
        part = candidates[start:start + _CHUNK]
        rows = await session.execute(
            select(TicketRow.id, TicketRow.channel, TicketRow.chat_id).where(
                tuple_(TicketRow.channel, TicketRow.chat_id).in_(part)))
        kept.update((c, i) for tid, c, i in rows.all() if tid not in purged_set)
    return [pair for pair in candidates if pair not in kept]


async def _outbox_count(session: AsyncSession, conversations: Sequence[tuple[str, str]]) -> int:
    total = 0
    for start in range(0, len(conversations), _CHUNK):
        part = conversations[start:start + _CHUNK]
        total += int((await session.execute(
            select(func.count()).select_from(OutboxRow).where(
                tuple_(OutboxRow.channel, OutboxRow.chat_id).in_(part)))).scalar_one())
    return total


async def purge(store: TicketStore, evidence: EvidenceStore, older_than: Duration,
                now: datetime, *, dry_run: bool = True, actor: str = "system",
                force_below_minimum: bool = False) -> PurgeReport:
    """Delete (or, in a dry run, list) closed tickets closed before ``now - older_than``.

    Tickets on hold (`is_held`) are kept and reported apart. An executed purge writes one
    audit row with the actor, cutoff, counts and complaint numbers, in the same transaction as
    the deletions; evidence files are deleted after it commits, once no ticket references them.

    Raises:
        RetentionRefused: `older_than` is shorter than three years and not forced.
        TicketStoreUnavailable: the database failed (nothing was deleted).
    """
    now = _utc(now)
    cutoff = older_than.before(now)
    if cutoff > MINIMUM.before(now) and not force_below_minimum:
        raise RetentionRefused(
            f"the SOP keeps complaints for at least {MINIMUM_YEARS} years; {older_than} is "
            "shorter (use --force-below-minimum to purge anyway)")
    sessions = async_sessionmaker(store.engine, expire_on_commit=False)
    old = and_(TicketRow.status == TicketStatus.CLOSED.value, TicketRow.closed_at.is_not(None),
               TicketRow.closed_at < cutoff)
    held_rule = or_(TicketRow.legal_hold.is_(True), TicketRow.malicious.is_(True))
    try:
        async with sessions() as session, session.begin():
            rows = (await session.execute(
                select(TicketRow.id, TicketRow.number, held_rule.label("held"))
                .where(old).order_by(TicketRow.closed_at, TicketRow.number))).all()
            ids = [r.id for r in rows if not r.held]
            numbers = tuple(r.number for r in rows if not r.held)
            held = tuple(r.number for r in rows if r.held)
            counts = {"tickets": len(ids)}
            for table in TICKET_TABLES:
                counts[table.__tablename__] = await _count(session, table, ids)
            shas: list[str] = []
            for part in _chunks(ids):
                shas += (await session.execute(select(EvidenceRow.sha256).where(
                    EvidenceRow.ticket_id.in_(part)))).scalars()
            conversations = await _stale_conversations(session, cutoff, ids)
            counts[OutboxRow.__tablename__] = await _outbox_count(session, conversations)
            if not dry_run:
                chains: list[tuple[str | None, str | None]] = []
                for part in _chunks(ids):
                    chains += [(k, o) for k, o in (await session.execute(
                        select(TicketRow.customer_key, TicketRow.order_id)
                        .where(TicketRow.id.in_(part)))).all()]
                    for table in TICKET_TABLES:
                        await session.execute(delete(table).where(table.ticket_id.in_(part)))
                    await session.execute(delete(TicketRow).where(TicketRow.id.in_(part)))
                # The remaining tickets of those customers and orders get new neighbours.
                await session.run_sync(relink, customers=[k for k, _ in chains],
                                       orders=[o for _, o in chains])
                for start in range(0, len(conversations), _CHUNK):
                    await session.execute(delete(OutboxRow).where(tuple_(
                        OutboxRow.channel, OutboxRow.chat_id).in_(
                            conversations[start:start + _CHUNK])))
                still = await _referenced(session, shas)
                orphans = sorted(set(shas) - still)
                counts["evidence_files"] = len(orphans)
                session.add(AuditRow(
                    ticket_id=None, actor=actor, action="retention_purge", at=now,
                    detail={"older_than": str(older_than), "cutoff": cutoff.isoformat(),
                            "forced": cutoff > MINIMUM.before(now), "counts": counts,
                            "tickets": list(numbers), "held": list(held)}))
            else:
                still = await _referenced_outside(session, shas, ids)
                orphans = sorted(set(shas) - still)
                counts["evidence_files"] = len(orphans)
    except SQLAlchemyError as exc:
        raise TicketStoreUnavailable(f"the ticket database failed: {exc}") from exc
    files: tuple[str, ...] = tuple(orphans)
    if not dry_run and orphans:
        # Checked again after the commit: a ticket registered meanwhile may use the same file.
        async with sessions() as session:
            still = await _referenced(session, orphans)
        files = tuple(delete_unreferenced_files(evidence, [s for s in orphans if s not in still]))
    return PurgeReport(cutoff=cutoff, older_than=str(older_than), dry_run=dry_run,
                       numbers=numbers, counts=counts, held=held, files=files)


async def _referenced_outside(session: AsyncSession, shas: Iterable[str],
                              ids: Sequence[str]) -> set[str]:
    """Which of these files a ticket not in `ids` references (what a dry run would keep)."""
    found: set[str] = set()
    skip = set(ids)
    listed = sorted(set(shas))
    for part in _chunks(listed):
        rows = await session.execute(
            select(EvidenceRow.sha256, EvidenceRow.ticket_id).where(EvidenceRow.sha256.in_(part)))
        found.update(sha for sha, tid in rows.all() if tid not in skip)
    return found


# ---- legal hold -----------------------------------------------------------------------------


async def find_ticket(store: TicketStore, reference: str) -> Ticket:
    """A ticket by complaint number or id.

    Raises:
        TicketNotFound: neither matches.
    """
    try:
        return await store.by_number(reference)
    except TicketNotFound:
        return await store.get(reference)


async def set_legal_hold(store: TicketStore, ticket_id: str, *, hold: bool, actor: str,
                         reason: object, now: datetime) -> Ticket:
    """Put the ticket on legal hold or release it, with an audit row giving the reason.

    Releasing does not clear the hold a malicious flag implies (`is_held`).

    Raises:
        InvalidTicket: no reason, or one longer than 500 characters.
        TicketNotFound: no ticket has this id.
    """
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidTicket("a reason is required")
    if len(reason) > MAX_REASON:
        raise InvalidTicket(f"the reason is longer than {MAX_REASON} characters")
    now = _utc(now)
    sessions = async_sessionmaker(store.engine, expire_on_commit=False)
    try:
        async with sessions() as session, session.begin():
            row = await session.get(TicketRow, ticket_id, with_for_update=True)
            if row is None:
                raise TicketNotFound(f"no ticket {ticket_id!r}")
            await session.execute(update(TicketRow).where(TicketRow.id == ticket_id)
                                  .values(legal_hold=hold, updated_at=now))
            session.add(AuditRow(ticket_id=ticket_id, actor=actor,
                                 action="legal_hold" if hold else "legal_hold_released",
                                 detail={"reason": reason.strip(), "was": row.legal_hold},
                                 at=now))
            await session.flush()
            await session.refresh(row)
            return _ticket(row)
    except SQLAlchemyError as exc:
        raise TicketStoreUnavailable(f"the ticket database failed: {exc}") from exc
