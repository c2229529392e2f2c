"""Telling every running process that the published entries changed, so each reloads its index.

InMemoryNotifier serves one process (the default); RedisNotifier uses Redis pub/sub
(REDIS_URL) so a publish through one worker or the CLI reaches all of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import Any, final

from redis.exceptions import RedisError

from knowledge_base.errors import NotifierUnavailable

CHANNEL = "intakebot:kb:published"
log = logging.getLogger(__name__)

Listener = Callable[[str], Awaitable[None]]


class Notifier(ABC):
    """Publishes "the knowledge base changed" events and delivers them to listeners.

    Every notifier has an origin id; listeners are not called for the events their own
    notifier published (the publishing process has reloaded already).
    """

    def __init__(self) -> None:
        self.origin = uuid.uuid4().hex
        self._listeners: list[Listener] = []

    def listen(self, listener: Listener) -> None:
        """Call `listener(reason)` on every event another process (or notifier) publishes."""
        self._listeners.append(listener)

    @final
    async def notify(self, reason: str) -> None:
        """Tell the other processes to reload."""
        await self._send(json.dumps({"origin": self.origin, "reason": reason}))

    async def start(self) -> None:  # noqa: B027 - optional hook, most notifiers need none
        """Begin receiving events (no-op for notifiers that need no connection)."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Stop receiving and release connections."""

    @abstractmethod
    async def _send(self, message: str) -> None: ...

    @final
    async def _deliver(self, message: str) -> None:
        try:
            data: Any = json.loads(message)
            origin, reason = str(data["origin"]), str(data.get("reason", ""))
        except (ValueError, KeyError, TypeError):
            return  # not one of ours: another program on the channel
        if origin == self.origin:
            return
        for listener in list(self._listeners):
            await listener(reason)


class InMemoryHub:
    """The in-process "channel" that InMemoryNotifiers of one process share."""

    def __init__(self) -> None:
        self.members: list[InMemoryNotifier] = []


_DEFAULT_HUB = InMemoryHub()


class InMemoryNotifier(Notifier):
    """Delivers events to the other notifiers of the same hub, in this process."""

    def __init__(self, hub: InMemoryHub | None = None) -> None:
        super().__init__()
        self._hub = hub or _DEFAULT_HUB
        self._hub.members.append(self)

    async def _send(self, message: str) -> None:
        for member in list(self._hub.members):
            await member._deliver(message)

    async def close(self) -> None:
        if self in self._hub.members:
            self._hub.members.remove(self)


class RedisNotifier(Notifier):
    """Redis pub/sub on CHANNEL; one listening task per process."""

    def __init__(self, url: str, *, channel: str = CHANNEL) -> None:
        super().__init__()
        import redis.asyncio as aioredis

        self._redis = aioredis.from_url(url)
        self._channel = channel
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def start(self) -> None:
        if self._task is not None:
            return
        try:
            await self._redis.ping()
        except (OSError, RedisError) as exc:
            raise NotifierUnavailable(f"cannot reach Redis for knowledge-base reloads: {exc}"
                                      ) from exc
        self._task = asyncio.create_task(self._run(), name="kb-redis-notifier")
        await asyncio.wait_for(self._ready.wait(), timeout=10)

    async def _run(self) -> None:
        pubsub = self._redis.pubsub()
        await pubsub.subscribe(self._channel)
        self._ready.set()
        try:
            async for item in pubsub.listen():
                if item.get("type") != "message":
                    continue
                data = item["data"]
                try:
                    await self._deliver(data.decode() if isinstance(data, bytes) else str(data))
                except Exception:
                    # No caller to raise to in a listener task: report it, keep listening, so
                    # the next publish still reaches this process.
                    log.exception("reloading the knowledge base after a publish failed")
        finally:
            with contextlib.suppress(Exception):
                await pubsub.unsubscribe(self._channel)
            await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _send(self, message: str) -> None:
        try:
            await self._redis.publish(self._channel, message)
        except (OSError, RedisError) as exc:
            raise NotifierUnavailable(f"cannot tell other processes to reload: {exc}") from exc

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._redis.aclose()
