"""The satisfaction survey (DOMAIN.md template 3), one per closed ticket (revision ho0003).

A survey row is created when the invitation goes out (its primary key makes that once per
ticket); answers arrive one at a time (chat) or all at once (the web form) and are kept as they
come, so a customer who stops half-way loses nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Integer, String, Text, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from handoff.errors import InvalidTicket, TicketNotFound, TicketStoreUnavailable
from handoff.tickets import Base, TicketStore, _aware

SCORES: tuple[str, ...] = ("timeliness", "effectiveness", "attitude", "overall")
ASPECTS: tuple[str, ...] = ("speed", "result", "attitude", "clarity", "other")
QUESTIONS: tuple[str, ...] = (*SCORES, "best_aspect", "improve_aspect", "suggestion")
MAX_SUGGESTION = 2000
SECOND_HANDLING_AT = 2  # an overall score this low or lower is handled again by a senior


class SurveyRow(Base):
    """Four scores 1-5, the best aspect, the aspect to improve and free suggestions."""

    __tablename__ = "ticket_surveys"

    ticket_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("tickets.id", ondelete="CASCADE"), primary_key=True)
    method: Mapped[str] = mapped_column(String(16))  # chat | web
    sent_at: Mapped[datetime | None]
    answered_at: Mapped[datetime | None]
    timeliness: Mapped[int | None] = mapped_column(Integer)
    effectiveness: Mapped[int | None] = mapped_column(Integer)
    attitude: Mapped[int | None] = mapped_column(Integer)
    overall: Mapped[int | None] = mapped_column(Integer)
    best_aspect: Mapped[str | None] = mapped_column(String(32))
    improve_aspect: Mapped[str | None] = mapped_column(String(32))
    suggestion: Mapped[str | None] = mapped_column(Text)
    second_handling: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")


@dataclass(frozen=True, slots=True)
class Survey:
    """A ticket's survey as stored; None where the customer has not answered (yet)."""

    ticket_id: str
    method: str
    sent_at: datetime | None
    answered_at: datetime | None
    timeliness: int | None
    effectiveness: int | None
    attitude: int | None
    overall: int | None
    best_aspect: str | None
    improve_aspect: str | None
    suggestion: str | None
    second_handling: bool

    def to_dict(self) -> dict[str, Any]:
        return {name: (getattr(self, name).isoformat() if isinstance(getattr(self, name),
                                                                      datetime)
                       else getattr(self, name))
                for name in self.__slots__}


def validate_answers(answers: Mapping[str, object]) -> dict[str, int | str | None]:
    """Check answers to some of the QUESTIONS: scores 1-5, aspects from ASPECTS, a suggestion.

    Raises:
        InvalidTicket: an unknown question or a bad value, with which one and why.
    """
    unknown = set(answers) - set(QUESTIONS)
    if unknown:
        raise InvalidTicket(f"unknown survey questions: {', '.join(sorted(unknown))}")
    clean: dict[str, int | str | None] = {}
    for name, value in answers.items():
        if name in SCORES:
            if isinstance(value, str) and value.strip().isdigit():
                value = int(value.strip())
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 5:
                raise InvalidTicket(f"{name} is a score from 1 to 5")
            clean[name] = value
        elif name in ("best_aspect", "improve_aspect"):
            if value not in ASPECTS:
                raise InvalidTicket(f"{name} is one of {', '.join(ASPECTS)}")
            clean[name] = str(value)
        else:
            if value is not None and not isinstance(value, str):
                raise InvalidTicket("suggestion is text")
            text = (value or "").strip()
            if len(text) > MAX_SUGGESTION:
                raise InvalidTicket(f"suggestion is longer than {MAX_SUGGESTION} characters")
            clean[name] = text or None
    return clean


class Surveys:
    """The ticket_surveys table."""

    def __init__(self, store: TicketStore) -> None:
        self._dialect = store.dialect
        self._sessions = async_sessionmaker(store.engine, expire_on_commit=False)

    async def start(self, ticket_id: str, method: str, now: datetime) -> bool:
        """Record that the invitation goes out; False when this ticket already had one."""
        insert = pg_insert if self._dialect == "postgresql" else sqlite_insert
        statement = insert(SurveyRow).values(
            ticket_id=ticket_id, method=method, sent_at=now, second_handling=False
        ).on_conflict_do_nothing(index_elements=[SurveyRow.ticket_id])
        try:
            async with self._sessions() as session, session.begin():
                return bool((await session.execute(statement)).rowcount)  # type: ignore[attr-defined]
        except SQLAlchemyError as exc:
            raise TicketStoreUnavailable(f"the survey table failed: {exc}") from exc

    async def get(self, ticket_id: str) -> Survey | None:
        async with self._sessions() as session:
            row = await session.get(SurveyRow, ticket_id)
        return None if row is None else _survey(row)

    async def record(self, ticket_id: str, answers: Mapping[str, object], now: datetime
                     ) -> Survey:
        """Store (validated) answers; earlier answers to other questions stay.

        Raises:
            InvalidTicket: a bad answer.
            TicketNotFound: no survey was sent for this ticket.
        """
        values = validate_answers(answers)
        try:
            async with self._sessions() as session, session.begin():
                row = await session.get(SurveyRow, ticket_id)
                if row is None:
                    raise TicketNotFound(f"no survey was sent for ticket {ticket_id!r}")
                for name, value in values.items():
                    setattr(row, name, value)
                row.answered_at = now
                return _survey(row)
        except SQLAlchemyError as exc:
            raise TicketStoreUnavailable(f"the survey table failed: {exc}") from exc

    async def claim_second_handling(self, ticket_id: str) -> bool:
        """Mark the survey as having started second handling; True only the first time."""
        statement = (update(SurveyRow).where(SurveyRow.ticket_id == ticket_id,
                                             SurveyRow.second_handling.is_(False))
                     .values(second_handling=True))
        async with self._sessions() as session, session.begin():
            return bool((await session.execute(statement)).rowcount)  # type: ignore[attr-defined]

    async def all(self) -> list[Survey]:
        async with self._sessions() as session:
            return [_survey(r) for r in (await session.execute(
                select(SurveyRow).order_by(SurveyRow.sent_at))).scalars()]


def _survey(row: SurveyRow) -> Survey:
    return Survey(
        ticket_id=row.ticket_id, method=row.method,
        sent_at=None if row.sent_at is None else _aware(row.sent_at),
        answered_at=None if row.answered_at is None else _aware(row.answered_at),
        timeliness=row.timeliness, effectiveness=row.effectiveness, attitude=row.attitude,
        overall=row.overall, best_aspect=row.best_aspect, improve_aspect=row.improve_aspect,
        suggestion=row.suggestion, second_handling=bool(row.second_handling))
