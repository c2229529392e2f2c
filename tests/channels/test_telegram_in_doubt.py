"""Telegram replies from the durable outbound queue are never sent twice, on the real Redis and
the fake Bot API: a sender that dies while Telegram carries out its sendMessage, or whose call
times out after the request left, leaves that one reply "in doubt" (listed as a dead letter for
staff, not sent again), while the replies before it were sent once and those after it are sent.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from bot.keys import Keys
from bot.outbound import RedisOutbound
from bot.session import Delivery, RedisDeduplicator, Session, dedup_key
from channels.messages import ConversationRef, OutgoingMessage
from channels.ratelimit import RateLimiter
from channels.telegram import TelegramChannel, TelegramDeliveryInDoubt
from handoff.evidence import EvidenceStore
from tests.channels.conftest import REDIS_URL
from tests.channels.fake_telegram import FakeTelegram
from tests.channels.test_telegram import FAST, TOKEN, config

pytestmark = [pytest.mark.redis, pytest.mark.filterwarnings(
    "ignore:.*retry_after.*:telegram.warnings.PTBDeprecationWarning")]

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(TOKEN) as server:
        yield server


@pytest.fixture
async def redis() -> AsyncIterator[tuple[Redis, Keys]]:
    client = Redis.from_url(REDIS_URL)
    keys = Keys(f"intakebot-test-{uuid.uuid4().hex[:12]}:")
    yield client, keys
    stale = [k async for k in client.scan_iter(match=f"{keys.prefix}*")]
    if stale:
        await client.delete(*stale)
    await client.aclose()


@pytest.fixture
async def channel(fake: FakeTelegram, tmp_path: Path) -> AsyncIterator[TelegramChannel]:
    async def on_message(_message: Any) -> list[OutgoingMessage]:
        return []

    built = TelegramChannel(config(fake), on_message, files=EvidenceStore(tmp_path),
                            policy=FAST, limiter=RateLimiter(0, 0), send_timeout=0.5)
    await built.start()
    yield built
    await built.close()


async def queue(dedup: RedisDeduplicator, chat: str, *texts: str) -> str:
    """Commit a handled message whose replies the queue sends, as the dispatcher does."""
    conversation = ConversationRef("telegram", chat)
    key = dedup_key(conversation, uuid.uuid4().hex)
    await dedup.commit(key, Delivery(tuple(OutgoingMessage(conversation, t) for t in texts)),
                       Session.new(conversation, NOW), queue=True)
    return key


def sender(redis: Redis, keys: Keys, channel: TelegramChannel) -> RedisOutbound:
    return RedisOutbound(redis, RedisDeduplicator(redis, keys=keys),
                         {"telegram": channel.output}, keys=keys,
                         min_idle=timedelta(seconds=0.3), block=0.05)


def texts(fake: FakeTelegram, chat: int) -> list[str]:
    return [m["text"] for m in fake.sent_to(chat)]


async def test_a_reply_whose_sender_died_mid_call_is_not_sent_again(
        fake: FakeTelegram, channel: TelegramChannel, redis: tuple[Redis, Keys]) -> None:
    client, keys = redis
    dedup = RedisDeduplicator(client, keys=keys)
    key = await queue(dedup, "4242", "one", "two", "three")
    fake.stalls["sendMessage"] = [0.0, 3600.0]  # "one" answered, "two" sent but never answered
    first = sender(client, keys, channel)
    await first.ensure_group()
    dying = asyncio.create_task(first.run_once())
    await asyncio.wait_for(fake.stalled.wait(), 10)
    dying.cancel()  # the process dies while Telegram carries out sendMessage "two"
    with pytest.raises(asyncio.CancelledError):
        await dying
    assert texts(fake, 4242) == ["one", "two"]
    record = await dedup.find(key)
    assert record is not None and record.sent == 1 and record.sending is not None

    second = sender(client, keys, channel)
    await asyncio.sleep(0.4)  # the entry is taken over once idle
    assert await second.run_once(block=False) == 1
    assert texts(fake, 4242) == ["one", "two", "three"]  # "two" not sent again
    assert len(fake.called("sendMessage")) == 3
    [letter] = await second.dead_letters()
    assert letter["dedup"] == key and letter["reply"] == "1"
    assert letter["error"].startswith("in doubt")
    record = await dedup.find(key)
    assert record is not None and record.complete and record.sending is None
    assert await second.queued() == 0


async def test_a_send_that_timed_out_is_not_tried_again(
        fake: FakeTelegram, channel: TelegramChannel, redis: tuple[Redis, Keys]) -> None:
    client, keys = redis
    key = await queue(RedisDeduplicator(client, keys=keys), "4343", "slow", "next")
    fake.stall("sendMessage", 3.0)  # beyond the 0.5 s the bot waits for an answer
    outbound = sender(client, keys, channel)
    await outbound.ensure_group()
    assert await outbound.run_once(block=False) == 1
    await asyncio.sleep(3.0)  # the stalled call has answered by now, to nobody
    assert texts(fake, 4343) == ["slow", "next"]
    assert len(fake.called("sendMessage")) == 2  # the timed-out call was not retried
    [letter] = await outbound.dead_letters()
    assert letter["dedup"] == key and letter["reply"] == "0"
    assert letter["error"].startswith("in doubt") and "Timed out" in letter["error"]


async def test_the_output_tells_a_refusal_from_a_doubt(
        fake: FakeTelegram, channel: TelegramChannel) -> None:
    conversation = ConversationRef("telegram", "4444")
    fake.stall("sendMessage", 1.0)
    with pytest.raises(TelegramDeliveryInDoubt):  # the request left; no answer came
        await channel.output.send(OutgoingMessage(conversation, "hello"))
    await asyncio.sleep(1.0)
    fake.fail("sendMessage", 502, times=1)  # Telegram answered: not sent, so tried again
    await channel.output.send(OutgoingMessage(conversation, "again"))
    assert texts(fake, 4444) == ["hello", "again"]
    # A long text whose second part is refused after the first was sent: in doubt as a whole,
    # as sending it again would repeat the first part.
    fake.fail("sendMessage", 400, times=1, after=1)
    with pytest.raises(TelegramDeliveryInDoubt, match="after 1 part"):
        await channel.output.send(OutgoingMessage(conversation, "甲" * 4000 + "\n" + "乙" * 100))
    assert len(fake.sent_to(4444)) == 3
