"""Benchmark of `intakebot report` over 1,000,000 synthetic tickets on SQLite and PostgreSQL.

A year of tickets (2025-11-01 to 2026-11-01, China time) is generated with numpy in registration
order, as a real table grows: busier weekdays, evenings and the November sales, five types with
their departments, three priorities, five channels, 2,000 products and 500 merchants on a
long-tailed (Zipf) curve, a pool of frequent customers and re-used orders (so repeat complaints
happen), first response and handling times by priority, 8 % SLA breaches, 4 % reopened, and a
survey for 40 % of the closed tickets (three in four answered).

The schema comes from the product's own migrations (`TicketStore.open`); rows go in with
executemany in batches of 50,000 (SQLite) or COPY (PostgreSQL, a database `bench_report` that is
created and dropped). The rows go in raw, so their report neighbours (customer key, previous and
next ticket of the customer and of the order) are then filled by `handoff.tickets.link_all`, the
same SQL as revision ho0004's back-fill; registration keeps them with `relink`. Then the report
is timed for the last month, the last week and the whole year, and each output format is timed
on the month's report.

Run: python bench/report.py [--tickets 1000000] [--db sqlite postgres] [--keep]
       [--sqlite-file PATH] [--reuse]
--reuse times the reports on databases a --keep run left (the --sqlite-file, the PostgreSQL
database `bench_report`) without generating the tickets again.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np

from handoff.charts import charts, overview
from handoff.reports import Period, PeriodKind, build_report, render_text
from handoff.survey import ASPECTS as SURVEY_ASPECTS
from handoff.tickets import CHINA_TZ, TicketStore, link_all

START = datetime(2025, 11, 1, tzinfo=CHINA_TZ)
DAYS = 365
BATCH = 50_000
PG_ADMIN = os.environ.get("BENCH_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")
PG_DB = os.environ.get("BENCH_PG_DB", "bench_report")

CATEGORIES = np.array(["product", "logistics", "service", "after_sales", "compliance"])
CATEGORY_P = [0.34, 0.28, 0.14, 0.2, 0.04]
DEPARTMENTS = np.array(["quality", "logistics", "operations", "after_sales", "legal"])
PRIORITIES = np.array(["low", "medium", "high"])
PRIORITY_P = [0.55, 0.33, 0.12]
RESPONSE_MEAN = np.array([6 * 3600, 1.5 * 3600, 1800])  # seconds, by priority
CHANNELS = np.array(["webchat", "telegram", "wechat", "email", "webhook"])
CHANNEL_P = [0.45, 0.1, 0.3, 0.1, 0.05]
STATUSES = np.array(["closed", "resolved", "new", "assigned", "investigating"])
ASPECTS = np.array(SURVEY_ASPECTS)  # what the survey stores
SUGGESTIONS = np.array([
    "回复再快一点", "希望退款快一些", "客服态度很好", "物流太慢了", "希望有电话回访",
    "处理结果满意", "流程太复杂", "希望一次说清楚", "补偿太少", "商品质量要把关",
])

TICKET_COLUMNS = (
    "id", "number", "status", "channel", "chat_id", "lang", "customer_id", "phone",
    "complained_at", "category", "priority", "priority_reasons", "emotion", "description",
    "order_id", "product", "merchant", "department", "receiver", "handoff_reason",
    "sla_hours", "sla_due", "registered_at", "updated_at", "first_responded_at",
    "resolved_at", "closed_at", "breaches", "reopen_count", "malicious", "second_handling",
    "legal_hold",
)
SURVEY_COLUMNS = ("ticket_id", "method", "sent_at", "answered_at", "timeliness",
                  "effectiveness", "attitude", "overall", "improve_aspect", "suggestion",
                  "second_handling")


def _zipf_pick(rng: np.random.Generator, n: int, size: int, a: float = 1.1) -> np.ndarray:
    ranks = np.arange(1, size + 1)
    weights = 1.0 / ranks ** a
    return rng.choice(size, n, p=weights / weights.sum())


def _registered(rng: np.random.Generator, n: int) -> np.ndarray:
    """Seconds after START, sorted: weekdays, daytime and the November sales are busier."""
    day_weight = np.ones(DAYS)
    weekdays = (np.arange(DAYS) + START.weekday()) % 7
    day_weight[weekdays >= 5] = 0.8
    day_weight[:20] *= 2.5  # 2025 "Double 11"
    day_weight[-20:] *= 2.5  # and 2026's run-up
    hour_weight = np.array([1, 1, 1, 1, 1, 2, 3, 5, 8, 10, 11, 11, 10, 10, 11, 11, 10, 10, 11,
                            12, 12, 10, 6, 3], dtype=float)
    days = rng.choice(DAYS, n, p=day_weight / day_weight.sum())
    hours = rng.choice(24, n, p=hour_weight / hour_weight.sum())
    seconds = days * 86400 + hours * 3600 + rng.uniform(0, 3600, n)
    return np.sort(seconds)


def _timestamps(base_us: int, seconds: np.ndarray) -> list[str]:
    """UTC text timestamps as SQLAlchemy stores them in SQLite."""
    micro = (base_us + np.round(seconds * 1e6)).astype("datetime64[us]")
    return [s.replace("T", " ") for s in np.datetime_as_string(micro, unit="us")]


def generate(n: int, seed: int = 7) -> Iterator[tuple[list[tuple[Any, ...]],
                                                       list[tuple[Any, ...]]]]:
    """Batches of (ticket rows, survey rows) with text timestamps (SQLite's form)."""
    rng = np.random.default_rng(seed)
    base_us = int((START - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds()) * 1_000_000
    registered_all = _registered(rng, n)
    frequent = rng.random(n) < 0.3
    customers = np.where(frequent, rng.integers(0, 20_000, n),
                         rng.integers(20_000, 620_000, n))
    for first in range(0, n, BATCH):
        size = min(BATCH, n - first)
        ids = np.arange(first, first + size)
        registered = registered_all[first:first + size]
        category = rng.choice(len(CATEGORIES), size, p=CATEGORY_P)
        priority = rng.choice(3, size, p=PRIORITY_P)
        channel = rng.choice(len(CHANNELS), size, p=CHANNEL_P)
        status = rng.choice(len(STATUSES), size, p=[0.82, 0.06, 0.04, 0.04, 0.04])
        # Tickets of the last weeks are still more often open.
        recent = registered > (DAYS - 14) * 86400
        status = np.where(recent & (rng.random(size) < 0.5), 3, status)
        bot = rng.exponential(180, size)
        response = rng.exponential(RESPONSE_MEAN[priority])
        handling = rng.lognormal(np.log(20 * 3600), 1.0, size)
        responded = status != 2
        done = status <= 1
        breach = rng.random(size)
        breaches = np.where(breach < 0.05, '["first_response"]',
                            np.where(breach < 0.08, '["resolution"]', "[]"))
        reopen = np.where(done & (rng.random(size) < 0.04), 1, 0)
        customer = customers[first:first + size]
        has_id = rng.random(size) < 0.75
        reused = rng.random(size) < 0.06
        order = np.where(reused, rng.integers(0, 50_000, size), 100_000 + ids)
        has_order = rng.random(size) < 0.9
        product = _zipf_pick(rng, size, 2000)
        merchant = _zipf_pick(rng, size, 500)
        times = {
            "registered_at": _timestamps(base_us, registered),
            "complained_at": _timestamps(base_us, registered - bot),
            "sla_due": _timestamps(base_us, registered + 24 * 3600),
            "first_responded_at": _timestamps(base_us, registered + response),
            "resolved_at": _timestamps(base_us, registered + handling),
            "closed_at": _timestamps(base_us, registered + handling + 86400),
        }
        rows = []
        survey_rows = []
        survey = rng.random(size)
        scores = rng.choice(5, (size, 4), p=[0.05, 0.07, 0.18, 0.35, 0.35]) + 1
        aspect = rng.choice(len(ASPECTS), size)
        suggestion = rng.choice(len(SUGGESTIONS), size)
        for k in range(size):
            i = int(ids[k])
            cat = int(category[k])
            cust = int(customer[k])
            closed = status[k] == 0
            rows.append((
                f"b{i:035d}", f"BR{i:010d}", str(STATUSES[status[k]]),
                str(CHANNELS[channel[k]]), f"chat{cust}", "zh-Hans",
                f"C{cust}" if has_id[k] else None, None if has_id[k] else f"139{cust:08d}",
                times["complained_at"][k], str(CATEGORIES[cat]), str(PRIORITIES[priority[k]]),
                "[]", "neutral", "synthetic", f"DD{order[k]}" if has_order[k] else None,
                f"商品{product[k]}", f"商家{merchant[k]}" if k % 3 else None,
                str(DEPARTMENTS[cat]), "bot", "complaint", 24, times["sla_due"][k],
                times["registered_at"][k], times["registered_at"][k],
                times["first_responded_at"][k] if responded[k] else None,
                times["resolved_at"][k] if done[k] else None,
                times["closed_at"][k] if closed else None,
                str(breaches[k]), int(reopen[k]), False, False, False,
            ))
            if closed and survey[k] < 0.4:
                answered = survey[k] < 0.3
                s = scores[k]
                survey_rows.append((
                    f"b{i:035d}", "chat", times["closed_at"][k],
                    times["closed_at"][k] if answered else None,
                    *(int(v) if answered else None for v in s),
                    str(ASPECTS[aspect[k]]) if answered else None,
                    str(SUGGESTIONS[suggestion[k]]) if answered and suggestion[k] < 6 else None,
                    False,
                ))
        yield rows, survey_rows


# ---- loading --------------------------------------------------------------------------------


def _insert_sql(table: str, columns: tuple[str, ...]) -> str:
    return (f"INSERT INTO {table} ({', '.join(columns)}) "
            f"VALUES ({', '.join('?' for _ in columns)})")


def load_sqlite(path: Path, n: int) -> float:
    started = time.perf_counter()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    tickets = _insert_sql("tickets", TICKET_COLUMNS)
    surveys = _insert_sql("ticket_surveys", SURVEY_COLUMNS)
    for rows, survey_rows in generate(n):
        conn.executemany(tickets, rows)
        conn.executemany(surveys, survey_rows)
        conn.commit()
    conn.execute("ANALYZE")
    conn.commit()
    conn.close()
    return time.perf_counter() - started


_TIMESTAMP_COLUMNS = {"complained_at", "sla_due", "registered_at", "updated_at",
                      "first_responded_at", "resolved_at", "closed_at", "sent_at",
                      "answered_at"}


def _pg_rows(rows: list[tuple[Any, ...]], columns: tuple[str, ...]) -> list[tuple[Any, ...]]:
    stamps = [i for i, c in enumerate(columns) if c in _TIMESTAMP_COLUMNS]
    out = []
    for row in rows:
        values = list(row)
        for i in stamps:
            if values[i] is not None:
                values[i] = datetime.fromisoformat(values[i]).replace(tzinfo=UTC)
        out.append(tuple(values))
    return out


async def load_postgres(url: str, n: int) -> float:
    import asyncpg  # type: ignore[import-untyped]

    started = time.perf_counter()
    conn = await asyncpg.connect(url)
    try:
        for rows, survey_rows in generate(n):
            await conn.copy_records_to_table(
                "tickets", records=_pg_rows(rows, TICKET_COLUMNS), columns=TICKET_COLUMNS)
            await conn.copy_records_to_table(
                "ticket_surveys", records=_pg_rows(survey_rows, SURVEY_COLUMNS),
                columns=SURVEY_COLUMNS)
        await conn.execute("VACUUM ANALYZE tickets")
        await conn.execute("VACUUM ANALYZE ticket_surveys")
    finally:
        await conn.close()
    return time.perf_counter() - started


# ---- timing ---------------------------------------------------------------------------------

PERIODS = {
    "month 2026-10": Period(PeriodKind.MONTH, date(2026, 10, 1), date(2026, 11, 1)),
    "week 2026-W43": Period(PeriodKind.WEEK, date(2026, 10, 19), date(2026, 10, 26)),
    "year (every ticket)": Period(PeriodKind.CUSTOM, date(2025, 11, 1), date(2026, 11, 1)),
}


async def time_reports(store: TicketStore, name: str) -> list[tuple[str, str, float, str]]:
    results = []
    month = None
    for label, period in PERIODS.items():
        started, cpu = time.perf_counter(), time.process_time()
        report = await build_report(store.engine, period)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        # SQLite works in this process, so its CPU time is the report's: steadier than the wall
        # clock on a shared machine. PostgreSQL's work is in the server, not counted here.
        note = f", {cpu:.2f} s CPU" if store.dialect == "sqlite" else ""
        results.append((name, f"report, {label}", elapsed,
                        f"{report.current.tickets:,} tickets{note}"))
        month = month or report
    assert month is not None
    for fmt in ("md", "json", "csv"):
        started = time.perf_counter()
        render_text(month, fmt)
        results.append((name, f"+ render {fmt}", time.perf_counter() - started, ""))
    started = time.perf_counter()
    charts(month)
    results.append((name, "+ render html (9 charts)", time.perf_counter() - started, ""))
    started = time.perf_counter()
    overview(month)
    results.append((name, "+ render png (overview)", time.perf_counter() - started, ""))
    return results


async def link(store: TicketStore) -> float:
    """Fill the report neighbours of the raw rows, as the migration's back-fill does."""
    started = time.perf_counter()
    async with store.engine.begin() as conn:
        await conn.run_sync(link_all)
    if store.dialect == "sqlite":
        async with store.engine.begin() as conn:
            await conn.exec_driver_sql("ANALYZE")
    else:
        async with store.engine.connect() as conn:
            auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await auto.exec_driver_sql("VACUUM ANALYZE tickets")
    return time.perf_counter() - started


async def bench_sqlite(n: int, keep: bool, file: Path | None = None, reuse: bool = False
                       ) -> list[tuple[str, str, float, str]]:
    folder = Path(tempfile.mkdtemp(prefix="bench-report-")) if file is None else file.parent
    path = file or folder / "intakebot.db"
    url = f"sqlite+aiosqlite:///{path}"
    results = []
    if not (reuse and path.exists()):
        await (await TicketStore.open(url)).close()
        loaded = load_sqlite(path, n)
        size = path.stat().st_size / 2**20
        results.append(("sqlite", f"load {n:,} tickets", loaded, f"{size:,.0f} MiB file"))
    store = await TicketStore.open(url)
    try:
        if results:
            results.append(("sqlite", "link report neighbours", await link(store), "link_all"))
        return results + await time_reports(store, "sqlite")
    finally:
        await store.close()
        if not keep and file is None:
            for item in folder.iterdir():
                item.unlink()
            folder.rmdir()


async def bench_postgres(n: int, keep: bool, reuse: bool = False
                         ) -> list[tuple[str, str, float, str]]:
    import asyncpg

    admin = await asyncpg.connect(PG_ADMIN)
    exists = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", PG_DB)
    dsn = PG_ADMIN.rsplit("/", 1)[0] + "/" + PG_DB
    url = dsn.replace("postgresql://", "postgresql+asyncpg://", 1)
    results = []
    try:
        if not (reuse and exists):
            await admin.execute(f"DROP DATABASE IF EXISTS {PG_DB}")
            await admin.execute(f"CREATE DATABASE {PG_DB}")
            await (await TicketStore.open(url)).close()
            results.append(("postgres", f"load {n:,} tickets", await load_postgres(dsn, n),
                            "COPY"))
        store = await TicketStore.open(url)
        try:
            if results:
                results.append(("postgres", "link report neighbours", await link(store),
                                "link_all"))
            return results + await time_reports(store, "postgres")
        finally:
            await store.close()
    finally:
        if not keep:
            await admin.execute(f"DROP DATABASE IF EXISTS {PG_DB}")
        await admin.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=1_000_000)
    parser.add_argument("--db", nargs="+", choices=["sqlite", "postgres"],
                        default=["sqlite", "postgres"])
    parser.add_argument("--keep", action="store_true", help="keep the databases afterwards")
    parser.add_argument("--sqlite-file", type=Path,
                        help="the SQLite file to use (kept afterwards; default: a temporary one)")
    parser.add_argument("--reuse", action="store_true",
                        help="time the reports on the databases a --keep run left")
    args = parser.parse_args()
    keep = args.keep or args.reuse
    results = []
    if "sqlite" in args.db:
        results += await bench_sqlite(args.tickets, keep, args.sqlite_file, args.reuse)
    if "postgres" in args.db:
        results += await bench_postgres(args.tickets, keep, args.reuse)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print("| database | step | seconds | note |")
    print("| --- | --- | ---: | --- |")
    for db, step, seconds, note in results:
        print(f"| {db} | {step} | {seconds:.2f} | {note} |")


if __name__ == "__main__":
    asyncio.run(main())
