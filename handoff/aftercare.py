"""After-care (DOMAIN.md steps 6-8): keep the customer informed, confirm the solution, survey.

`Aftercare.plan` reads the ticket tables and schedules durable jobs (handoff.scheduler) under
keys that make planning idempotent; the handlers re-read the ticket and send a system command
into the customer's conversation through the casework `Relay`:

- ``stage:{stage_row_id}``: a stage change (claimed, investigating, awaiting approval, reopened,
  closed by staff) -> ``/notify``. What casework or the bot already told is not told again:
  approval decisions (`Casework.decide` tells them), the resolution (the confirmation asks
  about it), and changes the customer's own answers made.
- ``update:{ticket_id}:{epoch of the last news}``: no news for `update_every` while open ->
  ``/notify`` with the current stage.
- ``confirm:{ticket_id}:{reopen_count}``: resolved -> ``/confirm`` (is it solved? yes / no).
- ``survey:{ticket_id}``: closed -> ``/survey`` inside the survey window, out of quiet hours;
  e-mail customers get a signed link to the web form instead of questions.

The commands carry data, not words: the bot renders them in the customer's language and
remembers the question. Their message ids derive from the job key, so a retried job is
de-duplicated by the dispatcher and never reaches the customer twice.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.ext.asyncio import async_sessionmaker

from handoff.errors import InvalidTransition, TicketNotFound
from handoff.scheduler import Job, Reschedule, Scheduler
from handoff.survey import SECOND_HANDLING_AT, Survey, Surveys
from handoff.tickets import (
    CounterRow,
    Ticket,
    TicketRow,
    TicketStatus,
    TicketStore,
    _next_value,
    _ticket,
)
from handoff.workflow import APPROVED_BY, REJECTED_BY, Casework, StageRow

log = logging.getLogger(__name__)

S = TicketStatus
NOTIFY = "/notify"  # the engine's after-care commands (bot.engine); plain strings on purpose
CONFIRM = "/confirm"
SURVEY = "/survey"
# Stage changes the customer hears of as such.
TOLD_STAGES = frozenset({S.ASSIGNED.value, S.INVESTIGATING.value, S.AWAITING_APPROVAL.value,
                         S.REOPENED.value, S.CLOSED.value})
_STAGE_MARK = "aftercare:stage_seen"  # handoff_counters: the last stage row planned
_PLAN_BATCH = 500


@dataclass(frozen=True, slots=True)
class AftercarePolicy:
    """When the customer hears from us.

    Args:
        update_every: the longest silence while a ticket is open.
        survey_window: the survey goes out this long after closing (start, end).
        quiet_hours: (start, end) local times without updates or surveys; None: no quiet.
        timezone: the customers' time zone (IANA name).
        link_channels: channels that get the survey as a web link (no buttons there).
    """

    update_every: timedelta = timedelta(days=3)
    survey_window: tuple[timedelta, timedelta] = (timedelta(hours=24), timedelta(hours=48))
    quiet_hours: tuple[time, time] | None = (time(22, 0), time(8, 0))
    timezone: str = "Asia/Shanghai"
    link_channels: frozenset[str] = field(default_factory=lambda: frozenset({"email"}))

    def out_of_quiet(self, at: datetime) -> datetime:
        """`at`, or the end of the quiet hours it falls in."""
        if self.quiet_hours is None:
            return at
        start, end = self.quiet_hours
        zone = ZoneInfo(self.timezone)
        local = at.astimezone(zone)
        now = local.timetz().replace(tzinfo=None)
        overnight = start > end
        quiet = (now >= start or now < end) if overnight else (start <= now < end)
        if not quiet:
            return at
        day = local.date() + timedelta(days=1) if overnight and now >= start else local.date()
        return datetime.combine(day, end, zone).astimezone(at.tzinfo)


def parse_window(text: str) -> tuple[timedelta, timedelta]:
    """``"24-48"`` (hours) -> the survey window.

    Raises:
        ValueError: not two whole numbers of hours, start below end.
    """
    first, sep, last = text.partition("-")
    try:
        start, end = int(first), int(last)
    except ValueError:
        start = end = -1
    if not sep or not 0 <= start < end:
        raise ValueError(f"expected hours like 24-48, got {text!r}")
    return timedelta(hours=start), timedelta(hours=end)


def parse_quiet_hours(text: str) -> tuple[time, time] | None:
    """``"22:00-08:00"`` -> (start, end); ``"off"`` or empty -> None.

    Raises:
        ValueError: not two HH:MM times.
    """
    if text.strip().lower() in ("", "off", "none"):
        return None
    first, sep, last = text.partition("-")
    try:
        start, end = time.fromisoformat(first.strip()), time.fromisoformat(last.strip())
    except ValueError as exc:
        raise ValueError(f"expected quiet hours like 22:00-08:00, got {text!r}") from exc
    if not sep or start == end:
        raise ValueError(f"expected quiet hours like 22:00-08:00, got {text!r}")
    return start, end


def command(name: str, payload: Mapping[str, Any]) -> str:
    """A system command with its JSON payload, as the engine reads it."""
    return f"{name} {json.dumps(dict(payload), ensure_ascii=False, sort_keys=True)}"


class Aftercare:
    """Plans and sends the after-care messages, and records the customer's answers.

    Args:
        store: the ticket store.
        casework: ticket transitions (and the relay into the customer's conversation).
        scheduler: the durable jobs; its clock is the after-care clock.
        policy: update interval, survey window, quiet hours.
        survey_link: the signed web-form link of a ticket's survey (for link channels).
    """

    def __init__(self, store: TicketStore, casework: Casework, scheduler: Scheduler, *,
                 policy: AftercarePolicy | None = None,
                 survey_link: Callable[[str], str] | None = None) -> None:
        self.store = store
        self.casework = casework
        self.scheduler = scheduler
        self.policy = policy or AftercarePolicy()
        self.survey_link = survey_link
        self.surveys = Surveys(store)
        self._sessions = async_sessionmaker(store.engine, expire_on_commit=False)
        for kind, handler in (("stage", self._stage), ("update", self._update),
                              ("confirm", self._confirm), ("survey", self._survey)):
            scheduler.register(kind, handler)

    def now(self) -> datetime:
        return self.scheduler.clock()

    async def tick(self) -> int:
        """Plan, then run what is due; how many jobs ran."""
        await self.plan()
        return await self.scheduler.run_due()

    # ---- planning -----------------------------------------------------------------------

    async def plan(self) -> None:
        """Schedule the jobs the tickets call for (each once, whatever the number of calls)."""
        await self._plan_stages()
        now = self.now().astimezone(UTC)  # SQLite compares datetimes as zone-less UTC text
        news = func.coalesce(TicketRow.customer_updated_at, TicketRow.registered_at)
        async with self._sessions() as session:
            # Only the tickets that call for a job now: resolved and not asked, or silent.
            open_rows = (await session.execute(select(TicketRow).where(
                TicketRow.open_key.is_not(None), TicketRow.erased_at.is_(None),
                or_(and_(TicketRow.status == S.RESOLVED.value,
                         or_(TicketRow.confirmation.is_(None),
                             TicketRow.confirmation != "asked")),
                    and_(TicketRow.status != S.RESOLVED.value,
                         news <= now - self.policy.update_every))))).scalars().all()
            closed_rows = (await session.execute(select(TicketRow).where(
                TicketRow.status == S.CLOSED.value, TicketRow.erased_at.is_(None),
                TicketRow.closed_at > now - self.policy.survey_window[1]))).scalars().all()
        for row in open_rows:
            ticket = _ticket(row)
            if ticket.status == S.RESOLVED.value and ticket.confirmation != "asked":
                await self.scheduler.schedule(
                    "confirm", f"confirm:{ticket.id}:{ticket.reopen_count}", now,
                    {"ticket_id": ticket.id})
            elif ticket.status != S.RESOLVED.value:
                last = _last_news(ticket)
                due = last + self.policy.update_every
                if due <= now:
                    await self.scheduler.schedule(
                        "update", f"update:{ticket.id}:{int(last.timestamp())}",
                        self.policy.out_of_quiet(due), {"ticket_id": ticket.id})
        for row in closed_rows:
            ticket = _ticket(row)
            assert ticket.closed_at is not None
            due = self.policy.out_of_quiet(ticket.closed_at + self.policy.survey_window[0])
            await self.scheduler.schedule("survey", f"survey:{ticket.id}", due,
                                          {"ticket_id": ticket.id})

    async def _plan_stages(self) -> None:
        async with self._sessions() as session, session.begin():
            mark = await session.get(CounterRow, _STAGE_MARK)
            if mark is None:
                # First run on this database: tell of what happens from now on, not history.
                latest = (await session.execute(select(func.max(StageRow.id)))).scalar()
                await session.run_sync(_next_value, self.store.dialect, _STAGE_MARK)
                await session.execute(update(CounterRow).where(CounterRow.name == _STAGE_MARK)
                                      .values(value=latest or 0))
                return
            seen = mark.value
            rows = (await session.execute(select(StageRow).where(StageRow.id > seen)
                                          .order_by(StageRow.id).limit(_PLAN_BATCH))
                    ).scalars().all()
        for row in rows:
            if _tells(row):
                await self.scheduler.schedule(
                    "stage", f"stage:{row.id}", self.now(),
                    {"ticket_id": row.ticket_id, "stage": row.stage})
        if rows:
            async with self._sessions() as session, session.begin():
                # Two planners may race: the mark only moves forward.
                await session.execute(update(CounterRow).where(
                    CounterRow.name == _STAGE_MARK, CounterRow.value < rows[-1].id
                ).values(value=rows[-1].id))

    # ---- sending ------------------------------------------------------------------------

    async def _stage(self, job: Job) -> None:
        ticket = await self._ticket(job)
        if ticket is None:
            return
        await self._send(ticket, job, NOTIFY, {"event": job.payload["stage"]})

    async def _update(self, job: Job) -> None:
        ticket = await self._ticket(job)
        if ticket is None or not ticket.is_open or ticket.status == S.RESOLVED.value:
            return
        # Whatever the customer heard meanwhile (an agent's message too) counts as news.
        last = _last_news(ticket)
        if last + self.policy.update_every > self.now():
            return
        when = self.policy.out_of_quiet(self.now())
        if when != self.now():
            raise Reschedule(when)
        await self._send(ticket, job, NOTIFY, {"event": "update", "status": ticket.status})

    async def _confirm(self, job: Job) -> None:
        ticket = await self._ticket(job)
        if ticket is None or ticket.status != S.RESOLVED.value:
            return
        await self._send(ticket, job, CONFIRM, {}, confirmation="asked")

    async def _survey(self, job: Job) -> None:
        ticket = await self._ticket(job)
        if ticket is None or ticket.status != S.CLOSED.value or ticket.closed_at is None:
            return
        now = self.now()
        if now > ticket.closed_at + self.policy.survey_window[1]:
            log.info("survey of %s skipped: its window has passed", ticket.number)
            return
        when = self.policy.out_of_quiet(now)
        if when != now:
            raise Reschedule(when)
        link = self.survey_link is not None and ticket.channel in self.policy.link_channels
        if not await self.surveys.start(ticket.id, "web" if link else "chat", now):
            existing = await self.surveys.get(ticket.id)
            if existing is None or existing.answered_at is not None:
                return  # once per ticket; a retry of an unanswered one may resend (same id)
        extra = {"link": self.survey_link(ticket.id)} if link and self.survey_link else {}
        await self._send(ticket, job, SURVEY, extra)

    async def _send(self, ticket: Ticket, job: Job, name: str, extra: Mapping[str, Any],
                    **values: Any) -> None:
        payload = {"ticket_id": ticket.id, "number": ticket.number, "lang": ticket.lang,
                   **extra}
        await self.casework.relay.command(ticket.channel, ticket.chat_id,
                                          command(name, payload),
                                          message_id=f"aftercare:{job.key}")
        async with self._sessions() as session, session.begin():
            await session.execute(update(TicketRow).where(TicketRow.id == ticket.id).values(
                customer_updated_at=self.now(), **values))

    async def _ticket(self, job: Job) -> Ticket | None:
        try:
            ticket = await self.store.get(str(job.payload["ticket_id"]))
        except TicketNotFound:
            return None
        return None if ticket.erased_at is not None else ticket

    # ---- the customer's answers ---------------------------------------------------------

    async def answer_confirmation(self, ticket_id: str, solved: bool) -> bool:
        """Close (solved) or reopen (not solved) a resolved ticket; False when it is not
        resolved any more (staff acted meanwhile), and nothing changed."""
        try:
            if solved:
                await self.casework.customer_confirmed(ticket_id)
            else:
                await self.casework.customer_denied(ticket_id)
        except InvalidTransition as exc:
            log.info("confirmation answer for %s ignored: %s", ticket_id, exc)
            return False
        return True

    async def answer_survey(self, ticket_id: str, answers: Mapping[str, object]) -> Survey:
        """Record survey answers; an overall score of 2 or less starts second handling once.

        Raises:
            InvalidTicket: a bad answer.
            TicketNotFound: no survey was sent for this ticket.
        """
        survey = await self.surveys.record(ticket_id, answers, self.now())
        overall = survey.overall
        if (overall is not None and "overall" in answers and overall <= SECOND_HANDLING_AT
                and await self.surveys.claim_second_handling(ticket_id)):
            await self.casework.start_second_handling(ticket_id, overall)
            survey = await self.surveys.get(ticket_id) or survey
        return survey


def _last_news(ticket: Ticket) -> datetime:
    return max(ticket.registered_at, ticket.customer_updated_at or ticket.registered_at)


def _tells(row: StageRow) -> bool:
    if row.stage not in TOLD_STAGES:
        return False
    if row.actor == Casework.SYSTEM.username:
        return False  # the customer's own answer did this, and the bot answered it
    # Casework.decide tells approval decisions itself.
    return not (row.result or "").startswith((APPROVED_BY, REJECTED_BY))

