"""Report neighbours: each ticket's customer key and the times of its customer's and its
order's previous ticket and its customer's next one, back-filled for existing tickets; and an
index on the channel (a report lists the channels from it).

Revision ID: ho0004
Revises: ho0003
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from handoff.tickets import link_all

revision = "ho0004"
down_revision = "ho0003"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)
_COLUMNS = ("previous_customer_ticket_at", "next_customer_ticket_at",
            "previous_order_ticket_at")


def upgrade() -> None:
    with op.batch_alter_table("tickets") as batch:
        batch.add_column(sa.Column("customer_key", sa.Text(), nullable=True))
        for name in _COLUMNS:
            batch.add_column(sa.Column(name, _TS, nullable=True))
    # The back-fill is plain SQL in batches of whole chains (LAG/LEAD over one range of
    # customer keys or order ids per statement). The index goes in before the neighbour pass,
    # which reads the customer keys in order.
    link_all(op.get_bind(), customer_keys_only=True)
    op.create_index("ix_tickets_customer_key_registered_at", "tickets",
                    ["customer_key", "registered_at"])
    link_all(op.get_bind(), neighbours_only=True)
    op.create_index("ix_tickets_channel", "tickets", ["channel"])


def downgrade() -> None:
    op.drop_index("ix_tickets_channel", table_name="tickets")
    op.drop_index("ix_tickets_customer_key_registered_at", table_name="tickets")
    with op.batch_alter_table("tickets") as batch:
        for name in (*reversed(_COLUMNS), "customer_key"):
            batch.drop_column(name)
