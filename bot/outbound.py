"""Sending replies: through the channel's output, once per reply, and the durable outbound queue.

Each reply of a handled message has a key of its own (`reply_key`: the message's de-duplication
key and the reply's place). Outputs that can use it (`IdempotentOutput`: the web chat's outbox
stores a key once, the webhook sends it as ``delivery_id``) make a re-send harmless, so a reply
sent again after a crash is still shown once.

`RedisOutbound` is the durable queue of the channels that answer out of band (webhook,
Telegram, e-mail) when REDIS_URL is set. The dispatcher's commit (`RedisDeduplicator.commit`)
adds the message's de-duplication key to its conversation's shard's Redis Stream (`bot.keys`:
one stream per shard, so the commit's keys share a Redis Cluster slot) in the same atomic step
that stores the session and the replies; every server process reads every shard's stream in
one consumer group, so each entry goes to one process. A process sends the replies not sent
yet, counting them in the message's record, and acknowledges the entry (XACK, XDEL) after the
last one. An entry that is not acknowledged (its process crashed, or a send failed) is taken
over with XAUTOCLAIM once it has been idle for `min_idle`: that is both the crash recovery and
the retry back-off. After `max_attempts` failed attempts it goes to the dead-letter stream and
is acknowledged.

Exactly once, as far as a channel allows: before each send the record notes the attempt that
is sending (`Delivery.sending`), and after it the reply is counted. A sender that finds another
attempt's note after taking an entry over knows that attempt died during that very send, the
one reply whose fate is unknown; the replies before it were sent, those after it were not. An
idempotent output (the webhook: the receiver drops a repeated ``delivery_id``) gets it again by
key; any other (Telegram, which has no idempotency key) does not (unless `resend_in_doubt`): the
reply is put on the dead-letter stream as "in doubt" for staff to check. An output's error with
``maybe_delivered = True`` (a time-out after the request left) is treated alike.

Consumers of processes gone for `stale_after`, with nothing pending, are deleted from the group
(`reap`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from bot.keys import DEDUP_TTL, SHARDS, Keys, conversation_of, shard_of
from bot.session import Delivery, RedisDeduplicator, SessionError, redis_errors
from channels.base import ChannelError, OutputChannel
from channels.messages import OutgoingMessage

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from bot.redis_client import AnyRedis

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
    """The senders of this process: deliver the replies queued on the outbound streams.

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
        stale_after: how long a consumer with nothing pending may stay silent before it is
            taken for a dead process's and deleted (a live one reads every `block` seconds).
        reap_every: seconds between two sweeps for such consumers.
        resend_in_doubt: send again a reply whose earlier attempt died mid-send (at least once)
            instead of listing it as a dead letter "in doubt" (at most once, the default).
    """

    def __init__(self, redis: AnyRedis, dedup: RedisDeduplicator,
                 outputs: Mapping[str, OutputChannel], *, keys: Keys | None = None,
                 min_idle: timedelta = timedelta(seconds=30), max_attempts: int = 8,
                 block: float = 5.0, batch: int = 32,
                 stale_after: timedelta = timedelta(hours=1), reap_every: float = 60.0,
                 resend_in_doubt: bool = False) -> None:
        self._redis = redis
        self._dedup = dedup
        self._outputs = outputs
        self._keys = keys or Keys()
        self._min_idle_ms = int(min_idle.total_seconds() * 1000)
        self._max_attempts = max_attempts
        self._block_ms = int(block * 1000)
        self._batch = batch
        self._stale_ms = int(stale_after.total_seconds() * 1000)
        self._reap_every = reap_every
        self._resend_in_doubt = resend_in_doubt
        # A name per process start: a crashed process's entries are claimed, never resumed.
        self.consumer = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._reap = redis.register_script(_REAP)
        self._reader: Redis | None = None
        # When each shard next looks for a dead consumer's entries: every round would cost a
        # command per shard per `block` seconds for entries idle `min_idle` at the earliest.
        self._next_claim = [0.0] * SHARDS
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False

    async def start(self) -> None:
        """Create the consumer groups if needed and start delivering in the background."""
        from redis.asyncio import ConnectionPool, Redis

        await self.ensure_group()
        self._stopping = False
        if isinstance(self._redis, Redis):
            # One blocking read per shard waits on a connection of its own: a pool of their
            # own keeps them from taking the dispatcher's connections. (A cluster client has a
            # pool per node, and the shards' streams are spread over the nodes.)
            pool = self._redis.connection_pool
            self._reader = Redis(connection_pool=ConnectionPool(
                connection_class=pool.connection_class, max_connections=SHARDS,
                **pool.connection_kwargs))
        self._tasks = [asyncio.create_task(self._run(shard), name=f"outbound-senders-{shard}")
                       for shard in range(SHARDS)]
        self._tasks.append(asyncio.create_task(self._reap_loop(), name="outbound-reaper"))

    async def close(self) -> None:
        """Stop delivering; entries being sent stay pending and another process takes them."""
        tasks, self._tasks = self._tasks, []
        self._stopping = True
        for task in tasks:
            # A cancellation that lands in redis-py's pool wait can come back as a RedisError,
            # which the loop survives: cancel until the task has really ended.
            while not task.done():
                task.cancel()
                await asyncio.wait({task}, timeout=1.0)
            with contextlib.suppress(asyncio.CancelledError):
                await task
        reader, self._reader = self._reader, None
        if reader is not None:
            await reader.aclose()
            await reader.connection_pool.disconnect()

    async def idle(self, poll: float = 0.02) -> None:
        """Wait until every queued entry was acknowledged (tests, a drain before shutdown)."""
        while await self.queued():
            await asyncio.sleep(poll)

    async def queued(self) -> int:
        """Entries on the outbound streams: queued, being sent or waiting for a retry."""
        async with redis_errors("reading the outbound streams"):
            lengths = [await self._redis.xlen(stream) for stream in self._keys.outbound_streams]
        return sum(lengths)

    async def ensure_group(self) -> None:
        from redis.exceptions import ResponseError

        for stream in self._keys.outbound_streams:
            try:
                async with redis_errors("creating the outbound consumer group"):
                    await self._redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
            except SessionError as exc:
                if not isinstance(exc.__cause__, ResponseError) or "BUSYGROUP" not in str(exc):
                    raise

    async def _run(self, shard: int) -> None:
        while not self._stopping:
            try:
                await self._round(shard, self._reader or self._redis, self._block_ms)
            except SessionError as exc:
                if self._stopping:
                    return
                log.error("outbound senders (shard %d): %s; retrying in 1 s", shard, exc)
                await asyncio.sleep(1.0)
                if "NOGROUP" in str(exc):  # Redis lost its data (a restart without AOF)
                    with contextlib.suppress(SessionError):
                        await self.ensure_group()

    async def _reap_loop(self) -> None:
        while not self._stopping:
            try:
                await self.reap()
            except SessionError as exc:
                log.error("outbound senders: removing stale consumers failed: %s", exc)
            await asyncio.sleep(self._reap_every)

    async def run_once(self, *, block: bool = True) -> int:
        """Take over idle entries and read new ones on every shard, deliver them; how many
        entries were tried. With `block`, wait up to `block` seconds when there were none."""
        tried = 0
        for shard in range(SHARDS):
            tried += await self._round(shard, self._redis, None, claim=True)
        if not tried and block:
            await asyncio.sleep(self._block_ms / 1000)
        return tried

    async def _round(self, shard: int, reader: AnyRedis, block_ms: int | None, *,
                     claim: bool = False) -> int:
        stream = self._keys.outbound(shard)
        entries: list[Any] = []
        async with redis_errors("reading the outbound stream"):
            now = time.monotonic()
            if claim or now >= self._next_claim[shard]:
                self._next_claim[shard] = now + self._min_idle_ms / 2000
                claimed = await self._redis.xautoclaim(
                    stream, GROUP, self.consumer, self._min_idle_ms, count=self._batch)
                entries = list(claimed[1])
                if len(entries) == self._batch:  # more may be waiting: look again next round
                    self._next_claim[shard] = now
            read: Any = await reader.xreadgroup(
                GROUP, self.consumer, {stream: ">"}, count=self._batch,
                block=block_ms if not entries else None)
        for _stream, new in read or ():
            entries += new
        entries = [(entry_id, fields) for entry_id, fields in entries if fields]
        by_conversation: dict[str, list[tuple[str, str, Delivery | None]]] = {}
        for entry_id, fields in entries:
            key = _text(fields.get(b"dedup", fields.get("dedup")))
            delivery = await self._dedup.find(key)
            by_conversation.setdefault(conversation_of(key), []).append(
                (_text(entry_id), key, delivery))
        # Conversations in parallel, each one's entries in stream order.
        await asyncio.gather(*(self._deliver_in_order(items)
                               for items in by_conversation.values()))
        return len(entries)

    async def _deliver_in_order(self, items: list[tuple[str, str, Delivery | None]]) -> None:
        for ident, key, delivery in items:
            if not await self._deliver(ident, key, delivery):
                return  # later replies of the conversation wait for this one's retry

    async def _deliver(self, ident: str, key: str, delivery: Delivery | None) -> bool:
        shard = shard_of(conversation_of(key))
        if delivery is None:
            log.error("outbound entry %s: the record of %s expired; nothing to send", ident, key)
            await self._ack(shard, ident)
            return True
        replies = delivery.replies
        attempt = secrets.token_hex(8)
        for index in range(delivery.sent, len(replies)):
            at_most_once = not self._resend_in_doubt and not _idempotent(
                self._outputs.get(replies[index].conversation.channel))
            if delivery.sending is not None and at_most_once:
                # The attempt that took this entry before died during this very send.
                await self._in_doubt(key, index, "its sender stopped during the send")
            else:
                if at_most_once:  # a resend by key is harmless elsewhere: no note needed
                    await self._dedup.record(key, Delivery(replies, sent=index, sending=attempt))
                try:
                    await send_reply(self._outputs, replies[index], reply_key(key, index))
                except Exception as exc:  # any failure: the entry stays pending and is retried
                    if at_most_once and getattr(exc, "maybe_delivered", False):
                        await self._in_doubt(key, index, _error(exc))
                    else:
                        if at_most_once:  # known not sent: a retry may send it
                            await self._dedup.record(key, Delivery(replies, sent=index))
                        await self._failed(shard, ident, key, delivery, index, exc)
                        return False
            delivery = Delivery(replies, sent=index + 1)
            await self._dedup.record(key, delivery)
        await self._ack(shard, ident)
        return True

    async def _in_doubt(self, key: str, index: int, why: str) -> None:
        """A reply that may have been sent: listed for staff, never sent twice."""
        log.error("reply %d of %s may or may not have been sent (%s); not sent again, listed "
                  "as a dead letter in doubt", index + 1, key, why)
        await self._dead(key, index, f"in doubt, not sent again: {why}", 1)

    async def _failed(self, shard: int, ident: str, key: str, delivery: Delivery, index: int,
                      exc: Exception) -> None:
        reply = delivery.replies[index]
        error = _error(exc)
        name = self._keys.outbound_attempts(shard, ident)
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
        await self._dead(key, index, error, attempts)
        await self._ack(shard, ident)

    async def _dead(self, key: str, index: int, error: str, attempts: int) -> None:
        async with redis_errors("storing a dead letter"):
            await self._redis.xadd(self._keys.outbound_dead,
                                   {"dedup": key, "reply": index, "error": error,
                                    "attempts": attempts}, maxlen=DEAD_MAXLEN)

    async def _ack(self, shard: int, ident: str) -> None:
        stream = self._keys.outbound(shard)
        async with (redis_errors("acknowledging an outbound entry"),
                    self._redis.pipeline(transaction=True) as pipe):
            pipe.xack(stream, GROUP, ident)
            pipe.xdel(stream, ident)
            pipe.delete(self._keys.outbound_attempts(shard, ident))
            await pipe.execute()

    async def reap(self) -> list[str]:
        """Delete the consumers that have nothing pending and were silent for `stale_after`
        (those of processes gone), on every shard; the names deleted."""
        removed: list[str] = []
        async with redis_errors("removing stale outbound consumers"):
            for stream in self._keys.outbound_streams:
                names: Any = await self._reap(keys=[stream],
                                              args=[GROUP, self._stale_ms, self.consumer])
                removed += [_text(name) for name in names]
        if removed:
            log.info("outbound senders: removed %d stale consumer(s): %s", len(removed),
                     ", ".join(sorted(set(removed))))
        return removed

    async def dead_letters(self, limit: int = 1_000) -> list[dict[str, str]]:
        """The latest dead letters, oldest first: the message's dedup key, reply, error."""
        async with redis_errors("reading the dead letters"):
            entries: Any = await self._redis.xrevrange(self._keys.outbound_dead, count=limit)
        return [{_text(k): _text(v) for k, v in fields.items()} for _, fields in
                reversed(entries or [])]


