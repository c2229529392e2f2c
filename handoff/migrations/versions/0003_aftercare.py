"""After-care and retention: update/confirmation/reopen columns, legal hold, jobs, surveys.

Revision ID: ho0003
Revises: ho0002
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "ho0003"
down_revision = "ho0002"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("tickets") as batch:
        batch.add_column(sa.Column("customer_updated_at", _TS, nullable=True))
        batch.add_column(sa.Column("confirmation", sa.String(16), nullable=True))
        batch.add_column(sa.Column("reopen_count", sa.Integer(), nullable=False,
                                   server_default="0"))
        batch.add_column(sa.Column("second_handling", sa.Boolean(), nullable=False,
                                   server_default=sa.false()))
        batch.add_column(sa.Column("legal_hold", sa.Boolean(), nullable=False,
                                   server_default=sa.false()))
        batch.add_column(sa.Column("erased_at", _TS, nullable=True))
    op.create_table(
        "handoff_jobs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("due_at", _TS, nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("lease_until", _TS, nullable=True),
        sa.Column("worker", sa.String(64), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("finished_at", _TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_handoff_jobs"),
        sa.UniqueConstraint("key", name="uq_handoff_jobs_key"),
    )
    op.create_index("ix_handoff_jobs_status_due", "handoff_jobs", ["status", "due_at"])
    op.create_table(
        "ticket_surveys",
        sa.Column("ticket_id", sa.String(36), nullable=False),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("sent_at", _TS, nullable=True),
        sa.Column("answered_at", _TS, nullable=True),
        sa.Column("timeliness", sa.Integer(), nullable=True),
        sa.Column("effectiveness", sa.Integer(), nullable=True),
        sa.Column("attitude", sa.Integer(), nullable=True),
        sa.Column("overall", sa.Integer(), nullable=True),
        sa.Column("best_aspect", sa.String(32), nullable=True),
        sa.Column("improve_aspect", sa.String(32), nullable=True),
        sa.Column("suggestion", sa.Text(), nullable=True),
        sa.Column("second_handling", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"], ondelete="CASCADE",
                                name="fk_ticket_surveys_ticket_id_tickets"),
        sa.PrimaryKeyConstraint("ticket_id", name="pk_ticket_surveys"),
    )


def downgrade() -> None:
    op.drop_table("ticket_surveys")
    op.drop_index("ix_handoff_jobs_status_due", table_name="handoff_jobs")
    op.drop_table("handoff_jobs")
    with op.batch_alter_table("tickets") as batch:
        for column in ("erased_at", "legal_hold", "second_handling", "reopen_count",
                       "confirmation", "customer_updated_at"):
            batch.drop_column(column)
