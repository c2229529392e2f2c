"""Fixtures of the bot tests: the real triage model and knowledge base, both session stores
(in-process and the real Redis), an in-memory ticket desk and an output channel that records."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from redis.asyncio import Redis

from bot.dispatcher import Dispatcher
from bot.engine import Engine
from bot.keys import Keys
from bot.session import (
    Deduplicator,
    InMemoryDeduplicator,
    InMemoryLockStore,
    InMemorySessionStore,
    LockStore,
    RedisDeduplicator,
    RedisLockStore,
    RedisSessionStore,
    Session,
    SessionStore,
    State,
)
from channels.base import ChannelError
from channels.messages import (
    Attachment,
    Author,
    ConversationRef,
    IncomingMessage,
    OutgoingMessage,
)
from handoff.intake import EvidenceRef, Receipt, TicketDraft, TranscriptLine
from knowledge_base.retrieval import Searcher
from knowledge_base.service import KnowledgeBase, KnowledgeBaseConfig
from nlp.analyzer import Analyzer
from nlp.labels import Lang

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379")


@dataclass
class RecordingDesk:
    """A TicketDesk (handoff.intake) in memory: one open ticket per conversation."""

    drafts: list[TicketDraft] = field(default_factory=list)
    lines: dict[str, list[TranscriptLine]] = field(default_factory=dict)
    evidence: dict[str, list[EvidenceRef]] = field(default_factory=dict)
    tickets: dict[tuple[str, str], str] = field(default_factory=dict)
    handler: str | None = None
    closed: set[str] = field(default_factory=set)  # ticket ids no longer open
    confirmations: list[tuple[str, bool]] = field(default_factory=list)
    surveys: dict[str, dict[str, object]] = field(default_factory=dict)
    resolved: set[str] = field(default_factory=set)  # tickets awaiting the customer's answer

    async def register(self, draft: TicketDraft) -> Receipt:
        self.drafts.append(draft)
        conversation = (draft.channel, draft.chat_id)
        ticket_id = self.tickets.setdefault(conversation, f"t-{len(self.lines) + 1}")
        self.lines.setdefault(ticket_id, []).extend(draft.transcript)
        self.evidence.setdefault(ticket_id, []).extend(draft.evidence)
        due = datetime.now(UTC) + timedelta(hours=draft.sla_hours)
        return Receipt(ticket_id=ticket_id, number=f"TS{ticket_id[2:]:0>6}",
                       department="after_sales", sla_due=due, handler=self.handler)

    async def append(self, channel: str, chat_id: str, line: TranscriptLine,
                     evidence: tuple[EvidenceRef, ...] = ()) -> None:
        ticket_id = self.tickets.get((channel, chat_id))
        if ticket_id is not None:
            self.lines[ticket_id].append(line)
            self.evidence[ticket_id].extend(evidence)

    async def ticket_open(self, ticket_id: str) -> bool:
        return ticket_id not in self.closed and ticket_id in self.tickets.values()

    async def answer_confirmation(self, ticket_id: str, solved: bool) -> bool:
        if ticket_id not in self.resolved:
            return False
        self.resolved.discard(ticket_id)
        self.confirmations.append((ticket_id, solved))
        if solved:
            self.close(ticket_id)
        return True

    async def answer_survey(self, ticket_id: str, answers: Mapping[str, object]) -> bool:
        survey = self.surveys.setdefault(ticket_id, {})
        first_low = "overall" in answers and "overall" not in survey
        survey.update(answers)
        return first_low and int(str(answers["overall"])) <= 2

    def close(self, ticket_id: str) -> None:
        """Staff closed it: the conversation's open-ticket slot is free again."""
        self.closed.add(ticket_id)
        self.tickets = {k: v for k, v in self.tickets.items() if v != ticket_id}

    def transcript(self, chat_id: str, channel: str = "test") -> list[TranscriptLine]:
        return self.lines[self.tickets[(channel, chat_id)]]


@dataclass
class Flaky:
    """The "telegram" output: fails the first send, then sends; no key, so at most once."""

    name: str = "telegram"
    sent: list[OutgoingMessage] = field(default_factory=list)
    failures: int = 1

    async def send(self, message: OutgoingMessage) -> None:
        if self.failures:
            self.failures -= 1
            raise ChannelError("the Bot API answered 502")
        self.sent.append(message)


@dataclass
class RecordingChannel:
    """An OutputChannel that keeps what it sends; `fail_at` makes that send fail."""

    name: str = "test"
    sent: list[OutgoingMessage] = field(default_factory=list)
    fail_at: set[int] = field(default_factory=set)
    attempts: int = 0

    async def send(self, message: OutgoingMessage) -> None:
        self.attempts += 1
        if self.attempts in self.fail_at:
            raise ChannelError(f"gateway refused the message for {message.text[:40]}")
        self.sent.append(message)


@dataclass
class Stores:
    sessions: SessionStore
    locks: LockStore
    dedup: Deduplicator
    kind: str


@pytest.fixture
async def redis_client() -> AsyncIterator[Redis]:
    client = Redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except OSError as exc:  # redis.ConnectionError is an OSError too
        await client.aclose()
        pytest.fail(f"the redis tests need Redis at {REDIS_URL}: {exc}")
    yield client
    await client.aclose()


