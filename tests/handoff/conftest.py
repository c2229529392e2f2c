"""Fixtures of the handoff tests: the ticket store on a real SQLite file and a real PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from handoff.tickets import TicketStore

POSTGRES_URL = os.environ.get("TEST_DATABASE_URL",
                              "postgresql+asyncpg://postgres@127.0.0.1:5432/test")


@asynccontextmanager
async def postgres_schema() -> AsyncIterator[str]:
    """A fresh schema of the test database, dropped afterwards, so runs never collide."""
    import asyncpg  # type: ignore[import-untyped]

    schema = "hotest_" + uuid.uuid4().hex[:12]
    conn = await asyncpg.connect(POSTGRES_URL.replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"')
        yield schema
    finally:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.close()


def search_path(schema: str) -> dict[str, object]:
    return {"server_settings": {"search_path": schema}}


@pytest.fixture
async def pg_connect_args() -> AsyncIterator[dict[str, object]]:
    """Connection arguments that put everything in a fresh, afterwards dropped schema."""
    async with postgres_schema() as schema:
        yield search_path(schema)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'intakebot.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def store(request: pytest.FixtureRequest, sqlite_url: str) -> AsyncIterator[TicketStore]:
    """The ticket store on SQLite and on PostgreSQL (each run in its own schema)."""
    if request.param == "sqlite":
        opened = await TicketStore.open(sqlite_url)
        yield opened
        await opened.close()
        return
    async with postgres_schema() as schema:
        opened = await TicketStore.open(POSTGRES_URL, connect_args=search_path(schema))
        yield opened
        await opened.close()
