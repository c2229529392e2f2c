"""Weekly and monthly complaint figures (DOMAIN.md step 9, 复盘), computed in SQL.

A report covers the tickets *registered* in a period ``[start, end)`` of China dates and compares
them with the period of equal length just before. Every figure is an aggregate the database
computes (GROUP BY over the two periods; repeats and returns come from each ticket's neighbour
columns, kept by `handoff.tickets.relink`), so a report reads a few hundred rows whatever the
number of tickets. The definitions are in docs/reports.md.

`build_report` makes a `Report`; `render_text` turns it into Markdown, JSON or CSV (the PNG
charts and the HTML page live in `handoff.charts` and `handoff.report_cli`).
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from enum import Enum
from typing import Any, Protocol, TypeVar

from sqlalchemy import ColumnElement, Select, and_, case, cast, func, or_, select, text
from sqlalchemy import Float as SqlFloat
from sqlalchemy import Text as SqlText
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.elements import UnaryExpression
from sqlalchemy.sql.operators import custom_op

from handoff.survey import SurveyRow
from handoff.tickets import CHINA_TZ, TicketRow, TicketStatus

TOP = 10
REPEAT_DAYS = 30
FIRST_CONTACT_DAYS = 7
GAP_SCAN = 1000  # the most-asked gaps looked through for those asked in the period
MAX_DAYS = 731  # two years: longer spans are a data export, not a report
DIMENSIONS = ("category", "department", "priority", "channel", "product", "merchant")
SURVEY_DIMENSIONS = ("timeliness", "effectiveness", "attitude", "overall")
NONE_KEY = "(none)"
_R = TypeVar("_R")
_DONE = (TicketStatus.RESOLVED.value, TicketStatus.CLOSED.value)


class InvalidReport(ValueError):
    """The report's period or format was asked for wrongly (the message says how)."""


class PeriodKind(str, Enum):
    """A calendar week (Monday to Sunday), a calendar month, or any span of days."""

    WEEK = "week"
    MONTH = "month"
    CUSTOM = "custom"


# ---- periods --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Period:
    """The China dates ``[start, end)`` a report covers."""

    kind: PeriodKind
    start: date
    end: date

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise InvalidReport(f"the period ends ({self.end}) before it starts ({self.start})")
        if (self.end - self.start).days > MAX_DAYS:
            raise InvalidReport(f"a report covers at most {MAX_DAYS} days")

    @property
    def days(self) -> int:
        return (self.end - self.start).days

    def bounds(self) -> tuple[datetime, datetime]:
        """The period as UTC instants (China midnight to China midnight)."""
        return _utc_midnight(self.start), _utc_midnight(self.end)

    def previous(self) -> Period:
        """The period of equal length just before: the previous week, month or span."""
        if self.kind is PeriodKind.MONTH:
            return month_of(self.start - timedelta(days=1))
        return Period(self.kind, self.start - timedelta(days=self.days), self.start)

    def label(self) -> str:
        last = self.end - timedelta(days=1)
        if self.kind is PeriodKind.MONTH:
            return f"{self.start:%Y-%m}"
        if self.kind is PeriodKind.WEEK:
            year, week, _ = self.start.isocalendar()
            return f"{year}-W{week:02d} ({self.start} – {last})"
        return f"{self.start} – {last}"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "start": self.start.isoformat(),
                "end": self.end.isoformat(), "label": self.label()}


def _utc_midnight(day: date) -> datetime:
    return datetime.combine(day, time(), CHINA_TZ).astimezone(UTC)


def week_of(day: date) -> Period:
    """The Monday-to-Sunday week that holds `day`."""
    monday = day - timedelta(days=day.weekday())
    return Period(PeriodKind.WEEK, monday, monday + timedelta(days=7))


def month_of(day: date) -> Period:
    """The calendar month that holds `day`."""
    first = day.replace(day=1)
    following = (first + timedelta(days=32)).replace(day=1)
    return Period(PeriodKind.MONTH, first, following)


def china_today(now: datetime | None = None) -> date:
    return (now or datetime.now(UTC)).astimezone(CHINA_TZ).date()


def parse_day(value: str, name: str) -> date:
    try:
        return date.fromisoformat(value.strip())
    except ValueError as exc:
        raise InvalidReport(f"{name} must be an ISO date like 2026-11-02, not {value!r}") from exc


