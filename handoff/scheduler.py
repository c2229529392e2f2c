"""Durable jobs: one row per job in the ticket database (revision ho0003).

A job has a unique `key`, so scheduling the same job twice is harmless; a worker claims a due job
with a conditional UPDATE (one winner across processes) and holds it under a lease, so a job
whose worker died is picked up again once the lease runs out.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from handoff.tickets import Base


class JobRow(Base):
    """One scheduled job: what to do (kind + payload), when, and how it went."""

    __tablename__ = "handoff_jobs"
    __table_args__ = (Index("ix_handoff_jobs_status_due", "status", "due_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32))
    key: Mapped[str] = mapped_column(String(200), unique=True)  # idempotency: one job per key
    due_at: Mapped[datetime]
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))  # pending | running | done | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    lease_until: Mapped[datetime | None]
    worker: Mapped[str | None] = mapped_column(String(64))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
