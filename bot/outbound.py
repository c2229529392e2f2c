"""Sending replies: through the channel's output, once per reply, and the durable outbound queue.

Each reply of a handled message has a key of its own (`reply_key`: the message's de-duplication
key and the reply's place). Outputs that can use it (`IdempotentOutput`: the web chat's outbox
stores a key once, the webhook sends it as ``delivery_id``) make a re-send harmless, so a reply
sent again after a crash is still shown once.

`RedisOutbound` is the durable queue of the channels that answer out of band (webhook,
Telegram, e-mail) when REDIS_URL is set. The dispatcher's commit (`RedisDeduplicator.commit`)
adds the message's de-duplication key to a Redis Stream in the same atomic step that stores the
session and the replies; every server process reads the stream in one consumer group, so each
entry goes to one process. A process sends the replies not sent yet, counting them in the
message's record, and acknowledges the entry (XACK, XDEL) after the last one. An entry that is
not acknowledged (its process crashed, or a send failed) is taken over with XAUTOCLAIM once it
has been idle for `min_idle`: that is both the crash recovery and the retry back-off. After
`max_attempts` failed attempts it goes to the dead-letter stream and is acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import secrets
import socket
from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from bot.keys import DEDUP_TTL, Keys
from bot.session import Delivery, RedisDeduplicator, SessionError, redis_errors
from channels.base import ChannelError, OutputChannel
from channels.messages import OutgoingMessage

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = logging.getLogger(__name__)

GROUP = "senders"  # the one consumer group every server process reads the stream in
DEAD_MAXLEN = 10_000  # dead letters kept at most


@runtime_checkable
class IdempotentOutput(Protocol):
    """An output that stores or sends a message with the same key only once."""

    name: str

    async def send_once(self, message: OutgoingMessage, key: str) -> None:
        """Deliver the message unless one with the same key was delivered already."""
        ...


def reply_key(dedup: str, index: int) -> str:
    """The key of the `index`-th reply to a message (64 hex digits, as long as any dedup key)."""
    return hashlib.sha256(f"{dedup}#{index}".encode()).hexdigest()


async def send_reply(outputs: Mapping[str, OutputChannel], reply: OutgoingMessage,
                     key: str | None) -> None:
    """Send one reply through its channel's output, by key when the output takes one.

    Raises:
        ChannelError: there is no such output, or it could not deliver.
    """
    channel = reply.conversation.channel
    output = outputs.get(channel)
    if output is None:
        raise ChannelError(f"no output channel named {channel!r}")
    if key is not None and isinstance(output, IdempotentOutput):
        await output.send_once(reply, key)
    else:
        await output.send(reply)


class RedisOutbound:
    """The senders of this process: deliver the replies queued on the outbound stream.

    Args:
        redis: the client the stores use.
        dedup: where each message's replies and their sent count are recorded.
        outputs: the channels' outputs by name.
        keys: the key prefix (the same as the stores').
        min_idle: how long an entry stays with a consumer before another takes it over: longer
            than any one send may take (outputs time out well before), and the retry delay.
        max_attempts: failed attempts after which an entry becomes a dead letter.
        block: seconds one read waits for new entries.
        batch: entries read at once.
    """

    def __init__(self, redis: Redis, dedup: RedisDeduplicator,
                 outputs: Mapping[str, OutputChannel], *, keys: Keys | None = None,
                 min_idle: timedelta = timedelta(seconds=30), max_attempts: int = 8,
                 block: float = 1.0, batch: int = 32) -> None:
        self._redis = redis
        self._dedup = dedup
        self._outputs = outputs
        self._keys = keys or Keys()
        self._min_idle_ms = int(min_idle.total_seconds() * 1000)
        self._max_attempts = max_attempts
        self._block_ms = int(block * 1000)
        self._batch = batch
        # A name per process start: a crashed process's entries are claimed, never resumed.
        self.consumer = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    async def start(self) -> None:
        """Create the consumer group if needed and start delivering in the background."""
        await self.ensure_group()
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name="outbound-senders")

    async def close(self) -> None:
        """Stop delivering; entries being sent stay pending and another process takes them."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping = True
        # A cancellation that lands in redis-py's pool wait can come back as a RedisError,
        # which the loop survives: cancel until the task has really ended.
        while not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=1.0)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def idle(self, poll: float = 0.02) -> None:
        """Wait until every queued entry was acknowledged (tests, a drain before shutdown)."""
        while True:
            async with redis_errors("reading the outbound stream"):
                if not await self._redis.xlen(self._keys.outbound):
                    return
            await asyncio.sleep(poll)

    async def ensure_group(self) -> None:
        from redis.exceptions import ResponseError

        try:
            async with redis_errors("creating the outbound consumer group"):
                await self._redis.xgroup_create(self._keys.outbound, GROUP, id="0",
                                                mkstream=True)
        except SessionError as exc:
            if not isinstance(exc.__cause__, ResponseError) or "BUSYGROUP" not in str(exc):
                raise

    async def _run(self) -> None:
        while not self._stopping:
            try:
                await self.run_once()
            except SessionError as exc:
                if self._stopping:
                    return
                log.error("outbound senders: %s; retrying in 1 s", exc)
                await asyncio.sleep(1.0)

    async def run_once(self, *, block: bool = True) -> int:
        """Take over idle entries, read new ones, deliver them; how many entries were tried."""
        async with redis_errors("reading the outbound stream"):
            claimed = await self._redis.xautoclaim(
                self._keys.outbound, GROUP, self.consumer, self._min_idle_ms, count=self._batch)
            entries: list[Any] = list(claimed[1])
            read: Any = await self._redis.xreadgroup(
                GROUP, self.consumer, {self._keys.outbound: ">"}, count=self._batch,
                block=self._block_ms if block and not entries else None)
        for _stream, new in read or ():
            entries += new
        entries = [(entry_id, fields) for entry_id, fields in entries if fields]
        by_conversation: dict[str, list[tuple[str, str, Delivery | None]]] = {}
        for entry_id, fields in entries:
            raw = fields.get(b"dedup", fields.get("dedup"))
            key = raw.decode() if isinstance(raw, bytes) else str(raw)
            ident = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
            delivery = await self._dedup.find(key)
            group = delivery.replies[0].conversation.key if delivery and delivery.replies else key
            by_conversation.setdefault(group, []).append((ident, key, delivery))
        # Conversations in parallel, each one's entries in stream order.
        await asyncio.gather(*(self._deliver_in_order(items)
                               for items in by_conversation.values()))
        return len(entries)

    async def _deliver_in_order(self, items: list[tuple[str, str, Delivery | None]]) -> None:
        for ident, key, delivery in items:
            if not await self._deliver(ident, key, delivery):
                return  # later replies of the conversation wait for this one's retry

    async def _deliver(self, ident: str, key: str, delivery: Delivery | None) -> bool:
        if delivery is None:
            log.error("outbound entry %s: the record of %s expired; nothing to send", ident, key)
            await self._ack(ident)
            return True
        for index in range(delivery.sent, len(delivery.replies)):
            try:
                await send_reply(self._outputs, delivery.replies[index], reply_key(key, index))
            except Exception as exc:  # any failure: the entry stays pending and is retried
                await self._failed(ident, key, delivery, index, exc)
                return False
            delivery = Delivery(delivery.replies, sent=index + 1)
            await self._dedup.record(key, delivery)
        await self._ack(ident)
        return True

    async def _failed(self, ident: str, key: str, delivery: Delivery, index: int,
                      exc: Exception) -> None:
        from nlp.pii import mask_pii

        reply = delivery.replies[index]
        error = mask_pii(f"{type(exc).__name__}: {exc}")
        name = self._keys.outbound_attempts(ident)
        async with (redis_errors("counting an outbound attempt"),
                    self._redis.pipeline(transaction=True) as pipe):
            pipe.incr(name)
            pipe.expire(name, int(DEDUP_TTL.total_seconds()))
            attempts = int((await pipe.execute())[0])
        if attempts < self._max_attempts:
            log.warning("reply %d of %s to %s not sent (attempt %d of %d, retried in %.0f s): %s",
                        index + 1, ident, reply.conversation.key, attempts, self._max_attempts,
                        self._min_idle_ms / 1000, error)
            return
        log.error("reply %d of %s to %s failed %d times; moved to %s: %s", index + 1, ident,
                  reply.conversation.key, attempts, self._keys.outbound_dead, error)
        async with redis_errors("storing a dead letter"):
            await self._redis.xadd(self._keys.outbound_dead,
                                   {"dedup": key, "reply": index, "error": error,
                                    "attempts": attempts}, maxlen=DEAD_MAXLEN)
        await self._ack(ident)

    async def _ack(self, ident: str) -> None:
        async with (redis_errors("acknowledging an outbound entry"),
                    self._redis.pipeline(transaction=True) as pipe):
            pipe.xack(self._keys.outbound, GROUP, ident)
            pipe.xdel(self._keys.outbound, ident)
            pipe.delete(self._keys.outbound_attempts(ident))
            await pipe.execute()

    async def dead_letters(self, limit: int = 1_000) -> list[dict[str, str]]:
        """The latest dead letters, oldest first: the message's dedup key, reply, error."""
        async with redis_errors("reading the dead letters"):
            entries: Any = await self._redis.xrevrange(self._keys.outbound_dead, count=limit)
        return [{_text(k): _text(v) for k, v in fields.items()} for _, fields in
                reversed(entries or [])]


def _text(value: bytes | str | int) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
