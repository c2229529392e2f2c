"""Service-level due times (DOMAIN.md steps 2, 4 and 5) and the clock they are measured on.

Every due time is computed from timestamps stored with the ticket (registration, merchant copy,
investigation start), never from an in-memory timer, so they survive restarts: a periodic check
compares them with the clock and flags each breach once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import Enum
from types import MappingProxyType

from handoff.tickets import CHINA_TZ, Ticket

Clock = Callable[[], datetime]

DEFAULT_RESOLUTION_HOURS: Mapping[str, int] = MappingProxyType(
    {"high": 24, "medium": 72, "low": 120})
MERCHANT_HOURS = 24
INVESTIGATION_DAYS = 3
COMPLEX_INVESTIGATION_DAYS = 5


def system_clock() -> datetime:
    return datetime.now(UTC)


class ManualClock:
    """A clock that stands still until moved: tests and demos of SLA breaches."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> datetime:
        self.now += delta
        return self.now


class Breach(str, Enum):
    """Which promise was broken."""

    FIRST_RESPONSE = "first_response"
    RESOLUTION = "resolution"
    MERCHANT = "merchant"
    INVESTIGATION = "investigation"


def add_working_days(start: datetime, days: int) -> datetime:
    """`start` plus `days` working days (Monday-Friday, China time); public holidays not known."""
    local = start.astimezone(CHINA_TZ)
    left = days
    while left > 0:
        local += timedelta(days=1)
        if local.weekday() < 5:
            left -= 1
    return local.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class SlaPolicy:
    """Resolution hours by priority; the first-response due time is the ticket's `sla_due`."""

    resolution_hours: Mapping[str, int] = field(
        default_factory=lambda: DEFAULT_RESOLUTION_HOURS)
    merchant_hours: int = MERCHANT_HOURS

    def resolution_due(self, ticket: Ticket) -> datetime:
        hours = self.resolution_hours.get(ticket.priority, max(self.resolution_hours.values()))
        return ticket.registered_at + timedelta(hours=hours)

    def breaches(self, ticket: Ticket, now: datetime,
                 investigation_due: datetime | None = None) -> list[Breach]:
        """The promises this open ticket has broken by `now`."""
        found: list[Breach] = []
        if not ticket.is_open or ticket.status == "resolved":
            return found
        if ticket.first_responded_at is None and ticket.sla_due <= now:
            found.append(Breach.FIRST_RESPONSE)
        if ticket.resolved_at is None and self.resolution_due(ticket) <= now:
            found.append(Breach.RESOLUTION)
        if (ticket.merchant_due is not None and ticket.merchant_answered_at is None
                and ticket.merchant_due <= now):
            found.append(Breach.MERCHANT)
        if investigation_due is not None and investigation_due <= now:
            found.append(Breach.INVESTIGATION)
        return found


def parse_hours(text: str) -> dict[str, int]:
    """``"high=24,medium=72,low=120"`` -> a priority -> hours mapping.

    Raises:
        ValueError: the text is malformed.
    """
    hours: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        if not sep or name.strip() not in ("high", "medium", "low") or int(value) <= 0:
            raise ValueError(f"expected priority=hours, e.g. high=24; got {part!r}")
        hours[name.strip()] = int(value)
    return hours
