"""The dispatcher: one message at a time per conversation, each handled once, replies sent after
the session is stored, failures never swallowed; on both stores (in-process and the real Redis).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import pytest

from bot.dispatcher import BatchOutput, Dispatcher, Handled, UndeliveredReply
from bot.keys import Keys
from bot.outbound import RedisOutbound, reply_key
from bot.session import (
    Delivery,
    InMemoryDeduplicator,
    Line,
    Question,
    RedisDeduplicator,
    RedisLockStore,
    Session,
    SessionError,
    State,
    dedup_key,
)
from channels.base import ChannelError, OnMessage, OutputChannel
from channels.messages import Author, ConversationRef, IncomingMessage, OutgoingMessage
from tests.bot.conftest import Chat, RecordingChannel, Stores

if TYPE_CHECKING:
    from redis.asyncio import Redis

CONVERSATION = ConversationRef("test", "c1")


@dataclass
class SlowEngine:
    """A ConversationEngine that takes its time, so unserialised handling would interleave."""

    delay: float = 0.01
    calls: list[str] = field(default_factory=list)
    seen_revisions: list[int] = field(default_factory=list)
    active: int = 0
    most_active: int = 0
    fail_on: set[str] = field(default_factory=set)
    replies_per_message: int = 1

    async def handle(self, message: IncomingMessage, session: Session | None
                     ) -> tuple[Session, list[OutgoingMessage]]:
        self.active += 1
        self.most_active = max(self.most_active, self.active)
        try:
            self.calls.append(message.text)
            s = session or Session.new(message.conversation, message.received_at)
            self.seen_revisions.append(s.revision)
            await asyncio.sleep(self.delay)
            if message.text in self.fail_on:
                self.fail_on.discard(message.text)
                raise RuntimeError("the triage model is not loaded")
            s = s.with_lines(Line(Author.CUSTOMER, message.text, message.received_at))
            s = replace(s, revision=s.revision + 1)
            return s, [OutgoingMessage(message.conversation, f"re {message.text} #{i}")
                       for i in range(self.replies_per_message)]
        finally:
            self.active -= 1


def message(text: str, message_id: str | None = None,
            conversation: ConversationRef = CONVERSATION) -> IncomingMessage:
    return IncomingMessage(conversation, text, message_id=message_id or text)


def make(stores: Stores, engine: SlowEngine, channel: OutputChannel,
         queued: Collection[str] = ()) -> Dispatcher:
    commit = stores.dedup if isinstance(stores.dedup, RedisDeduplicator) else None
    return Dispatcher(engine, stores.sessions, stores.locks, stores.dedup,
                      {channel.name: channel}, commit=commit, queued=queued)


def test_the_dispatcher_is_the_channels_callback(stores: Stores) -> None:
    callback: OnMessage = make(stores, SlowEngine(), RecordingChannel())
    assert callable(callback)


async def test_twenty_messages_at_once_are_handled_one_by_one_and_none_is_lost(
        stores: Stores) -> None:
    engine, channel = SlowEngine(), RecordingChannel()
    dispatcher = make(stores, engine, channel)
    texts = [f"m{i:02d}" for i in range(20)]
    results = await asyncio.gather(*(dispatcher(message(t)) for t in texts))

    assert engine.most_active == 1
    # each one saw the session the one before it stored: strictly one after the other
    assert engine.seen_revisions == list(range(20))
    session = await stores.sessions.get(CONVERSATION.key)
    assert session is not None and session.revision == 20
    assert [line.text for line in session.transcript] == engine.calls  # in lock order
    assert sorted(engine.calls) == texts
    if stores.kind == "memory":
        assert engine.calls == texts  # asyncio locks are first come, first served
    assert [r[0].text for r in results] == [f"re {t} #0" for t in texts]
    assert sorted(m.text for m in channel.sent) == sorted(f"re {t} #0" for t in texts)


async def test_conversations_do_not_wait_for_each_other(stores: Stores) -> None:
    engine = SlowEngine(delay=0.05)
    dispatcher = make(stores, engine, RecordingChannel())
    await asyncio.gather(*(dispatcher(message("hi", conversation=ConversationRef("test", str(i))))
                           for i in range(5)))
    assert engine.most_active == 5


async def test_a_duplicate_is_handled_once_and_answered_alike(stores: Stores) -> None:
    engine, channel = SlowEngine(), RecordingChannel()
    dispatcher = make(stores, engine, channel)
    copies = await asyncio.gather(*(dispatcher(message("hello", "id-1")) for _ in range(5)))
    again = await dispatcher(message("hello", "id-1"))
    assert engine.calls == ["hello"]
    assert all(c == copies[0] for c in copies) and again == copies[0]
    assert [m.text for m in channel.sent] == ["re hello #0"]  # sent once
    session = await stores.sessions.get(CONVERSATION.key)
    assert session is not None and session.revision == 1


async def test_the_same_message_id_in_two_chats_is_two_messages(stores: Stores) -> None:
    engine = SlowEngine()
    dispatcher = make(stores, engine, RecordingChannel())
    await dispatcher(message("a", "42", ConversationRef("test", "chat-1")))
    await dispatcher(message("b", "42", ConversationRef("test", "chat-2")))
    assert engine.calls == ["a", "b"]


async def test_a_failed_send_is_raised_after_the_session_is_stored_and_resent_on_redelivery(
        stores: Stores, caplog: pytest.LogCaptureFixture) -> None:
    engine = SlowEngine(replies_per_message=3)
    channel = RecordingChannel(fail_at={2})
    dispatcher = make(stores, engine, channel)
    with caplog.at_level(logging.ERROR, logger="bot.dispatcher"), \
            pytest.raises(UndeliveredReply) as raised:
        await dispatcher(message("我的手机13812345678", "id-9"))
    assert isinstance(raised.value, ChannelError)
    assert isinstance(raised.value.__cause__, ChannelError)
    session = await stores.sessions.get(CONVERSATION.key)
    assert session is not None and session.revision == 1  # stored before sending
    assert [m.text for m in channel.sent] == ["re 我的手机13812345678 #0"]
    assert "13812345678" not in caplog.text and "138****5678" in caplog.text

    replies = await dispatcher(message("我的手机13812345678", "id-9"))  # the channel retries
    assert engine.calls == ["我的手机13812345678"]  # not handled twice
    assert len(replies) == 3
    assert [m.text for m in channel.sent] == [f"re 我的手机13812345678 #{i}" for i in range(3)]
    await dispatcher(message("我的手机13812345678", "id-9"))
    assert len(channel.sent) == 3  # complete now: nothing sent again


async def test_a_reply_for_a_channel_without_output_is_an_error(stores: Stores) -> None:
    engine = SlowEngine()
    dispatcher = Dispatcher(engine, stores.sessions, stores.locks, stores.dedup, {})
    with pytest.raises(ChannelError, match="no output channel"):
        await dispatcher(message("hi"))
    assert await stores.sessions.get(CONVERSATION.key) is not None


async def test_a_failure_while_handling_loses_nothing(stores: Stores) -> None:
    engine = SlowEngine(fail_on={"boom"})
    channel = RecordingChannel()
    dispatcher = make(stores, engine, channel)
    with pytest.raises(RuntimeError):
        await dispatcher(message("boom", "id-b"))
    assert await stores.sessions.get(CONVERSATION.key) is None
    assert channel.sent == []
    replies = await dispatcher(message("boom", "id-b"))  # redelivered: handled this time
    assert [r.text for r in replies] == ["re boom #0"]
    assert engine.calls == ["boom", "boom"]


async def test_the_real_engine_through_the_dispatcher(chat: Chat, channel: RecordingChannel
                                                      ) -> None:
    replies = await chat.say("怎么开发票？", message_id="dup")
    again = await chat.say("怎么开发票？", message_id="dup")
    assert again == replies
    assert chat.session is not None and chat.session.revision == 1
    assert channel.sent == replies


# ---- crash safety ---------------------------------------------------------------------------


@dataclass
class KeyedChannel:
    """An IdempotentOutput like the web chat's outbox: a key is stored once."""

    name: str = "test"
    sent: dict[str, OutgoingMessage] = field(default_factory=dict)
    calls: int = 0

    async def send(self, message: OutgoingMessage) -> None:
        raise AssertionError("the dispatcher sends keyed replies by key")

    async def send_once(self, message: OutgoingMessage, key: str) -> None:
        self.calls += 1
        self.sent.setdefault(key, message)


