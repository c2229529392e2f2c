"""Sessions, locks and de-duplication: each store in this process and on the real Redis."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from redis.asyncio import Redis

from bot.keys import Keys
from bot.session import (
    Ask,
    Assessment,
    Deduplicator,
    Delivery,
    Form,
    InMemoryDeduplicator,
    InMemoryLockStore,
    InMemorySessionStore,
    Line,
    LockStore,
    LockTimeout,
    RedisDeduplicator,
    RedisLockStore,
    RedisSessionStore,
    Session,
    SessionError,
    SessionStore,
    StaleSession,
    State,
    dedup_key,
)
from channels.messages import Attachment, Author, ConversationRef, OutgoingMessage
from handoff.intake import EvidenceRef, HandoffReason
from nlp.labels import Category, Demand, Emotion, Lang, Priority

NOW = datetime(2026, 11, 23, 8, 30, tzinfo=UTC)
CONVERSATION = ConversationRef("telegram", "4242")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def full_session(revision: int = 1) -> Session:
    """A session with every field set, as far into a conversation as they go."""
    return Session(
        key=CONVERSATION.key, channel="telegram", chat_id="4242", updated_at=NOW,
        state=State.CONFIRMING, lang=Lang.ZH_HANT,
        form=Form(order_id="4521987634123", product="藍牙耳機", phone="13812345678",
                  email="a@b.cn", demand=Demand.OTHER, demand_note="盡快處理", amount=350.0,
                  currency="CNY", incident_time="2026-11-22T15:00:00", customer_name="王先生"),
        story=("耳機壞了", "充電盒也裂了"),
        assessment=Assessment(Category.PRODUCT, "quality_defect", Priority.MEDIUM,
                              ("cannot_use",), Emotion.ANGER, 0.5),
        pending=Ask.DEMAND, asked=frozenset({Ask.ORDER_ID, Ask.DEMAND}),
        declined=frozenset({Ask.PRODUCT}), evidence_hinted=True, kb_misses=1,
        ticket_id="t-1", ticket_number="TS000001", handoff_reason=HandoffReason.STRONG_ANGER,
        evidence=(EvidenceRef("a.jpg", "image/jpeg", "ab" * 32, 99),),
        transcript=(Line(Author.CUSTOMER, "耳機壞了", NOW),
                    Line(Author.SYSTEM, "非常抱歉", NOW, "apology")),
        revision=revision,
    )


def test_a_session_survives_json() -> None:
    session = full_session()
    assert Session.loads(session.dumps()) == session
    assert Session.loads(Session.new(CONVERSATION, NOW).dumps()) == Session.new(CONVERSATION, NOW)


def test_an_unknown_session_format_is_refused() -> None:
    data = full_session().to_json()
    data["v"] = 99
    with pytest.raises(ValueError, match="format"):
        Session.from_json(data)


def test_the_transcript_and_the_story_are_bounded() -> None:
    session = Session.new(CONVERSATION, NOW)
    for i in range(500):
        session = session.with_lines(Line(Author.CUSTOMER, str(i), NOW))
        session = session.with_story("很长的经过" * 100)
    assert len(session.transcript) == 200 and session.transcript[-1].text == "499"
    assert sum(map(len, session.story)) <= 4_000


# ---- session stores -----------------------------------------------------------------------


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def session_store(request: pytest.FixtureRequest) -> SessionStore:
    if request.param == "memory":
        return InMemorySessionStore()
    client: Redis = request.getfixturevalue("redis_client")
    return RedisSessionStore(client, keys=request.getfixturevalue("redis_keys"))


async def test_put_get_delete(session_store: SessionStore) -> None:
    assert await session_store.get(CONVERSATION.key) is None
    await session_store.put(full_session(1))
    assert await session_store.get(CONVERSATION.key) == full_session(1)
    await session_store.delete(CONVERSATION.key)
    assert await session_store.get(CONVERSATION.key) is None


async def test_a_stale_write_is_refused_and_a_repeated_one_is_harmless(
        session_store: SessionStore) -> None:
    await session_store.put(full_session(1))
    await session_store.put(full_session(2))
    await session_store.put(full_session(2))  # the same write again (a retry): no harm
    with pytest.raises(StaleSession):
        # another process handled a message meanwhile and wrote revision 2 differently
        await session_store.put(replace(full_session(2), kb_misses=0))
    with pytest.raises(StaleSession):
        await session_store.put(full_session(1))  # older than what is stored
    assert await session_store.get(CONVERSATION.key) == full_session(2)


async def test_in_memory_sessions_expire() -> None:
    clock = Clock()
    store = InMemorySessionStore(ttl=timedelta(days=7), clock=clock)
    await store.put(full_session())
    clock.now += 7 * 86400 - 1
    assert await store.get(CONVERSATION.key) is not None
    clock.now += 2
    assert await store.get(CONVERSATION.key) is None


@pytest.mark.redis
async def test_redis_sessions_have_a_ttl(redis_client: Redis, redis_keys: Keys) -> None:
    store = RedisSessionStore(redis_client, keys=redis_keys)
    await store.put(full_session())
    ttl = await redis_client.ttl(redis_keys.session(CONVERSATION.key))
    assert 7 * 86400 - 5 < ttl <= 7 * 86400
    short = RedisSessionStore(redis_client, keys=redis_keys, ttl=timedelta(seconds=1))
    await short.put(full_session(2))
    await asyncio.sleep(1.2)
    assert await store.get(CONVERSATION.key) is None


# ---- locks --------------------------------------------------------------------------------


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def lock_store(request: pytest.FixtureRequest) -> LockStore:
    if request.param == "memory":
        return InMemoryLockStore(timeout=0.3)
    client: Redis = request.getfixturevalue("redis_client")
    return RedisLockStore(client, keys=request.getfixturevalue("redis_keys"), timeout=0.3)


async def test_one_holder_at_a_time_per_conversation(lock_store: LockStore) -> None:
    inside: list[str] = []
    overlap = False

    async def hold(name: str) -> None:
        nonlocal overlap
        async with lock_store.lock("c1"):
            overlap = overlap or bool(inside)
            inside.append(name)
            await asyncio.sleep(0.02)
            inside.remove(name)

    await asyncio.gather(*(hold(str(i)) for i in range(5)))
    assert not overlap
    async with lock_store.lock("c1"), lock_store.lock("c2"):  # others are not held up
        pass


async def test_a_lock_held_too_long_times_out(lock_store: LockStore) -> None:
    async with lock_store.lock("c1"):
        with pytest.raises(LockTimeout):
            async with lock_store.lock("c1"):
                pass
    async with lock_store.lock("c1"):  # and is free again afterwards
        pass


async def test_in_memory_locks_are_dropped_when_unused() -> None:
    store = InMemoryLockStore()
    async with store.lock("c1"):
        assert len(store) == 1
    assert len(store) == 0


@pytest.mark.redis
async def test_a_redis_lock_expires_and_is_never_released_by_a_former_holder(
        redis_client: Redis, redis_keys: Keys, caplog: pytest.LogCaptureFixture) -> None:
    store = RedisLockStore(redis_client, keys=redis_keys, lease=timedelta(milliseconds=100),
                           timeout=1.0)
    name = redis_keys.lock("c1")
    with caplog.at_level(logging.WARNING, logger="bot.session"):
        async with store.lock("c1"):
            assert 0 < await redis_client.pttl(name) <= 100
            await asyncio.sleep(0.15)  # the lease ran out: somebody else takes the lock
            await redis_client.set(name, "someone-else", px=5000)
    assert await redis_client.get(name) == b"someone-else"
    assert "expired" in caplog.text


# ---- de-duplication -----------------------------------------------------------------------


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def dedup(request: pytest.FixtureRequest) -> Deduplicator:
    if request.param == "memory":
        return InMemoryDeduplicator()
    client: Redis = request.getfixturevalue("redis_client")
    return RedisDeduplicator(client, keys=request.getfixturevalue("redis_keys"))


def delivery(sent: int = 0) -> Delivery:
    reply = OutgoingMessage(CONVERSATION, "您好", buttons=("是", "否"),
                            attachments=(Attachment("a.png", "image/png", "cd" * 32, 5),))
    return Delivery((reply, OutgoingMessage(CONVERSATION, "agent", author=Author.AGENT)), sent)


async def test_a_handled_message_is_remembered_with_its_replies(dedup: Deduplicator) -> None:
    key = dedup_key(CONVERSATION, "m1")
    assert await dedup.find(key) is None
    await dedup.record(key, delivery())
    assert await dedup.find(key) == delivery()
    await dedup.record(key, delivery(sent=1))  # a reply was sent: the count moves on
    assert await dedup.find(key) == delivery(sent=1)
    assert await dedup.find(dedup_key(CONVERSATION, "m2")) is None


def test_message_ids_are_per_chat() -> None:
    assert dedup_key(ConversationRef("telegram", "1"), "42") != dedup_key(
        ConversationRef("telegram", "2"), "42")


async def test_in_memory_records_expire() -> None:
    clock = Clock()
    dedup = InMemoryDeduplicator(ttl=timedelta(hours=1), clock=clock)
    await dedup.record("a", delivery())
    clock.now += 3599
    assert await dedup.find("a") is not None
    clock.now += 2
    assert await dedup.find("a") is None
    assert len(dedup) == 0


@pytest.mark.redis
async def test_redis_dedup_keys_have_a_ttl(redis_client: Redis, redis_keys: Keys) -> None:
    dedup = RedisDeduplicator(redis_client, keys=redis_keys)
    await dedup.record("k", delivery())
    assert 60 < await redis_client.ttl(redis_keys.dedup("k")) <= 86400


# ---- the atomic commit ----------------------------------------------------------------------


@pytest.mark.redis
async def test_commit_stores_the_session_and_the_record_together(redis_client: Redis,
                                                                 redis_keys: Keys) -> None:
    dedup = RedisDeduplicator(redis_client, keys=redis_keys)
    sessions = RedisSessionStore(redis_client, keys=redis_keys)
    key = dedup_key(CONVERSATION, "m1")
    assert await dedup.commit(key, delivery(), full_session(1)) == delivery()
    assert await sessions.get(CONVERSATION.key) == full_session(1)
    assert await dedup.find(key) == delivery()
    assert 6 * 86400 < await redis_client.ttl(redis_keys.session(CONVERSATION.key)) <= 7 * 86400
    assert 3600 < await redis_client.ttl(redis_keys.dedup(key)) <= 86400
    # not queued unless asked
    assert await redis_client.xlen(redis_keys.outbound_of(CONVERSATION.key)) == 0


@pytest.mark.redis
async def test_a_stale_commit_writes_neither_the_session_nor_the_record(
        redis_client: Redis, redis_keys: Keys) -> None:
    dedup = RedisDeduplicator(redis_client, keys=redis_keys)
    sessions = RedisSessionStore(redis_client, keys=redis_keys)
    await sessions.put(full_session(1))
    await sessions.put(full_session(2))
    key = dedup_key(CONVERSATION, "late")
    with pytest.raises(StaleSession):  # computed on revision 1, while 2 is stored
        await dedup.commit(key, delivery(), replace(full_session(2), kb_misses=0))
    assert await dedup.find(key) is None
    assert await sessions.get(CONVERSATION.key) == full_session(2)


@pytest.mark.redis
async def test_the_first_commit_of_a_message_wins(redis_client: Redis, redis_keys: Keys) -> None:
    """A handler whose lock lease ran out finishes after the one that took over: it writes
    nothing and answers with the replies already recorded."""
    dedup = RedisDeduplicator(redis_client, keys=redis_keys)
    sessions = RedisSessionStore(redis_client, keys=redis_keys)
    key = dedup_key(CONVERSATION, "m1")
    first = Delivery((OutgoingMessage(CONVERSATION, "first"),))
    assert await dedup.commit(key, first, full_session(1)) == first
    second = await dedup.commit(key, delivery(), replace(full_session(1), kb_misses=3),
                                queue=True)
    assert second == first
    assert await sessions.get(CONVERSATION.key) == full_session(1)
    assert await redis_client.xlen(redis_keys.outbound_of(CONVERSATION.key)) == 0


@pytest.mark.redis
async def test_commit_can_queue_the_message_for_the_senders(redis_client: Redis,
                                                            redis_keys: Keys) -> None:
    dedup = RedisDeduplicator(redis_client, keys=redis_keys)
    key = dedup_key(CONVERSATION, "m1")
    await dedup.commit(key, delivery(), full_session(1), queue=True)
    entries: Any = await redis_client.xrange(redis_keys.outbound_of(CONVERSATION.key))
    [(_, fields)] = entries
    assert fields == {b"dedup": key.encode()}


async def test_redis_errors_become_session_errors() -> None:
    """A Redis that is down is a SessionError (the app answers 503), not a crash."""
    client = Redis.from_url("redis://127.0.0.1:1", socket_connect_timeout=0.5)
    try:
        keys = Keys("intakebot-test-down:")
        with pytest.raises(SessionError, match="Redis is unavailable"):
            await RedisDeduplicator(client, keys=keys).find("k")
        with pytest.raises(SessionError):
            await RedisSessionStore(client, keys=keys).get("k")
        with pytest.raises(SessionError):
            async with RedisLockStore(client, keys=keys).lock("k"):
                pass
        with pytest.raises(SessionError):
            await RedisDeduplicator(client, keys=keys).commit(
                dedup_key(CONVERSATION, "k"), delivery(), full_session())
    finally:
        await client.aclose()


async def test_the_first_received_time_is_kept(dedup: Deduplicator) -> None:
    later = NOW + timedelta(seconds=30)
    assert await dedup.first_seen("m1", NOW) == NOW
    assert await dedup.first_seen("m1", later) == NOW  # handled again: the first time
    assert await dedup.first_seen("m2", later) == later
