"""Alembic environment: runs on the connection the store hands over in config.attributes."""

from __future__ import annotations

from alembic import context

from knowledge_base.tables import Base

VERSION_TABLE = "alembic_version_kb"

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "knowledge_base migrations run through the store (KnowledgeStore.open) or "
        "`intakebot kb migrate`, which hand alembic a connection"
    )
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    version_table=VERSION_TABLE,
    render_as_batch=True,  # SQLite needs batch mode to alter tables
)
with context.begin_transaction():
    context.run_migrations()
