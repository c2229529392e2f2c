"""Casework: what staff do with a ticket after the bot registered it (DOMAIN.md steps 4-7).

The status machine::

    new ──claim──> assigned ──> investigating ──resolve──> resolved ──close──> closed
     ^                │  \\              │    \\                │  ^              │
     └────release─────┘   \\──resolve──────> awaiting_approval ─┘  │ (approve)    │
                                           (above threshold)  └reject> investigating
    resolved / closed ──reopen──> reopened ──claim──> assigned …

Every change is a conditional UPDATE on the status it was read in (claims also on
``assignee IS NULL``), so two people acting at once cannot both win; the loser gets
`InvalidTransition` with the reason. Every change adds a stage-history row (template 2), and
decisions (approvals, reveals of personal data, wording overrides, malicious flags) an audit row.

Messages to the customer go through a `Relay` (the wiring builds it on the dispatcher), so an
agent's reply leaves by the customer's own channel on the same path as the bot's replies.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from enum import Enum
from typing import Any, Protocol

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKey,
    Integer,
    String,
    Text,
    case,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from handoff.errors import (
    Forbidden,
    InvalidTicket,
    InvalidTransition,
    TicketNotFound,
    TicketStoreUnavailable,
    WordingViolation,
)
from handoff.live import Event, Events
from handoff.routing import Routing
from handoff.sla import (
    COMPLEX_INVESTIGATION_DAYS,
    INVESTIGATION_DAYS,
    Breach,
    Clock,
    SlaPolicy,
    system_clock,
)
from handoff.tickets import (
    Base,
    Ticket,
    TicketRow,
    TicketStatus,
    TicketStore,
    _aware,
    _ticket,
    conversation_key,
)
from handoff.users import APPROVER_ROLES, CASEWORK_ROLES, Role, User
from handoff.wording import WordingGuard

log = logging.getLogger(__name__)

S = TicketStatus
DEFAULT_APPROVAL_THRESHOLD = Decimal("500")
TAKEOVER = "/takeover"  # the engine's system commands (bot.engine); plain strings on purpose
HANDBACK = "/handback"
MAX_TEXT = 4000

TRANSITIONS: Mapping[S, frozenset[S]] = {
    S.NEW: frozenset({S.ASSIGNED}),
    S.REOPENED: frozenset({S.ASSIGNED}),
    S.ASSIGNED: frozenset({S.INVESTIGATING, S.AWAITING_APPROVAL, S.RESOLVED, S.NEW}),
    S.INVESTIGATING: frozenset({S.AWAITING_APPROVAL, S.RESOLVED, S.NEW}),
    S.AWAITING_APPROVAL: frozenset({S.RESOLVED, S.INVESTIGATING}),
    S.RESOLVED: frozenset({S.CLOSED, S.REOPENED, S.INVESTIGATING}),
    S.CLOSED: frozenset({S.REOPENED}),
}
_WORKING = (S.ASSIGNED, S.INVESTIGATING)


class Solution(str, Enum):
    """How a complaint is settled (DOMAIN.md step 5)."""

    APOLOGY = "apology"
    EXPLANATION = "explanation"
    RESEND = "resend"
    RETURN_REFUND = "return_refund"
    PARTIAL_REFUND = "partial_refund"
    REFUND = "refund"
    EXCHANGE = "exchange"
    REPAIR = "repair"
    COUPON = "coupon"
    EXTENDED_WARRANTY = "extended_warranty"
    PUBLIC_APOLOGY = "public_apology"
    COMPROMISE = "compromise"
    REFERRAL = "referral"  # to an authority: quality inspection, consumer association


class Responsible(str, Enum):
    """Who is responsible, as the investigation found (DOMAIN.md step 4)."""

    CUSTOMER = "customer"
    MERCHANT = "merchant"
    LOGISTICS = "logistics"
    PLATFORM = "platform"
    THIRD_PARTY = "third_party"


# How a supervisor's decision starts its stage's result; after-care reads it to leave the
# decision to `Casework.decide`, which tells the customer itself.
APPROVED_BY = "approved by "
REJECTED_BY = "rejected by "

_SOLUTION_ZH = {
    "apology": "致歉", "explanation": "解释说明", "resend": "补发", "return_refund": "退货退款",
    "partial_refund": "部分退款", "refund": "退款", "exchange": "换货", "repair": "维修",
    "coupon": "优惠券补偿", "extended_warranty": "延长保修", "public_apology": "公开致歉",
    "compromise": "协商方案", "referral": "转交第三方机构",
}


# ---- tables ---------------------------------------------------------------------------------


class StageRow(Base):
    """One row of the progress tracking table (DOMAIN.md template 2)."""

    __tablename__ = "ticket_stages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ticket_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("tickets.id", ondelete="CASCADE"), index=True)
    stage: Mapped[str] = mapped_column(String(32))
    owner: Mapped[str | None] = mapped_column(String(64))
    planned_at: Mapped[datetime | None]
    actual_at: Mapped[datetime | None]
    result: Mapped[str | None] = mapped_column(Text)
    feedback: Mapped[str | None] = mapped_column(Text)
    next_action: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime]


class NoteRow(Base):
    """An internal note: staff only, never shown to the customer."""

    __tablename__ = "ticket_notes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ticket_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("tickets.id", ondelete="CASCADE"), index=True)
    author: Mapped[str] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime]


class InvestigationRow(Base):
    """The investigation record: problem - evidence - responsibility - proposed solution."""

    __tablename__ = "ticket_investigations"

    ticket_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("tickets.id", ondelete="CASCADE"), primary_key=True)
    problem: Mapped[str | None] = mapped_column(Text)
    evidence: Mapped[str | None] = mapped_column(Text)
    responsible: Mapped[str | None] = mapped_column(String(16))
    proposal: Mapped[str | None] = mapped_column(Text)
    complex: Mapped[bool] = mapped_column(Boolean)
    customer_told: Mapped[bool] = mapped_column(Boolean)
    due: Mapped[datetime]
    updated_by: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime]


class AuditRow(Base):
    """A decision somebody made, kept with the evidence (≥ 3 years)."""

    __tablename__ = "handoff_audit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ticket_id: Mapped[str | None] = mapped_column(String(36), index=True)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)
    at: Mapped[datetime]


# ---- the customer side ----------------------------------------------------------------------


class Relay(Protocol):
    """Puts staff messages and system commands into the customer's conversation."""

    async def agent_message(self, channel: str, chat_id: str, text: str, *,
                            message_id: str) -> None:
        """Send `text` to the customer as the agent, through the conversation's channel."""
        ...

    async def command(self, channel: str, chat_id: str, command: str, *,
                      message_id: str) -> None:
        """Hand the engine a system command (TAKEOVER or HANDBACK)."""
        ...


