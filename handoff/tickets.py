"""The complaint registration form (DOMAIN.md template 1) in SQL, and the per-conversation outbox.

One implementation serves SQLite (aiosqlite, the default file under the data directory) and
PostgreSQL (asyncpg); the few statements that differ (upserts) are chosen by dialect. Opening a
store brings its schema to the newest Alembic revision of the handoff package, recorded in its own
version table (``alembic_version_handoff``), so handoff and the knowledge base migrate one
database independently.

Concurrency, without a lock server:

- Complaint numbers (``TS20261123-0007``) come from a counter row per day, bumped by an
  ``INSERT … ON CONFLICT DO UPDATE … RETURNING`` in the same transaction as the ticket insert: the
  row lock (PostgreSQL) or the write lock (SQLite) makes two registrations wait for each other,
  and a rolled-back registration gives its number back.
- One open ticket per conversation: ``open_key`` holds ``channel:chat_id`` while the ticket is
  open and NULL once closed, under a unique constraint (NULLs never collide). Two registrations
  racing for the same conversation: one inserts, the other hits the constraint and updates it.
- The outbox's per-conversation ``seq`` comes from the same counter table.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from decimal import Decimal, InvalidOperation
from enum import Enum
from functools import partial
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    Update,
    and_,
    bindparam,
    create_engine,
    event,
    func,
    literal,
    or_,
    select,
    text,
    update,
)
from sqlalchemy import (
    insert as sql_insert,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from handoff.errors import InvalidTicket, TicketNotFound, TicketStoreUnavailable
from handoff.intake import EvidenceRef, HandoffReason, TicketDraft, TranscriptLine

MIGRATIONS = Path(__file__).with_name("migrations")
VERSION_TABLE = "alembic_version_handoff"
_MIGRATION_LOCK = 0x686F_0001  # PostgreSQL advisory lock id: one migrating process at a time

# China has no daylight saving time: a fixed offset needs no time-zone database.
CHINA_TZ = timezone(timedelta(hours=8), "CST")
DEFAULT_NUMBER_PREFIX = "TS"
MAX_CHANNEL = 32
MAX_CHAT_ID = 128
_REGISTER_ATTEMPTS = 5

_PRIORITY_RANK = {"low": 0, "medium": 1, "high": 2}


class TicketStatus(str, Enum):
    """Where a ticket is in its life cycle (the transitions live in `handoff.workflow`).

    Only statuses in CLOSED_STATUSES release the conversation's open-ticket slot.
    """

    NEW = "new"
    ASSIGNED = "assigned"
    INVESTIGATING = "investigating"
    AWAITING_APPROVAL = "awaiting_approval"
    RESOLVED = "resolved"
    CLOSED = "closed"
    REOPENED = "reopened"


CLOSED_STATUSES: frozenset[str] = frozenset({TicketStatus.CLOSED.value})


def utcnow() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything we store is UTC.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _utc(value: datetime) -> datetime:
    return _aware(value).astimezone(UTC)


def conversation_key(channel: str, chat_id: str) -> str:
    return f"{channel}:{chat_id}"


# A start and a number of hours -> the due time (`handoff.sla.SlaPolicy.due` counts business
# hours when configured; this module cannot import handoff.sla, which imports it).
DueTime = Callable[[datetime, int], datetime]


def _calendar_due(start: datetime, hours: int) -> datetime:
    return start + timedelta(hours=hours)


# ---- tables ---------------------------------------------------------------------------------

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: DateTime(timezone=True)}


REPORT_SUMS_INDEX = (
    "ix_tickets_report_sums", "registered_at", "status", "reopen_count", "breaches",
    "complained_at", "first_responded_at", "resolved_at", "previous_customer_ticket_at",
    "previous_order_ticket_at", "next_customer_ticket_at")
# (name, column, "registered_at") for each dimension the report counts tickets by.
REPORT_DIMENSION_INDEXES = tuple(
    (f"ix_tickets_report_{name}", name, "registered_at")
    for name in ("category", "department", "priority", "channel", "product", "merchant"))
# The survey figures join a period's tickets to their surveys by id.
REPORT_ID_INDEX = ("ix_tickets_report_id", "registered_at", "id")
SQLITE_REPORT_INDEXES = (REPORT_SUMS_INDEX, *REPORT_DIMENSION_INDEXES, REPORT_ID_INDEX)
# PostgreSQL: one index on registered_at carrying the columns the sums and the survey join read
# (INCLUDE: the JSON breaches have no b-tree order), so a period is an index-only scan.
POSTGRES_REPORT_INDEX = "ix_tickets_report_pg"
POSTGRES_REPORT_INCLUDE = (*REPORT_SUMS_INDEX[2:], "id")


class TicketRow(Base):
    """One complaint registration form."""

    __tablename__ = "tickets"
    __table_args__ = (
        Index("ix_tickets_customer_key_registered_at", "customer_key", "registered_at"),
        # Indexes the report reads instead of each ticket's row (ho0005; docs/reports.md).
        *(Index(*columns).ddl_if(dialect="sqlite") for columns in SQLITE_REPORT_INDEXES),
        Index(POSTGRES_REPORT_INDEX, "registered_at",
              postgresql_include=list(POSTGRES_REPORT_INCLUDE)).ddl_if(dialect="postgresql"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    number: Mapped[str] = mapped_column(String(32), unique=True)
    status: Mapped[str] = mapped_column(String(32), index=True)
    open_key: Mapped[str | None] = mapped_column(String(MAX_CHANNEL + MAX_CHAT_ID + 1),
                                                 unique=True)
    # Indexed (ho0004) so that a report lists the channels from the index, without a scan.
    channel: Mapped[str] = mapped_column(String(MAX_CHANNEL), index=True)
    chat_id: Mapped[str] = mapped_column(String(MAX_CHAT_ID))
    lang: Mapped[str] = mapped_column(String(16))
    customer_name: Mapped[str | None] = mapped_column(Text)
    phone: Mapped[str | None] = mapped_column(Text)
    email: Mapped[str | None] = mapped_column(Text)
    customer_id: Mapped[str | None] = mapped_column(Text)
    member_level: Mapped[str | None] = mapped_column(Text)
    complained_at: Mapped[datetime]
    category: Mapped[str | None] = mapped_column(String(32), index=True)
    subcategory: Mapped[str | None] = mapped_column(String(64))
    priority: Mapped[str] = mapped_column(String(16), index=True)
    priority_reasons: Mapped[list[str]] = mapped_column(JSON)
    emotion: Mapped[str] = mapped_column(String(32))
    description: Mapped[str] = mapped_column(Text)
    order_id: Mapped[str | None] = mapped_column(String(128), index=True)
    product: Mapped[str | None] = mapped_column(Text)
    purchase_time: Mapped[str | None] = mapped_column(String(64))
    incident_time: Mapped[str | None] = mapped_column(String(64))
    demand: Mapped[str | None] = mapped_column(String(32))
    demand_note: Mapped[str | None] = mapped_column(Text)
    amount: Mapped[Decimal | None] = mapped_column(Numeric(14, 2))
    currency: Mapped[str | None] = mapped_column(String(8))
    department: Mapped[str] = mapped_column(String(64), index=True)
    receiver: Mapped[str] = mapped_column(String(128))
    handler: Mapped[str | None] = mapped_column(String(128))
    handoff_reason: Mapped[str] = mapped_column(String(32))
    sla_hours: Mapped[int] = mapped_column(Integer)
    sla_due: Mapped[datetime] = mapped_column(index=True)
    registered_at: Mapped[datetime] = mapped_column(index=True)
    updated_at: Mapped[datetime]
    # Casework (revision ho0002): who owns it, how it was solved, what is overdue.
    assignee: Mapped[str | None] = mapped_column(String(64), index=True)
    first_responded_at: Mapped[datetime | None]
    resolved_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    solution: Mapped[str | None] = mapped_column(String(32))
    solution_amount: Mapped[Decimal | None] = mapped_column(Numeric(14, 2))
    solution_note: Mapped[str | None] = mapped_column(Text)
    approval: Mapped[str | None] = mapped_column(String(16))
    approver: Mapped[str | None] = mapped_column(String(64))
    malicious: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    malicious_reason: Mapped[str | None] = mapped_column(Text)
    merchant: Mapped[str | None] = mapped_column(String(128))
    merchant_due: Mapped[datetime | None]
    merchant_answered_at: Mapped[datetime | None]
    breaches: Mapped[list[str] | None] = mapped_column(JSON)
    # After-care and retention (revision ho0003).
    customer_updated_at: Mapped[datetime | None]  # the last progress update the customer got
    confirmation: Mapped[str | None] = mapped_column(String(16))  # asked | confirmed | denied
    reopen_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    second_handling: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    legal_hold: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    erased_at: Mapped[datetime | None]
    # Report neighbours (revision ho0004), kept by `relink`: who complained (`customer_key`) and
    # when that customer, or the same order, complained just before or after this ticket, so a
    # report counts repeats and returns in one scan, without a window pass.
    customer_key: Mapped[str | None] = mapped_column(Text)
    previous_customer_ticket_at: Mapped[datetime | None]
    next_customer_ticket_at: Mapped[datetime | None]
    previous_order_ticket_at: Mapped[datetime | None]


class TranscriptRow(Base):
    """One line of a ticket's conversation transcript."""

    __tablename__ = "ticket_transcript"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ticket_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("tickets.id", ondelete="CASCADE"), index=True)
    author: Mapped[str] = mapped_column(String(16))
    text: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime]


