"""The dispatcher: the OnMessage callback every channel gets.

For each message: drop a redelivery (answering it with the replies of the first delivery), take
the conversation's lock, load the session, let the engine handle the message, store the new
session, and only then send the replies through the channel's output. The replies are recorded
before they are sent, with a count of those delivered, so a redelivery after a failed send sends
the rest instead of handling the message twice.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Protocol

from bot.session import Deduplicator, Delivery, LockStore, Session, SessionStore, dedup_key
from channels.base import ChannelError, OutputChannel
from channels.messages import IncomingMessage, OutgoingMessage

log = logging.getLogger(__name__)


class ConversationEngine(Protocol):
    """What the dispatcher drives: bot.engine.Engine."""

    async def handle(self, message: IncomingMessage, session: Session | None
                     ) -> tuple[Session, list[OutgoingMessage]]: ...


class UndeliveredReply(ChannelError):
    """A reply could not be sent; the session was stored and a redelivery sends the rest."""


def _mask(text: str) -> str:
    from nlp.pii import mask_pii

    return mask_pii(text)


class Dispatcher:
    """Handles each message once, one at a time per conversation, and sends the replies."""

    def __init__(self, engine: ConversationEngine, sessions: SessionStore, locks: LockStore,
                 dedup: Deduplicator, outputs: Mapping[str, OutputChannel]) -> None:
        self._engine = engine
        self._sessions = sessions
        self._locks = locks
        self._dedup = dedup
        self._outputs = outputs

    async def __call__(self, message: IncomingMessage) -> list[OutgoingMessage]:
        """Handle one message and send its replies; the replies are returned as well.

        Raises:
            UndeliveredReply: (a ChannelError) a reply could not be sent. The session is
                stored; delivering the same message again sends the replies not yet sent.
            bot.session.LockTimeout: the conversation stayed busy too long; nothing changed.
        """
        conversation = message.conversation
        key = dedup_key(conversation, message.message_id) if message.message_id else None
        async with self._locks.lock(conversation.key):
            if key is not None:
                earlier = await self._dedup.claim(key)
                if earlier is not None:
                    log.info("message %s delivered again; not handled twice", key)
                    if not earlier.complete:
                        await self._send(key, earlier)
                    return list(earlier.replies)
            try:
                session = await self._sessions.get(conversation.key)
                new_session, replies = await self._engine.handle(message, session)
                await self._sessions.put(new_session)
            except BaseException:
                if key is not None:
                    await self._dedup.release(key)  # not handled: a redelivery may try again
                raise
            delivery = Delivery(tuple(replies))
            if key is not None:
                await self._dedup.record(key, delivery)
            await self._send(key, delivery)
            return replies

    async def _send(self, key: str | None, delivery: Delivery) -> None:
        for index in range(delivery.sent, len(delivery.replies)):
            reply = delivery.replies[index]
            channel = reply.conversation.channel
            try:
                output = self._outputs.get(channel)
                if output is None:
                    raise ChannelError(f"no output channel named {channel!r}")
                await output.send(reply)
            except Exception as exc:
                log.error("could not send to %s: %s (%s)", reply.conversation.key,
                          _mask(reply.text), _mask(str(exc)))
                if key is not None:
                    await self._dedup.record(key, Delivery(delivery.replies, sent=index))
                raise UndeliveredReply(
                    f"reply {index + 1} of {len(delivery.replies)} to {reply.conversation.key} "
                    f"was not delivered: {_mask(str(exc))}") from exc
        if key is not None and delivery.replies:
            await self._dedup.record(key, Delivery(delivery.replies, sent=len(delivery.replies)))
