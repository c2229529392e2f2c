"""Alembic migrations of the knowledge base's tables (version table alembic_version_kb)."""
