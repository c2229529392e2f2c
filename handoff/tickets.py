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

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from decimal import Decimal, InvalidOperation
from enum import Enum
from pathlib import Path
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    event,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

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


class TicketRow(Base):
    """One complaint registration form."""

    __tablename__ = "tickets"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    number: Mapped[str] = mapped_column(String(32), unique=True)
    status: Mapped[str] = mapped_column(String(32), index=True)
    open_key: Mapped[str | None] = mapped_column(String(MAX_CHANNEL + MAX_CHAT_ID + 1),
                                                 unique=True)
    channel: Mapped[str] = mapped_column(String(MAX_CHANNEL))
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


def _outbox(row: OutboxRow) -> OutboxMessage:
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
                 number_tz: tzinfo = CHINA_TZ) -> None:
        self._engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
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
        if sqlite:
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return cls(engine, number_prefix=number_prefix, number_tz=number_tz)

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
        for attempt in range(_REGISTER_ATTEMPTS):
            try:
                async with self._sessions() as session, session.begin():
                    row = await self._open_row(session, draft.channel, draft.chat_id)
                    if row is not None:
                        await self._update(session, row, draft, department, now, due)
                        created = False
                    else:
                        row = await self._insert(session, draft, department, receiver, now,
                                                 due)
                        created = True
                return Registration(_ticket(row), created)
            except IntegrityError as exc:
                # Another registration of this conversation won the race: update its ticket.
                if attempt == _REGISTER_ATTEMPTS - 1:
                    raise TicketStoreUnavailable(
                        f"could not register the ticket of {draft.channel}:{draft.chat_id}"
                    ) from exc
            except SQLAlchemyError as exc:
                raise TicketStoreUnavailable(f"the ticket database failed: {exc}") from exc
        raise AssertionError("unreachable")

    async def _insert(self, session: AsyncSession, draft: TicketDraft, department: str,
                      receiver: str, now: datetime, due: DueTime) -> TicketRow:
        import uuid

        day = now.astimezone(self.number_tz).strftime("%Y%m%d")
        prefix = f"{self.number_prefix}{day}"
        seq = await _next_value(session, self.dialect, f"ticket_number:{prefix}")
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
        )
        session.add(row)
        await session.flush()
        self._add_lines(session, row.id, draft.transcript, set())
        await self._add_evidence(session, row.id, draft.evidence, now)
        await session.flush()
        return row

    async def _update(self, session: AsyncSession, row: TicketRow, draft: TicketDraft,
                      department: str, now: datetime, due: DueTime) -> None:
        if row.category is None and draft.category is not None:
            row.department = department  # it was routed as unclassified
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
            for line in (await session.execute(
                select(TranscriptRow).where(TranscriptRow.ticket_id == row.id))).scalars()
        }
        self._add_lines(session, row.id, draft.transcript, known)
        await self._add_evidence(session, row.id, draft.evidence, now)
        await session.flush()

    @staticmethod
    def _add_lines(session: AsyncSession, ticket_id: str, lines: Sequence[TranscriptLine],
                   known: set[tuple[str, str, datetime]]) -> None:
        for line in lines:
            key = (line.author, line.text, _utc(line.at))
            if key in known:
                continue
            known.add(key)
            session.add(TranscriptRow(ticket_id=ticket_id, author=line.author, text=line.text,
                                      at=_utc(line.at)))

    @staticmethod
    async def _add_evidence(session: AsyncSession, ticket_id: str,
                            refs: Sequence[EvidenceRef], now: datetime) -> None:
        if not refs:
            return
        have = set((await session.execute(
            select(EvidenceRow.sha256).where(EvidenceRow.ticket_id == ticket_id))).scalars())
        for ref in refs:
            if ref.sha256 in have:
                continue
            have.add(ref.sha256)
            session.add(EvidenceRow(ticket_id=ticket_id, sha256=ref.sha256,
                                    filename=ref.filename, content_type=ref.content_type,
                                    size=ref.size, added_at=now))

    async def append(self, channel: str, chat_id: str, line: TranscriptLine,
                     evidence: Sequence[EvidenceRef] = ()) -> bool:
        """Add a transcript line, and the files sent with it, to the conversation's open ticket.

        False when the conversation has no open ticket.
        """
        try:
            async with self._sessions() as session, session.begin():
                row = await self._open_row(session, channel, chat_id)
                if row is None:
                    return False
                session.add(TranscriptRow(ticket_id=row.id, author=line.author,
                                          text=line.text, at=_utc(line.at)))
                await self._add_evidence(session, row.id, evidence, utcnow())
                row.updated_at = utcnow()
        except SQLAlchemyError as exc:
            raise TicketStoreUnavailable(f"the ticket database failed: {exc}") from exc
        return True

    async def add_evidence(self, ticket_id: str, refs: Sequence[EvidenceRef]) -> None:
        """Attach stored evidence files to a ticket (each file once).

        Raises:
            TicketNotFound: no ticket has this id.
        """
        async with self._sessions() as session, session.begin():
            if await session.get(TicketRow, ticket_id) is None:
                raise TicketNotFound(f"no ticket {ticket_id!r}")
            await self._add_evidence(session, ticket_id, refs, utcnow())

    # ---- reading --------------------------------------------------------------------------

    @staticmethod
    async def _open_row(session: AsyncSession, channel: str, chat_id: str) -> TicketRow | None:
        query = select(TicketRow).where(TicketRow.open_key == conversation_key(channel, chat_id))
        return (await session.execute(query)).scalar_one_or_none()

    async def open_ticket(self, channel: str, chat_id: str) -> Ticket | None:
        """The conversation's open ticket, if it has one."""
        async with self._sessions() as session:
            row = await self._open_row(session, channel, chat_id)
            return None if row is None else _ticket(row)

    async def open_ticket_id(self, channel: str, chat_id: str) -> str | None:
        """The id of the conversation's open ticket, if it has one."""
        query = select(TicketRow.id).where(
            TicketRow.open_key == conversation_key(channel, chat_id))
        try:
            async with self._sessions() as session:
                return (await session.execute(query)).scalar_one_or_none()
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
    durable record of what the customer was told.
    """

    def __init__(self, store: TicketStore) -> None:
        self._store = store

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
        _check_conversation(channel, chat_id)
        if dedup_key is not None and not 0 < len(dedup_key) <= 128:
            raise InvalidTicket("dedup key must be 1-128 characters")
        sessions = self._store._sessions
        for _attempt in range(_REGISTER_ATTEMPTS):
            if dedup_key is not None:
                found = await self._by_key(channel, chat_id, dedup_key)
                if found is not None:
                    return found
            try:
                async with sessions() as session, session.begin():
                    seq = await _next_value(session, self._store.dialect,
                                            f"outbox:{conversation_key(channel, chat_id)}")
                    row = OutboxRow(channel=channel, chat_id=chat_id, seq=seq, author=author,
                                    text=text, buttons=list(buttons),
                                    sent_at=_utc(now or utcnow()), dedup_key=dedup_key)
                    session.add(row)
                    await session.flush()
                return _outbox(row)
            except IntegrityError as exc:
                if dedup_key is None:
                    raise TicketStoreUnavailable(f"outbox append failed: {exc}") from exc
            except SQLAlchemyError as exc:
                raise TicketStoreUnavailable(f"the outbox database failed: {exc}") from exc
        raise TicketStoreUnavailable("outbox append kept conflicting")

    async def _by_key(self, channel: str, chat_id: str, key: str) -> OutboxMessage | None:
        query = select(OutboxRow).where(OutboxRow.channel == channel,
                                        OutboxRow.chat_id == chat_id, OutboxRow.dedup_key == key)
        async with self._store._sessions() as session:
            row = (await session.execute(query)).scalar_one_or_none()
        return None if row is None else _outbox(row)

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


async def _next_value(session: AsyncSession, dialect: str, name: str) -> int:
    """Bump the named counter and return its new value, atomically for any number of writers."""
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    statement = (
        insert(CounterRow).values(name=name, value=1)
        .on_conflict_do_update(index_elements=[CounterRow.name],
                               set_={"value": CounterRow.value + 1})
        .returning(CounterRow.value)
    )
    return int((await session.execute(statement)).scalar_one())


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
