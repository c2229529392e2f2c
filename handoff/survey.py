"""The satisfaction survey (DOMAIN.md template 3), one per closed ticket (revision ho0003)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from handoff.tickets import Base


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