def choose_period(kind: str = "week", start: str | date | None = None,
                  end: str | date | None = None, *, today: date | None = None) -> Period:
    """The period a caller asked for.

    Args:
        kind: "week" or "month".
        start: with `end`, the first day of a custom span; alone, any day of the week or month
            wanted.
        end: the day after the span (exclusive); needs `start`.
        today: the China date to count back from (default: now).

    Without `start` and `end`: the last complete week or month before `today`.
    """
    try:
        period_kind = PeriodKind(kind)
    except ValueError as exc:
        raise InvalidReport(f"period must be week or month, not {kind!r}") from exc
    if period_kind is PeriodKind.CUSTOM:
        raise InvalidReport("period must be week or month; give --from and --to for a span")
    first = parse_day(start, "from") if isinstance(start, str) else start
    last = parse_day(end, "to") if isinstance(end, str) else end
    if last is not None:
        if first is None:
            raise InvalidReport("to needs from")
        return Period(PeriodKind.CUSTOM, first, last)
    pick = week_of if period_kind is PeriodKind.WEEK else month_of
    if first is not None:
        return pick(first)
    current = pick(today or china_today())
    return pick(current.start - timedelta(days=1))


# ---- the report -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Count:
    """How many tickets had one value of a dimension, now and in the previous period."""

    key: str
    count: int
    previous: int

    @property
    def change(self) -> float | None:
        return _relative(self.count, self.previous)

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "count": self.count, "previous": self.previous,
                "change": _round(self.change)}


@dataclass(frozen=True, slots=True)
class Mention:
    """A free text and how often it came up."""

    text: str
    count: int


@dataclass(frozen=True, slots=True)
class Figures:
    """One period's headline figures (definitions in docs/reports.md)."""

    tickets: int
    resolved: int
    first_contact_resolved: int
    repeat: int
    overdue: int
    responded: int
    avg_bot_seconds: float | None
    avg_first_response_seconds: float | None
    avg_handling_seconds: float | None
    surveys: int
    satisfaction: dict[str, float | None] = field(default_factory=dict)

    @property
    def resolution_rate(self) -> float | None:
        return _share(self.resolved, self.tickets)

    @property
    def first_contact_resolution_rate(self) -> float | None:
        return _share(self.first_contact_resolved, self.tickets)

    @property
    def repeat_rate(self) -> float | None:
        return _share(self.repeat, self.tickets)

    @property
    def overdue_rate(self) -> float | None:
        return _share(self.overdue, self.tickets)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for name in RATES:
            data[name] = _round(getattr(self, name))
        for name in DURATIONS:
            data[name] = _round(data[name], 1)
        data["satisfaction"] = {k: _round(v, 2) for k, v in self.satisfaction.items()}
        return data


RATES = ("resolution_rate", "first_contact_resolution_rate", "repeat_rate", "overdue_rate")
DURATIONS = ("avg_bot_seconds", "avg_first_response_seconds", "avg_handling_seconds")
COUNTS = ("tickets", "resolved", "first_contact_resolved", "repeat", "overdue", "surveys")


@dataclass(frozen=True, slots=True)
class Report:
    """A period's complaint figures next to the previous period's."""

    period: Period
    previous_period: Period
    generated_at: datetime
    current: Figures
    previous: Figures
    volume: dict[str, tuple[Count, ...]]
    improve_aspects: tuple[Count, ...]
    suggestions: tuple[Mention, ...]
    unanswered: tuple[Mention, ...]

    def changes(self) -> dict[str, float | None]:
        """Counts and durations: relative change; rates and scores: difference in points."""
        cur, prev = self.current, self.previous
        out: dict[str, float | None] = {}
        for name in (*COUNTS, *DURATIONS):
            out[name] = _relative(getattr(cur, name), getattr(prev, name))
        for name in RATES:
            out[name] = _difference(getattr(cur, name), getattr(prev, name))
        for name in SURVEY_DIMENSIONS:
            out["satisfaction_" + name] = _difference(cur.satisfaction.get(name),
                                                      prev.satisfaction.get(name))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "period": self.period.to_dict(),
            "previous_period": self.previous_period.to_dict(),
            "generated_at": self.generated_at.isoformat(),
            "current": self.current.to_dict(),
            "previous": self.previous.to_dict(),
            "change": {k: _round(v) for k, v in self.changes().items()},
            "volume": {k: [c.to_dict() for c in v] for k, v in self.volume.items()},
            "improve_aspects": [c.to_dict() for c in self.improve_aspects],
            "suggestions": [asdict(m) for m in self.suggestions],
            "unanswered": [asdict(m) for m in self.unanswered],
        }


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _relative(now: float | None, before: float | None) -> float | None:
    if now is None or before is None or before == 0:
        return None
    return (now - before) / before


