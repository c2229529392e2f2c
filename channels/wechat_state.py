"""What the WeChat channel remembers between requests, in this process or in Redis.

WeChat retries a message whose HTTP answer did not come within 5 s, and the customer answers a
numbered list with a number: behind a load balancer the retry or the number may reach another
process than the one that got the message or sent the list. So, per conversation:

- the **answer** to each MsgId, for `ANSWER_TTL`: claimed ("being handled") by the first process
  that gets it, then the passive reply's text or "success". A retry anywhere answers alike.
- the **choices**: the buttons last shown as numbered lines (`CHOICES_TTL`), with a token, so
  that handling an answer consumes exactly the list it read (a newer list stays).

`InMemoryWeChatState` is for one process (no REDIS_URL), `RedisWeChatState` for several; every
Redis key has a TTL and is built by the `keys` given (bot.keys.Keys: a conversation's keys share
its hash slot). Single-key commands only, so Redis Cluster needs nothing more.
"""

from __future__ import annotations

import json
import secrets
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Protocol

from channels.base import ChannelError

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.cluster import RedisCluster

# WeChat retries three times within about 15 s; an answer is kept a while longer.
ANSWER_TTL = timedelta(seconds=60)
# As long as the session that asked the question (bot.keys.SESSION_TTL).
CHOICES_TTL = timedelta(days=7)
MAX_CHOICES = 10_000  # conversations whose last buttons one process remembers

_PENDING = "?"  # claimed: being handled, no answer yet
_SUCCESS = "-"  # answered "success" (the replies went, or go, by the customer-service API)
_TEXT = "="  # answered with the passive reply that follows


class WeChatStateError(ChannelError):
    """Redis could not be reached: the request answers 503 and WeChat retries it."""


@asynccontextmanager
async def _redis_errors(doing: str) -> AsyncIterator[None]:
    from redis.exceptions import RedisError

    try:
        yield
    except RedisError as exc:
        raise WeChatStateError(f"Redis is unavailable ({doing}): {exc}") from exc


@dataclass(frozen=True, slots=True)
class Answer:
    """What a MsgId was answered: `text` (a passive reply), or None for ``success``; while
    `pending`, the process that claimed it has not answered yet."""

    text: str | None = None
    pending: bool = False

    def encode(self) -> str:
        if self.pending:
            return _PENDING
        return _SUCCESS if self.text is None else _TEXT + self.text

    @classmethod
    def decode(cls, raw: str | bytes) -> Answer:
        value = raw.decode() if isinstance(raw, bytes) else raw
        if value.startswith(_TEXT):
            return cls(text=value[len(_TEXT):])
        return cls(pending=value == _PENDING)


