"""The durable outbound queue on the real Redis: a crashed consumer's entries are taken over and
sent once, two consumers never send one entry both, failures are retried, then dead-lettered."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from redis.asyncio import Redis

from bot.keys import Keys
from bot.outbound import RedisOutbound, reply_key, send_reply
from bot.session import Delivery, RedisDeduplicator, Session, dedup_key
from channels.base import ChannelError
from channels.messages import ConversationRef, OutgoingMessage

pytestmark = pytest.mark.redis

NOW = datetime(2026, 11, 23, 8, 30, tzinfo=UTC)


@dataclass
class Gateway:
    """An output that records each send by key; it can hang (a crash mid-send) or fail."""

    name: str = "telegram"
    sent: list[tuple[str, OutgoingMessage]] = field(default_factory=list)
    hang_on: set[str] = field(default_factory=set)
    fail: int = 0  # fail this many sends first
    started: asyncio.Event = field(default_factory=asyncio.Event)

    async def send(self, message: OutgoingMessage) -> None:
        raise AssertionError("replies from the queue are sent by key")

    async def send_once(self, message: OutgoingMessage, key: str) -> None:
        if message.text in self.hang_on:
            self.started.set()
            await asyncio.Event().wait()  # until cancelled: the process dies here
        if self.fail:
            self.fail -= 1
            raise ChannelError("the gateway answered 502")
        self.sent.append((key, message))


async def queue_message(dedup: RedisDeduplicator, chat: str, message_id: str,
                        *texts: str) -> str:
    """Commit a handled message with its replies queued, as the dispatcher does."""
    conversation = ConversationRef("telegram", chat)
    key = dedup_key(conversation, message_id)
    session = Session.new(conversation, NOW)
    stored = await dedup.find(key)
    assert stored is None
    await dedup.commit(key, Delivery(tuple(OutgoingMessage(conversation, t) for t in texts)),
                       session, queue=True)
    return key


async def queued(redis: Redis, keys: Keys) -> int:
    """Entries on every shard's outbound stream."""
    return sum([await redis.xlen(stream) for stream in keys.outbound_streams])


def consumer(redis: Redis, keys: Keys, gateway: Gateway, *,
             min_idle: float = 30.0, max_attempts: int = 8) -> RedisOutbound:
    return RedisOutbound(redis, RedisDeduplicator(redis, keys=keys), {gateway.name: gateway},
                         keys=keys, min_idle=timedelta(seconds=min_idle),
                         max_attempts=max_attempts, block=0.05)


async def test_a_crashed_consumers_entry_is_taken_over_and_sent_once(
        redis_client: Redis, redis_keys: Keys) -> None:
    dedup = RedisDeduplicator(redis_client, keys=redis_keys)
    key = await queue_message(dedup, "c1", "m1", "one", "two", "three")
    gateway = Gateway(hang_on={"two"})
    first = consumer(redis_client, redis_keys, gateway, min_idle=0.3)
    await first.ensure_group()
    crashed = asyncio.create_task(first.run_once())
    await asyncio.wait_for(gateway.started.wait(), 10)
    crashed.cancel()  # the process dies while sending "two"; "one" was sent and counted
    with pytest.raises(asyncio.CancelledError):
        await crashed
    assert [m.text for _, m in gateway.sent] == ["one"]

    gateway.hang_on.clear()
    second = consumer(redis_client, redis_keys, gateway, min_idle=0.3)
    assert await second.run_once(block=False) == 0  # still fresh: not taken over yet
    await asyncio.sleep(0.4)
    assert await second.run_once(block=False) == 1
    assert [m.text for _, m in gateway.sent] == ["one", "two", "three"]  # resumed, none twice
    assert [k for k, _ in gateway.sent] == [reply_key(key, i) for i in range(3)]
    assert await queued(redis_client, redis_keys) == 0
    record = await dedup.find(key)
    assert record is not None and record.complete


async def test_two_consumers_send_each_entry_once(redis_client: Redis,
                                                  redis_keys: Keys) -> None:
    dedup = RedisDeduplicator(redis_client, keys=redis_keys)
    for i in range(40):
        await queue_message(dedup, f"c{i % 8}", f"m{i}", f"reply {i} a", f"reply {i} b")
    gateway = Gateway()
    a = consumer(redis_client, redis_keys, gateway)
    b = consumer(redis_client, redis_keys, gateway)
    await a.ensure_group()
    tried = 0
    while tried < 40:
        counts = await asyncio.gather(a.run_once(block=False), b.run_once(block=False))
        assert sum(counts) > 0
        tried += sum(counts)
    texts = sorted(m.text for _, m in gateway.sent)
    assert texts == sorted(f"reply {i} {x}" for i in range(40) for x in "ab")
    # one message's replies keep their order (one entry is sent by one consumer)
    texts_in_order = [m.text for _, m in gateway.sent]
    for i in range(40):
        assert texts_in_order.index(f"reply {i} a") < texts_in_order.index(f"reply {i} b")
    assert await queued(redis_client, redis_keys) == 0