# In one step, so no entry can become pending between the check and the deletion: delete the
# group's consumers (but ARGV[3], the caller) with no pending entry, idle for ARGV[2] ms.
_REAP = """
local ok, consumers = pcall(redis.call, 'XINFO', 'CONSUMERS', KEYS[1], ARGV[1])
if not ok then
  return {}
end
local removed = {}
for _, consumer in ipairs(consumers) do
  local info = {}
  for i = 1, #consumer, 2 do
    info[consumer[i]] = consumer[i + 1]
  end
  if info['name'] ~= ARGV[3] and tonumber(info['pending']) == 0
      and tonumber(info['idle']) >= tonumber(ARGV[2]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], info['name'])
    removed[#removed + 1] = info['name']
  end
end
return removed
"""


def _idempotent(output: object) -> bool:
    """Whether sending a reply again by its key is harmless on this output. A wrapper declares
    what it wraps with an ``idempotent`` attribute (bot.app.GuardedOutput)."""
    declared = getattr(output, "idempotent", None)
    return isinstance(output, IdempotentOutput) if declared is None else bool(declared)


def _error(exc: Exception) -> str:
    from nlp.pii import mask_pii

    return mask_pii(f"{type(exc).__name__}: {exc}")


def _text(value: bytes | str | int | None) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
