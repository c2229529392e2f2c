"""The dispatcher: the OnMessage callback every channel gets.

For each message, under the conversation's lock: answer a redelivery from the record of the
first delivery (sending what was not sent yet), else load the session, let the engine handle the
message, and store the new session together with the record of the message's replies, in one
atomic write where the stores allow it (`RedisDeduplicator.commit`). Only then are the replies
sent: through the channel's output right away, or, for the channels the wiring queues, by the
durable outbound queue (`bot.outbound.RedisOutbound`), which the same write fed.

A message with no record was never handled, or its handler died before the write: it is
handled (again) on the session as it was. So a channel may acknowledge a message once the
dispatcher returns: handling is at least once, and its effects once.

The replies come back as `Handled`, which also says which ticket the stored session has open,
so the web chat need not ask the database for its answer's ``ticket_id``. A turn's consecutive
replies to an output that takes a batch (`BatchOutput`: the web chat) are sent in one call,
which the outbox writes in one transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Protocol, runtime_checkable

from bot.outbound import reply_key, send_reply
from bot.session import (
    Deduplicator,
    Delivery,
    LockStore,
    Session,
    SessionStore,
    State,
    dedup_key,
)
from channels.base import ChannelError, OutputChannel
from channels.messages import Author, IncomingMessage, OutgoingMessage

log = logging.getLogger(__name__)


class ConversationEngine(Protocol):
    """What the dispatcher drives: bot.engine.Engine."""

    async def handle(self, message: IncomingMessage, session: Session | None
                     ) -> tuple[Session, list[OutgoingMessage]]: ...


class Committer(Protocol):
    """A de-duplicator that stores the session with the record in one atomic write."""

    async def commit(self, key: str, delivery: Delivery, session: Session, *,
                     queue: bool = False) -> Delivery: ...


@runtime_checkable
class BatchOutput(OutputChannel, Protocol):
    """An output that stores several replies by key in one step (channels.webchat.WebChatOutput)."""

    async def send_batch_once(self, messages: Sequence[OutgoingMessage],
                              keys: Sequence[str]) -> None:
        """Deliver each message unless one with the same key was delivered already."""
        ...


class UndeliveredReply(ChannelError):
    """A reply could not be sent; the session was stored and a redelivery sends the rest."""


class Handled(list[OutgoingMessage]):
    """A message's replies, and the open ticket of its conversation as the session knows it.

    `ticket_known` is False when the session cannot vouch for it (`_open_ticket`): a message
    not from the customer, a conversation without a session before it (one may have expired
    while its ticket stayed open), a question pending (its ticket may be closed meanwhile), or a
    redelivery answered from the record.
    """

    def __init__(self, replies: Iterable[OutgoingMessage], *, ticket_id: str | None = None,
                 ticket_known: bool = False) -> None:
        super().__init__(replies)
        self.ticket_id = ticket_id
        self.ticket_known = ticket_known


def _open_ticket(message: IncomingMessage, before: Session | None, after: Session
                 ) -> tuple[str | None, bool]:
    """(ticket id, known) after a customer's turn.

    The engine checks a registered or handed-over session's ticket at the start of a customer's
    turn (`Engine._forget_closed`) unless a question was pending, and a ticket registered during
    the turn is the session's; a session in any other state has none. The session cannot vouch
    for a ticket staff reopened after the customer confirmed it solved: the web chat's answer then
    says none until the customer's next message.
    """
    if (message.author is not Author.CUSTOMER or before is None or before.question is not None
            or after.question is not None):
        return None, False
    if after.state in (State.REGISTERED, State.WITH_AGENT):
        return after.ticket_id, after.ticket_id is not None
    return None, after.ticket_id is None


def _mask(text: str) -> str:
    from nlp.pii import mask_pii

    return mask_pii(text)


class Dispatcher:
    """Handles each message once, one at a time per conversation, and sends the replies.

    Args:
        engine: handles a message on a session.
        sessions, locks, dedup: the conversation state stores (all in process, or all Redis).
        outputs: the channels' outputs by name.
        commit: the atomic session + record write (the Redis de-duplicator); without it the
            two are written one after the other, which is enough for state kept in process.
        queued: the channels whose replies the outbound queue sends (needs `commit`).
    """

    def __init__(self, engine: ConversationEngine, sessions: SessionStore, locks: LockStore,
                 dedup: Deduplicator, outputs: Mapping[str, OutputChannel], *,
                 commit: Committer | None = None, queued: Collection[str] = ()) -> None:
        if queued and commit is None:
            raise ValueError("queued channels need an atomic commit (the Redis stores)")
        self._engine = engine
        self._sessions = sessions
        self._locks = locks
        self._dedup = dedup
        self._outputs = outputs
        self._commit = commit
        self._queued = frozenset(queued)

    async def __call__(self, message: IncomingMessage) -> Handled:
        """Handle one message and send its replies; the replies are returned as well.

        Raises:
            UndeliveredReply: (a ChannelError) a reply could not be sent. The session is
                stored; delivering the same message again sends the replies not yet sent.
            bot.session.LockTimeout: the conversation stayed busy too long; nothing changed.
            bot.session.SessionError: a store is unavailable; a redelivery is handled afresh.
        """
        conversation = message.conversation
        key = dedup_key(conversation, message.message_id) if message.message_id else None
        async with self._locks.lock(conversation.key):
            if key is not None:
                earlier = await self._dedup.find(key)
                if earlier is not None:
                    log.info("message %s delivered again; not handled twice", key)
                    if not earlier.complete and not self._is_queued(earlier):
                        await self._send(key, earlier)
                    return Handled(earlier.replies)
                # Handled again after a crash: the same time, so the same transcript lines.
                first = await self._dedup.first_seen(key, message.received_at)
                if first != message.received_at:
                    message = replace(message, received_at=first)
            session = await self._sessions.get(conversation.key)
            new_session, replies = await self._engine.handle(message, session)
            ours = Delivery(tuple(replies))
            queue = key is not None and self._is_queued(ours)
            delivery = await self._store(key, new_session, ours, queue)
            if not queue:
                await self._send(key, delivery)
            if delivery is not ours:  # another handler's commit won: its session is stored
                return Handled(delivery.replies)
            ticket_id, known = _open_ticket(message, session, new_session)
            return Handled(delivery.replies, ticket_id=ticket_id, ticket_known=known)

    def _is_queued(self, delivery: Delivery) -> bool:
        return bool(delivery.replies) and all(
            reply.conversation.channel in self._queued for reply in delivery.replies)

    async def _store(self, key: str | None, session: Session, delivery: Delivery,
                     queue: bool) -> Delivery:
        if key is None:
            await self._sessions.put(session)
            return delivery
        if self._commit is not None:
            # Another handler of the same message may have finished first (its lock lease ran
            # out): then nothing was written and its replies are the answer.
            return await self._commit.commit(key, delivery, session, queue=queue)
        await self._sessions.put(session)
        await self._dedup.record(key, delivery)
        return delivery

    async def _send(self, key: str | None, delivery: Delivery) -> None:
        index = delivery.sent
        while index < len(delivery.replies):
            batch = None if key is None else self._batch(delivery.replies, index)
            try:
                if batch is not None and key is not None:
                    output, messages = batch
                    await output.send_batch_once(
                        messages, [reply_key(key, index + n) for n in range(len(messages))])
                else:
                    messages = delivery.replies[index:index + 1]
                    await send_reply(self._outputs, messages[0],
                                     reply_key(key, index) if key is not None else None)
            except Exception as exc:
                reply = delivery.replies[index]
                log.error("could not send to %s: %s (%s)", reply.conversation.key,
                          _mask(reply.text), _mask(str(exc)))
                if key is not None:
                    await self._dedup.record(key, Delivery(delivery.replies, sent=index))
                raise UndeliveredReply(
                    f"reply {index + 1} of {len(delivery.replies)} to {reply.conversation.key} "
                    f"was not delivered: {_mask(str(exc))}") from exc
            index += len(messages)
        if key is not None and delivery.replies:
            await self._dedup.record(key, Delivery(delivery.replies, sent=len(delivery.replies)))

    def _batch(self, replies: Sequence[OutgoingMessage], start: int
               ) -> tuple[BatchOutput, Sequence[OutgoingMessage]] | None:
        """The replies from `start` on that one batch output takes at once, if more than one:
        same conversation and author, sent by key (a batch is stored all or nothing, so a
        failure counts none of it as sent and the resend stores each reply once)."""
        first = replies[start]
        output = self._outputs.get(first.conversation.channel)
        if not isinstance(output, BatchOutput):
            return None
        end = start + 1
        while (end < len(replies) and replies[end].conversation == first.conversation
               and replies[end].author is first.author):
            end += 1
        return (output, replies[start:end]) if end - start > 1 else None