async def test_a_failed_send_is_retried_after_the_idle_time(redis_client: Redis,
                                                            redis_keys: Keys) -> None:
    dedup = RedisDeduplicator(redis_client, keys=redis_keys)
    await queue_message(dedup, "c1", "m1", "hello")
    gateway = Gateway(fail=1)
    sender = consumer(redis_client, redis_keys, gateway, min_idle=0.2)
    await sender.ensure_group()
    assert await sender.run_once(block=False) == 1
    assert gateway.sent == [] and await queued(redis_client, redis_keys) == 1
    await asyncio.sleep(0.3)
    assert await sender.run_once(block=False) == 1
    assert [m.text for _, m in gateway.sent] == ["hello"]
    assert await queued(redis_client, redis_keys) == 0
    assert await sender.dead_letters() == []


async def test_a_reply_that_keeps_failing_becomes_a_dead_letter(redis_client: Redis,
                                                                redis_keys: Keys) -> None:
    dedup = RedisDeduplicator(redis_client, keys=redis_keys)
    key = await queue_message(dedup, "c1", "m1", "hello 13812345678")
    gateway = Gateway(fail=100)
    sender = consumer(redis_client, redis_keys, gateway, min_idle=0.05, max_attempts=3)
    await sender.ensure_group()
    for _ in range(3):
        await sender.run_once(block=False)
        await asyncio.sleep(0.1)
    assert await queued(redis_client, redis_keys) == 0
    [letter] = await sender.dead_letters()
    assert letter["dedup"] == key and letter["reply"] == "0" and letter["attempts"] == "3"
    assert "502" in letter["error"]
    assert gateway.sent == []


async def test_an_entry_whose_record_expired_is_dropped_with_an_error(
        redis_client: Redis, redis_keys: Keys, caplog: pytest.LogCaptureFixture) -> None:
    dedup = RedisDeduplicator(redis_client, keys=redis_keys)
    key = await queue_message(dedup, "c1", "m1", "hello")
    await redis_client.delete(redis_keys.dedup(key))
    sender = consumer(redis_client, redis_keys, Gateway())
    await sender.ensure_group()
    assert await sender.run_once(block=False) == 1
    assert "expired" in caplog.text
    assert await queued(redis_client, redis_keys) == 0


async def test_the_group_is_created_once_and_start_close_run_the_loop(
        redis_client: Redis, redis_keys: Keys) -> None:
    dedup = RedisDeduplicator(redis_client, keys=redis_keys)
    gateway = Gateway()
    sender = consumer(redis_client, redis_keys, gateway)
    await sender.ensure_group()
    await sender.ensure_group()  # BUSYGROUP is fine
    await sender.start()
    try:
        await queue_message(dedup, "c1", "m1", "hello")
        for _ in range(200):
            if gateway.sent:
                break
            await asyncio.sleep(0.05)
        assert [m.text for _, m in gateway.sent] == ["hello"]
    finally:
        await sender.close()


async def test_send_reply_needs_an_output() -> None:
    reply = OutgoingMessage(ConversationRef("nowhere", "1"), "hi")
    with pytest.raises(ChannelError, match="no output channel"):
        await send_reply({}, reply, None)


async def test_consumers_of_dead_processes_are_removed_once_idle_and_done(
        redis_client: Redis, redis_keys: Keys) -> None:
    dedup = RedisDeduplicator(redis_client, keys=redis_keys)
    stream = redis_keys.outbound_of("telegram:c1")

    async def names() -> set[str]:
        infos: Any = await redis_client.xinfo_consumers(stream, "senders")
        return {i["name"].decode() if isinstance(i["name"], bytes) else i["name"] for i in infos}

    dead = consumer(redis_client, redis_keys, Gateway())  # sent an entry, then its process died
    await dead.ensure_group()
    await queue_message(dedup, "c1", "m0", "done")
    assert await dead.run_once(block=False) == 1
    gateway = Gateway(hang_on={"stuck"})
    holder = consumer(redis_client, redis_keys, gateway)  # died holding an entry
    key = await queue_message(dedup, "c1", "m1", "stuck")
    holding = asyncio.create_task(holder.run_once())
    await asyncio.wait_for(gateway.started.wait(), 10)
    holding.cancel()
    with pytest.raises(asyncio.CancelledError):
        await holding
    assert {dead.consumer, holder.consumer} <= await names()

    live = RedisOutbound(redis_client, dedup, {gateway.name: gateway}, keys=redis_keys,
                         stale_after=timedelta(seconds=0.3), block=0.05)
    assert await live.reap() == []  # both seen recently
    await asyncio.sleep(0.4)
    # Idle with nothing pending: deleted. The holder stays while its entry is pending.
    assert await live.reap() == [dead.consumer]
    assert dead.consumer not in await names() and holder.consumer in await names()

    # Once its entry is taken over (and sent), the holder goes as well; the caller stays.
    gateway.hang_on.clear()
    taker = RedisOutbound(redis_client, dedup, {gateway.name: gateway}, keys=redis_keys,
                          min_idle=timedelta(seconds=0.1), stale_after=timedelta(seconds=0.3))
    await asyncio.sleep(0.1)
    assert await taker.run_once(block=False) == 1
    assert [m.text for _, m in gateway.sent] == ["stuck"]
    record = await dedup.find(key)
    assert record is not None and record.complete
    await asyncio.sleep(0.4)
    assert holder.consumer in await taker.reap()
    assert await names() == {taker.consumer}