class EvidenceRow(Base):
    """A stored evidence file attached to a ticket (the bytes live in the evidence store)."""

    __tablename__ = "ticket_evidence"
    __table_args__ = (UniqueConstraint("ticket_id", "sha256", name="uq_ticket_evidence_sha256"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ticket_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("tickets.id", ondelete="CASCADE"), index=True)
    sha256: Mapped[str] = mapped_column(String(64))
    filename: Mapped[str] = mapped_column(Text)
    content_type: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)
    added_at: Mapped[datetime]


class CounterRow(Base):
    """Named counters: complaint numbers per day, outbox sequence per conversation."""

    __tablename__ = "handoff_counters"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)


class OutboxRow(Base):
    """A message sent to a customer, numbered per conversation."""

    __tablename__ = "handoff_outbox"
    __table_args__ = (
        UniqueConstraint("channel", "chat_id", "seq", name="uq_handoff_outbox_seq"),
        UniqueConstraint("channel", "chat_id", "dedup_key", name="uq_handoff_outbox_dedup_key"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    channel: Mapped[str] = mapped_column(String(MAX_CHANNEL))
    chat_id: Mapped[str] = mapped_column(String(MAX_CHAT_ID))
    seq: Mapped[int] = mapped_column(BigInteger)
    author: Mapped[str] = mapped_column(String(16))
    text: Mapped[str] = mapped_column(Text)
    buttons: Mapped[list[str]] = mapped_column(JSON)
    sent_at: Mapped[datetime]
    dedup_key: Mapped[str | None] = mapped_column(String(128))


# ---- values ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ticket:
    """A registered complaint as stored (DOMAIN.md template 1); transcript and evidence apart."""

    id: str
    number: str
    status: str
    channel: str
    chat_id: str
    lang: str
    customer_name: str | None
    phone: str | None
    email: str | None
    customer_id: str | None
    member_level: str | None
    complained_at: datetime
    category: str | None
    subcategory: str | None
    priority: str
    priority_reasons: tuple[str, ...]
    emotion: str
    description: str
    order_id: str | None
    product: str | None
    purchase_time: str | None
    incident_time: str | None
    demand: str | None
    demand_note: str | None
    amount: Decimal | None
    currency: str | None
    department: str
    receiver: str
    handler: str | None
    handoff_reason: str
    sla_hours: int
    sla_due: datetime
    registered_at: datetime
    updated_at: datetime
    assignee: str | None = None
    first_responded_at: datetime | None = None
    resolved_at: datetime | None = None
    closed_at: datetime | None = None
    solution: str | None = None
    solution_amount: Decimal | None = None
    solution_note: str | None = None
    approval: str | None = None  # pending | approved | rejected
    approver: str | None = None
    malicious: bool = False
    malicious_reason: str | None = None
    merchant: str | None = None
    merchant_due: datetime | None = None
    merchant_answered_at: datetime | None = None
    breaches: tuple[str, ...] = ()
    customer_updated_at: datetime | None = None
    confirmation: str | None = None  # asked | confirmed | denied
    reopen_count: int = 0
    second_handling: bool = False
    legal_hold: bool = False
    erased_at: datetime | None = None

    @property
    def is_open(self) -> bool:
        return self.status not in CLOSED_STATUSES

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (datetimes as ISO 8601, the amount as a string)."""
        data = asdict(self)
        for key, value in data.items():
            if isinstance(value, datetime):
                data[key] = value.isoformat()
            elif isinstance(value, Decimal):
                data[key] = str(value)
            elif isinstance(value, tuple):
                data[key] = list(value)
        return data


@dataclass(frozen=True, slots=True)
class Registration:
    """What `TicketStore.register` did: the ticket, and whether it is new."""

    ticket: Ticket
    created: bool


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """A message sent to a customer, with its place in the conversation's outbox."""

    seq: int
    channel: str
    chat_id: str
    author: str
    text: str
    buttons: tuple[str, ...]
    sent_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "author": self.author, "text": self.text,
                "buttons": list(self.buttons), "sent_at": self.sent_at.isoformat()}


def _ticket(row: TicketRow) -> Ticket:
    return Ticket(
        id=row.id, number=row.number, status=row.status, channel=row.channel,
        chat_id=row.chat_id, lang=row.lang, customer_name=row.customer_name, phone=row.phone,
        email=row.email, customer_id=row.customer_id, member_level=row.member_level,
        complained_at=_aware(row.complained_at), category=row.category,
        subcategory=row.subcategory, priority=row.priority,
        priority_reasons=tuple(row.priority_reasons or ()), emotion=row.emotion,
        description=row.description, order_id=row.order_id, product=row.product,
        purchase_time=row.purchase_time, incident_time=row.incident_time, demand=row.demand,
        demand_note=row.demand_note,
        amount=None if row.amount is None else Decimal(row.amount).quantize(Decimal("0.01")),
        currency=row.currency, department=row.department, receiver=row.receiver,
        handler=row.handler, handoff_reason=row.handoff_reason, sla_hours=row.sla_hours,
        sla_due=_aware(row.sla_due), registered_at=_aware(row.registered_at),
        updated_at=_aware(row.updated_at),
        assignee=row.assignee, first_responded_at=_maybe(row.first_responded_at),
        resolved_at=_maybe(row.resolved_at), closed_at=_maybe(row.closed_at),
        solution=row.solution,
        solution_amount=(None if row.solution_amount is None
                         else Decimal(row.solution_amount).quantize(Decimal("0.01"))),
        solution_note=row.solution_note, approval=row.approval, approver=row.approver,
        malicious=bool(row.malicious), malicious_reason=row.malicious_reason,
        merchant=row.merchant, merchant_due=_maybe(row.merchant_due),
        merchant_answered_at=_maybe(row.merchant_answered_at),
        breaches=tuple(row.breaches or ()),
        customer_updated_at=_maybe(row.customer_updated_at), confirmation=row.confirmation,
        reopen_count=row.reopen_count or 0, second_handling=bool(row.second_handling),
        legal_hold=bool(row.legal_hold), erased_at=_maybe(row.erased_at),
    )


def _maybe(value: datetime | None) -> datetime | None:
    return None if value is None else _aware(value)


def _outbox(row: Any) -> OutboxMessage:
    return OutboxMessage(seq=row.seq, channel=row.channel, chat_id=row.chat_id,
                         author=row.author, text=row.text, buttons=tuple(row.buttons or ()),
                         sent_at=_aware(row.sent_at))


def _amount(value: float | None) -> Decimal | None:
    if value is None:
        return None
    try:
        amount = Decimal(str(value)).quantize(Decimal("0.01"))
    except InvalidOperation as exc:
        raise InvalidTicket(f"bad amount {value!r}") from exc
    if not amount.is_finite() or abs(amount) >= Decimal("1e12"):
        raise InvalidTicket(f"amount out of range: {value!r}")
    return amount


def _check_conversation(channel: str, chat_id: str) -> None:
    if not channel or len(channel) > MAX_CHANNEL:
        raise InvalidTicket(f"channel must be 1-{MAX_CHANNEL} characters")
    if not chat_id or len(chat_id) > MAX_CHAT_ID:
        raise InvalidTicket(f"chat id must be 1-{MAX_CHAT_ID} characters")


def _check_draft(draft: TicketDraft) -> None:
    _check_conversation(draft.channel, draft.chat_id)
    if draft.priority not in _PRIORITY_RANK:
        raise InvalidTicket(f"unknown priority {draft.priority!r}")
    if draft.sla_hours <= 0:
        raise InvalidTicket("sla_hours must be positive")
    for name, limit in (("order_id", 128), ("purchase_time", 64), ("incident_time", 64),
                        ("demand", 32), ("currency", 8), ("category", 32),
                        ("subcategory", 64), ("emotion", 32), ("lang", 16)):
        value = getattr(draft, name)
        if value is not None and len(value) > limit:
            raise InvalidTicket(f"{name} is longer than {limit} characters")


# Fields an update of the open ticket fills when they are still empty.
_FILLABLE = ("customer_name", "phone", "email", "customer_id", "category", "subcategory",
             "order_id", "product", "purchase_time", "incident_time", "demand", "demand_note",
             "currency")


class TicketStore:
    """Tickets, their transcripts and evidence, and the customer outbox (async SQLAlchemy)."""

    def __init__(self, engine: AsyncEngine, *, number_prefix: str = DEFAULT_NUMBER_PREFIX,
                 number_tz: tzinfo = CHINA_TZ, sync_engine: Engine | None = None) -> None:
        self._engine = engine
        # SQLite file: the same database through the synchronous driver, for the hot
        # transactions that run whole in a worker thread (`_transact`).
        self.sync_engine = sync_engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._sync_sessions = (None if sync_engine is None
                               else sessionmaker(sync_engine, expire_on_commit=False))
        self.number_prefix = number_prefix
        self.number_tz = number_tz
        self.outbox = Outbox(self)

    @classmethod
    def connect(
        cls,
        url: str,
        *,
        connect_args: Mapping[str, Any] | None = None,
        number_prefix: str = DEFAULT_NUMBER_PREFIX,
        number_tz: tzinfo = CHINA_TZ,
    ) -> TicketStore:
        """A store on `url` (an async driver URL) without touching the database yet.

        Call `migrate` (or use `open`) before the first use.
        """
        parsed = make_url(url)
        args = dict(connect_args or {})
        sqlite = parsed.get_backend_name() == "sqlite"
        if sqlite:
            args.setdefault("timeout", 30)
        engine = create_async_engine(url, connect_args=args, pool_pre_ping=True)
        sync_engine = None
        if sqlite:
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
            if parsed.database not in (None, "", ":memory:"):  # a second engine, same file
                sync_engine = create_engine(parsed.set(drivername="sqlite"), connect_args=args)
                event.listen(sync_engine, "connect", _sqlite_pragmas)
        return cls(engine, number_prefix=number_prefix, number_tz=number_tz,
                   sync_engine=sync_engine)

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        migrate: bool = True,
        connect_args: Mapping[str, Any] | None = None,
        number_prefix: str = DEFAULT_NUMBER_PREFIX,
        number_tz: tzinfo = CHINA_TZ,
    ) -> TicketStore:
        """Connect to `url` (an async driver URL) and bring the schema to the newest revision.

        Raises:
            TicketStoreUnavailable: the database cannot be reached or migrated.
        """
        store = cls.connect(url, connect_args=connect_args, number_prefix=number_prefix,
                            number_tz=number_tz)
        if migrate:
            try:
                await store.migrate()
            except BaseException:
                await store.close()
                raise
        return store

    async def migrate(self, revision: str = "head") -> None:
        """Run the handoff Alembic migrations up to `revision` on this store's database.

        Raises:
            TicketStoreUnavailable: the database cannot be reached or migrated.
        """
        url = self._engine.url
        try:
            if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
                Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            async with self._engine.begin() as conn:
                if conn.dialect.name == "postgresql":
                    await conn.execute(
                        text(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})"))
                await conn.run_sync(_upgrade, revision)
        except (OSError, SQLAlchemyError) as exc:
            raise TicketStoreUnavailable(
                f"cannot open the ticket store at {url!r}: {exc}") from exc

    async def close(self) -> None:
        await self._engine.dispose()
        if self.sync_engine is not None:
            self.sync_engine.dispose()

    async def ping(self) -> None:
        """Check the database answers.

        Raises:
            TicketStoreUnavailable: it does not.
        """
        try:
            async with self._engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except (OSError, SQLAlchemyError) as exc:
            raise TicketStoreUnavailable(f"the ticket database does not answer: {exc}") from exc

    @property
    def dialect(self) -> str:
        return self._engine.dialect.name

    @property
    def engine(self) -> AsyncEngine:
        """The database engine, shared with the casework and user stores of the same schema."""
        return self._engine

    async def relink(self, ticket_ids: Iterable[str], *,
                     orders: Iterable[str | None] = ()) -> None:
        """`relink` in a transaction of its own, after a change committed elsewhere (a staff
        edit of the customer fields or the order; `orders` are the order ids before it).

        Raises:
            TicketStoreUnavailable: the database failed.
        """
        try:
            async with self._sessions() as session, session.begin():
                await session.run_sync(relink, ticket_ids, orders=orders)
        except SQLAlchemyError as exc:
            raise TicketStoreUnavailable(f"the ticket database failed: {exc}") from exc

    async def _transact(self, work: Callable[[Session], _T]) -> _T:
        """`work` in one transaction of an ORM session of its own.

        The web chat's hot transactions pass here. On an SQLite file `work` runs whole in a
        worker thread on the synchronous engine: through aiosqlite every statement is four trips
        to the event loop, and under load SQLite's single write lock was held for them all
        (docs/performance.md). Elsewhere it runs through `AsyncSession.run_sync`.
        """
        if self._sync_sessions is not None:
            return await asyncio.to_thread(_in_session, self._sync_sessions, work)
        async with self._sessions() as session, session.begin():
            return await session.run_sync(work)

    # ---- registering ----------------------------------------------------------------------

    async def register(self, draft: TicketDraft, *, department: str, receiver: str,
                       now: datetime, due: DueTime | None = None) -> Registration:
        """Create a ticket from the form, or update the conversation's open ticket.

        An open ticket gets its empty fields filled, its priority raised (never lowered, the
        SLA due time moving earlier with it), the new transcript lines and evidence appended.
        `due` turns a start and a number of hours into the first-response due time (business
        hours, `handoff.sla.SlaPolicy.due`); calendar hours when not given.

        Raises:
            InvalidTicket: the form is malformed.
            TicketStoreUnavailable: the database failed.
        """
        _check_draft(draft)
        now = _utc(now)
        due = due or _calendar_due
        work = partial(self._register_rows, draft=draft, department=department,
                       receiver=receiver, now=now, due=due)
        for attempt in range(_REGISTER_ATTEMPTS):
            try:
                return await self._transact(work)
            except IntegrityError as exc:
                # Another registration of this conversation won the race: update its ticket.
                if attempt == _REGISTER_ATTEMPTS - 1:
                    raise TicketStoreUnavailable(
                        f"could not register the ticket of {draft.channel}:{draft.chat_id}"
                    ) from exc
            except SQLAlchemyError as exc:
                raise TicketStoreUnavailable(f"the ticket database failed: {exc}") from exc
        raise AssertionError("unreachable")

    def _register_rows(self, session: Session, *, draft: TicketDraft, department: str,
                       receiver: str, now: datetime, due: DueTime) -> Registration:
        row = self._open_row(session, draft.channel, draft.chat_id)
        if row is not None:
            self._update(session, row, draft, department, now, due)
            return Registration(_ticket(row), False)
        row = self._insert(session, draft, department, receiver, now, due)
        return Registration(_ticket(row), True)

    def _insert(self, session: Session, draft: TicketDraft, department: str,
                receiver: str, now: datetime, due: DueTime) -> TicketRow:
        import uuid

        day = now.astimezone(self.number_tz).strftime("%Y%m%d")
        prefix = f"{self.number_prefix}{day}"
        seq = _next_value(session, self.dialect, f"ticket_number:{prefix}")
        customer_lines = [line.at for line in draft.transcript if line.author == "customer"]
        complained_at = _utc(min(customer_lines)) if customer_lines else now
        row = TicketRow(
            id=str(uuid.uuid4()), number=f"{prefix}-{seq:04d}", status=TicketStatus.NEW.value,
            open_key=conversation_key(draft.channel, draft.chat_id), channel=draft.channel,
            chat_id=draft.chat_id, lang=draft.lang, customer_name=draft.customer_name,
            phone=draft.phone, email=draft.email, customer_id=draft.customer_id,
            member_level=None, complained_at=complained_at, category=draft.category,
            subcategory=draft.subcategory, priority=draft.priority,
            priority_reasons=list(draft.priority_reasons), emotion=draft.emotion,
            description=draft.description, order_id=draft.order_id, product=draft.product,
            purchase_time=draft.purchase_time, incident_time=draft.incident_time,
            demand=draft.demand, demand_note=draft.demand_note, amount=_amount(draft.amount),
            currency=draft.currency or ("CNY" if draft.amount is not None else None),
            department=department, receiver=receiver, handler=None, malicious=False,
            handoff_reason=HandoffReason(draft.reason).value, sla_hours=draft.sla_hours,
            sla_due=due(now, draft.sla_hours), registered_at=now, updated_at=now,
            customer_key=customer_key(draft.customer_id, draft.phone, draft.email,
                                      draft.channel, draft.chat_id),
        )
        session.add(row)
        session.flush()
        relink(session, [row.id])
        self._add_lines(session, row.id, draft.transcript, set())
        self._add_evidence(session, row.id, draft.evidence, now)
        session.flush()
        return row

    def _update(self, session: Session, row: TicketRow, draft: TicketDraft,
                department: str, now: datetime, due: DueTime) -> None:
        if row.category is None and draft.category is not None:
            row.department = department  # it was routed as unclassified
        chained = (row.customer_id, row.phone, row.email, row.order_id)
        for name in _FILLABLE:
            value = getattr(draft, name)
            if getattr(row, name) is None and value is not None:
                setattr(row, name, value)
        if row.amount is None and draft.amount is not None:
            row.amount = _amount(draft.amount)
            row.currency = row.currency or draft.currency or "CNY"
        if not row.description.strip() and draft.description.strip():
            row.description = draft.description
        if _PRIORITY_RANK[draft.priority] > _PRIORITY_RANK.get(row.priority, 0):
            row.priority = draft.priority
            row.sla_hours = min(row.sla_hours, draft.sla_hours)
            row.sla_due = min(_aware(row.sla_due),
                              due(_aware(row.registered_at), draft.sla_hours))
        reasons = list(row.priority_reasons or [])
        reasons += [r for r in draft.priority_reasons if r not in reasons]
        row.priority_reasons = reasons
        if row.emotion == "neutral" and draft.emotion != "neutral":
            row.emotion = draft.emotion
        row.updated_at = now
        known = {
            (line.author, line.text, _utc(line.at))
            for line in session.execute(
                select(TranscriptRow).where(TranscriptRow.ticket_id == row.id)).scalars()
        }
        self._add_lines(session, row.id, draft.transcript, known)
        self._add_evidence(session, row.id, draft.evidence, now)
        session.flush()
        if (row.customer_id, row.phone, row.email, row.order_id) != chained:
            relink(session, [row.id])  # the customer or the order became known

    @staticmethod
    def _add_lines(session: Session, ticket_id: str, lines: Sequence[TranscriptLine],
                   known: set[tuple[str, str, datetime]]) -> None:
        for line in lines:
            key = (line.author, line.text, _utc(line.at))
            if key in known:
                continue
            known.add(key)
            session.add(TranscriptRow(ticket_id=ticket_id, author=line.author, text=line.text,
                                      at=_utc(line.at)))

    @staticmethod
    def _add_evidence(session: Session, ticket_id: str, refs: Sequence[EvidenceRef],
                      now: datetime) -> None:
        if not refs:
            return
        have = set(session.execute(
            select(EvidenceRow.sha256).where(EvidenceRow.ticket_id == ticket_id)).scalars())
        for ref in refs:
            if ref.sha256 in have:
                continue
            have.add(ref.sha256)
            session.add(EvidenceRow(ticket_id=ticket_id, sha256=ref.sha256,
                                    filename=ref.filename, content_type=ref.content_type,
                                    size=ref.size, added_at=now))

    async def append(self, channel: str, chat_id: str, line: TranscriptLine,
                     evidence: Sequence[EvidenceRef] = (), *, once: bool = False) -> str | None:
        """Add a transcript line, and the files sent with it, to the conversation's open ticket.

        Returns the ticket's id; None when the conversation has no open ticket, or when `once`
        is set and the ticket has this line already (same author, text and time: a message
        handled again after a crash), whose files are then attached (each file once) and
        nothing else is changed. One transaction either way.
        """
        def work(session: Session) -> str | None:
            row = self._open_row(session, channel, chat_id)
            if row is None:
                return None
            at, now = _utc(line.at), utcnow()
            if once and session.scalar(select(TranscriptRow.id).where(
                    TranscriptRow.ticket_id == row.id, TranscriptRow.author == line.author,
                    TranscriptRow.text == line.text, TranscriptRow.at == at).limit(1)):
                self._add_evidence(session, row.id, evidence, now)
                return None
            session.add(TranscriptRow(ticket_id=row.id, author=line.author, text=line.text,
                                      at=at))
            self._add_evidence(session, row.id, evidence, now)
            row.updated_at = now
            return row.id

        try:
            return await self._transact(work)
        except SQLAlchemyError as exc:
            raise TicketStoreUnavailable(f"the ticket database failed: {exc}") from exc

    async def add_evidence(self, ticket_id: str, refs: Sequence[EvidenceRef]) -> None:
        """Attach stored evidence files to a ticket (each file once).

        Raises:
            TicketNotFound: no ticket has this id.
        """
        def work(session: Session) -> None:
            if session.get(TicketRow, ticket_id) is None:
                raise TicketNotFound(f"no ticket {ticket_id!r}")
            self._add_evidence(session, ticket_id, refs, utcnow())

        await self._transact(work)

    # ---- reading --------------------------------------------------------------------------

    @staticmethod
    def _open_row(session: Session, channel: str, chat_id: str) -> TicketRow | None:
        query = select(TicketRow).where(TicketRow.open_key == conversation_key(channel, chat_id))
        return session.execute(query).scalar_one_or_none()

    async def open_ticket(self, channel: str, chat_id: str) -> Ticket | None:
        """The conversation's open ticket, if it has one."""
        async with self._sessions() as session:
            row = await session.run_sync(self._open_row, channel, chat_id)
            return None if row is None else _ticket(row)

    async def open_ticket_id(self, channel: str, chat_id: str) -> str | None:
        """The id of the conversation's open ticket, if it has one."""
        query = select(TicketRow.id).where(
            TicketRow.open_key == conversation_key(channel, chat_id))
        try:
            return await self._transact(lambda session: session.scalar(query))
        except SQLAlchemyError as exc:
            raise TicketStoreUnavailable(f"the ticket database failed: {exc}") from exc

    async def get(self, ticket_id: str) -> Ticket:
        """One ticket by id.

        Raises:
            TicketNotFound: no ticket has this id.
        """
        async with self._sessions() as session:
            row = await session.get(TicketRow, ticket_id)
        if row is None:
            raise TicketNotFound(f"no ticket {ticket_id!r}")
        return _ticket(row)

    async def by_number(self, number: str) -> Ticket:
        """One ticket by complaint number.

        Raises:
            TicketNotFound: no ticket has this number.
        """
        async with self._sessions() as session:
            row = (await session.execute(
                select(TicketRow).where(TicketRow.number == number))).scalar_one_or_none()
        if row is None:
            raise TicketNotFound(f"no ticket numbered {number!r}")
        return _ticket(row)

    async def recent(self, *, limit: int = 100, offset: int = 0) -> list[Ticket]:
        """Tickets, newest registration first."""
        query = (select(TicketRow).order_by(TicketRow.registered_at.desc(), TicketRow.number.desc())
                 .limit(limit).offset(offset))
        async with self._sessions() as session:
            return [_ticket(r) for r in (await session.execute(query)).scalars()]

    async def transcript(self, ticket_id: str) -> list[TranscriptLine]:
        """The ticket's transcript, oldest line first."""
        query = (select(TranscriptRow).where(TranscriptRow.ticket_id == ticket_id)
                 .order_by(TranscriptRow.id))
        async with self._sessions() as session:
            return [TranscriptLine(author=r.author, text=r.text, at=_aware(r.at))
                    for r in (await session.execute(query)).scalars()]

    async def evidence(self, ticket_id: str) -> list[EvidenceRef]:
        """The evidence files attached to the ticket, in the order they came."""
        query = (select(EvidenceRow).where(EvidenceRow.ticket_id == ticket_id)
                 .order_by(EvidenceRow.id))
        async with self._sessions() as session:
            return [EvidenceRef(filename=r.filename, content_type=r.content_type,
                                sha256=r.sha256, size=r.size)
                    for r in (await session.execute(query)).scalars()]


