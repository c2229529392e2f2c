"""What the bot hands to the ticket desk: a prefilled registration form (DOMAIN.md template 1).

Plain values only (no channel or engine types), so the bot depends on handoff and never the
reverse.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Protocol


class HandoffReason(str, Enum):
    """Why the conversation reached a human (issue: when the bot hands off)."""

    REQUESTED_HUMAN = "requested_human"
    HIGH_PRIORITY = "high_priority"
    STRONG_ANGER = "strong_anger"
    NO_KB_ANSWER = "no_kb_answer"
    NEEDS_INVESTIGATION = "needs_investigation"


@dataclass(frozen=True, slots=True)
class EvidenceRef:
    """A stored evidence file (content-addressed by SHA-256 under the data directory)."""

    filename: str
    content_type: str
    sha256: str
    size: int


@dataclass(frozen=True, slots=True)
class TranscriptLine:
    author: str  # customer | agent | system
    text: str
    at: datetime


@dataclass(frozen=True, slots=True)
class TicketDraft:
    """The complaint form as the bot filled it; None where the customer did not say."""

    channel: str
    chat_id: str
    lang: str
    description: str  # the customer's own account of the problem
    category: str | None
    subcategory: str | None
    priority: str
    priority_reasons: tuple[str, ...]
    sla_hours: int
    emotion: str
    reason: HandoffReason
    customer_name: str | None = None
    phone: str | None = None
    email: str | None = None
    customer_id: str | None = None
    order_id: str | None = None
    product: str | None = None
    purchase_time: str | None = None
    incident_time: str | None = None
    demand: str | None = None  # refund | exchange | repair | apology | compensation | other
    demand_note: str | None = None
    amount: float | None = None
    currency: str | None = None
    evidence: tuple[EvidenceRef, ...] = ()
    transcript: tuple[TranscriptLine, ...] = field(default=(), repr=False)


@dataclass(frozen=True, slots=True)
class Receipt:
    """What the customer is told on registration (DOMAIN.md step 3)."""

    ticket_id: str
    number: str  # human-friendly complaint number
    department: str
    sla_due: datetime
    handler: str | None  # name or staff id once assigned


class TicketDesk(Protocol):
    """The handoff side the engine talks to."""

    async def register(self, draft: TicketDraft) -> Receipt:
        """Create the ticket (or update the open one of this conversation) and return a receipt."""
        ...

    async def append(self, channel: str, chat_id: str, line: TranscriptLine,
                     evidence: tuple[EvidenceRef, ...] = ()) -> None:
        """Add a line (and the files sent with it) to the conversation's open ticket, if any."""
        ...

    async def ticket_open(self, ticket_id: str) -> bool:
        """Whether the ticket is still open (False once closed, or when unknown)."""
        ...

    async def answer_confirmation(self, ticket_id: str, solved: bool) -> bool:
        """The customer's answer to "is it solved?": close or reopen the resolved ticket.

        False when the ticket is no longer waiting for that answer (nothing changed).
        """
        ...

    async def answer_survey(self, ticket_id: str, answers: Mapping[str, object]) -> bool:
        """Record satisfaction-survey answers (question -> value; handoff.survey.QUESTIONS).

        True when these answers started second handling (an unsatisfied customer).
        """
        ...