@dataclass(frozen=True, slots=True)
class Stage:
    stage: str
    owner: str | None
    planned_at: datetime | None
    actual_at: datetime | None
    result: str | None
    feedback: str | None
    next_action: str | None
    actor: str
    at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "owner": self.owner, "planned_at": _iso(self.planned_at),
                "actual_at": _iso(self.actual_at), "result": self.result,
                "feedback": self.feedback, "next_action": self.next_action,
                "actor": self.actor, "updated_at": _iso(self.at)}


def _iso(value: datetime | None) -> str | None:
    return None if value is None else _aware(value).isoformat()


def _text(value: object, name: str, *, limit: int = MAX_TEXT, required: bool = False
          ) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip() and not required):
        if required:
            raise InvalidTicket(f"{name} is required")
        return None
    if not isinstance(value, str) or not value.strip():
        raise InvalidTicket(f"{name} must be a non-empty string")
    if len(value) > limit:
        raise InvalidTicket(f"{name} is longer than {limit} characters")
    return value.strip()


def parse_amount(value: object) -> Decimal | None:
    """A CNY amount from JSON (number or numeric string), two decimals, not negative."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InvalidTicket("amount must be a number of CNY")
    try:
        amount = Decimal(str(value)).quantize(Decimal("0.01"))
    except InvalidOperation as exc:
        raise InvalidTicket(f"bad amount {value!r}") from exc
    if not amount.is_finite() or amount < 0 or amount >= Decimal("1e12"):
        raise InvalidTicket(f"amount out of range: {value!r}")
    return amount


# Form fields staff may edit (template 1), with their length limits.
EDITABLE: Mapping[str, int] = {
    "customer_name": 128, "phone": 64, "email": 254, "customer_id": 128, "member_level": 64,
    "category": 32, "subcategory": 64, "order_id": 128, "product": 500, "purchase_time": 64,
    "incident_time": 64, "demand": 32, "demand_note": 2000, "description": MAX_TEXT,
    "department": 64,
}
_PRIORITIES = ("high", "medium", "low")
_PII_FIELDS = ("phone", "email", "customer_id")


class Casework:
    """Staff actions on tickets, with their rules (roles, transitions, approval, SLA, wording).

    Args:
        store: the ticket store (its database holds the casework tables too).
        relay: how messages reach the customer.
        events: where live console updates go.
        guard: the banned-promise list.
        sla: resolution due times.
        approval_threshold: refunds or compensation above this (CNY) need a supervisor.
        first_response_hours: by priority, used when staff change a ticket's priority.
        clock: the current time (tests move a `ManualClock`).
    """

    def __init__(self, store: TicketStore, relay: Relay, events: Events, *,
                 guard: WordingGuard | None = None, sla: SlaPolicy | None = None,
                 approval_threshold: Decimal = DEFAULT_APPROVAL_THRESHOLD,
                 first_response_hours: Mapping[str, int] | None = None,
                 routing: Routing | None = None, clock: Clock = system_clock) -> None:
        self.store = store
        self.relay = relay
        self.events = events
        self.guard = guard or WordingGuard()
        self.sla = sla or SlaPolicy()
        self.approval_threshold = approval_threshold
        self.first_response_hours = dict(first_response_hours or
                                         {"high": 2, "medium": 4, "low": 24})
        self.routing = routing or Routing()
        self.clock = clock
        self._sessions = async_sessionmaker(store.engine, expire_on_commit=False)

    # ---- reading ------------------------------------------------------------------------

    async def queue(self, user: User, *, status: str | None = None,
                    priority: str | None = None, category: str | None = None,
                    department: str | None = None, assignee: str | None = None,
                    include_closed: bool = False, limit: int = 200) -> list[Ticket]:
        """Tickets, most urgent first: priority, then the first-response due time.

        An agent with a department sees that department's tickets and those they hold.

        Raises:
            Forbidden: not a casework role, or an agent asking for another department.
        """
        _casework(user)
        rank = case({"high": 0, "medium": 1, "low": 2}, value=TicketRow.priority, else_=3)
        query = select(TicketRow).order_by(rank, TicketRow.sla_due, TicketRow.number)
        if user.role is Role.AGENT and user.department:
            if department is not None and department != user.department:
                raise Forbidden(f"agents of {user.department} see their own department's "
                                f"queue, not {department}'s")
            query = query.where(or_(TicketRow.department == user.department,
                                    TicketRow.assignee == user.username))
        for column, value in ((TicketRow.status, status), (TicketRow.priority, priority),
                              (TicketRow.category, category),
                              (TicketRow.department, department),
                              (TicketRow.assignee, assignee)):
            if value is not None:
                query = query.where(column == value)
        if status is None and not include_closed:
            query = query.where(TicketRow.status != S.CLOSED.value)
        async with self._sessions() as session:
            rows = (await session.execute(query.limit(limit))).scalars()
            return [_ticket(r) for r in rows]

    async def view(self, ticket_id: str, user: User, *, reveal: bool = False
                   ) -> dict[str, Any]:
        """The ticket as the console shows it: form, history, notes, transcript, evidence.

        Phone numbers, e-mail, ID and address details are masked unless `reveal` is asked by
        the assignee (or a supervisor); each reveal is audited.

        Raises:
            TicketNotFound, Forbidden.
        """
        ticket = await self._get(ticket_id, user)
        if reveal:
            if not _handles(user, ticket):
                raise Forbidden("personal data is shown only to the agent handling the ticket")
            await self._audit(ticket.id, user, "reveal_pii", {})
        return await self._json(ticket, masked=not reveal)

    async def _json(self, ticket: Ticket, *, masked: bool) -> dict[str, Any]:
        from nlp.pii import mask_pii

        data = ticket.to_dict()
        transcript = await self.store.transcript(ticket.id)
        form = {name: data[name] for name in (
            "number", "customer_name", "phone", "email", "customer_id", "member_level",
            "complained_at", "channel", "category", "subcategory", "priority", "emotion",
            "description", "order_id", "product", "purchase_time", "incident_time", "demand",
            "demand_note", "amount", "currency", "department", "receiver", "registered_at")}
        lines = [{"author": line.author, "text": line.text, "at": line.at.isoformat()}
                 for line in transcript]
        if masked:
            for name in _PII_FIELDS:
                if form[name]:
                    form[name] = _mask_value(form[name])
            form["description"] = mask_pii(form["description"])
            for line in lines:
                line["text"] = mask_pii(line["text"])
        async with self._sessions() as session:
            history = await self._history(session, ticket)
            notes = (await session.execute(select(NoteRow).where(
                NoteRow.ticket_id == ticket.id).order_by(NoteRow.id))).scalars().all()
            investigation = await session.get(InvestigationRow, ticket.id)
        evidence = await self.store.evidence(ticket.id)
        return {
            "id": ticket.id, "number": ticket.number, "status": ticket.status,
            "priority": ticket.priority, "category": ticket.category,
            "department": ticket.department, "assignee": ticket.assignee,
            "sla_due": data["sla_due"], "resolution_due": self.sla.resolution_due(
                ticket).isoformat(),
            "first_responded_at": data["first_responded_at"], "breaches": data["breaches"],
            "solution": ticket.solution, "solution_amount": data["solution_amount"],
            "solution_note": ticket.solution_note, "approval": ticket.approval,
            "approver": ticket.approver, "malicious": ticket.malicious,
            "malicious_reason": ticket.malicious_reason, "merchant": ticket.merchant,
            "merchant_due": data["merchant_due"],
            "merchant_answered_at": data["merchant_answered_at"],
            "confirmation": ticket.confirmation, "reopen_count": ticket.reopen_count,
            "second_handling": ticket.second_handling, "legal_hold": ticket.legal_hold,
            "channel": ticket.channel, "chat_id": ticket.chat_id, "lang": ticket.lang,
            "emotion": ticket.emotion, "handoff_reason": ticket.handoff_reason,
            "updated_at": data["updated_at"], "masked": masked,
            "form": form, "history": [s.to_dict() for s in history],
            "notes": [{"author": n.author, "text": n.text, "at": _iso(n.at)} for n in notes],
            "transcript": lines,
            "evidence": [{"filename": e.filename, "content_type": e.content_type,
                          "sha256": e.sha256, "size": e.size} for e in evidence],
            "investigation": None if investigation is None else _investigation(investigation),
        }

    async def _history(self, session: AsyncSession, ticket: Ticket) -> list[Stage]:
        rows = (await session.execute(select(StageRow).where(
            StageRow.ticket_id == ticket.id).order_by(StageRow.id))).scalars().all()
        first = Stage(stage=S.NEW.value, owner=None, planned_at=ticket.sla_due,
                      actual_at=_aware(rows[0].at) if rows else None, result=None,
                      feedback=None, next_action="claim", actor=ticket.receiver,
                      at=ticket.registered_at)
        return [first, *(Stage(r.stage, r.owner, _maybe(r.planned_at), _maybe(r.actual_at),
                               r.result, r.feedback, r.next_action, r.actor, _aware(r.at))
                         for r in rows)]

    async def audit_log(self, ticket_id: str, user: User) -> list[dict[str, Any]]:
        """The ticket's audit trail, oldest first (supervisors and admins)."""
        _approver(user)
        async with self._sessions() as session:
            rows = (await session.execute(select(AuditRow).where(
                AuditRow.ticket_id == ticket_id).order_by(AuditRow.id))).scalars().all()
        return [{"actor": r.actor, "action": r.action, "detail": r.detail, "at": _iso(r.at)}
                for r in rows]

    # ---- the status machine -------------------------------------------------------------

    async def claim(self, ticket_id: str, user: User) -> Ticket:
        """Take the ticket: exactly one of several simultaneous claims wins.

        The conversation's bot falls silent (TAKEOVER) and the agent owns it.

        Raises:
            InvalidTransition: somebody else holds it, or it is not waiting for a handler.
        """
        now = self.clock()
        ticket = await self._get(ticket_id, user)
        if ticket.assignee == user.username and ticket.status in (s.value for s in _WORKING):
            await self._command(ticket, TAKEOVER)  # a repeated claim: make sure it took
            return ticket
        statement = (
            update(TicketRow)
            .where(TicketRow.id == ticket_id, TicketRow.assignee.is_(None),
                   TicketRow.status.in_([S.NEW.value, S.REOPENED.value]))
            .values(assignee=user.username, handler=user.username,
                    status=S.ASSIGNED.value, updated_at=now)
        )
        try:
            async with self._sessions() as session, session.begin():
                result = await session.execute(statement)
                if result.rowcount != 1:  # type: ignore[attr-defined]
                    current = await session.get(TicketRow, ticket_id)
                    if current is None:
                        raise TicketNotFound(f"no ticket {ticket_id!r}")
                    if current.assignee:
                        raise InvalidTransition(
                            f"ticket {current.number} is already claimed by {current.assignee}")
                    raise InvalidTransition(
                        f"ticket {current.number} is {current.status}; only new or reopened "
                        "tickets can be claimed")
                self._stage(session, ticket, S.ASSIGNED, user, now, owner=user.username,
                            planned=self.sla.resolution_due(ticket),
                            next_action="first response to the customer")
        except SQLAlchemyError as exc:
            raise TicketStoreUnavailable(f"the ticket database failed: {exc}") from exc
        claimed = await self.store.get(ticket_id)
        await self._command(claimed, TAKEOVER)
        await self._publish(claimed, "claimed", user)
        return claimed

    async def release(self, ticket_id: str, user: User, *, note: str | None = None) -> Ticket:
        """Give the ticket back to the queue and the conversation back to the bot."""
        ticket = await self._owned(ticket_id, user)
        ticket = await self._move(ticket, S.NEW, user, values={"assignee": None},
                                  result=note, next_action="claim")
        await self._command(ticket, HANDBACK)
        await self._publish(ticket, "released", user)
        return ticket

    async def update(self, ticket_id: str, user: User, changes: Mapping[str, Any]) -> Ticket:
        """Edit the form (template 1 fields), the priority, or move to investigating.

        Raises:
            InvalidTicket: an unknown field or a bad value.
        """
        ticket = await self._owned(ticket_id, user)
        unknown = set(changes) - set(EDITABLE) - {"priority", "status", "next_action"}
        if unknown:
            raise InvalidTicket(f"these fields cannot be edited: {', '.join(sorted(unknown))}")
        values: dict[str, Any] = {}
        for name, limit in EDITABLE.items():
            if name in changes:
                values[name] = _text(changes[name], name, limit=limit,
                                     required=name in ("description", "department"))
        if "category" in changes and "department" not in changes:
            values["department"] = self.routing.department_for(values["category"])
        if "priority" in changes:
            priority = changes["priority"]
            if priority not in _PRIORITIES:
                raise InvalidTicket(f"priority is one of {', '.join(_PRIORITIES)}")
            hours = self.first_response_hours.get(priority, ticket.sla_hours)
            values.update(priority=priority, sla_hours=hours,
                          sla_due=self.sla.due(ticket.registered_at, hours))
        next_action = _text(changes.get("next_action"), "next_action", limit=500)
        status = changes.get("status")
        if status is not None and status != ticket.status:
            if status != S.INVESTIGATING.value:
                raise InvalidTicket("only status 'investigating' is set by PATCH; use the "
                                    "claim, resolve, approve, release and close actions")
            ticket = await self._move(ticket, S.INVESTIGATING, user, values=values,
                                      next_action=next_action)
        elif values or next_action:
            ticket = await self._write(ticket, user, values, note=next_action)
        await self._publish(ticket, "updated", user)
        return ticket

    async def resolve(self, ticket_id: str, user: User, *, solution: str,
                      amount: Decimal | None, note: str | None) -> Ticket:
        """Record the solution; above the approval threshold it waits for a supervisor."""
        ticket = await self._owned(ticket_id, user)
        try:
            chosen = Solution(solution)
        except ValueError as exc:
            raise InvalidTicket(f"unknown solution {solution!r}; one of "
                                f"{', '.join(s.value for s in Solution)}") from exc
        note = _text(note, "note")
        values: dict[str, Any] = {"solution": chosen.value, "solution_amount": amount,
                                  "solution_note": note, "approver": None}
        result = _result(chosen.value, amount, note)
        if amount is not None and amount > self.approval_threshold:
            values["approval"] = "pending"
            moved = await self._move(ticket, S.AWAITING_APPROVAL, user, values=values,
                                     result=result, next_action="supervisor approval",
                                     planned=self.sla.due(self.clock(), 24))
            await self._audit(ticket.id, user, "approval_requested",
                              {"solution": chosen.value, "amount": str(amount),
                               "threshold": str(self.approval_threshold)})
        else:
            values.update(approval=None, resolved_at=self.clock())
            moved = await self._move(ticket, S.RESOLVED, user, values=values, result=result,
                                     next_action="confirm with the customer, then close")
        await self._publish(moved, "resolved" if moved.status == S.RESOLVED else
                            "awaiting_approval", user)
        return moved

    async def decide(self, ticket_id: str, user: User, *, approve: bool,
                     note: str | None = None) -> Ticket:
        """A supervisor approves (-> resolved) or rejects (-> investigating) the solution.

        The customer is told either way, and the decision audited.
        """
        _approver(user)
        ticket = await self.store.get(ticket_id)
        note = _text(note, "note")
        if approve:
            moved = await self._move(
                ticket, S.RESOLVED, user, require=S.AWAITING_APPROVAL,
                values={"approval": "approved", "approver": user.username,
                        "resolved_at": self.clock()},
                result=f"{APPROVED_BY}{user.username}" + (f": {note}" if note else ""),
                next_action="execute the solution, confirm with the customer, then close")
        else:
            moved = await self._move(
                ticket, S.INVESTIGATING, user,
                values={"approval": "rejected", "approver": user.username},
                require=S.AWAITING_APPROVAL,
                result=f"{REJECTED_BY}{user.username}" + (f": {note}" if note else ""),
                next_action="propose another solution")
        await self._audit(ticket.id, user, "approved" if approve else "rejected",
                          {"solution": ticket.solution, "amount": str(ticket.solution_amount),
                           "note": note})
        await self._tell(moved, _decision_text(moved, approve), f"decision:{uuid.uuid4()}")
        await self._publish(moved, "approved" if approve else "rejected", user)
        return moved

    async def close(self, ticket_id: str, user: User, *, feedback: str | None = None,
                    note: str | None = None) -> Ticket:
        """Close a resolved ticket once the customer confirmed (DOMAIN.md step 7).

        The conversation's open-ticket slot is freed and the bot takes it back.
        """
        ticket = await self._get(ticket_id, user)
        if ticket.assignee != user.username:
            _approver(user)
        moved = await self._move(
            ticket, S.CLOSED, user, values={"open_key": None, "closed_at": self.clock()},
            feedback=_text(feedback, "feedback", limit=2000), result=_text(note, "note"),
            next_action="satisfaction survey in 24-48 h", done=True)
        await self._command(moved, HANDBACK)
        await self._publish(moved, "closed", user)
        return moved

    async def reopen(self, ticket_id: str, user: User, *, reason: str | None = None) -> Ticket:
        """Reopen a resolved or closed ticket: it goes back to the queue, unassigned."""
        ticket = await self._get(ticket_id, user)
        if ticket.assignee != user.username:
            _approver(user)
        values = {"open_key": conversation_key(ticket.channel, ticket.chat_id),
                  "assignee": None, "closed_at": None, "resolved_at": None, "approval": None}
        try:
            moved = await self._move(ticket, S.REOPENED, user, values=values,
                                     result=_text(reason, "reason"),
                                     next_action="second handling by a senior handler")
        except IntegrityError as exc:
            raise InvalidTransition("the conversation has another open ticket; "
                                    "work on that one") from exc
        await self._publish(moved, "reopened", user)
        return moved

    # ---- talking to the customer --------------------------------------------------------

    async def message(self, ticket_id: str, user: User, text: str, *,
                      confirm: bool = False) -> Ticket:
        """Send the agent's text to the customer through their own channel.

        Raises:
            WordingViolation: the text makes a banned promise and `confirm` is not set.
        """
        ticket = await self._owned(ticket_id, user, statuses=None)
        if not ticket.is_open:
            raise InvalidTransition(f"ticket {ticket.number} is closed; reopen it first")
        if ticket.assignee is None:
            # Talking takes the conversation from the bot: only with a claim on record.
            raise InvalidTransition(f"ticket {ticket.number} is not claimed; claim it first")
        body = _text(text, "text", required=True)
        assert body is not None
        found = self.guard.violations(body)
        if found and not confirm:
            await self._audit(ticket.id, user, "wording_blocked",
                              {"phrases": list(found), "text": body})
            raise WordingViolation(found)
        if found:
            await self._audit(ticket.id, user, "wording_confirmed",
                              {"phrases": list(found), "text": body})
        await self._tell(ticket, body, f"agent:{uuid.uuid4()}")
        if ticket.first_responded_at is None:
            async with self._sessions() as session, session.begin():
                await session.execute(update(TicketRow).where(
                    TicketRow.id == ticket.id, TicketRow.first_responded_at.is_(None)
                ).values(first_responded_at=self.clock()))
        ticket = await self.store.get(ticket.id)
        await self._publish(ticket, "message", user)
        return ticket

    async def note(self, ticket_id: str, user: User, text: str) -> None:
        """Add an internal note (never shown to the customer)."""
        ticket = await self._get(ticket_id, user)
        body = _text(text, "text", required=True)
        async with self._sessions() as session, session.begin():
            session.add(NoteRow(ticket_id=ticket.id, author=user.username, text=body,
                                at=self.clock()))
        await self._publish(ticket, "note", user)

    async def check_bot_message(self, channel: str, chat_id: str, text: str) -> tuple[str, ...]:
        """Check a message the bot is sending; a banned promise is logged and audited.

        The bot's words come from reply templates and knowledge-base answers, so a hit means
        one of those needs an editor: the message still goes out, and the audit row says
        which conversation got it.
        """
        found = self.guard.violations(text)
        if found:
            ticket_id = await self.store.open_ticket_id(channel, chat_id)
            log.warning("the bot promised %s to %s:%s; fix the template or KB answer",
                        "、".join(found), channel, chat_id)
            async with self._sessions() as session, session.begin():
                session.add(AuditRow(ticket_id=ticket_id, actor="intakebot",
                                     action="wording_bot",
                                     detail={"phrases": list(found), "text": text,
                                             "conversation": conversation_key(channel,
                                                                              chat_id)},
                                     at=self.clock()))
        return found

    # ---- investigation, merchants, flags ------------------------------------------------

    async def investigate(self, ticket_id: str, user: User, data: Mapping[str, Any]
                          ) -> dict[str, Any]:
        """Write the investigation record; basic facts are due in 3 working days (5 if complex).

        A ticket still `assigned` moves to `investigating`.
        """
        ticket = await self._owned(ticket_id, user)
        unknown = set(data) - {"problem", "evidence", "responsible", "proposal", "complex",
                               "customer_told"}
        if unknown:
            raise InvalidTicket(f"unknown investigation fields: {', '.join(sorted(unknown))}")
        responsible = data.get("responsible")
        if responsible is not None:
            try:
                responsible = Responsible(responsible).value
            except ValueError as exc:
                raise InvalidTicket(f"responsible is one of "
                                    f"{', '.join(r.value for r in Responsible)}") from exc
        complex_ = data.get("complex", False)
        told = data.get("customer_told", False)
        if not isinstance(complex_, bool) or not isinstance(told, bool):
            raise InvalidTicket("complex and customer_told are true or false")
        if complex_ and not told:
            raise InvalidTicket("a complex case takes 5 working days: tell the customer, and "
                                "set customer_told")
        days = COMPLEX_INVESTIGATION_DAYS if complex_ else INVESTIGATION_DAYS
        now = self.clock()
        async with self._sessions() as session, session.begin():
            row = await session.get(InvestigationRow, ticket.id)
            if row is None:
                row = InvestigationRow(ticket_id=ticket.id, complex=False,
                                       customer_told=False, due=now, updated_by="",
                                       updated_at=now)
                session.add(row)
            row.problem = _text(data.get("problem"), "problem")
            row.evidence = _text(data.get("evidence"), "evidence")
            row.responsible = responsible
            row.proposal = _text(data.get("proposal"), "proposal")
            row.complex, row.customer_told = complex_, told
            row.due = self.sla.investigation_due(ticket.registered_at, days)
            row.updated_by, row.updated_at = user.username, now
            record = _investigation(row)
        if ticket.status == S.ASSIGNED.value:
            ticket = await self._move(ticket, S.INVESTIGATING, user,
                                      planned=_aware(row.due),
                                      next_action="finish the investigation")
        await self._publish(ticket, "investigation", user)
        return record

    async def flag_malicious(self, ticket_id: str, user: User, reason: str) -> Ticket:
        """Flag a suspected malicious complaint for legal review (audited)."""
        ticket = await self._get(ticket_id, user)
        why = _text(reason, "reason", required=True)
        ticket = await self._write(ticket, user, {"malicious": True, "malicious_reason": why})
        await self._audit(ticket.id, user, "flag_malicious", {"reason": why})
        await self._publish(ticket, "flagged", user)
        return ticket

    async def copy_merchant(self, ticket_id: str, user: User, merchant: str) -> Ticket:
        """Copy the complaint to the merchant team, who must answer within 24 h."""
        ticket = await self._owned(ticket_id, user)
        name = _text(merchant, "merchant", limit=128, required=True)
        due = self.clock() + timedelta(hours=self.sla.merchant_hours)
        ticket = await self._write(ticket, user, {"merchant": name, "merchant_due": due,
                                                  "merchant_answered_at": None},
                                   note=f"copied to merchant {name}, answer due")
        await self._audit(ticket.id, user, "merchant_copied", {"merchant": name})
        await self._publish(ticket, "merchant", user)
        return ticket

    async def merchant_answered(self, ticket_id: str, user: User, text: str) -> Ticket:
        """Record the merchant team's answer (stops its 24 h clock)."""
        ticket = await self._owned(ticket_id, user)
        if ticket.merchant is None:
            raise InvalidTransition("the ticket was not copied to a merchant")
        await self.note(ticket.id, user, f"[{ticket.merchant}] " + str(
            _text(text, "text", required=True)))
        ticket = await self._write(ticket, user, {"merchant_answered_at": self.clock()})
        await self._publish(ticket, "merchant", user)
        return ticket

    # ---- SLA ----------------------------------------------------------------------------

    async def check_sla(self) -> list[tuple[Ticket, list[Breach]]]:
        """Flag every open ticket that broke a promise since the last check (once each).

        A breach is recorded on the ticket, audited, and published to the consoles, where
        supervisors see it.
        """
        now = self.clock()
        flagged: list[tuple[Ticket, list[Breach]]] = []
        query = (select(TicketRow, InvestigationRow.due)
                 .outerjoin(InvestigationRow, InvestigationRow.ticket_id == TicketRow.id)
                 .where(TicketRow.open_key.is_not(None)))
        async with self._sessions() as session, session.begin():
            for row, investigation_due in (await session.execute(query)).all():
                ticket = _ticket(row)
                found = self.sla.breaches(ticket, now, _maybe(investigation_due))
                new = [b for b in found if b.value not in ticket.breaches]
                if not new:
                    continue
                row.breaches = [*ticket.breaches, *(b.value for b in new)]
                session.add(AuditRow(ticket_id=row.id, actor="system", action="sla_breach",
                                     detail={"breaches": [b.value for b in new]}, at=now))
                flagged.append((_ticket(row), new))
        for ticket, new in flagged:
            log.warning("ticket %s breached %s", ticket.number, ", ".join(b.value for b in new))
            await self.events.publish({"type": "sla_breach", "ticket_id": ticket.id,
                                       "number": ticket.number,
                                       "breaches": [b.value for b in new],
                                       "audience": "supervisor"})
        return flagged

    # ---- after-care (customer answers) --------------------------------------------------
    # The customer's own answers to the bot's after-care questions (handoff.aftercare). They
    # run inside the customer's conversation turn, so they never send to the conversation
    # themselves (that would wait for its lock): the bot says what happened.

    SYSTEM: User = User(id="system", username="intakebot", role=Role.SUPERVISOR, department=None)

    async def customer_confirmed(self, ticket_id: str) -> Ticket:
        """The customer says the resolved problem is solved: close the ticket (audited).

        Raises:
            InvalidTransition: the ticket is no longer resolved.
        """
        ticket = await self.store.get(ticket_id)
        moved = await self._move(
            ticket, S.CLOSED, self.SYSTEM, require=S.RESOLVED,
            values={"open_key": None, "closed_at": self.clock(), "confirmation": "confirmed"},
            feedback="customer confirmed the problem is solved",
            next_action="satisfaction survey in 24-48 h", done=True)
        await self._audit(ticket.id, self.SYSTEM, "customer_confirmed", {})
        await self._publish(moved, "closed", self.SYSTEM)
        return moved

    async def customer_denied(self, ticket_id: str) -> Ticket:
        """The customer says it is not solved: reopen for its owner, who is told (audited).

        Raises:
            InvalidTransition: the ticket is no longer resolved.
        """
        ticket = await self.store.get(ticket_id)
        owner = ticket.assignee
        moved = await self._move(
            ticket, S.REOPENED, self.SYSTEM, require=S.RESOLVED,
            values={"assignee": None, "resolved_at": None, "approval": None,
                    "confirmation": "denied", "reopen_count": TicketRow.reopen_count + 1},
            feedback="customer says the problem is not solved",
            next_action=f"{owner or 'the handler'}: claim it again and follow up")
        async with self._sessions() as session, session.begin():
            session.add(NoteRow(ticket_id=ticket.id, author=self.SYSTEM.username,
                                text="客户表示问题仍未解决，工单已重新打开。", at=self.clock()))
        await self._audit(ticket.id, self.SYSTEM, "customer_denied", {"owner": owner})
        await self.events.publish({"type": "ticket", "event": "customer_denied",
                                   "ticket_id": moved.id, "number": moved.number,
                                   "status": moved.status, "assignee": owner, "to": owner,
                                   "by": self.SYSTEM.username})
        return moved

    async def start_second_handling(self, ticket_id: str, overall: int) -> Ticket:
        """An unsatisfied customer (survey): reopen for a senior handler, tell supervisors.

        A conversation that has another open ticket meanwhile keeps this one closed; it is
        still flagged and the supervisors are told.
        """
        ticket = await self.store.get(ticket_id)
        reason = f"satisfaction survey: overall {overall}/5"
        if ticket.status == S.CLOSED.value:
            values = {"open_key": conversation_key(ticket.channel, ticket.chat_id),
                      "assignee": None, "closed_at": None, "resolved_at": None,
                      "approval": None, "second_handling": True,
                      "reopen_count": TicketRow.reopen_count + 1}
            try:
                ticket = await self._move(ticket, S.REOPENED, self.SYSTEM, values=values,
                                          result=reason,
                                          next_action="second handling by a senior handler")
            except IntegrityError:
                ticket = await self._write(ticket, self.SYSTEM, {"second_handling": True})
        else:
            ticket = await self._write(ticket, self.SYSTEM, {"second_handling": True})
        await self._audit(ticket.id, self.SYSTEM, "second_handling", {"overall": overall})
        await self.events.publish({"type": "second_handling", "ticket_id": ticket.id,
                                   "number": ticket.number, "status": ticket.status,
                                   "overall": overall, "audience": "supervisor"})
        return ticket

    # ---- internals ----------------------------------------------------------------------

    async def _get(self, ticket_id: str, user: User) -> Ticket:
        """The ticket, when the staff member's role and department let them work on it.

        Raises:
            Forbidden: not a casework role, or another department's ticket.
            TicketNotFound: no such ticket.
        """
        _casework(user)
        ticket = await self.store.get(ticket_id)
        if not _in_department(user, ticket):
            raise Forbidden(f"ticket {ticket.number} belongs to department {ticket.department}; "
                            f"agents of {user.department} work on their own department's "
                            "tickets (ask a supervisor to transfer it)")
        return ticket

    async def _owned(self, ticket_id: str, user: User,
                     statuses: Sequence[S] | None = _WORKING) -> Ticket:
        ticket = await self._get(ticket_id, user)
        if not _handles(user, ticket):
            raise Forbidden(f"ticket {ticket.number} is handled by "
                            f"{ticket.assignee or 'nobody yet'}; claim it first")
        if statuses is not None and ticket.status not in (s.value for s in statuses):
            raise InvalidTransition(f"ticket {ticket.number} is {ticket.status}; this needs "
                                    f"one of {', '.join(s.value for s in statuses)}")
        return ticket

    async def _move(self, ticket: Ticket, target: S, user: User, *,
                    values: Mapping[str, Any] | None = None, require: S | None = None,
                    result: str | None = None, feedback: str | None = None,
                    next_action: str | None = None, planned: datetime | None = None,
                    done: bool = False) -> Ticket:
        current = S(ticket.status)
        if require is not None and current is not require:
            raise InvalidTransition(
                f"ticket {ticket.number} is {current.value}; this needs {require.value}")
        if target not in TRANSITIONS.get(current, frozenset()):
            raise InvalidTransition(
                f"ticket {ticket.number} cannot go from {current.value} to {target.value}")
        if target is S.RESOLVED and current is S.AWAITING_APPROVAL and not (
                values and values.get("approval") == "approved"):
            raise InvalidTransition("a solution above the threshold needs a supervisor")
        now = self.clock()
        fields = {**(values or {}), "status": target.value, "updated_at": now}
        statement = (update(TicketRow)
                     .where(TicketRow.id == ticket.id, TicketRow.status == current.value)
                     .values(**fields))
        try:
            async with self._sessions() as session, session.begin():
                if (await session.execute(statement)).rowcount != 1:  # type: ignore[attr-defined]
                    raise InvalidTransition(
                        f"ticket {ticket.number} changed meanwhile; reload it")
                owner = fields.get("assignee", ticket.assignee)
                self._stage(session, ticket, target, user, now, owner=owner,
                            planned=planned or (self.sla.resolution_due(ticket)
                                                if target in _WORKING else None),
                            result=result, feedback=feedback, next_action=next_action,
                            done=done)
        except IntegrityError:
            raise
        except SQLAlchemyError as exc:
            raise TicketStoreUnavailable(f"the ticket database failed: {exc}") from exc
        return await self.store.get(ticket.id)

    async def _write(self, ticket: Ticket, user: User, values: Mapping[str, Any], *,
                     note: str | None = None) -> Ticket:
        now = self.clock()
        async with self._sessions() as session, session.begin():
            await session.execute(update(TicketRow).where(TicketRow.id == ticket.id)
                                  .values(**values, updated_at=now))
            if note:
                await self._touch_stage(session, ticket.id, note)
        return await self.store.get(ticket.id)

    @staticmethod
    async def _touch_stage(session: AsyncSession, ticket_id: str, next_action: str) -> None:
        row = (await session.execute(select(StageRow).where(
            StageRow.ticket_id == ticket_id).order_by(StageRow.id.desc()).limit(1))
        ).scalar_one_or_none()
        if row is not None:
            row.next_action = next_action

    @staticmethod
    def _stage(session: AsyncSession, ticket: Ticket, target: S, user: User, now: datetime,
               *, owner: str | None, planned: datetime | None, result: str | None = None,
               feedback: str | None = None, next_action: str | None = None,
               done: bool = False) -> None:
        # The previous stage ends now: its actual completion (template 2).
        session.add(StageRow(ticket_id=ticket.id, stage=target.value, owner=owner,
                             planned_at=planned, actual_at=now if done else None,
                             result=result, feedback=feedback, next_action=next_action,
                             actor=user.username, at=now))

    async def _audit(self, ticket_id: str | None, user: User, action: str,
                     detail: dict[str, Any]) -> None:
        async with self._sessions() as session, session.begin():
            session.add(AuditRow(ticket_id=ticket_id, actor=user.username, action=action,
                                 detail=detail, at=self.clock()))

    async def _command(self, ticket: Ticket, command: str) -> None:
        await self.relay.command(ticket.channel, ticket.chat_id, command,
                                 message_id=f"{command[1:]}:{uuid.uuid4()}")

    async def _tell(self, ticket: Ticket, text: str, message_id: str) -> None:
        """Send staff's words to the customer; they count as news for the progress updates."""
        await self.relay.agent_message(ticket.channel, ticket.chat_id, text,
                                       message_id=message_id)
        async with self._sessions() as session, session.begin():
            await session.execute(update(TicketRow).where(TicketRow.id == ticket.id)
                                  .values(customer_updated_at=self.clock()))

    async def _publish(self, ticket: Ticket, what: str, user: User | None) -> None:
        event: Event = {"type": "ticket", "event": what, "ticket_id": ticket.id,
                        "number": ticket.number, "status": ticket.status,
                        "assignee": ticket.assignee,
                        "by": None if user is None else user.username}
        await self.events.publish(event)


