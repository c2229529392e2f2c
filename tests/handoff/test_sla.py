"""Business-hours due times: examples from the SOP and properties over any start and length."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from handoff.sla import (
    BusinessHours,
    SlaPolicy,
    add_business_hours,
    add_working_days,
    parse_days,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
OFFICE = BusinessHours.parse("09:00-18:00")  # Monday-Friday, Shanghai


def local(year: int, month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=SHANGHAI)


def test_friday_evening_high_priority_is_due_monday_morning() -> None:
    friday = local(2026, 11, 27, 17, 30)
    assert friday.weekday() == 4
    assert add_business_hours(friday, 2, OFFICE) == local(2026, 11, 30, 10, 30)


@pytest.mark.parametrize(("start", "hours", "due"), [
    (local(2026, 11, 23, 10, 0), 2, local(2026, 11, 23, 12, 0)),   # inside the day
    (local(2026, 11, 23, 7, 0), 2, local(2026, 11, 23, 11, 0)),    # before opening
    (local(2026, 11, 23, 20, 0), 4, local(2026, 11, 24, 13, 0)),   # after closing
    (local(2026, 11, 28, 12, 0), 2, local(2026, 11, 30, 11, 0)),   # on Saturday
    (local(2026, 11, 23, 16, 0), 24, local(2026, 11, 26, 13, 0)),  # 2 + 9 + 9 + 4 h
    (local(2026, 11, 23, 9, 0), 9, local(2026, 11, 23, 18, 0)),    # exactly one day
    (local(2026, 11, 23, 18, 0), 0.5, local(2026, 11, 24, 9, 30)),  # at closing time
])
def test_only_business_time_counts(start: datetime, hours: float, due: datetime) -> None:
    assert add_business_hours(start, hours, OFFICE) == due


def test_the_result_is_utc_and_without_a_calendar_it_is_calendar_time() -> None:
    start = local(2026, 11, 27, 17, 30)
    due = add_business_hours(start, 2, OFFICE)
    assert due.tzinfo is UTC
    assert add_business_hours(start, 2) == start + timedelta(hours=2)
    assert add_business_hours(start, 2, None).tzinfo is UTC


def test_saturdays_can_be_working_days_and_other_zones_are_honoured() -> None:
    six_days = BusinessHours.parse("09:00-18:00", "mon-sat")
    friday = local(2026, 11, 27, 17, 30)
    assert add_business_hours(friday, 2, six_days) == local(2026, 11, 28, 10, 30)
    berlin = ZoneInfo("Europe/Berlin")
    desk = BusinessHours.parse("08:00-16:00", "mon-fri", "Europe/Berlin")
    start = datetime(2026, 11, 23, 15, 0, tzinfo=berlin)
    assert add_business_hours(start, 3, desk) == datetime(2026, 11, 24, 10, 0, tzinfo=berlin)


def test_a_window_may_close_at_midnight() -> None:
    late = BusinessHours.parse("23:00-24:00", "mon")
    monday = local(2026, 11, 23, 22, 0)
    assert add_business_hours(monday, 1, late) == local(2026, 11, 24, 0, 0)
    assert add_business_hours(monday, 1.5, late) == local(2026, 11, 30, 23, 30)


def test_a_daylight_saving_day_keeps_the_local_opening_time() -> None:
    desk = BusinessHours.parse("09:00-17:00", "mon-sun", "Europe/Berlin")
    berlin = ZoneInfo("Europe/Berlin")
    # The clocks go forward in the night to Sunday 2026-03-29.
    saturday = datetime(2026, 3, 28, 16, 0, tzinfo=berlin)
    assert add_business_hours(saturday, 2, desk) == datetime(2026, 3, 29, 10, 0, tzinfo=berlin)


def test_parsing_days_hours_and_zones() -> None:
    assert parse_days("mon-fri") == frozenset(range(5))
    assert parse_days("MON-SAT") == frozenset(range(6))
    assert parse_days("mon,wed,sat-sun") == frozenset({0, 2, 5, 6})
    assert parse_days("fri-mon") == frozenset({4, 5, 6, 0})
    hours = BusinessHours.parse("00:00-24:00", "mon-sun", "UTC")
    assert (hours.opens, hours.closes) == (0, 24 * 60)
    for bad in ("9-18", "18:00-09:00", "09:00-25:00", "09:60-18:00", "10:00-10:00", ""):
        with pytest.raises(ValueError):
            BusinessHours.parse(bad)
    with pytest.raises(ValueError, match="time zone"):
        BusinessHours.parse("09:00-18:00", timezone="Mars/Olympus")
    for bad in ("someday", "", "mon-xyz"):
        with pytest.raises(ValueError, match="days"):
            parse_days(bad)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        add_business_hours(local(2026, 11, 23, 10, 0), -1, OFFICE)
    with pytest.raises(ValueError, match="aware"):
        add_business_hours(datetime(2026, 11, 23, 10, 0), 1, OFFICE)


def test_the_policy_uses_the_calendar_for_working_days_too() -> None:
    friday = local(2026, 11, 27, 10, 0)
    assert add_working_days(friday, 3) == local(2026, 12, 2, 10, 0)
    six_days = BusinessHours.parse("09:00-18:00", "mon-sat")
    assert SlaPolicy(business_hours=six_days).investigation_due(friday, 3) == local(
        2026, 12, 1, 10, 0)
    assert SlaPolicy().due(friday, 30) == friday + timedelta(hours=30)
    assert SlaPolicy(business_hours=OFFICE).due(friday, 9) == local(2026, 11, 30, 10, 0)


# ---- properties -----------------------------------------------------------------------------

starts = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2035, 12, 31),
                      timezones=st.just(UTC))
# Up to a month of hours, on windows of at least an hour: what a desk configures. A slow shared
# machine must not fail the properties on time, so there is no deadline.
lengths = st.integers(min_value=0, max_value=24 * 60 * 30).map(lambda m: m / 60)
relaxed = settings(deadline=None, max_examples=60)


@st.composite
def calendars(draw: st.DrawFn) -> BusinessHours:
    opens = draw(st.integers(min_value=0, max_value=24 * 60 - 1))
    opens = min(opens, 23 * 60)
    closes = draw(st.integers(min_value=opens + 60, max_value=24 * 60))
    days = draw(st.frozensets(st.integers(min_value=0, max_value=6), min_size=1))
    zone = draw(st.sampled_from([SHANGHAI, ZoneInfo("UTC"), ZoneInfo("America/New_York")]))
    return BusinessHours(opens, closes, days, zone)


def _is_business_time(moment: datetime, calendar: BusinessHours) -> bool:
    day = moment.astimezone(calendar.tz).date()
    # A window closing at 24:00 ends at the next day's midnight: look at the day before too.
    windows = (calendar.window(day - timedelta(days=1)), calendar.window(day))
    return any(w is not None and w[0] <= moment <= w[1] for w in windows)


@relaxed
@given(starts, lengths, calendars())
def test_due_is_never_before_the_start_nor_sooner_than_calendar_time(
        start: datetime, hours: float, calendar: BusinessHours) -> None:
    due = add_business_hours(start, hours, calendar)
    assert due >= start + timedelta(hours=hours)
    if hours > 0:
        assert _is_business_time(due, calendar)


@relaxed
@given(starts, st.integers(min_value=0, max_value=10 ** 6), lengths, lengths, calendars())
def test_due_is_monotone_in_the_start_and_in_the_hours(
        start: datetime, later_by: int, hours: float, more: float,
        calendar: BusinessHours) -> None:
    due = add_business_hours(start, hours, calendar)
    assert add_business_hours(start + timedelta(seconds=later_by), hours, calendar) >= due
    assert add_business_hours(start, hours + more, calendar) >= due


@relaxed
@given(starts, lengths, st.sampled_from([SHANGHAI, ZoneInfo("UTC")]))
def test_round_the_clock_every_day_equals_calendar_time(
        start: datetime, hours: float, zone: ZoneInfo) -> None:
    always = BusinessHours(0, 24 * 60, frozenset(range(7)), zone)
    assert add_business_hours(start, hours, always) == add_business_hours(start, hours)


@relaxed
@given(starts, st.integers(min_value=1, max_value=24 * 60 * 30).map(lambda m: m / 60),
       calendars())
def test_the_business_time_between_start_and_due_is_the_hours_asked(
        start: datetime, hours: float, calendar: BusinessHours) -> None:
    due = add_business_hours(start, hours, calendar)
    counted = timedelta()
    day = start.astimezone(calendar.tz).date() - timedelta(days=1)
    while (window := calendar.window(day)) is None or window[0] < due:
        if window is not None:
            counted += max(min(window[1], due) - max(window[0], start), timedelta())
        day += timedelta(days=1)
    assert counted == timedelta(hours=hours)