class Outbox:
    """Everything sent to customers, per conversation, numbered 1, 2, 3, … (``seq``).

    Channels that answer out of band (web chat's polling and WebSocket) read it; it is also the
    durable record of what the customer was told. A bot turn's replies are written together
    (`append_many`: one transaction, one counter bump, one insert); the statements are built
    once, as this is the web chat's hottest path.
    """

    def __init__(self, store: TicketStore) -> None:
        self._store = store
        self._bump = _counter_bump(store.dialect)
        self._insert = sql_insert(OutboxRow)
        self._by_keys = select(OutboxRow.__table__).where(
            OutboxRow.channel == bindparam("channel"), OutboxRow.chat_id == bindparam("chat_id"),
            OutboxRow.dedup_key.in_(bindparam("keys", expanding=True)))

    async def append(self, channel: str, chat_id: str, *, author: str, text: str,
                     buttons: Sequence[str] = (), dedup_key: str | None = None,
                     now: datetime | None = None) -> OutboxMessage:
        """Store one message and return it with its seq.

        With a `dedup_key`, a second append with the same key returns the first message and
        stores nothing.

        Raises:
            InvalidTicket: the conversation id or dedup key is malformed.
            TicketStoreUnavailable: the database failed.
        """
        return (await self._write(channel, chat_id, author, [text], [buttons], [dedup_key],
                                  now))[0]

    async def append_many(self, channel: str, chat_id: str, *, author: str,
                          texts: Sequence[str], buttons: Sequence[Sequence[str]],
                          dedup_keys: Sequence[str], now: datetime | None = None
                          ) -> list[OutboxMessage]:
        """Store the messages in order, all or none, in one transaction; a message whose
        dedup key is stored already is returned as stored and not stored again.

        Raises:
            InvalidTicket: the conversation id or a dedup key is malformed, or the lists differ
                in length.
            TicketStoreUnavailable: the database failed.
        """
        if not len(texts) == len(buttons) == len(dedup_keys):
            raise InvalidTicket("texts, buttons and dedup keys must be as many")
        return await self._write(channel, chat_id, author, texts, buttons, dedup_keys, now)

    def _write_rows(self, connection: Connection, *, channel: str, chat_id: str, author: str,
                    texts: Sequence[str], buttons: Sequence[Sequence[str]],
                    keys: Sequence[str | None], at: datetime,
                    wanted: list[str]) -> list[OutboxMessage]:
        """The append's transaction, as plain synchronous SQLAlchemy (see `_write`)."""
        counter = f"outbox:{conversation_key(channel, chat_id)}"
        stored: dict[str, OutboxMessage] = {}
        if wanted:
            result = connection.execute(
                self._by_keys, {"channel": channel, "chat_id": chat_id, "keys": wanted})
            stored = {row.dedup_key: _outbox(row) for row in result}
        new = [n for n, key in enumerate(keys) if key is None or key not in stored]
        messages: dict[int, OutboxMessage] = {}
        if new:
            last = connection.execute(
                self._bump, {"name": counter, "step": len(new)}).scalar_one()
            rows = [{"channel": channel, "chat_id": chat_id,
                     "seq": last - len(new) + 1 + place, "author": author,
                     "text": texts[n], "buttons": list(buttons[n]), "sent_at": at,
                     "dedup_key": keys[n]} for place, n in enumerate(new)]
            connection.execute(self._insert, rows)
            messages = {n: OutboxMessage(
                seq=row["seq"], channel=channel, chat_id=chat_id, author=author,
                text=texts[n], buttons=tuple(buttons[n]), sent_at=at)
                for n, row in zip(new, rows, strict=True)}
        return [messages[n] if n in messages else stored[key]  # type: ignore[index]
                for n, key in enumerate(keys)]

    async def _write(self, channel: str, chat_id: str, author: str, texts: Sequence[str],
                     buttons: Sequence[Sequence[str]], keys: Sequence[str | None],
                     now: datetime | None) -> list[OutboxMessage]:
        _check_conversation(channel, chat_id)
        if any(key is not None and not 0 < len(key) <= 128 for key in keys):
            raise InvalidTicket("dedup key must be 1-128 characters")
        wanted = [key for key in keys if key is not None]
        write = partial(self._write_rows, channel=channel, chat_id=chat_id, author=author,
                        texts=texts, buttons=buttons, keys=keys, at=_utc(now or utcnow()),
                        wanted=wanted)
        for _attempt in range(_REGISTER_ATTEMPTS):
            try:
                # Every reply passes here: one worker-thread call on SQLite (`_transact`).
                return await self._store._transact(
                    lambda session: write(session.connection()))
            except IntegrityError as exc:
                # Another writer stored one of the keys meanwhile: read it on the next attempt.
                if not wanted:
                    raise TicketStoreUnavailable(f"outbox append failed: {exc}") from exc
            except SQLAlchemyError as exc:
                raise TicketStoreUnavailable(f"the outbox database failed: {exc}") from exc
        raise TicketStoreUnavailable("outbox append kept conflicting")

    async def after(self, channel: str, chat_id: str, after: int = 0, *,
                    limit: int = 200) -> list[OutboxMessage]:
        """The conversation's messages with seq > `after`, in order, at most `limit`."""
        query = (select(OutboxRow)
                 .where(OutboxRow.channel == channel, OutboxRow.chat_id == chat_id,
                        OutboxRow.seq > after)
                 .order_by(OutboxRow.seq).limit(limit))
        try:
            async with self._store._sessions() as session:
                return [_outbox(r) for r in (await session.execute(query)).scalars()]
        except SQLAlchemyError as exc:
            raise TicketStoreUnavailable(f"the outbox database failed: {exc}") from exc