class FlakyRecords(InMemoryDeduplicator):
    """Fails the first record of a sent count, as if the process died right after sending."""

    def __init__(self) -> None:
        super().__init__()
        self.failed = False

    async def record(self, key: str, delivery: Delivery) -> None:
        if delivery.sent and not self.failed:
            self.failed = True
            raise SessionError("Redis is unavailable (recording a message): connection lost")
        await super().record(key, delivery)


async def test_a_resend_after_a_lost_sent_count_is_stored_once() -> None:
    from bot.session import InMemoryLockStore, InMemorySessionStore

    engine, channel = SlowEngine(replies_per_message=2), KeyedChannel()
    dispatcher = Dispatcher(engine, InMemorySessionStore(), InMemoryLockStore(), FlakyRecords(),
                            {channel.name: channel})
    with pytest.raises(SessionError):
        await dispatcher(message("hello", "id-1"))
    replies = await dispatcher(message("hello", "id-1"))  # the channel redelivers
    assert engine.calls == ["hello"]
    assert [r.text for r in replies] == ["re hello #0", "re hello #1"]
    assert channel.calls == 4  # both replies sent twice …
    key = dedup_key(CONVERSATION, "id-1")
    assert channel.sent == {reply_key(key, i): r for i, r in enumerate(replies)}  # … kept once



