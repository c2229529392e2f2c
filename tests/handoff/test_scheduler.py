"""The durable job scheduler on a real SQLite file and a real PostgreSQL: idempotent scheduling,
exactly-once runs across workers, restarts, lease takeover, retries and failure."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from handoff.scheduler import Job, Reschedule, Scheduler
from handoff.sla import ManualClock
from handoff.tickets import TicketStore
from tests.handoff.conftest import POSTGRES_URL, postgres_schema, search_path

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)


async def test_scheduling_is_idempotent_and_runs_only_due_jobs(store: TicketStore) -> None:
    clock = ManualClock(NOW)
    scheduler = Scheduler(store, clock=clock)
    seen: list[str] = []

    async def handler(job: Job) -> None:
        seen.append(f"{job.key}:{job.payload['n']}")

    scheduler.register("note", handler)
    assert await scheduler.schedule("note", "a", NOW, {"n": 1})
    assert not await scheduler.schedule("note", "a", NOW, {"n": 2})  # same key: one job
    assert await scheduler.schedule("note", "b", NOW + timedelta(hours=1), {"n": 3})
    assert await scheduler.run_due() == 1
    assert seen == ["a:1"]
    clock.advance(timedelta(hours=1))
    assert await scheduler.run_due() == 1
    assert await scheduler.run_due() == 0  # done jobs never run again
    assert seen == ["a:1", "b:3"]
    done = await scheduler.get("a")
    assert done is not None and done.status == "done" and done.finished_at == NOW
    assert not await scheduler.schedule("note", "a", NOW, {"n": 4})  # even once done
    with pytest.raises(ValueError):
        await scheduler.schedule("note", "", NOW)


async def _exactly_once(first: TicketStore, second: TicketStore) -> None:
    clock = ManualClock(NOW)
    runs: Counter[str] = Counter()

    async def handler(job: Job) -> None:
        runs[job.key] += 1
        await asyncio.sleep(0)  # let the other worker try meanwhile

    workers = [Scheduler(s, clock=clock, worker=f"w{i}") for i, s in enumerate((first, second))]
    for worker in workers:
        worker.register("send", handler)
    keys = [f"job-{n}" for n in range(30)]
    for key in keys:
        await workers[0].schedule("send", key, NOW)
    counts = await asyncio.gather(*(w.run_due() for w in workers for _ in range(2)))
    assert sum(counts) == len(keys)
    assert runs == Counter(dict.fromkeys(keys, 1))
    jobs = await workers[1].jobs("send")
    assert {j.status for j in jobs} == {"done"} and {j.attempts for j in jobs} == {1}


async def test_two_workers_on_one_sqlite_file_run_each_job_once(sqlite_url: str) -> None:
    first, second = await TicketStore.open(sqlite_url), await TicketStore.open(sqlite_url)
    try:
        await _exactly_once(first, second)
    finally:
        await first.close()
        await second.close()


@pytest.mark.postgres
async def test_two_workers_on_postgres_run_each_job_once() -> None:
    async with postgres_schema() as schema:
        first = await TicketStore.open(POSTGRES_URL, connect_args=search_path(schema))
        second = await TicketStore.open(POSTGRES_URL, connect_args=search_path(schema))
        try:
            await _exactly_once(first, second)
        finally:
            await first.close()
            await second.close()


async def test_a_job_survives_closing_and_reopening_the_store(sqlite_url: str) -> None:
    clock = ManualClock(NOW)
    store = await TicketStore.open(sqlite_url)
    await Scheduler(store, clock=clock).schedule("send", "later", NOW + timedelta(days=1),
                                                 {"to": "c1"})
    await store.close()

    reopened = await TicketStore.open(sqlite_url)
    try:
        scheduler = Scheduler(reopened, clock=clock)
        got: list[str] = []

        async def handler(job: Job) -> None:
            got.append(job.payload["to"])

        scheduler.register("send", handler)
        assert await scheduler.run_due() == 0
        clock.advance(timedelta(days=1))
        assert await scheduler.run_due() == 1 and got == ["c1"]
    finally:
        await reopened.close()


async def test_an_expired_lease_is_taken_over(store: TicketStore) -> None:
    clock = ManualClock(NOW)
    dead = Scheduler(store, clock=clock, worker="dead", lease=timedelta(minutes=5))
    alive = Scheduler(store, clock=clock, worker="alive", lease=timedelta(minutes=5))
    ran: list[str] = []

    async def dies(job: Job) -> None:
        raise asyncio.CancelledError  # the worker process is killed mid-job

    async def works(job: Job) -> None:
        ran.append(job.key)

    dead.register("send", dies)
    alive.register("send", works)
    await dead.schedule("send", "k", NOW)
    with pytest.raises(asyncio.CancelledError):
        await dead.run_due()
    held = await alive.get("k")
    assert held is not None and held.status == "running" and held.worker == "dead"
    assert await alive.run_due() == 0  # the lease still holds
    clock.advance(timedelta(minutes=6))
    assert await alive.run_due() == 1 and ran == ["k"]
    done = await alive.get("k")
    assert done is not None and done.status == "done" and done.worker == "alive"
    assert done.attempts == 2


async def test_failures_retry_with_backoff_then_fail(store: TicketStore) -> None:
    clock = ManualClock(NOW)
    scheduler = Scheduler(store, clock=clock, max_attempts=3, backoff=timedelta(minutes=1))
    calls: list[datetime] = []

    async def flaky(job: Job) -> None:
        calls.append(clock())
        raise RuntimeError(f"gateway down ({len(calls)})")

    scheduler.register("send", flaky)
    await scheduler.schedule("send", "k", NOW)
    assert await scheduler.run_due() == 1
    job = await scheduler.get("k")
    assert job is not None and job.status == "pending" and job.attempts == 1
    assert job.due_at == NOW + timedelta(minutes=1) and job.last_error is not None
    assert "gateway down (1)" in job.last_error
    assert await scheduler.run_due() == 0  # backing off
    clock.advance(timedelta(minutes=1))
    assert await scheduler.run_due() == 1
    job = await scheduler.get("k")
    assert job is not None and job.due_at == clock.now + timedelta(minutes=2)
    clock.advance(timedelta(minutes=2))
    assert await scheduler.run_due() == 1
    job = await scheduler.get("k")
    assert job is not None and job.status == "failed" and job.attempts == 3
    assert job.last_error == "RuntimeError: gateway down (3)"
    clock.advance(timedelta(days=1))
    assert await scheduler.run_due() == 0 and len(calls) == 3


async def test_a_handler_can_postpone_its_job(store: TicketStore) -> None:
    clock = ManualClock(NOW)
    scheduler = Scheduler(store, clock=clock)
    ran: list[datetime] = []

    async def quiet(job: Job) -> None:
        if clock() < NOW + timedelta(hours=6):
            raise Reschedule(NOW + timedelta(hours=6))
        ran.append(clock())

    scheduler.register("send", quiet)
    await scheduler.schedule("send", "k", NOW)
    assert await scheduler.run_due() == 1 and ran == []
    job = await scheduler.get("k")
    assert job is not None and job.status == "pending" and job.attempts == 0
    assert job.due_at == NOW + timedelta(hours=6)
    clock.advance(timedelta(hours=6))
    assert await scheduler.run_due() == 1 and ran == [clock.now]