# ---- report neighbours ----------------------------------------------------------------------
#
# A report counts a ticket as a repeat when its customer or its order complained in the 30 days
# before, and not as resolved at first contact when its customer came back within 7 days. Each
# ticket keeps the registration times of those neighbours, so the report reads them in its one
# scan instead of sorting every ticket of the period by customer and by order (docs/reports.md).
# A chain is the tickets of one customer key (or one order id) in (registered_at, id) order;
# `relink` recomputes whole chains, which are short, whenever a ticket joins, leaves or moves.

_LINK_CHUNK = 500  # keys per IN (...) list
LINK_BATCH = 50_000  # tickets per statement of the full back-fill
# The neighbour columns of each chain and the window function that fills them.
_CHAINS: dict[str, dict[str, str]] = {
    "customer": {"previous_customer_ticket_at": "lag", "next_customer_ticket_at": "lead"},
    "order": {"previous_order_ticket_at": "lag"},
}


def customer_key(customer_id: str | None, phone: str | None, email: str | None,
                 channel: str, chat_id: str) -> str:
    """Who complained, as reports count customers: the shop's customer id, else the phone,
    else the e-mail, else the conversation (the order in which the form identifies a person)."""
    for value in (customer_id, phone, email):
        if value is not None:
            return value
    return conversation_key(channel, chat_id)


