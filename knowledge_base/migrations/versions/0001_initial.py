"""Knowledge base tables: entries, versions, audit log, gaps, API keys.

Revision ID: kb0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "kb0001"
down_revision = None
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "kb_entries",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("published_version", sa.Integer(), nullable=True),
        sa.Column("updated_by", sa.String(128), nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_kb_entries"),
    )
    op.create_index("ix_kb_entries_status", "kb_entries", ["status"])
    op.create_table(
        "kb_entry_versions",
        sa.Column("entry_id", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("question", sa.Text(), nullable=False),
        sa.Column("answer", sa.Text(), nullable=False),
        sa.Column("paraphrases", sa.JSON(), nullable=False),
        sa.Column("answer_hant", sa.Text(), nullable=True),
        sa.Column("answer_en", sa.Text(), nullable=True),
        sa.Column("category", sa.String(64), nullable=True),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["entry_id"], ["kb_entries.id"], ondelete="CASCADE",
            name="fk_kb_entry_versions_entry_id_kb_entries",
        ),
        sa.PrimaryKeyConstraint("entry_id", "version", name="pk_kb_entry_versions"),
    )
    op.create_table(
        "kb_audit_log",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", _TS, nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("entry_id", sa.String(64), nullable=True),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("before", sa.Text(), nullable=True),
        sa.Column("after", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_kb_audit_log"),
    )
    op.create_index("ix_kb_audit_log_at", "kb_audit_log", ["at"])
    op.create_index("ix_kb_audit_log_entry_id", "kb_audit_log", ["entry_id"])
    op.create_table(
        "kb_gaps",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("first_seen", _TS, nullable=False),
        sa.Column("last_seen", _TS, nullable=False),
        sa.Column("best_entry_id", sa.String(64), nullable=True),
        sa.Column("best_confidence", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_kb_gaps"),
        sa.UniqueConstraint("key", name="uq_kb_gaps_key"),
    )
    op.create_index("ix_kb_gaps_last_seen", "kb_gaps", ["last_seen"])
    op.create_table(
        "kb_api_keys",
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("secret_hash", sa.String(255), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("revoked_at", _TS, nullable=True),
        sa.PrimaryKeyConstraint("key_id", name="pk_kb_api_keys"),
    )


def downgrade() -> None:
    op.drop_table("kb_api_keys")
    op.drop_index("ix_kb_gaps_last_seen", table_name="kb_gaps")
    op.drop_table("kb_gaps")
    op.drop_index("ix_kb_audit_log_entry_id", table_name="kb_audit_log")
    op.drop_index("ix_kb_audit_log_at", table_name="kb_audit_log")
    op.drop_table("kb_audit_log")
    op.drop_table("kb_entry_versions")
    op.drop_index("ix_kb_entries_status", table_name="kb_entries")
    op.drop_table("kb_entries")
