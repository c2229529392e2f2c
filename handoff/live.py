"""Live console updates: events about tickets fanned out to every open console WebSocket.

`InProcessEvents` serves one server process. `RedisEvents` serves several: an event is published
to a Redis pub/sub channel, and every process (the publisher included) hands what it receives to
its own WebSocket subscribers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.client import PubSub

log = logging.getLogger(__name__)

Event = dict[str, Any]
_QUEUE = 256  # a console that reads slower than this just misses events and refetches


class Events(Protocol):
    """Publish ticket events; subscribe to all of them."""

    async def publish(self, event: Event) -> None:
        """Send one JSON-ready event to every subscriber."""
        ...

    def subscribe(self) -> contextlib.AbstractAsyncContextManager[asyncio.Queue[Event]]:
        """A queue that receives every event published while the context is open."""
        ...


class InProcessEvents:
    """`Events` within one process."""

    def __init__(self) -> None:
        self._queues: set[asyncio.Queue[Event]] = set()

    @property
    def subscribers(self) -> int:
        return len(self._queues)

    async def publish(self, event: Event) -> None:
        for queue in list(self._queues):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(event)

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue[Event]]:
        queue: asyncio.Queue[Event] = asyncio.Queue(_QUEUE)
        self._queues.add(queue)
        try:
            yield queue
        finally:
            self._queues.discard(queue)


class RedisEvents:
    """`Events` across processes on Redis pub/sub; `start` before use, `close` at the end.

    Args:
        redis: an async client (decode_responses either way).
        channel: the pub/sub channel (built by the wiring's key module, with its prefix).
    """

    def __init__(self, redis: Redis, channel: str) -> None:
        self._redis = redis
        self.channel = channel
        self._local = InProcessEvents()
        self._pubsub: PubSub | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Subscribe (events published from now on are received) and start listening."""
        self._pubsub = self._redis.pubsub()
        await self._pubsub.subscribe(self.channel)
        self._task = asyncio.create_task(self._listen(self._pubsub), name="console-events")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._pubsub is not None:
            await self._pubsub.aclose()  # type: ignore[no-untyped-call]  # redis-py stubs

    @property
    def redis(self) -> Redis:
        return self._redis

    async def publish(self, event: Event) -> None:
        await self._redis.publish(self.channel, json.dumps(event, ensure_ascii=False))

    def subscribe(self) -> contextlib.AbstractAsyncContextManager[asyncio.Queue[Event]]:
        return self._local.subscribe()

    async def _listen(self, pubsub: PubSub) -> None:
        from redis.exceptions import RedisError

        while True:
            try:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            except RedisError as exc:
                # The subscription is re-established by redis-py on the next read.
                log.error("console events: Redis failed, retrying: %s", exc)
                await asyncio.sleep(1.0)
                continue
            if message is None or message.get("type") != "message":
                continue
            try:
                event = json.loads(message["data"])
            except ValueError:
                log.error("console events: dropped a malformed event on %s", self.channel)
                continue
            await self._local.publish(event)
