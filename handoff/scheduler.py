"""Durable jobs: one row per job in the ticket database (revision ho0003).

A job has a unique `key`, so scheduling the same job twice is harmless; a worker claims a due job
with a conditional UPDATE (one winner across processes) and holds it under a lease, so a job
whose worker died is picked up again once the lease runs out. A failing job is retried with
exponential backoff and marked failed, with its last error, after `max_attempts`.

The table lives in the database the tickets already use, so jobs survive restarts and need no
extra server; handlers must be idempotent (a worker may die after the work and before `done`).
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import JSON, Index, Integer, String, Text, and_, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from handoff.errors import TicketStoreUnavailable
from handoff.sla import Clock, system_clock
from handoff.tickets import Base, TicketStore, _aware

log = logging.getLogger(__name__)

PENDING, RUNNING, DONE, FAILED = "pending", "running", "done", "failed"
MAX_ERROR = 2000


class JobRow(Base):
    """One scheduled job: what to do (kind + payload), when, and how it went."""

    __tablename__ = "handoff_jobs"
    __table_args__ = (Index("ix_handoff_jobs_status_due", "status", "due_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32))
    key: Mapped[str] = mapped_column(String(200), unique=True)  # idempotency: one job per key
    due_at: Mapped[datetime]
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))  # pending | running | done | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    lease_until: Mapped[datetime | None]
    worker: Mapped[str | None] = mapped_column(String(64))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]


@dataclass(frozen=True, slots=True)
class Job:
    """A job as its handler sees it (and as tests read it back)."""

    id: int
    kind: str
    key: str
    due_at: datetime
    payload: Mapping[str, Any]
    status: str
    attempts: int
    worker: str | None
    last_error: str | None
    finished_at: datetime | None


Handler = Callable[[Job], Awaitable[None]]


class Reschedule(Exception):
    """Raised by a handler: not now, run again at `due_at` (not counted as an attempt)."""

    def __init__(self, due_at: datetime) -> None:
        super().__init__(f"rescheduled to {due_at.isoformat()}")
        self.due_at = due_at


def default_worker() -> str:
    """host:pid:random, unique per Scheduler instance."""
    return f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Scheduler:
    """Schedules and runs durable jobs on the ticket database.

    Args:
        store: the ticket store whose database holds ``handoff_jobs``.
        clock: the current time (tests move a `ManualClock`).
        worker: this instance's name, recorded on the jobs it runs.
        lease: how long a claimed job is held before another worker may take it over.
        max_attempts: runs before a failing job is marked failed.
        backoff: the wait after the first failure; doubled after each further one.
    """

    def __init__(self, store: TicketStore, *, clock: Clock = system_clock,
                 worker: str | None = None, lease: timedelta = timedelta(minutes=5),
                 max_attempts: int = 5, backoff: timedelta = timedelta(minutes=1)) -> None:
        self._dialect = store.dialect
        self._sessions = async_sessionmaker(store.engine, expire_on_commit=False)
        self.clock = clock
        self.worker = (worker or default_worker())[:64]
        self.lease = lease
        self.max_attempts = max_attempts
        self.backoff = backoff
        self._handlers: dict[str, Handler] = {}

    def register(self, kind: str, handler: Handler) -> None:
        """Run `handler` for the jobs of `kind`."""
        self._handlers[kind] = handler

    async def schedule(self, kind: str, key: str, due_at: datetime,
                       payload: Mapping[str, Any] | None = None) -> bool:
        """Add a job unless one with `key` exists (whatever its status); True when added.

        Raises:
            ValueError: kind or key is empty or too long.
            TicketStoreUnavailable: the database failed.
        """
        if not 0 < len(kind) <= 32 or not 0 < len(key) <= 200:
            raise ValueError("a job needs a kind of 1-32 and a key of 1-200 characters")
        insert = pg_insert if self._dialect == "postgresql" else sqlite_insert
        statement = insert(JobRow).values(
            kind=kind, key=key, due_at=due_at.astimezone(UTC), payload=dict(payload or {}),
            status=PENDING, attempts=0, created_at=self.clock()).on_conflict_do_nothing(
            index_elements=[JobRow.key])
        try:
            async with self._sessions() as session, session.begin():
                result = await session.execute(statement)
        except SQLAlchemyError as exc:
            raise TicketStoreUnavailable(f"the job table failed: {exc}") from exc
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def get(self, key: str) -> Job | None:
        """The job with `key`, if any."""
        async with self._sessions() as session:
            row = (await session.execute(
                select(JobRow).where(JobRow.key == key))).scalar_one_or_none()
        return None if row is None else _job(row)

    async def jobs(self, kind: str | None = None) -> list[Job]:
        """Every job (of `kind`), oldest first."""
        query = select(JobRow).order_by(JobRow.id)
        if kind is not None:
            query = query.where(JobRow.kind == kind)
        async with self._sessions() as session:
            return [_job(r) for r in (await session.execute(query)).scalars()]

    async def run_due(self, limit: int = 100) -> int:
        """Claim and run the jobs due now, one at a time; how many this worker ran.

        Raises:
            TicketStoreUnavailable: the database failed (the jobs stay as they were).
        """
        # SQLite keeps datetimes as text without a zone: compare in UTC only.
        now = self.clock().astimezone(UTC)
        claimable = or_(and_(JobRow.status == PENDING, JobRow.due_at <= now),
                        and_(JobRow.status == RUNNING, JobRow.lease_until < now))
        try:
            async with self._sessions() as session:
                ids = list((await session.execute(
                    select(JobRow.id).where(claimable, JobRow.kind.in_(list(self._handlers)))
                    .order_by(JobRow.due_at, JobRow.id).limit(limit))).scalars())
            ran = 0
            for job_id in ids:
                job = await self._claim(job_id, claimable)
                if job is not None:
                    await self._run(job)
                    ran += 1
        except SQLAlchemyError as exc:
            raise TicketStoreUnavailable(f"the job table failed: {exc}") from exc
        return ran

    async def _claim(self, job_id: int, claimable: Any) -> Job | None:
        # The WHERE is evaluated again on the locked row, so exactly one worker's UPDATE
        # matches; everybody else sees rowcount 0 and moves on.
        now = self.clock().astimezone(UTC)
        statement = (update(JobRow).where(JobRow.id == job_id, claimable)
                     .values(status=RUNNING, lease_until=now + self.lease, worker=self.worker,
                             attempts=JobRow.attempts + 1))
        async with self._sessions() as session, session.begin():
            if (await session.execute(statement)).rowcount != 1:  # type: ignore[attr-defined]
                return None
            row = await session.get(JobRow, job_id)
            assert row is not None
            return _job(row)

    async def _run(self, job: Job) -> None:
        handler = self._handlers[job.kind]
        values: dict[str, Any]
        try:
            await handler(job)
        except Reschedule as later:
            values = {"status": PENDING, "due_at": later.due_at.astimezone(UTC),
                      "lease_until": None,
                      "attempts": job.attempts - 1}
        except Exception as exc:  # a job's failure is recorded on the job, never lost
            error = f"{type(exc).__name__}: {exc}"[:MAX_ERROR]
            if job.attempts >= self.max_attempts:
                log.error("job %s failed for good after %d attempts: %s", job.key,
                          job.attempts, error)
                values = {"status": FAILED, "last_error": error, "lease_until": None,
                          "finished_at": self.clock()}
            else:
                wait = self.backoff * 2 ** (job.attempts - 1)
                log.warning("job %s failed (attempt %d), retrying in %s: %s", job.key,
                            job.attempts, wait, error)
                values = {"status": PENDING, "last_error": error, "lease_until": None,
                          "due_at": self.clock() + wait}
        else:
            values = {"status": DONE, "lease_until": None, "finished_at": self.clock()}
        async with self._sessions() as session, session.begin():
            # Only while this worker still holds it: a lost lease means another took over.
            await session.execute(update(JobRow).where(
                JobRow.id == job.id, JobRow.worker == self.worker, JobRow.status == RUNNING
            ).values(**values))


def _job(row: JobRow) -> Job:
    return Job(id=row.id, kind=row.kind, key=row.key, due_at=_aware(row.due_at),
               payload=dict(row.payload), status=row.status, attempts=row.attempts,
               worker=row.worker, last_error=row.last_error,
               finished_at=None if row.finished_at is None else _aware(row.finished_at))
