"""Alembic environment: runs on the connection the ticket store hands over in config.attributes."""

from __future__ import annotations

from alembic import context

from handoff.tickets import VERSION_TABLE, Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "handoff migrations run through the ticket store (TicketStore.open), which hands "
        "alembic a connection"
    )
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    version_table=VERSION_TABLE,
    render_as_batch=True,  # SQLite needs batch mode to alter tables
)
with context.begin_transaction():
    context.run_migrations()