@dataclass
class BatchChannel(KeyedChannel):
    """A BatchOutput like the web chat's: a turn's replies stored by key in one step, all or
    none; `fail_batches` makes that many batches fail first."""

    batches: list[list[str]] = field(default_factory=list)
    fail_batches: int = 0

    async def send_batch_once(self, messages: Sequence[OutgoingMessage],
                              keys: Sequence[str]) -> None:
        if self.fail_batches:
            self.fail_batches -= 1
            raise ChannelError("the outbox database failed")
        self.batches.append(list(keys))
        for message, key in zip(messages, keys, strict=True):
            self.sent.setdefault(key, message)


async def test_a_turns_replies_go_to_a_batch_output_in_one_call(stores: Stores) -> None:
    engine, channel = SlowEngine(replies_per_message=3), BatchChannel()
    assert isinstance(channel, BatchOutput)
    dispatcher = make(stores, engine, channel)
    replies = await dispatcher(message("hello", "id-1"))
    key = dedup_key(CONVERSATION, "id-1")
    assert channel.batches == [[reply_key(key, i) for i in range(3)]]
    assert channel.calls == 0  # not one by one
    assert channel.sent == {reply_key(key, i): r for i, r in enumerate(replies)}
    record = await stores.dedup.find(key)
    assert record is not None and record.complete


async def test_a_failed_batch_counts_none_sent_and_the_redelivery_stores_it_once(
        stores: Stores) -> None:
    engine, channel = SlowEngine(replies_per_message=2), BatchChannel(fail_batches=1)
    dispatcher = make(stores, engine, channel)
    with pytest.raises(UndeliveredReply, match="reply 1 of 2"):
        await dispatcher(message("hello", "id-1"))
    key = dedup_key(CONVERSATION, "id-1")
    record = await stores.dedup.find(key)
    assert record is not None and record.sent == 0 and channel.sent == {}
    replies = await dispatcher(message("hello", "id-1"))  # the channel retries
    assert engine.calls == ["hello"]
    assert channel.batches == [[reply_key(key, 0), reply_key(key, 1)]]
    assert list(channel.sent.values()) == list(replies)


async def test_a_single_reply_is_sent_by_key_without_a_batch(stores: Stores) -> None:
    channel = BatchChannel()
    await make(stores, SlowEngine(), channel)(message("hello", "id-1"))
    assert channel.batches == [] and channel.calls == 1


# ---- the open ticket in the answer ----------------------------------------------------------


@dataclass
class TicketEngine:
    """Registers a ticket on "confirm", lets it go on "cancel", asks a question on "ask"."""

    async def handle(self, message: IncomingMessage, session: Session | None
                     ) -> tuple[Session, list[OutgoingMessage]]:
        s = session or Session.new(message.conversation, message.received_at)
        if message.text == "confirm":
            s = replace(s, state=State.REGISTERED, ticket_id="t-1", ticket_number="TS1")
        elif message.text == "cancel":
            s = s.restarted()
        elif message.text == "ask":
            s = replace(s, question=Question("confirm", "t-1", "TS1"))
        elif message.text == "answer":
            s = replace(s, question=None)
        return replace(s, revision=s.revision + 1), [OutgoingMessage(message.conversation, "ok")]


async def test_the_answer_says_the_open_ticket_when_the_session_can_vouch_for_it(
        stores: Stores) -> None:
    dispatcher = make(stores, TicketEngine(), RecordingChannel())  # type: ignore[arg-type]

    async def say(text: str) -> Handled:
        return await dispatcher(message(text, f"id-{text}"))

    first = await say("hello")
    assert not first.ticket_known  # no session before: it may have expired with a ticket open
    later = await say("story")
    assert later.ticket_known and later.ticket_id is None
    registered = await say("confirm")
    assert registered.ticket_known and registered.ticket_id == "t-1"
    asked = await say("ask")
    assert not asked.ticket_known  # a question pending: its ticket may be closed meanwhile
    answered = await say("answer")
    assert not answered.ticket_known  # the ticket was not checked during this turn
    cancelled = await say("cancel")
    assert cancelled.ticket_known and cancelled.ticket_id is None
    again = await say("cancel")
    assert list(again) == list(cancelled) and not again.ticket_known  # a redelivery
    staff = await dispatcher(IncomingMessage(CONVERSATION, "confirm", "id-agent",
                                             author=Author.AGENT))
    assert not staff.ticket_known  # only a customer's turn checks the ticket


