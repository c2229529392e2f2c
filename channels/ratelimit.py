"""Outbound pacing and retries shared by the channels: a rate limiter and a retry helper.

`RateLimiter` spaces the sends of one channel: at most `rate` per second overall and at most one
per `per_key_interval` seconds for each key (a chat). `retrying` runs an operation again with
exponential backoff while a predicate says the error is transient, honouring a delay the server
asked for (HTTP 429 ``retry_after``); when the attempts run out it raises the last error, which
the channel translates into its own ChannelError.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


class RateLimiter:
    """At most `rate` acquisitions per second overall, one per `per_key_interval` per key.

    Args:
        rate: acquisitions per second over all keys (Telegram: 30 per bot); 0 for no limit.
        per_key_interval: seconds between two acquisitions of one key (Telegram: 1 per chat).
    """

    def __init__(self, rate: float, per_key_interval: float = 0.0) -> None:
        if rate < 0 or per_key_interval < 0:
            raise ValueError("rate and per_key_interval must not be negative")
        self.rate = rate
        self.per_key_interval = per_key_interval
        self._recent: deque[float] = deque()
        self._global = asyncio.Lock()
        self._next: dict[str, float] = {}  # key -> earliest time of its next acquisition

    async def acquire(self, key: str) -> None:
        """Wait until a send to `key` is allowed, and count it."""
        loop = asyncio.get_running_loop()
        if self.per_key_interval:
            # Reserve the key's slot before sleeping, so concurrent senders queue up in order.
            now = loop.time()
            slot = max(now, self._next.get(key, now))
            self._next[key] = slot + self.per_key_interval
            if slot > now:
                await asyncio.sleep(slot - now)
            self._forget(loop.time())
        if self.rate:
            async with self._global:
                window = 1.0
                while len(self._recent) >= self.rate:
                    wait = self._recent[0] + window - loop.time()
                    if wait <= 0:
                        self._recent.popleft()
                        continue
                    await asyncio.sleep(wait)
                self._recent.append(loop.time())

    def _forget(self, now: float) -> None:
        # Keep the per-key table small: a key whose next slot has passed needs no entry.
        if len(self._next) > 1024:
            for key in [k for k, t in self._next.items() if t <= now]:
                del self._next[key]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how long to retry: delay = base * factor**(attempt-1), capped, jittered."""

    attempts: int = 5
    base_delay: float = 0.5
    factor: float = 2.0
    max_delay: float = 30.0
    jitter: float = 0.1  # up to this fraction is added at random, so retries do not align

    def delay(self, attempt: int) -> float:
        """The pause after failed attempt number `attempt` (1-based)."""
        delay = min(self.max_delay, self.base_delay * self.factor ** (attempt - 1))
        return delay * (1 + random.uniform(0, self.jitter))


async def retrying(
    operation: Callable[[], Awaitable[T]],
    *,
    policy: RetryPolicy,
    transient: Callable[[Exception], bool],
    retry_after: Callable[[Exception], float | None] = lambda _exc: None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """Run `operation`, retrying transient failures; the last error is raised when none is left.

    Args:
        operation: makes one attempt.
        policy: the number of attempts and the backoff.
        transient: whether an error is worth another attempt (429, 5xx, a lost connection).
        retry_after: the delay the server asked for, if any; it replaces the backoff (capped
            at `policy.max_delay`).
        sleep: waits between attempts (tests may pass a recorder).
    """
    attempt = 1
    while True:
        try:
            return await operation()
        except Exception as exc:
            if attempt >= policy.attempts or not transient(exc):
                raise
            asked = retry_after(exc)
            await sleep(min(asked, policy.max_delay) if asked is not None
                        else policy.delay(attempt))
            attempt += 1