def _tickets() -> Any:
    return TicketRow.__table__


def customer_key_sql() -> Any:
    """`customer_key` as an SQL expression of the row's own columns."""
    c = _tickets().c
    return func.coalesce(c.customer_id, c.phone, c.email, c.channel + literal(":") + c.chat_id)


def _chain_column(kind: str) -> Any:
    c = _tickets().c
    return c.customer_key if kind == "customer" else c.order_id


def neighbour_update(kind: str, where: Any) -> Update:
    """The UPDATE that sets the neighbour columns of the `kind` ("customer" or "order") chains
    selected by `where`, which must take whole chains. Only rows that change are written."""
    table = _tickets()
    key = _chain_column(kind)
    order = (table.c.registered_at, table.c.id)
    targets = _CHAINS[kind]
    window = select(table.c.id.label("ticket"), *(
        getattr(func, fn)(table.c.registered_at).over(partition_by=key, order_by=order)
        .label(name) for name, fn in targets.items()
    )).where(key.is_not(None), where).subquery("neighbours")
    changed = or_(*(table.c[name].is_distinct_from(window.c[name]) for name in targets))
    return (update(table).where(table.c.id == window.c.ticket, changed)
            .values({name: window.c[name] for name in targets}))


def _chunks(items: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), _LINK_CHUNK):
        yield items[start:start + _LINK_CHUNK]


