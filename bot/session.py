"""Conversation state and the stores around it: sessions, per-conversation locks, de-duplication.

Each store is a protocol with an in-process default (`InMemory…`) and a Redis implementation
(`Redis…`, async client, keys from bot.keys, a TTL on every key). A `Session` is immutable: the
engine returns a new one per message (dataclasses.replace) and the dispatcher stores it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import Enum
from typing import TYPE_CHECKING, Any, Protocol

from bot.keys import DEDUP_TTL, LOCK_LEASE, SESSION_TTL, Keys, conversation_of
from channels.messages import Attachment, Author, ConversationRef, OutgoingMessage
from handoff.intake import EvidenceRef, HandoffReason
from nlp.labels import Category, Demand, Emotion, Lang, Priority

if TYPE_CHECKING:
    from bot.redis_client import AnyRedis

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MAX_TRANSCRIPT = 200  # lines kept in the session; the ticket keeps the whole conversation
MAX_STORY_CHARS = 4_000


class SessionError(Exception):
    """Base of the errors the session, lock and de-duplication stores raise."""


class StaleSession(SessionError):
    """A newer revision of the session was stored meanwhile (the lock's lease ran out)."""


class LockTimeout(SessionError):
    """The conversation stayed locked longer than the caller was willing to wait."""


class State(str, Enum):
    """Where the conversation is."""

    GREETING = "greeting"  # nothing under way: the next message starts something
    COLLECTING = "collecting"  # a complaint is being told and its facts asked for
    CONFIRMING = "confirming"  # the summary was read back; awaiting confirm / modify
    ANSWERED_FAQ = "answered_faq"  # a knowledge-base answer was given; awaiting "did this help?"
    REPHRASING = "rephrasing"  # the customer was asked to put the question another way
    REGISTERED = "registered"  # the complaint is a ticket; later lines are added to it
    WITH_AGENT = "with_agent"  # a person has the conversation; the bot stays silent
    CLOSED = "closed"  # cancelled; the next message starts afresh


class Ask(str, Enum):
    """A fact the bot asks the customer for, one at a time, in this order."""

    STORY = "story"
    ORDER_ID = "order_id"
    PRODUCT = "product"
    CONTACT = "contact"
    DEMAND = "demand"


@dataclass(frozen=True, slots=True)
class Form:
    """The registration form's fields filled so far; a later value overwrites (a correction)."""

    order_id: str | None = None
    product: str | None = None
    phone: str | None = None
    email: str | None = None
    demand: Demand | None = None
    demand_note: str | None = None
    amount: float | None = None
    currency: str | None = None
    incident_time: str | None = None
    customer_name: str | None = None

    def has(self, ask: Ask) -> bool:
        """Whether the fact the bot would ask for with `ask` is known."""
        if ask is Ask.CONTACT:
            return bool(self.phone or self.email)
        if ask is Ask.STORY:
            return True  # the story lives on the session, not the form
        return getattr(self, ask.value) is not None

    def to_json(self) -> dict[str, Any]:
        return {
            "order_id": self.order_id, "product": self.product, "phone": self.phone,
            "email": self.email, "demand": self.demand.value if self.demand else None,
            "demand_note": self.demand_note, "amount": self.amount, "currency": self.currency,
            "incident_time": self.incident_time, "customer_name": self.customer_name,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Form:
        demand = data.get("demand")
        return cls(
            order_id=data.get("order_id"), product=data.get("product"), phone=data.get("phone"),
            email=data.get("email"), demand=Demand(demand) if demand else None,
            demand_note=data.get("demand_note"), amount=data.get("amount"),
            currency=data.get("currency"), incident_time=data.get("incident_time"),
            customer_name=data.get("customer_name"),
        )


@dataclass(frozen=True, slots=True)
class Assessment:
    """The triage of the complaint so far: what the ticket is filed as."""

    category: Category | None
    subcategory: str | None
    priority: Priority
    reasons: tuple[str, ...]
    emotion: Emotion
    emotion_intensity: float

    @property
    def sla_hours(self) -> int:
        return self.priority.sla_hours

    def to_json(self) -> dict[str, Any]:
        return {
            "category": self.category.value if self.category else None,
            "subcategory": self.subcategory, "priority": self.priority.value,
            "reasons": list(self.reasons), "emotion": self.emotion.value,
            "emotion_intensity": self.emotion_intensity,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Assessment:
        category = data.get("category")
        return cls(
            category=Category(category) if category else None,
            subcategory=data.get("subcategory"), priority=Priority(data["priority"]),
            reasons=tuple(data.get("reasons", ())), emotion=Emotion(data["emotion"]),
            emotion_intensity=float(data["emotion_intensity"]),
        )


@dataclass(frozen=True, slots=True)
class Line:
    """One line of the conversation; `key` names the reply template of a bot line."""

    author: Author
    text: str
    at: datetime
    key: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"author": self.author.value, "text": self.text, "at": self.at.isoformat(),
                "key": self.key}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Line:
        return cls(author=Author(data["author"]), text=data["text"],
                   at=datetime.fromisoformat(data["at"]), key=data.get("key"))


@dataclass(frozen=True, slots=True)
class Question:
    """An after-care question the bot asked and awaits an answer to (handoff.aftercare).

    `kind` is confirm (is the resolved problem solved?) or survey; `step` is the survey
    question (handoff.survey.QUESTIONS) the next answer is for.
    """

    kind: str
    ticket_id: str
    number: str
    step: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "ticket_id": self.ticket_id, "number": self.number,
                "step": self.step}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Question:
        return cls(kind=data["kind"], ticket_id=data["ticket_id"], number=data["number"],
                   step=data.get("step", ""))


@dataclass(frozen=True, slots=True)
class Session:
    """Everything the engine remembers about one conversation between two messages."""

    key: str  # ConversationRef.key
    channel: str
    chat_id: str
    updated_at: datetime
    state: State = State.GREETING
    lang: Lang | None = None  # zh-Hans, zh-Hant or en once the customer has written
    form: Form = field(default_factory=Form)
    story: tuple[str, ...] = ()  # the customer's own account, turn by turn
    assessment: Assessment | None = None
    pending: Ask | None = None  # the question the bot asked last
    asked: frozenset[Ask] = frozenset()  # questions asked at least once in this intake
    declined: frozenset[Ask] = frozenset()  # facts the customer does not have or will not give
    evidence_hinted: bool = False  # the optional photos were mentioned (once per intake)
    kb_misses: int = 0  # unhelpful or unconfident knowledge-base answers in a row
    ticket_id: str | None = None
    ticket_number: str | None = None
    handoff_reason: HandoffReason | None = None
    evidence: tuple[EvidenceRef, ...] = ()
    transcript: tuple[Line, ...] = ()
    revision: int = 0  # +1 per handled message; the stores refuse to overwrite a newer one
    question: Question | None = None  # an after-care question awaiting the customer's answer

    @classmethod
    def new(cls, conversation: ConversationRef, now: datetime) -> Session:
        return cls(key=conversation.key, channel=conversation.channel,
                   chat_id=conversation.chat_id, updated_at=now)

    @property
    def description(self) -> str:
        """The customer's account as one text (the ticket's problem description)."""
        return "\n".join(self.story)

    def restarted(self) -> Session:
        """A fresh intake in the same conversation: language, transcript and revision stay."""
        return Session(key=self.key, channel=self.channel, chat_id=self.chat_id,
                       updated_at=self.updated_at, lang=self.lang, transcript=self.transcript,
                       revision=self.revision)

    def with_lines(self, *lines: Line) -> Session:
        return replace(self, transcript=(*self.transcript, *lines)[-MAX_TRANSCRIPT:])

    def with_story(self, text: str) -> Session:
        story = (*self.story, text)
        while len(story) > 1 and sum(len(t) for t in story) > MAX_STORY_CHARS:
            story = story[1:]
        return replace(self, story=story)

    def to_json(self) -> dict[str, Any]:
        return {
            "v": FORMAT_VERSION, "key": self.key, "channel": self.channel,
            "chat_id": self.chat_id, "updated_at": self.updated_at.isoformat(),
            "state": self.state.value, "lang": self.lang.value if self.lang else None,
            "form": self.form.to_json(), "story": list(self.story),
            "assessment": self.assessment.to_json() if self.assessment else None,
            "pending": self.pending.value if self.pending else None,
            "asked": sorted(a.value for a in self.asked),
            "declined": sorted(a.value for a in self.declined),
            "evidence_hinted": self.evidence_hinted, "kb_misses": self.kb_misses,
            "ticket_id": self.ticket_id, "ticket_number": self.ticket_number,
            "handoff_reason": self.handoff_reason.value if self.handoff_reason else None,
            "evidence": [_evidence_json(e) for e in self.evidence],
            "transcript": [line.to_json() for line in self.transcript],
            "revision": self.revision,
            "question": self.question.to_json() if self.question else None,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Session:
        if data.get("v") != FORMAT_VERSION:
            raise ValueError(f"unsupported session format {data.get('v')!r}")
        lang, pending, assessment = data["lang"], data["pending"], data["assessment"]
        reason = data["handoff_reason"]
        return cls(
            key=data["key"], channel=data["channel"], chat_id=data["chat_id"],
            updated_at=datetime.fromisoformat(data["updated_at"]), state=State(data["state"]),
            lang=Lang(lang) if lang else None, form=Form.from_json(data["form"]),
            story=tuple(data["story"]),
            assessment=Assessment.from_json(assessment) if assessment else None,
            pending=Ask(pending) if pending else None,
            asked=frozenset(Ask(a) for a in data["asked"]),
            declined=frozenset(Ask(a) for a in data["declined"]),
            evidence_hinted=bool(data["evidence_hinted"]), kb_misses=int(data["kb_misses"]),
            ticket_id=data["ticket_id"], ticket_number=data["ticket_number"],
            handoff_reason=HandoffReason(reason) if reason else None,
            evidence=tuple(EvidenceRef(**e) for e in data["evidence"]),
            transcript=tuple(Line.from_json(x) for x in data["transcript"]),
            revision=int(data["revision"]),
            question=Question.from_json(data["question"]) if data.get("question") else None,
        )

    def dumps(self) -> str:
        """Canonical JSON: equal sessions give equal strings (the stores compare them)."""
        return _dumps(self.to_json())

    @classmethod
    def loads(cls, text: str | bytes) -> Session:
        return cls.from_json(json.loads(text))


def _dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def _evidence_json(e: EvidenceRef) -> dict[str, Any]:
    return {"filename": e.filename, "content_type": e.content_type, "sha256": e.sha256,
            "size": e.size}


# ---- sessions ------------------------------------------------------------------------------


class SessionStore(Protocol):
    """Where sessions live between messages."""

    async def get(self, key: str) -> Session | None:
        """The conversation's session, or None when new or expired."""
        ...

    async def put(self, session: Session) -> None:
        """Store the session (TTL renewed); StaleSession if a newer revision is stored."""
        ...

    async def delete(self, key: str) -> None:
        """Forget the conversation's session."""
        ...


def _check_revision(stored: str | None, session: Session, text: str) -> bool:
    """Whether `text` may replace `stored`: the next revision, or the same write again."""
    if stored is None or stored == text:
        return True
    return int(json.loads(stored)["revision"]) == session.revision - 1


class InMemorySessionStore:
    """Sessions in this process, as JSON (as Redis holds them), forgotten after the TTL."""

    def __init__(self, *, ttl: timedelta = SESSION_TTL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl.total_seconds()
        self._clock = clock
        self._items: OrderedDict[str, tuple[float, str]] = OrderedDict()

    def _prune(self) -> None:
        now = self._clock()
        # One TTL for every item and re-inserted at the end on write: the oldest are in front.
        while self._items:
            key, (expires, _) = next(iter(self._items.items()))
            if expires > now:
                break
            del self._items[key]

    async def get(self, key: str) -> Session | None:
        self._prune()
        item = self._items.get(key)
        return Session.loads(item[1]) if item else None

    async def put(self, session: Session) -> None:
        self._prune()
        text = session.dumps()
        item = self._items.get(session.key)
        if not _check_revision(item[1] if item else None, session, text):
            raise StaleSession(session.key)
        self._items.pop(session.key, None)
        self._items[session.key] = (self._clock() + self._ttl, text)

    async def delete(self, key: str) -> None:
        self._items.pop(key, None)


# Compare-and-set on the revision, so a write whose lock lease ran out cannot undo a newer one.
_PUT_SESSION = """
local cur = redis.call('GET', KEYS[1])
if cur and cur ~= ARGV[1] then
  if tonumber(cjson.decode(cur)['revision']) ~= tonumber(ARGV[2]) - 1 then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
return 1
"""


class RedisSessionStore:
    """Sessions as JSON strings in Redis, `SET … EX` so every key expires."""

    def __init__(self, redis: AnyRedis, *, keys: Keys | None = None,
                 ttl: timedelta = SESSION_TTL) -> None:
        self._redis = redis
        self._keys = keys or Keys()
        self._ttl = int(ttl.total_seconds())
        self._put = redis.register_script(_PUT_SESSION)

    async def get(self, key: str) -> Session | None:
        async with redis_errors("reading a session"):
            text = await self._redis.get(self._keys.session(key))
        return Session.loads(text) if text is not None else None

    async def put(self, session: Session) -> None:
        async with redis_errors("storing a session"):
            written = await self._put(keys=[self._keys.session(session.key)],
                                      args=[session.dumps(), session.revision, self._ttl])
        if not written:
            raise StaleSession(session.key)

    async def delete(self, key: str) -> None:
        async with redis_errors("deleting a session"):
            await self._redis.delete(self._keys.session(key))


# ---- locks ---------------------------------------------------------------------------------


class LockStore(Protocol):
    """One message at a time per conversation."""

    def lock(self, key: str) -> AbstractAsyncContextManager[None]:
        """Hold the conversation's lock for the `async with` block; LockTimeout when it stays
        taken too long."""
        ...


@dataclass(slots=True)
class _Held:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


class InMemoryLockStore:
    """An asyncio.Lock per conversation (first come, first served), dropped when unused."""

    def __init__(self, *, timeout: float = 30.0) -> None:
        self._timeout = timeout
        self._locks: dict[str, _Held] = {}

    def __len__(self) -> int:
        """How many conversations have a lock right now (held or waited for)."""
        return len(self._locks)

    @asynccontextmanager
    async def lock(self, key: str) -> AsyncIterator[None]:
        held = self._locks.setdefault(key, _Held())
        held.users += 1
        try:
            try:
                async with asyncio.timeout(self._timeout):
                    await held.lock.acquire()
            except TimeoutError as exc:
                raise LockTimeout(key) from exc
            try:
                yield
            finally:
                held.lock.release()
        finally:
            held.users -= 1
            if held.users == 0:
                del self._locks[key]


# Delete a key only while it still holds our value: releases a lock without touching one
# another process has taken over since.
_DELETE_IF_OURS = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class RedisLockStore:
    """`SET key token NX PX lease`, released by a Lua compare-and-delete with the same token.

    The lease frees the lock of a crashed process; a holder that overran its lease is caught by
    the session store's revision check.
    """

    def __init__(self, redis: AnyRedis, *, keys: Keys | None = None,
                 lease: timedelta = LOCK_LEASE, timeout: float = 30.0,
                 poll: float = 0.005, max_poll: float = 0.05) -> None:
        self._redis = redis
        self._keys = keys or Keys()
        self._lease_ms = int(lease.total_seconds() * 1000)
        self._timeout = timeout
        self._poll = poll
        self._max_poll = max_poll
        self._release = redis.register_script(_DELETE_IF_OURS)

    @asynccontextmanager
    async def lock(self, key: str) -> AsyncIterator[None]:
        name = self._keys.lock(key)
        token = secrets.token_hex(16)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        delay = self._poll
        while True:
            async with redis_errors("taking a conversation lock"):
                if await self._redis.set(name, token, nx=True, px=self._lease_ms):
                    break
            if loop.time() >= deadline:
                raise LockTimeout(key)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._max_poll)
        try:
            yield
        finally:
            async with redis_errors("releasing a conversation lock"):
                released = await self._release(keys=[name], args=[token])
            if not released:
                log.warning("the lock of %s expired before it was released", key)


# ---- de-duplication ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Delivery:
    """What handling a message produced, and how many of the replies reached the channel."""

    replies: tuple[OutgoingMessage, ...]
    sent: int = 0
    # The outbound senders' attempt (a token) that began sending reply `sent` and has not
    # reported back: if it is not ours, that send may or may not have reached the channel.
    sending: str | None = None

    @property
    def complete(self) -> bool:
        return self.sent >= len(self.replies)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"replies": [_outgoing_json(m) for m in self.replies],
                                "sent": self.sent}
        if self.sending is not None:
            data["sending"] = self.sending
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Delivery:
        return cls(replies=tuple(_outgoing_from_json(m) for m in data["replies"]),
                   sent=int(data["sent"]), sending=data.get("sending"))

    def dumps(self) -> str:
        return _dumps(self.to_json())

    @classmethod
    def loads(cls, text: str | bytes) -> Delivery:
        return cls.from_json(json.loads(text))


def _outgoing_json(m: OutgoingMessage) -> dict[str, Any]:
    return {
        "channel": m.conversation.channel, "chat_id": m.conversation.chat_id, "text": m.text,
        "buttons": list(m.buttons), "author": m.author.value,
        "attachments": [{"filename": a.filename, "content_type": a.content_type,
                         "sha256": a.sha256, "size": a.size} for a in m.attachments],
    }


def _outgoing_from_json(d: Mapping[str, Any]) -> OutgoingMessage:
    return OutgoingMessage(
        conversation=ConversationRef(d["channel"], d["chat_id"]), text=d["text"],
        buttons=tuple(d["buttons"]), author=Author(d["author"]),
        attachments=tuple(Attachment(**a) for a in d["attachments"]),
    )


def dedup_key(conversation: ConversationRef, message_id: str) -> str:
    """Which message: message ids are unique per chat on some channels (Telegram), not per
    channel, so the chat is part of the key. A ``:`` in the message id is escaped, so the last
    ``:`` ends the conversation (`bot.keys.conversation_of`: its keys share a hash slot)."""
    escaped = message_id.replace("%", "%25").replace(":", "%3A")
    return f"{conversation.key}:{escaped}"


class Deduplicator(Protocol):
    """Remembers handled messages and their replies, so a redelivery is not handled again.

    Called under the conversation's lock: a message that has no record yet was never handled,
    or its handler died (or failed) before recording it, and is handled (again) by the caller.
    """

    async def find(self, key: str) -> Delivery | None:
        """What handling the message produced, or None when it has not been handled."""
        ...

    async def record(self, key: str, delivery: Delivery) -> None:
        """Store the replies of a handled message and how many were sent."""
        ...

    async def first_seen(self, key: str, at: datetime) -> datetime:
        """When the message was first received: `at` the first time, the same time after.

        Handling a message again after a crash then yields the very same transcript lines,
        which the ticket desk adds once (`bot.replay.ReplaySafeDesk`).
        """
        ...


class InMemoryDeduplicator:
    """Handled message ids in this process, forgotten after the TTL."""

    def __init__(self, *, ttl: timedelta = DEDUP_TTL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl.total_seconds()
        self._clock = clock
        self._items: OrderedDict[str, tuple[float, Delivery]] = OrderedDict()
        self._seen: OrderedDict[str, tuple[float, datetime]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def _prune(self) -> None:
        now = self._clock()
        while self._items:
            key, (expires, _) = next(iter(self._items.items()))
            if expires > now:
                break
            del self._items[key]

    async def find(self, key: str) -> Delivery | None:
        self._prune()
        item = self._items.get(key)
        return item[1] if item is not None else None

    async def record(self, key: str, delivery: Delivery) -> None:
        self._items.pop(key, None)
        self._items[key] = (self._clock() + self._ttl, delivery)

    async def first_seen(self, key: str, at: datetime) -> datetime:
        now = self._clock()
        while self._seen and next(iter(self._seen.values()))[0] <= now:
            self._seen.popitem(last=False)
        return self._seen.setdefault(key, (now + self._ttl, at))[1]


# Store the session (compare-and-set on its revision, as _PUT_SESSION) and the record of the
# message handled, in one step: a crash leaves either both or neither, so a redelivery is either
# answered from the record or handled afresh on the old session, never handled twice. With
# ARGV[6] = "1" the record's key also goes on the conversation's outbound stream for the senders
# (its shard's: all three keys carry the shard's hash tag, so they share a Redis Cluster slot).
# Returns {1} when written, {0} when the session is stale, {2, record} when the message was
# recorded meanwhile (a handler whose lock lease ran out finished first): nothing is written.
_COMMIT = """
local done = redis.call('GET', KEYS[2])
if done then
  return {2, done}
end
local cur = redis.call('GET', KEYS[1])
if cur and cur ~= ARGV[1] then
  if tonumber(cjson.decode(cur)['revision']) ~= tonumber(ARGV[2]) - 1 then
    return {0}
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
redis.call('SET', KEYS[2], ARGV[4], 'EX', ARGV[5])
if ARGV[6] == '1' then
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[8], '*', 'dedup', ARGV[7])
end
return {1}
"""

# Entries a shard's outbound stream keeps at most (acknowledged ones are deleted).
OUTBOUND_MAXLEN = 100_000


class RedisDeduplicator:
    """Each handled message's replies as JSON (`SET … EX`), written with the session by `commit`.

    Build it with the same `Keys` as the `RedisSessionStore`: `commit` writes the session too.
    """

    def __init__(self, redis: AnyRedis, *, keys: Keys | None = None,
                 ttl: timedelta = DEDUP_TTL, session_ttl: timedelta = SESSION_TTL) -> None:
        self._redis = redis
        self._keys = keys or Keys()
        self._ttl = int(ttl.total_seconds())
        self._session_ttl = int(session_ttl.total_seconds())
        self._commit = redis.register_script(_COMMIT)

    async def find(self, key: str) -> Delivery | None:
        async with redis_errors("reading a message record"):
            text = await self._redis.get(self._keys.dedup(key))
        return None if text is None else Delivery.loads(text)

    async def record(self, key: str, delivery: Delivery) -> None:
        async with redis_errors("recording a message"):
            await self._redis.set(self._keys.dedup(key), delivery.dumps(), ex=self._ttl)

    async def first_seen(self, key: str, at: datetime) -> datetime:
        async with redis_errors("recording when a message came"):
            # SET NX GET: store ours unless one is stored, and get the stored one either way.
            earlier = await self._redis.set(self._keys.seen(key), at.isoformat(), nx=True,
                                            get=True, ex=self._ttl)
        if earlier is None:
            return at
        return datetime.fromisoformat(earlier.decode() if isinstance(earlier, bytes)
                                      else str(earlier))

    async def commit(self, key: str, delivery: Delivery, session: Session, *,
                     queue: bool = False) -> Delivery:
        """Store the session and the message's record atomically; with `queue`, also put the
        message on the outbound stream (`bot.outbound`), whose senders deliver the replies.

        Returns:
            `delivery`, or the record another handler of the same message stored first (then
            nothing was written).

        Raises:
            StaleSession: a newer revision of the session is stored.
            SessionError: Redis is unavailable.
        """
        if conversation_of(key) != session.key:  # the three keys would not share a slot
            raise ValueError(f"the message {key!r} is not of the conversation {session.key!r}")
        async with redis_errors("storing the session"):
            result = await self._commit(
                keys=[self._keys.session(session.key), self._keys.dedup(key),
                      self._keys.outbound_of(session.key)],
                args=[session.dumps(), session.revision, self._session_ttl, delivery.dumps(),
                      self._ttl, "1" if queue else "0", key, OUTBOUND_MAXLEN])
        if int(result[0]) == 2:
            return Delivery.loads(result[1])
        if int(result[0]) == 0:
            raise StaleSession(session.key)
        return delivery


@asynccontextmanager
async def redis_errors(doing: str) -> AsyncIterator[None]:
    """Translate Redis' errors (a lost connection, a time-out) to SessionError (503)."""
    from redis.exceptions import RedisError

    try:
        yield
    except RedisError as exc:
        raise SessionError(f"Redis is unavailable ({doing}): {exc}") from exc