@dataclass(frozen=True, slots=True)
class Choices:
    """The buttons shown as numbered lines, and the token of that showing."""

    buttons: tuple[str, ...]
    token: str

    def encode(self) -> str:
        return json.dumps({"buttons": list(self.buttons), "token": self.token},
                          ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def decode(cls, raw: str | bytes) -> Choices:
        data = json.loads(raw)
        return cls(buttons=tuple(data["buttons"]), token=str(data["token"]))


class WeChatState(Protocol):
    """The answers and choices of the WeChat channel; `conversation` is ConversationRef.key."""

    async def claim(self, conversation: str, msg_id: str) -> bool:
        """Take the message to handle: True for the first delivery, False when it is known."""
        ...

    async def answer(self, conversation: str, msg_id: str) -> Answer | None:
        """What the message was answered (or that it is pending); None when not known."""
        ...

    async def answered(self, conversation: str, msg_id: str, text: str | None) -> None:
        """Record the answer given: the passive reply's text, or None for ``success``."""
        ...

    async def forget(self, conversation: str, msg_id: str) -> None:
        """Drop the claim of a message whose handling failed, so a retry handles it again."""
        ...

    async def choices(self, conversation: str) -> Choices | None:
        """The buttons last shown in the conversation, if any."""
        ...

    async def show_choices(self, conversation: str, buttons: tuple[str, ...]) -> None:
        """Remember buttons being shown (they replace the earlier ones)."""
        ...

    async def consume(self, conversation: str, choices: Choices) -> None:
        """Drop the choices an answer was read against, unless newer ones were shown since."""
        ...

    async def close(self) -> None:
        """Release what the state holds (the Redis connection)."""
        ...


class InMemoryWeChatState:
    """The state of one process, forgotten after its TTLs."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._answers: OrderedDict[tuple[str, str], tuple[float, Answer]] = OrderedDict()
        self._choices: OrderedDict[str, tuple[float, Choices]] = OrderedDict()

    def _prune(self) -> None:
        now = self._clock()
        # One TTL each and re-inserted at the end on write: the oldest are in front.
        while self._answers and next(iter(self._answers.values()))[0] <= now:
            self._answers.popitem(last=False)
        while self._choices and (next(iter(self._choices.values()))[0] <= now
                                 or len(self._choices) > MAX_CHOICES):
            self._choices.popitem(last=False)

    def _put_answer(self, conversation: str, msg_id: str, answer: Answer) -> None:
        self._answers.pop((conversation, msg_id), None)
        self._answers[conversation, msg_id] = (
            self._clock() + ANSWER_TTL.total_seconds(), answer)

    async def claim(self, conversation: str, msg_id: str) -> bool:
        self._prune()
        if (conversation, msg_id) in self._answers:
            return False
        self._put_answer(conversation, msg_id, Answer(pending=True))
        return True

    async def answer(self, conversation: str, msg_id: str) -> Answer | None:
        self._prune()
        item = self._answers.get((conversation, msg_id))
        return item[1] if item is not None else None

    async def answered(self, conversation: str, msg_id: str, text: str | None) -> None:
        self._put_answer(conversation, msg_id, Answer(text=text))

    async def forget(self, conversation: str, msg_id: str) -> None:
        self._answers.pop((conversation, msg_id), None)

    async def choices(self, conversation: str) -> Choices | None:
        self._prune()
        item = self._choices.get(conversation)
        return item[1] if item is not None else None

    async def show_choices(self, conversation: str, buttons: tuple[str, ...]) -> None:
        self._choices.pop(conversation, None)
        self._choices[conversation] = (self._clock() + CHOICES_TTL.total_seconds(),
                                       Choices(buttons, secrets.token_hex(8)))
        self._prune()

    async def consume(self, conversation: str, choices: Choices) -> None:
        item = self._choices.get(conversation)
        if item is not None and item[1] == choices:
            del self._choices[conversation]

    async def close(self) -> None:
        return None


class WeChatKeys(Protocol):
    """The Redis key names the state uses (bot.keys.Keys)."""

    def wechat_answer(self, conversation: str, msg_id: str) -> str: ...

    def wechat_choices(self, conversation: str) -> str: ...


# Delete a key only while it holds the value read (the choices consumed), in one step.
_DELETE_IF_SAME = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class RedisWeChatState:
    """The state in Redis, shared by every process.

    Args:
        redis: a client of its own (closed by `close` when `owned`).
        keys: builds the key names (bot.keys.Keys, with the deployment's prefix).
        owned: whether `close` closes the client.
    """

    def __init__(self, redis: Redis | RedisCluster, keys: WeChatKeys, *,
                 owned: bool = True) -> None:
        self._redis = redis
        self._keys = keys
        self._owned = owned
        self._consume = redis.register_script(_DELETE_IF_SAME)
        self._answer_ttl = int(ANSWER_TTL.total_seconds())
        self._choices_ttl = int(CHOICES_TTL.total_seconds())

    @classmethod
    def from_url(cls, url: str, keys: WeChatKeys) -> RedisWeChatState:
        """A state on a client of its own (it connects on first use)."""
        from redis.asyncio import Redis

        return cls(Redis.from_url(url), keys)

    async def claim(self, conversation: str, msg_id: str) -> bool:
        async with _redis_errors("claiming a WeChat message"):
            return bool(await self._redis.set(self._keys.wechat_answer(conversation, msg_id),
                                              _PENDING, nx=True, ex=self._answer_ttl))

    async def answer(self, conversation: str, msg_id: str) -> Answer | None:
        async with _redis_errors("reading a WeChat answer"):
            raw = await self._redis.get(self._keys.wechat_answer(conversation, msg_id))
        return None if raw is None else Answer.decode(raw)

    async def answered(self, conversation: str, msg_id: str, text: str | None) -> None:
        async with _redis_errors("recording a WeChat answer"):
            await self._redis.set(self._keys.wechat_answer(conversation, msg_id),
                                  Answer(text=text).encode(), ex=self._answer_ttl)

    async def forget(self, conversation: str, msg_id: str) -> None:
        async with _redis_errors("forgetting a WeChat message"):
            await self._redis.delete(self._keys.wechat_answer(conversation, msg_id))

    async def choices(self, conversation: str) -> Choices | None:
        async with _redis_errors("reading WeChat choices"):
            raw = await self._redis.get(self._keys.wechat_choices(conversation))
        return None if raw is None else Choices.decode(raw)

    async def show_choices(self, conversation: str, buttons: tuple[str, ...]) -> None:
        async with _redis_errors("storing WeChat choices"):
            await self._redis.set(self._keys.wechat_choices(conversation),
                                  Choices(buttons, secrets.token_hex(8)).encode(),
                                  ex=self._choices_ttl)

    async def consume(self, conversation: str, choices: Choices) -> None:
        async with _redis_errors("consuming WeChat choices"):
            await self._consume(keys=[self._keys.wechat_choices(conversation)],
                                args=[choices.encode()])

    async def close(self) -> None:
        if self._owned:
            await self._redis.aclose()
