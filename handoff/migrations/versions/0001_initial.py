"""Handoff tables: tickets, transcripts, evidence, counters, customer outbox.

Revision ID: ho0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "ho0001"
down_revision = None
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "tickets",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("number", sa.String(32), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("open_key", sa.String(161), nullable=True),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("chat_id", sa.String(128), nullable=False),
        sa.Column("lang", sa.String(16), nullable=False),
        sa.Column("customer_name", sa.Text(), nullable=True),
        sa.Column("phone", sa.Text(), nullable=True),
        sa.Column("email", sa.Text(), nullable=True),
        sa.Column("customer_id", sa.Text(), nullable=True),
        sa.Column("member_level", sa.Text(), nullable=True),
        sa.Column("complained_at", _TS, nullable=False),
        sa.Column("category", sa.String(32), nullable=True),
        sa.Column("subcategory", sa.String(64), nullable=True),
        sa.Column("priority", sa.String(16), nullable=False),
        sa.Column("priority_reasons", sa.JSON(), nullable=False),
        sa.Column("emotion", sa.String(32), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("order_id", sa.String(128), nullable=True),
        sa.Column("product", sa.Text(), nullable=True),
        sa.Column("purchase_time", sa.String(64), nullable=True),
        sa.Column("incident_time", sa.String(64), nullable=True),
        sa.Column("demand", sa.String(32), nullable=True),
        sa.Column("demand_note", sa.Text(), nullable=True),
        sa.Column("amount", sa.Numeric(14, 2), nullable=True),
        sa.Column("currency", sa.String(8), nullable=True),
        sa.Column("department", sa.String(64), nullable=False),
        sa.Column("receiver", sa.String(128), nullable=False),
        sa.Column("handler", sa.String(128), nullable=True),
        sa.Column("handoff_reason", sa.String(32), nullable=False),
        sa.Column("sla_hours", sa.Integer(), nullable=False),
        sa.Column("sla_due", _TS, nullable=False),
        sa.Column("registered_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_tickets"),
        sa.UniqueConstraint("number", name="uq_tickets_number"),
        sa.UniqueConstraint("open_key", name="uq_tickets_open_key"),
    )
    for column in ("status", "category", "priority", "order_id", "department", "sla_due",
                   "registered_at"):
        op.create_index(f"ix_tickets_{column}", "tickets", [column])
    op.create_table(
        "ticket_transcript",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("ticket_id", sa.String(36), nullable=False),
        sa.Column("author", sa.String(16), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("at", _TS, nullable=False),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"], ondelete="CASCADE",
                                name="fk_ticket_transcript_ticket_id_tickets"),
        sa.PrimaryKeyConstraint("id", name="pk_ticket_transcript"),
    )
    op.create_index("ix_ticket_transcript_ticket_id", "ticket_transcript", ["ticket_id"])
    op.create_table(
        "ticket_evidence",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("ticket_id", sa.String(36), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("filename", sa.Text(), nullable=False),
        sa.Column("content_type", sa.String(255), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("added_at", _TS, nullable=False),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"], ondelete="CASCADE",
                                name="fk_ticket_evidence_ticket_id_tickets"),
        sa.PrimaryKeyConstraint("id", name="pk_ticket_evidence"),
        sa.UniqueConstraint("ticket_id", "sha256", name="uq_ticket_evidence_sha256"),
    )
    op.create_index("ix_ticket_evidence_ticket_id", "ticket_evidence", ["ticket_id"])
    op.create_table(
        "handoff_counters",
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_handoff_counters"),
    )
    op.create_table(
        "handoff_outbox",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("chat_id", sa.String(128), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("author", sa.String(16), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("buttons", sa.JSON(), nullable=False),
        sa.Column("sent_at", _TS, nullable=False),
        sa.Column("dedup_key", sa.String(128), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_handoff_outbox"),
        sa.UniqueConstraint("channel", "chat_id", "seq", name="uq_handoff_outbox_seq"),
        sa.UniqueConstraint("channel", "chat_id", "dedup_key", name="uq_handoff_outbox_dedup_key"),
    )


def downgrade() -> None:
    op.drop_table("handoff_outbox")
    op.drop_table("handoff_counters")
    op.drop_index("ix_ticket_evidence_ticket_id", table_name="ticket_evidence")
    op.drop_table("ticket_evidence")
    op.drop_index("ix_ticket_transcript_ticket_id", table_name="ticket_transcript")
    op.drop_table("ticket_transcript")
    for column in ("status", "category", "priority", "order_id", "department", "sla_due",
                   "registered_at"):
        op.drop_index(f"ix_tickets_{column}", table_name="tickets")
    op.drop_table("tickets")