@pytest.fixture
async def redis_keys(redis_client: Redis) -> AsyncIterator[Keys]:
    """A prefix of this test's own; what it wrote is deleted afterwards."""
    keys = Keys(prefix=f"intakebot-test:{uuid.uuid4().hex[:12]}:")
    yield keys
    stale = [k async for k in redis_client.scan_iter(match=f"{keys.prefix}*")]
    if stale:
        await redis_client.delete(*stale)


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def stores(request: pytest.FixtureRequest) -> Stores:
    """Session, lock and de-duplication stores: in this process, and on the real Redis."""
    if request.param == "memory":
        return Stores(InMemorySessionStore(), InMemoryLockStore(), InMemoryDeduplicator(),
                      "memory")
    client: Redis = request.getfixturevalue("redis_client")
    keys: Keys = request.getfixturevalue("redis_keys")
    return Stores(RedisSessionStore(client, keys=keys), RedisLockStore(client, keys=keys),
                  RedisDeduplicator(client, keys=keys), "redis")


@pytest.fixture
def desk() -> RecordingDesk:
    return RecordingDesk()


@pytest.fixture
async def kb(tmp_path: Path, e5_searcher: Searcher) -> AsyncIterator[KnowledgeBase]:
    """The real knowledge base on a fresh SQLite file, seeded from data/kb/seed.yaml, ranked as
    shipped (the session's E5 searcher, whose seed vectors are already computed)."""
    opened = await KnowledgeBase.open(KnowledgeBaseConfig(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'kb.db'}"), searcher=e5_searcher)
    await opened.ensure_seed()
    await opened.ready()
    yield opened
    await opened.close()


@pytest.fixture
def engine(analyzer: Analyzer, kb: KnowledgeBase, desk: RecordingDesk) -> Engine:
    return Engine(analyzer, kb, desk)


@pytest.fixture
def channel() -> RecordingChannel:
    return RecordingChannel()


@pytest.fixture
def dispatcher(engine: Engine, stores: Stores, channel: RecordingChannel) -> Dispatcher:
    return Dispatcher(engine, stores.sessions, stores.locks, stores.dedup,
                      {channel.name: channel})


def bot_keys(session: Session, since: int = 0) -> list[str]:
    """The reply templates of the bot's lines after the `since`-th line of the transcript."""
    return [line.key for line in session.transcript[since:] if line.key is not None]


class Chat:
    """One customer talking to the dispatcher, turn by turn, with the session at hand."""

    def __init__(self, dispatcher: Dispatcher, sessions: SessionStore,
                 chat_id: str | None = None) -> None:
        self.dispatcher = dispatcher
        self.sessions = sessions
        self.conversation = ConversationRef("test", chat_id or uuid.uuid4().hex[:10])
        self._count = 0
        self.session: Session | None = None
        self.keys: list[str] = []  # templates the bot used answering the last message

    async def say(self, text: str, *, author: Author = Author.CUSTOMER,
                  attachments: Sequence[Attachment] = (),
                  message_id: str | None = None) -> list[OutgoingMessage]:
        self._count += 1
        before = len(self.session.transcript) if self.session else 0
        replies = await self.dispatcher(IncomingMessage(
            self.conversation, text, message_id=message_id or f"m{self._count}", author=author,
            attachments=tuple(attachments)))
        self.session = await self.sessions.get(self.conversation.key)
        assert self.session is not None
        self.keys = bot_keys(self.session, before)
        return replies

    def state(self) -> State:
        """A method, not a property: mypy would keep an asserted value across turns."""
        assert self.session is not None
        return self.session.state

    def lang(self) -> Lang | None:
        assert self.session is not None
        return self.session.lang


@pytest.fixture
def chat(dispatcher: Dispatcher, stores: Stores) -> Chat:
    return Chat(dispatcher, stores.sessions)


class EngineChat:
    """One customer talking to the engine directly (no stores, no channel)."""

    def __init__(self, engine: Engine, chat_id: str | None = None) -> None:
        self.engine = engine
        self.conversation = ConversationRef("test", chat_id or uuid.uuid4().hex[:10])
        self.session: Session | None = None
        self.keys: list[str] = []
        self._count = 0

    async def say(self, text: str, *, author: Author = Author.CUSTOMER,
                  attachments: Sequence[Attachment] = (),
                  at: datetime | None = None) -> list[OutgoingMessage]:
        self._count += 1
        before = len(self.session.transcript) if self.session else 0
        message = IncomingMessage(self.conversation, text, message_id=f"m{self._count}",
                                  author=author, attachments=tuple(attachments),
                                  received_at=at or datetime.now(UTC))
        self.session, replies = await self.engine.handle(message, self.session)
        self.keys = bot_keys(self.session, before)
        return replies

    def state(self) -> State:
        """A method, not a property: mypy would keep an asserted value across turns."""
        assert self.session is not None
        return self.session.state

    def lang(self) -> Lang | None:
        assert self.session is not None
        return self.session.lang


@pytest.fixture
def talk(engine: Engine) -> EngineChat:
    return EngineChat(engine)
