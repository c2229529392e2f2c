"""Notifiers: in-process and real Redis pub/sub; a notifier never wakes itself."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from knowledge_base.notify import InMemoryHub, InMemoryNotifier, Notifier, RedisNotifier


async def _collect(notifier: Notifier) -> list[str]:
    seen: list[str] = []

    async def listener(reason: str) -> None:
        seen.append(reason)

    notifier.listen(listener)
    return seen


async def test_in_memory() -> None:
    hub = InMemoryHub()
    a, b = InMemoryNotifier(hub), InMemoryNotifier(hub)
    seen_a, seen_b = await _collect(a), await _collect(b)
    await a.notify("publish x")
    assert seen_a == [] and seen_b == ["publish x"]
    await b.close()
    await a.notify("again")
    assert seen_b == ["publish x"]


@pytest.mark.redis
async def test_redis_pub_sub() -> None:
    channel = f"intakebot:test:{uuid.uuid4().hex}"
    a = RedisNotifier("redis://127.0.0.1:6379/0", channel=channel)
    b = RedisNotifier("redis://127.0.0.1:6379/0", channel=channel)
    seen_a, seen_b = await _collect(a), await _collect(b)
    await a.start()
    await b.start()
    try:
        await a.notify("publish x")
        # Foreign messages on the channel are ignored, not fatal.
        await a._redis.publish(channel, "not json")
        await a.notify("publish y")
        for _ in range(100):
            if len(seen_b) == 2:
                break
            await asyncio.sleep(0.02)
        assert seen_b == ["publish x", "publish y"] and seen_a == []
    finally:
        await a.close()
        await b.close()


async def test_unreachable_redis_is_a_clear_error() -> None:
    from knowledge_base.errors import NotifierUnavailable

    notifier = RedisNotifier("redis://127.0.0.1:1/0")
    with pytest.raises(NotifierUnavailable, match="cannot reach Redis"):
        await notifier.start()
    with pytest.raises(NotifierUnavailable):
        await notifier.notify("x")
    await notifier.close()