@pytest.mark.redis
async def test_a_message_whose_handler_died_is_handled_after_the_lease(
        stores: Stores, redis_client: Redis, redis_keys: Keys) -> None:
    """A process died holding the lock, before its commit: no record, the lease runs out, the
    redelivery is handled on the session as it was, and answered once."""
    if stores.kind != "redis":
        pytest.skip("a lock that outlives its process is Redis' case")
    engine, channel = SlowEngine(), RecordingChannel()
    await make(stores, engine, channel)(message("first", "id-0"))
    await redis_client.set(redis_keys.lock(CONVERSATION.key), "dead-process", px=300)
    locks = RedisLockStore(redis_client, keys=redis_keys, timeout=10.0)
    dispatcher = Dispatcher(engine, stores.sessions, locks, stores.dedup,
                            {channel.name: channel}, commit=stores.dedup)  # type: ignore[arg-type]
    replies = await dispatcher(message("second", "id-1"))
    assert [r.text for r in replies] == ["re second #0"]
    session = await stores.sessions.get(CONVERSATION.key)
    assert session is not None and session.revision == 2
    assert [line.text for line in session.transcript] == ["first", "second"]
    assert [m.text for m in channel.sent] == ["re first #0", "re second #0"]


async def test_a_handler_that_finishes_after_a_newer_commit_writes_nothing(
        stores: Stores) -> None:
    """Two handlers of one message (the first overran its lease): the first commit wins, the
    other answers with its replies and sends nothing."""
    if stores.kind != "redis":
        pytest.skip("the atomic commit is Redis'")
    assert isinstance(stores.dedup, RedisDeduplicator)
    engine, channel = SlowEngine(), RecordingChannel()
    dispatcher = make(stores, engine, channel)
    key = dedup_key(CONVERSATION, "id-1")
    won = Delivery((OutgoingMessage(CONVERSATION, "re hello #0"),), sent=1)
    new = Session.new(CONVERSATION, message("x").received_at)
    await stores.dedup.commit(key, won, replace(new, revision=1))
    engine_session = await stores.sessions.get(CONVERSATION.key)
    # the slow handler computed its result before the winner's commit
    assert await stores.dedup.commit(key, Delivery((OutgoingMessage(CONVERSATION, "late"),)),
                                     replace(new, revision=1, kb_misses=5)) == won
    assert await stores.sessions.get(CONVERSATION.key) == engine_session
    assert await dispatcher(message("hello", "id-1")) == list(won.replies)
    assert engine.calls == [] and channel.sent == []


def test_queued_channels_need_the_atomic_commit() -> None:
    from bot.session import InMemoryLockStore, InMemorySessionStore

    with pytest.raises(ValueError, match="atomic commit"):
        Dispatcher(SlowEngine(), InMemorySessionStore(), InMemoryLockStore(),
                   InMemoryDeduplicator(), {}, queued={"test"})


@pytest.mark.redis
async def test_a_queued_channel_gets_its_replies_from_the_outbound_stream(
        stores: Stores, redis_client: Redis, redis_keys: Keys) -> None:
    if stores.kind != "redis":
        pytest.skip("the outbound stream is Redis'")
    assert isinstance(stores.dedup, RedisDeduplicator)
    engine, channel = SlowEngine(replies_per_message=2), RecordingChannel()
    dispatcher = make(stores, engine, channel, queued={"test"})
    outbound = RedisOutbound(redis_client, stores.dedup, {channel.name: channel},
                             keys=redis_keys, block=0.1)
    await outbound.ensure_group()
    replies = await dispatcher(message("hello", "id-1"))
    assert [r.text for r in replies] == ["re hello #0", "re hello #1"]
    assert channel.sent == []  # accepted for sending: on the stream, not sent inline
    assert await redis_client.xlen(redis_keys.outbound_of(CONVERSATION.key)) == 1
    assert await outbound.run_once() == 1
    assert channel.sent == replies
    stream = redis_keys.outbound_of(CONVERSATION.key)
    assert await redis_client.xlen(stream) == 0  # acknowledged and deleted
    assert await dispatcher(message("hello", "id-1")) == replies  # redelivered: not requeued
    assert await redis_client.xlen(stream) == 0
    record = await stores.dedup.find(dedup_key(CONVERSATION, "id-1"))
    assert record is not None and record.complete