def _casework(user: User) -> None:
    if user.role not in CASEWORK_ROLES:
        raise Forbidden(f"role {user.role.value} does not work on tickets")


def _approver(user: User) -> None:
    if user.role not in APPROVER_ROLES:
        raise Forbidden("this needs a supervisor or an admin")


def _in_department(user: User, ticket: Ticket) -> bool:
    # An agent with a department works on its tickets, and on any ticket they hold (so changing
    # a held ticket's department does not lock its holder out mid-work); agents without one,
    # supervisors and admins work on all.
    return (user.role is not Role.AGENT or not user.department
            or ticket.department == user.department or ticket.assignee == user.username)


def _handles(user: User, ticket: Ticket) -> bool:
    return ticket.assignee == user.username or user.role in APPROVER_ROLES


def _maybe(value: datetime | None) -> datetime | None:
    return None if value is None else _aware(value)


def _mask_value(value: str) -> str:
    from nlp.pii import mask_pii

    masked = mask_pii(value)
    if masked != value:
        return masked
    # A value the text masker does not recognise on its own (a bare member id): keep the ends.
    return value[:2] + "*" * max(len(value) - 4, 1) + value[-2:] if len(value) > 4 else "****"


def _result(solution: str, amount: Decimal | None, note: str | None) -> str:
    text = solution + (f" {amount} CNY" if amount is not None else "")
    return text + (f": {note}" if note else "")


def _investigation(row: InvestigationRow) -> dict[str, Any]:
    return {"problem": row.problem, "evidence": row.evidence, "responsible": row.responsible,
            "proposal": row.proposal, "complex": row.complex,
            "customer_told": row.customer_told, "due": _iso(row.due),
            "updated_by": row.updated_by, "updated_at": _iso(row.updated_at)}


def _decision_text(ticket: Ticket, approved: bool) -> str:
    solution = _SOLUTION_ZH.get(ticket.solution or "", ticket.solution or "")
    amount = f" {ticket.solution_amount} 元" if ticket.solution_amount is not None else ""
    if ticket.lang == "en":
        if approved:
            return (f"Your complaint {ticket.number}: the solution ({ticket.solution}"
                    f"{' ' + str(ticket.solution_amount) + ' CNY' if amount else ''}) "
                    "has been approved and will be carried out shortly.")
        return (f"Your complaint {ticket.number} needs a little more checking; "
                "we will get back to you soon.")
    if approved:
        return (f"您的投诉 {ticket.number} 的处理方案（{solution}{amount}）已获批准，"
                "我们会尽快为您办理。")
    return f"您的投诉 {ticket.number} 的处理方案还需要进一步核实，我们会尽快给您答复。"
