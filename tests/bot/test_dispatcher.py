"""The dispatcher: one message at a time per conversation, each handled once, replies sent after
the session is stored, failures never swallowed; on both stores (in-process and the real Redis).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field, replace

import pytest

from bot.dispatcher import Dispatcher, UndeliveredReply
from bot.session import Line, Session
from channels.base import ChannelError, OnMessage
from channels.messages import Author, ConversationRef, IncomingMessage, OutgoingMessage
from tests.bot.conftest import Chat, RecordingChannel, Stores

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


def make(stores: Stores, engine: SlowEngine, channel: RecordingChannel) -> Dispatcher:
    return Dispatcher(engine, stores.sessions, stores.locks, stores.dedup,
                      {channel.name: channel})


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
