"""Live console events: in one process, and across processes through Redis pub/sub."""

from __future__ import annotations

import asyncio
import os
import uuid

import pytest

from handoff.live import InProcessEvents, RedisEvents

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


async def test_in_process_fan_out() -> None:
    events = InProcessEvents()
    await events.publish({"type": "nobody listens"})
    async with events.subscribe() as one, events.subscribe() as two:
        assert events.subscribers == 2
        await events.publish({"type": "ticket", "ticket_id": "t1"})
        assert one.get_nowait() == two.get_nowait() == {"type": "ticket", "ticket_id": "t1"}
    assert events.subscribers == 0


@pytest.mark.redis
async def test_two_processes_share_events_through_redis() -> None:
    from redis.asyncio import Redis

    channel = f"intakebot-test-{uuid.uuid4().hex[:12]}:console:events"
    first, second = Redis.from_url(REDIS_URL), Redis.from_url(REDIS_URL)
    a, b = RedisEvents(first, channel), RedisEvents(second, channel)
    await a.start()
    await b.start()
    try:
        async with a.subscribe() as on_a, b.subscribe() as on_b:
            await a.publish({"type": "ticket", "ticket_id": "t1", "number": "TS1"})
            got_b = await asyncio.wait_for(on_b.get(), 5)
            got_a = await asyncio.wait_for(on_a.get(), 5)
            assert got_a == got_b == {"type": "ticket", "ticket_id": "t1", "number": "TS1"}
    finally:
        await a.close()
        await b.close()
        await first.aclose()
        await second.aclose()