def _difference(now: float | None, before: float | None) -> float | None:
    return None if now is None or before is None else now - before


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


# ---- SQL ------------------------------------------------------------------------------------


class UnansweredQuestion(Protocol):
    """A knowledge-base gap (`knowledge_base.entries.Gap` fits)."""

    @property
    def text(self) -> str: ...
    @property
    def count(self) -> int: ...
    @property
    def first_seen(self) -> datetime: ...
    @property
    def last_seen(self) -> datetime: ...


T = TicketRow.__table__.c
S = SurveyRow.__table__.c


def _in(start: datetime, end: datetime, *, unindexed: bool = False) -> ColumnElement[bool]:
    """Registered in [start, end); `unindexed` (SQLite): not by the index on registered_at."""
    at: ColumnElement[datetime] = T.registered_at
    if unindexed:
        at = UnaryExpression(at, operator=custom_op("+"), type_=at.type)
    return and_(at >= start, at < end)


Bounds = tuple[datetime, datetime]
_FIXED = ("category", "department", "priority", "channel")  # few values: grouped in one pass


def _which(column: Any, now: Bounds) -> ColumnElement[int]:
    """1 for a row of this period, 0 for the previous one."""
    return case((column >= now[0], 1), else_=0)


def _sum(value: ColumnElement[Any]) -> ColumnElement[Any]:
    return func.coalesce(func.sum(value), 0)


