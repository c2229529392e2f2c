"""Service-level due times (DOMAIN.md steps 2, 4 and 5) and the clock they are measured on.

Every due time is computed from timestamps stored with the ticket (registration, merchant copy,
investigation start), never from an in-memory timer, so they survive restarts: a periodic check
compares them with the clock and flags each breach once.

With `BusinessHours` configured, the first-response and resolution hours count only time inside
the working hours of working days (`add_business_hours`); without, they are calendar hours.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from enum import Enum
from types import MappingProxyType
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from handoff.tickets import Ticket

Clock = Callable[[], datetime]

DEFAULT_RESOLUTION_HOURS: Mapping[str, int] = MappingProxyType(
    {"high": 24, "medium": 72, "low": 120})
MERCHANT_HOURS = 24
INVESTIGATION_DAYS = 3
COMPLEX_INVESTIGATION_DAYS = 5
DEFAULT_TIMEZONE = "Asia/Shanghai"
DEFAULT_DAYS = "mon-fri"
_DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HOURS = re.compile(r"(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})")


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


@dataclass(frozen=True, slots=True)
class BusinessHours:
    """The desk's working time: the same daily window on each working day, in one time zone.

    Attributes:
        opens: minutes after local midnight the desk opens (0-1439).
        closes: minutes after local midnight it closes (opens < closes <= 1440, so 24:00 works).
        days: working weekdays, Monday = 0.
        tz: the desk's time zone.
    """

    opens: int
    closes: int
    days: frozenset[int]
    tz: tzinfo

    def __post_init__(self) -> None:
        if not 0 <= self.opens < self.closes <= 24 * 60:
            raise ValueError("business hours must open before they close, within 00:00-24:00")
        if not self.days or not self.days <= set(range(7)):
            raise ValueError("business days must name at least one weekday")

    @classmethod
    def parse(cls, hours: str, days: str = DEFAULT_DAYS,
              timezone: str = DEFAULT_TIMEZONE) -> BusinessHours:
        """``"09:00-18:00"``, ``"mon-fri"`` (or ``"mon,wed,sat-sun"``), ``"Asia/Shanghai"``.

        Raises:
            ValueError: any of them is malformed or unknown.
        """
        found = _HOURS.fullmatch(hours.strip())
        if found is None:
            raise ValueError(f"expected business hours like 09:00-18:00; got {hours!r}")
        h1, m1, h2, m2 = (int(g) for g in found.groups())
        if h1 > 23 or h2 > 24 or m1 > 59 or m2 > 59 or (h2 == 24 and m2):
            raise ValueError(f"not a time of day in {hours!r}")
        try:
            zone = ZoneInfo(timezone.strip())
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {timezone!r} (e.g. Asia/Shanghai)") from exc
        return cls(h1 * 60 + m1, h2 * 60 + m2, parse_days(days), zone)

    def window(self, day: date) -> tuple[datetime, datetime] | None:
        """The working window of a local calendar day, as aware datetimes; None on a day off."""
        if day.weekday() not in self.days:
            return None
        midnight = datetime.combine(day, time(), tzinfo=self.tz)
        # Wall-clock arithmetic on the zone's time, then UTC: 09:00 stays 09:00 local on a
        # daylight-saving day in zones that have one.
        start = (midnight + timedelta(minutes=self.opens)).astimezone(UTC)
        end = (midnight + timedelta(minutes=self.closes)).astimezone(UTC)
        return (start, end) if start < end else None  # a window inside a skipped hour


def parse_days(text: str) -> frozenset[int]:
    """``"mon-fri"``, ``"mon-sat"``, ``"mon,wed,fri"`` -> weekday numbers (Monday = 0).

    Raises:
        ValueError: an unknown day name, or no day at all.
    """
    days: set[int] = set()
    for part in filter(None, (p.strip().lower() for p in text.split(","))):
        first, _, last = part.partition("-")
        try:
            a = _DAY_NAMES.index(first.strip()[:3])
            b = _DAY_NAMES.index(last.strip()[:3]) if last else a
        except ValueError as exc:
            raise ValueError(f"expected days like mon-fri or mon,wed,fri; got {text!r}") from exc
        days.update((a + i) % 7 for i in range((b - a) % 7 + 1))
    if not days:
        raise ValueError(f"expected days like mon-fri or mon,wed,fri; got {text!r}")
    return frozenset(days)


def add_business_hours(start: datetime, hours: float,
                       calendar: BusinessHours | None = None) -> datetime:
    """The time `hours` after `start`, counting only business time when a calendar is given.

    Time outside the working window does not count: with 09:00-18:00 Monday-Friday, two hours
    from Friday 17:30 are Monday 10:30. Without a calendar it is plain `start + hours`.
    The result is in UTC.

    Raises:
        ValueError: `hours` is negative or `start` is naive.
    """
    if hours < 0:
        raise ValueError("hours must not be negative")
    if start.tzinfo is None:
        raise ValueError("start must be an aware datetime")
    left = timedelta(hours=hours)
    cursor = start.astimezone(UTC)
    if calendar is None:
        return cursor + left
    day = start.astimezone(calendar.tz).date()
    while True:
        window = calendar.window(day)
        day += timedelta(days=1)
        if window is None or window[1] <= cursor:
            continue
        cursor = max(cursor, window[0])
        available = window[1] - cursor
        if left <= available:
            return cursor + left
        left -= available
        cursor = window[1]


def add_working_days(start: datetime, days: int, calendar: BusinessHours | None = None
                     ) -> datetime:
    """`start` plus `days` working days: the calendar's days and zone, or Monday-Friday, China
    time; public holidays are not known."""
    work_days = calendar.days if calendar is not None else frozenset(range(5))
    zone = calendar.tz if calendar is not None else ZoneInfo(DEFAULT_TIMEZONE)
    local = start.astimezone(zone)
    left = days
    while left > 0:
        local += timedelta(days=1)
        if local.weekday() in work_days:
            left -= 1
    return local.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class SlaPolicy:
    """Resolution hours by priority and the business hours they count in.

    The first-response due time is the ticket's `sla_due`, set with `due` at registration.
    The merchant's 24 h stay calendar hours: they are the merchant team's promise, not the
    desk's working time.
    """

    resolution_hours: Mapping[str, int] = field(
        default_factory=lambda: DEFAULT_RESOLUTION_HOURS)
    merchant_hours: int = MERCHANT_HOURS
    business_hours: BusinessHours | None = None

    def due(self, start: datetime, hours: float) -> datetime:
        """`hours` of the desk's time after `start` (business time when configured)."""
        return add_business_hours(start, hours, self.business_hours)

    def resolution_due(self, ticket: Ticket) -> datetime:
        hours = self.resolution_hours.get(ticket.priority, max(self.resolution_hours.values()))
        return self.due(ticket.registered_at, hours)

    def investigation_due(self, start: datetime, days: int) -> datetime:
        """`days` working days after `start`: the calendar's working days when configured."""
        return add_working_days(start, days, self.business_hours)

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