def relink(conn: Session | Connection, ticket_ids: Iterable[str] = (), *,
           customers: Iterable[str | None] = (), orders: Iterable[str | None] = ()) -> None:
    """Bring the report neighbours up to date after tickets were added, changed or deleted.

    Call it in the same transaction, after the change (flushed).

    Args:
        conn: the session or connection of that transaction.
        ticket_ids: tickets added, or whose customer fields (customer id, phone, e-mail,
            channel, chat id), order or registration time changed. Their `customer_key` is
            refreshed, and the chains they were and are now in are recomputed.
        customers: customer keys of deleted tickets (their chains are recomputed).
        orders: order ids of deleted tickets, and the order ids changed tickets had before.
    """
    table = _tickets()
    c = table.c
    keys: set[str] = {k for k in customers if k is not None}
    order_ids: set[str] = {o for o in orders if o is not None}
    for part in _chunks(sorted(set(ticket_ids))):
        rows = conn.execute(select(
            c.id, c.customer_id, c.phone, c.email, c.channel, c.chat_id, c.customer_key,
            c.order_id).where(c.id.in_(part))).all()
        for row in rows:
            key = customer_key(row.customer_id, row.phone, row.email, row.channel, row.chat_id)
            keys.update(k for k in (key, row.customer_key) if k is not None)
            if row.order_id is not None:
                order_ids.add(row.order_id)
            if key != row.customer_key:
                conn.execute(update(table).where(c.id == row.id).values(customer_key=key))
        # A ticket that left every order chain has no order neighbour.
        conn.execute(update(table).where(
            c.id.in_(part), c.order_id.is_(None), c.previous_order_ticket_at.is_not(None))
            .values(previous_order_ticket_at=None))
    bind = conn.get_bind() if isinstance(conn, Session) else conn
    if bind.dialect.name == "postgresql":
        # Two transactions relinking one chain would each miss the other's new ticket: the
        # second waits for the first to commit. Locks are taken in one order: no deadlock
        # between relinks.
        names = sorted([f"customer:{k}" for k in keys] + [f"order:{o}" for o in order_ids])
        for name in names:
            conn.execute(select(func.pg_advisory_xact_lock(
                func.hashtextextended(name, 0))))
    for kind, values in (("customer", keys), ("order", order_ids)):
        for part in _chunks(sorted(values)):
            conn.execute(neighbour_update(kind, _chain_column(kind).in_(part)))


