"""Casework: assignee and SLA columns, stage history, notes, investigations, audit, staff users.

Revision ID: ho0002
Revises: ho0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "ho0002"
down_revision = "ho0001"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def _fk(table: str, target: str = "tickets") -> sa.ForeignKeyConstraint:
    column = "ticket_id" if target == "tickets" else "user_id"
    return sa.ForeignKeyConstraint([column], [f"{target}.id"], ondelete="CASCADE",
                                   name=f"fk_{table}_{column}_{target}")


def upgrade() -> None:
    with op.batch_alter_table("tickets") as batch:
        batch.add_column(sa.Column("assignee", sa.String(64), nullable=True))
        batch.add_column(sa.Column("first_responded_at", _TS, nullable=True))
        batch.add_column(sa.Column("resolved_at", _TS, nullable=True))
        batch.add_column(sa.Column("closed_at", _TS, nullable=True))
        batch.add_column(sa.Column("solution", sa.String(32), nullable=True))
        batch.add_column(sa.Column("solution_amount", sa.Numeric(14, 2), nullable=True))
        batch.add_column(sa.Column("solution_note", sa.Text(), nullable=True))
        batch.add_column(sa.Column("approval", sa.String(16), nullable=True))
        batch.add_column(sa.Column("approver", sa.String(64), nullable=True))
        batch.add_column(sa.Column("malicious", sa.Boolean(), nullable=False,
                                   server_default=sa.false()))
        batch.add_column(sa.Column("malicious_reason", sa.Text(), nullable=True))
        batch.add_column(sa.Column("merchant", sa.String(128), nullable=True))
        batch.add_column(sa.Column("merchant_due", _TS, nullable=True))
        batch.add_column(sa.Column("merchant_answered_at", _TS, nullable=True))
        batch.add_column(sa.Column("breaches", sa.JSON(), nullable=True))
        batch.create_index("ix_tickets_assignee", ["assignee"])
    op.create_table(
        "ticket_stages",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("ticket_id", sa.String(36), nullable=False),
        sa.Column("stage", sa.String(32), nullable=False),
        sa.Column("owner", sa.String(64), nullable=True),
        sa.Column("planned_at", _TS, nullable=True),
        sa.Column("actual_at", _TS, nullable=True),
        sa.Column("result", sa.Text(), nullable=True),
        sa.Column("feedback", sa.Text(), nullable=True),
        sa.Column("next_action", sa.Text(), nullable=True),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("at", _TS, nullable=False),
        _fk("ticket_stages"),
        sa.PrimaryKeyConstraint("id", name="pk_ticket_stages"),
    )
    op.create_index("ix_ticket_stages_ticket_id", "ticket_stages", ["ticket_id"])
    op.create_table(
        "ticket_notes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("ticket_id", sa.String(36), nullable=False),
        sa.Column("author", sa.String(64), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("at", _TS, nullable=False),
        _fk("ticket_notes"),
        sa.PrimaryKeyConstraint("id", name="pk_ticket_notes"),
    )
    op.create_index("ix_ticket_notes_ticket_id", "ticket_notes", ["ticket_id"])
    op.create_table(
        "ticket_investigations",
        sa.Column("ticket_id", sa.String(36), nullable=False),
        sa.Column("problem", sa.Text(), nullable=True),
        sa.Column("evidence", sa.Text(), nullable=True),
        sa.Column("responsible", sa.String(16), nullable=True),
        sa.Column("proposal", sa.Text(), nullable=True),
        sa.Column("complex", sa.Boolean(), nullable=False),
        sa.Column("customer_told", sa.Boolean(), nullable=False),
        sa.Column("due", _TS, nullable=False),
        sa.Column("updated_by", sa.String(64), nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        _fk("ticket_investigations"),
        sa.PrimaryKeyConstraint("ticket_id", name="pk_ticket_investigations"),
    )
    op.create_table(
        "handoff_audit",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("ticket_id", sa.String(36), nullable=True),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_handoff_audit"),
    )
    op.create_index("ix_handoff_audit_ticket_id", "handoff_audit", ["ticket_id"])
    op.create_table(
        "staff_users",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("department", sa.String(64), nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_staff_users"),
        sa.UniqueConstraint("username", name="uq_staff_users_username"),
    )
    op.create_table(
        "staff_tokens",
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.Column("expires_at", _TS, nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        _fk("staff_tokens", "staff_users"),
        sa.PrimaryKeyConstraint("token_hash", name="pk_staff_tokens"),
    )


def downgrade() -> None:
    op.drop_table("staff_tokens")
    op.drop_table("staff_users")
    op.drop_index("ix_handoff_audit_ticket_id", table_name="handoff_audit")
    op.drop_table("handoff_audit")
    op.drop_table("ticket_investigations")
    op.drop_index("ix_ticket_notes_ticket_id", table_name="ticket_notes")
    op.drop_table("ticket_notes")
    op.drop_index("ix_ticket_stages_ticket_id", table_name="ticket_stages")
    op.drop_table("ticket_stages")
    with op.batch_alter_table("tickets") as batch:
        batch.drop_index("ix_tickets_assignee")
        for column in ("breaches", "merchant_answered_at", "merchant_due", "merchant",
                       "malicious_reason", "malicious", "approver", "approval",
                       "solution_note", "solution_amount", "solution", "closed_at",
                       "resolved_at", "first_responded_at", "assignee"):
            batch.drop_column(column)