def _flag(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return _sum(case((condition, 1), else_=0))


@dataclass
class _Tally:
    """Sums of one period's tickets."""

    tickets: int
    resolved: int
    overdue: int
    responded: int
    handled: int
    repeat: int
    first_contact: int
    bot_seconds: float
    response_seconds: float
    handling_seconds: float

    @classmethod
    def of(cls, sums: Sequence[Any]) -> _Tally:
        """The row of the ticket sums, in the order `_ticket_sums` selects them."""
        return cls(tickets=int(sums[0]), resolved=int(sums[1]), overdue=int(sums[2]),
                   responded=int(sums[3]), handled=int(sums[4]), bot_seconds=float(sums[5]),
                   response_seconds=float(sums[6]), handling_seconds=float(sums[7]),
                   repeat=int(sums[8]), first_contact=int(sums[9]))

    def figures(self, survey: tuple[int, dict[str, float | None]]) -> Figures:
        return Figures(
            tickets=self.tickets, resolved=self.resolved,
            first_contact_resolved=self.first_contact, repeat=self.repeat,
            overdue=self.overdue, responded=self.responded,
            avg_bot_seconds=_mean(self.bot_seconds, self.tickets),
            avg_first_response_seconds=_mean(self.response_seconds, self.responded),
            avg_handling_seconds=_mean(self.handling_seconds, self.handled),
            surveys=survey[0], satisfaction=survey[1])


def _mean(total: float, count: int) -> float | None:
    return total / count if count else None


_TIMES = ("registered_at", "complained_at", "first_responded_at", "resolved_at",
          "previous_customer_ticket_at", "previous_order_ticket_at", "next_customer_ticket_at")


async def _ticket_sums(conn: AsyncConnection, sqlite: bool, period: Bounds) -> _Tally:
    """One period's headline sums: one scan bounded by the index on registered_at.

    Repeats and first-contact returns come from each ticket's neighbour columns
    (`handoff.tickets.relink` keeps them), so no window pass sorts the tickets by customer.
    SQLite keeps timestamps as text and evaluates julianday() once per use, and the sums use
    `registered_at` seven times: a subquery reads each timestamp once per row (its LIMIT
    keeps SQLite from flattening it back into the sums), which halves the scan's cost.
    """
    if sqlite:
        rows = select(T.status, T.reopen_count, T.breaches,
                      *(func.julianday(T[name]).label(name) for name in _TIMES)
                      ).where(_in(*period)).limit(-1).subquery()
        c: Any = rows.c

        def seconds(later: str, earlier: str) -> ColumnElement[float]:
            difference: ColumnElement[float] = (c[later] - c[earlier]) * 86400.0
            return difference
    else:
        c = T

        def seconds(later: str, earlier: str) -> ColumnElement[float]:
            return cast(func.extract("epoch", T[later] - T[earlier]), SqlFloat)

    done = c.status.in_(_DONE)
    handled = and_(done, c.resolved_at.is_not(None))
    handling = case((handled, seconds("resolved_at", "registered_at")))
    repeat = or_(*(seconds("registered_at", name) <= REPEAT_DAYS * 86400
                   for name in ("previous_customer_ticket_at", "previous_order_ticket_at")))
    first_contact = and_(done, c.reopen_count == 0, or_(
        c.next_customer_ticket_at.is_(None),
        seconds("next_customer_ticket_at", "registered_at") > FIRST_CONTACT_DAYS * 86400))
    query = select(
        func.count(), _flag(done),
        # A non-empty JSON list of breach names is stored as text starting with '["'.
        _flag(cast(c.breaches, SqlText).like('["%')),
        func.count(c.first_responded_at), func.count(handling),
        _sum(seconds("registered_at", "complained_at")),
        _sum(seconds("first_responded_at", "registered_at")), _sum(handling),
        _flag(repeat), _flag(first_contact))
    query = query.select_from(rows) if sqlite else query.where(_in(*period))
    return _Tally.of((await conn.execute(query)).one())


# A column's distinct values on SQLite, one index seek each: SELECT DISTINCT would read every
# entry of the index. {} is one of _FIXED, never user input.
_SKIP_SCAN = ("WITH RECURSIVE v(x) AS (SELECT min({0}) FROM tickets UNION ALL"
              " SELECT (SELECT min({0}) FROM tickets WHERE {0} > v.x) FROM v"
              " WHERE v.x IS NOT NULL) SELECT x FROM v WHERE x IS NOT NULL")


async def _volumes(conn: AsyncConnection, sqlite: bool, period: Bounds
                   ) -> dict[str, dict[str, int]]:
    """One period's ticket counts by each fixed dimension's value, beside the sums on a
    connection of their own.

    - PostgreSQL groups by the four columns in a hash table, its estimate of a few hundred
      groups kept by grouping on plain columns.
    - SQLite always sorts to group. Instead, each known value is counted on the index on
      (value, registered_at) (ho0005): a range count that never reads a ticket's row. The
      values come from the same index, one seek per value (`_SKIP_SCAN`); the dimensions
      hold closed vocabularies (types, departments, priorities, channels), a few
      dozen counts at most, sent as one statement.
    """
    volume: dict[str, dict[str, int]] = {name: {} for name in _FIXED}
    if sqlite:
        known = {name: [None, *(await conn.execute(text(_SKIP_SCAN.format(name)))).scalars()]
                 for name in _FIXED}
        counted = [(name, value) for name, values in known.items() for value in values]
        row = (await conn.execute(select(*(
            select(func.count()).where(
                T[name].is_(None) if value is None else T[name] == value, _in(*period)
            ).scalar_subquery() for name, value in counted)))).one()
        for (name, value), count in zip(counted, row, strict=True):
            if int(count):
                volume[name][NONE_KEY if value is None else str(value)] = int(count)
        return volume
    keys = [T[name] for name in _FIXED]
    for row in (await conn.execute(
            select(*keys, func.count()).where(_in(*period)).group_by(*keys))).all():
        for name, key in zip(_FIXED, row[:len(keys)], strict=True):
            key = NONE_KEY if key is None else str(key)
            volume[name][key] = volume[name].get(key, 0) + int(row[len(keys)])
    return volume


def _answered(now: Bounds, before: Bounds) -> Select[Any]:
    """Answered surveys of both periods' tickets, with the period as column "which"."""
    return (select(_which(T.registered_at, now).label("which"))
            .select_from(SurveyRow.__table__.join(TicketRow.__table__, T.id == S.ticket_id))
            .where(T.registered_at >= before[0], T.registered_at < now[1],
                   S.answered_at.is_not(None)))


async def _surveys(conn: AsyncConnection, now: Bounds, before: Bounds
                   ) -> tuple[tuple[tuple[int, dict[str, float | None]], ...], tuple[Count, ...]]:
    """Both periods' answered surveys and mean scores, and their improve aspects: one join,
    grouped by period and aspect (a few rows), added up here."""
    base = _answered(now, before)
    which = base.selected_columns.which
    query = base.add_columns(
        S.improve_aspect, func.count(),
        *(f(S[name]) for name in SURVEY_DIMENSIONS for f in (func.sum, func.count)),
    ).group_by(which, S.improve_aspect)
    answered = [0, 0]
    sums = [[0.0] * len(SURVEY_DIMENSIONS) for _ in range(2)]
    counts = [[0] * len(SURVEY_DIMENSIONS) for _ in range(2)]
    aspects: tuple[dict[str, int], dict[str, int]] = ({}, {})
    for row in (await conn.execute(query)).all():
        index = 1 - int(row[0])
        answered[index] += int(row[2])
        if row[1] is not None:
            aspects[index][str(row[1])] = int(row[2])
        for i in range(len(SURVEY_DIMENSIONS)):
            sums[index][i] += float(row[3 + 2 * i] or 0)
            counts[index][i] += int(row[4 + 2 * i])
    scores = tuple(
        (answered[index], {name: _mean(sums[index][i], counts[index][i])
                           for i, name in enumerate(SURVEY_DIMENSIONS)})
        for index in (0, 1))
    return scores, _counts(*aspects)


def _counts(current: dict[str, int], previous: dict[str, int]) -> tuple[Count, ...]:
    keys = list(current) + [k for k in previous if k not in current]
    counts = [Count(k, current.get(k, 0), previous.get(k, 0)) for k in keys]
    return tuple(sorted(counts, key=lambda c: (-c.count, -c.previous, c.key)))


async def _grouped(conn: AsyncConnection, query: Select[Any]) -> dict[str, int]:
    return {NONE_KEY if key is None else str(key): int(count)
            for key, count in (await conn.execute(query)).all()}


async def _top(conn: AsyncConnection, sqlite: bool, name: str, now: Bounds, before: Bounds
               ) -> tuple[Count, ...]:
    column = T[name]
    counted = func.count().label("n")
    query = select(column, counted).group_by(column)
    # On SQLite the index on (value, registered_at) groups without a sort and without reading
    # a row, but its planner, without statistics, would rather sort the period's rows: a
    # unary + keeps it off the index on registered_at.
    period = _in(*now, unindexed=sqlite)
    current = await _grouped(conn, query.where(period, column.is_not(None))
                             .order_by(counted.desc(), column).limit(TOP))
    previous = await _grouped(conn, query.where(_in(*before), column.in_(list(current))))
    return _counts(current, previous)


async def _suggestions(conn: AsyncConnection, now: Bounds) -> tuple[Mention, ...]:
    text = func.trim(S.suggestion)
    counted = func.count().label("n")
    rows = (await conn.execute(
        select(text.label("text"), counted)
        .select_from(SurveyRow.__table__.join(TicketRow.__table__, T.id == S.ticket_id))
        .where(_in(*now), S.answered_at.is_not(None), text != "")
        .group_by(text).order_by(counted.desc(), text).limit(TOP))).all()
    return tuple(Mention(str(t), int(c)) for t, c in rows)


def _unanswered(gaps: Iterable[UnansweredQuestion], start: datetime, end: datetime
                ) -> tuple[Mention, ...]:
    # The knowledge base keeps one running count per question: report the questions asked
    # during the period, ranked by that count.
    asked = [g for g in gaps if g.last_seen >= start and g.first_seen < end]
    asked.sort(key=lambda g: (-g.count, g.text))
    return tuple(Mention(g.text, g.count) for g in asked[:TOP])


async def build_report(engine: AsyncEngine, period: Period, *,
                       unanswered: Sequence[UnansweredQuestion] = (),
                       now: datetime | None = None) -> Report:
    """The report of `period` from the ticket database behind `engine`.

    Args:
        engine: the ticket store's engine (`TicketStore.engine`).
        period: the dates to report on; the previous period is compared with it.
        unanswered: the knowledge base's gaps (the caller reads them from the knowledge base).
        now: when the report is made (default: now).
    """
    sqlite = engine.dialect.name == "sqlite"  # timestamps as text, no parallel scans
    previous_period = period.previous()
    bounds, before = period.bounds(), previous_period.bounds()

    async def run(query: Callable[..., Awaitable[_R]], *args: Any) -> _R:
        async with engine.connect() as conn:
            return await query(conn, *args)

    # The aggregates are independent: each runs on its own pooled connection, so the database
    # works on them side by side (SQLite in WAL mode reads on several connections at once).
    tallies, volumes, (surveys, aspects), suggestions, products, merchants = await asyncio.gather(
        asyncio.gather(run(_ticket_sums, sqlite, bounds), run(_ticket_sums, sqlite, before)),
        asyncio.gather(run(_volumes, sqlite, bounds), run(_volumes, sqlite, before)),
        run(_surveys, bounds, before), run(_suggestions, bounds),
        run(_top, sqlite, "product", bounds, before), run(_top, sqlite, "merchant", bounds, before))
    top = {"product": products, "merchant": merchants}
    volume = {name: _counts(volumes[0][name], volumes[1][name]) for name in _FIXED}
    return Report(
        period=period, previous_period=previous_period,
        generated_at=(now or datetime.now(UTC)).astimezone(UTC),
        current=tallies[0].figures(surveys[0]), previous=tallies[1].figures(surveys[1]),
        volume={name: volume[name] if name in volume else top[name] for name in DIMENSIONS},
        improve_aspects=aspects,
        suggestions=suggestions, unanswered=_unanswered(unanswered, *bounds),
    )


# ---- text formats ---------------------------------------------------------------------------

TEXT_FORMATS = {"md": "text/markdown", "json": "application/json", "csv": "text/csv"}


def render_text(report: Report, fmt: str) -> str:
    """The report as Markdown, JSON or CSV."""
    if fmt == "json":
        return json.dumps(report.to_dict(), ensure_ascii=False, indent=2) + "\n"
    if fmt == "csv":
        return _csv(report)
    if fmt == "md":
        return _markdown(report)
    raise InvalidReport(f"format must be one of {', '.join(TEXT_FORMATS)}, not {fmt!r}")


def summary_rows(report: Report) -> list[tuple[str, str, str, str]]:
    """(figure, this period, previous period, change) for the headline figures, formatted."""
    cur, prev, change = report.current, report.previous, report.changes()
    rows: list[tuple[str, str, str, str]] = []
    for name in COUNTS:
        rows.append((name, str(getattr(cur, name)), str(getattr(prev, name)),
                     _pct(change[name])))
    for name in RATES:
        rows.append((name, _pct(getattr(cur, name)), _pct(getattr(prev, name)),
                     _points(change[name])))
    for name in DURATIONS:
        rows.append((name.replace("_seconds", "_hours"), _hours(getattr(cur, name)),
                     _hours(getattr(prev, name)), _pct(change[name])))
    for name in SURVEY_DIMENSIONS:
        rows.append(("satisfaction_" + name, _score(cur.satisfaction.get(name)),
                     _score(prev.satisfaction.get(name)),
                     _score(change["satisfaction_" + name], signed=True)))
    return rows


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:+.1f}%" if value < 0 else f"{value:.1%}"


