"""Alembic migrations of the handoff tables (version table: alembic_version_handoff)."""