def _ranges(connection: Connection, column: Any, batch: int
            ) -> Iterable[tuple[Any, Any]]:
    """[low, high) ranges of `column` holding about `batch` rows each; high None is open."""
    low: Any = None
    while True:
        query = select(column).where(column.is_not(None)).order_by(column).offset(batch).limit(1)
        if low is not None:
            query = query.where(column >= low)
        high = connection.execute(query).scalar_one_or_none()
        if high is not None and high == low:  # one value holds more than a batch
            high = connection.execute(select(func.min(column)).where(column > low)).scalar()
        yield low, high
        if high is None:
            return
        low = high


def _within(column: Any, low: Any, high: Any) -> Any:
    bounds = [column.is_not(None)]
    if low is not None:
        bounds.append(column >= low)
    if high is not None:
        bounds.append(column < high)
    return and_(*bounds)


def link_all(connection: Connection, batch: int = LINK_BATCH, *,
             customer_keys_only: bool = False, neighbours_only: bool = False) -> None:
    """Fill `customer_key` and then every neighbour column of every ticket, in batches of whole
    chains: revision ho0004's back-fill, and the benchmark's loader. Plain SQL, no rows read.

    `customer_keys_only` and `neighbours_only` run one of the two passes (the migration builds
    the customer-key index in between)."""
    table = _tickets()
    if not neighbours_only:
        for low, high in _ranges(connection, table.c.id, batch):
            connection.execute(update(table).where(_within(table.c.id, low, high))
                               .values(customer_key=customer_key_sql()))
    if customer_keys_only:
        return
    for kind in _CHAINS:
        column = _chain_column(kind)
        for low, high in _ranges(connection, column, batch):
            connection.execute(neighbour_update(kind, _within(column, low, high)))


def _counter_bump(dialect: str) -> Any:
    """Bump the counter `name` by `step` and return its new value (bind parameters), atomically
    for any number of writers: built once, executed per call."""
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    step = bindparam("step", type_=BigInteger)
    return (insert(CounterRow).values(name=bindparam("name"), value=step)
            .on_conflict_do_update(index_elements=[CounterRow.name],
                                   set_={"value": CounterRow.value + step})
            .returning(CounterRow.value))


def _next_value(session: Session, dialect: str, name: str) -> int:
    """Bump the named counter and return its new value, atomically for any number of writers."""
    statement = _BUMPS.get(dialect)
    if statement is None:
        statement = _BUMPS[dialect] = _counter_bump(dialect)
    return int(session.execute(statement, {"name": name, "step": 1}).scalar_one())


_BUMPS: dict[str, Any] = {}


_T = TypeVar("_T")


def _in_session(sessions: sessionmaker[Session], work: Callable[[Session], _T]) -> _T:
    with sessions() as session, session.begin():
        return work(session)


def _sqlite_pragmas(dbapi_connection: Any, _record: object) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    # WAL lets readers (the CLI, GET requests) go on while the bot writes to the same file.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()


def _upgrade(connection: Connection, revision: str) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, revision)