def _points(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:+.1f} pt"


def _hours(value: float | None) -> str:
    return "–" if value is None else f"{value / 3600:.2f}"


def _score(value: float | None, *, signed: bool = False) -> str:
    return "–" if value is None else f"{value:+.2f}" if signed else f"{value:.2f}"


def _markdown(report: Report) -> str:
    lines = [f"# Complaint report {report.period.label()}", "",
             f"Compared with {report.previous_period.label()}; "
             f"generated {report.generated_at:%Y-%m-%d %H:%M} UTC.", "",
             "| figure | this period | previous | change |", "| --- | ---: | ---: | ---: |"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in summary_rows(report)]
    for name, counts in (*report.volume.items(), ("improve_aspect", report.improve_aspects)):
        lines += ["", f"## By {name}", "", "| value | count | previous | change |",
                  "| --- | ---: | ---: | ---: |"]
        lines += [f"| {_cell(c.key)} | {c.count} | {c.previous} | {_pct(c.change)} |"
                  for c in counts]
    for title, mentions in (("Frequent suggestions", report.suggestions),
                            ("Top unanswered questions", report.unanswered)):
        lines += ["", f"## {title}", "", "| text | count |", "| --- | ---: |"]
        lines += [f"| {_cell(m.text)} | {m.count} |" for m in mentions]
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _csv(report: Report) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["section", "key", "current", "previous", "change"])
    data = report.to_dict()
    for name in (*COUNTS, *RATES, *DURATIONS):
        writer.writerow(["figure", name, data["current"][name], data["previous"][name],
                         data["change"].get(name)])
    for name in SURVEY_DIMENSIONS:
        writer.writerow(["satisfaction", name, data["current"]["satisfaction"][name],
                         data["previous"]["satisfaction"][name],
                         data["change"]["satisfaction_" + name]])
    for name, counts in (*report.volume.items(), ("improve_aspect", report.improve_aspects)):
        for c in counts:
            writer.writerow([name, c.key, c.count, c.previous, _round(c.change)])
    for section, mentions in (("suggestion", report.suggestions),
                              ("unanswered", report.unanswered)):
        for m in mentions:
            writer.writerow([section, m.text, m.count, "", ""])
    return out.getvalue()
