"""Fixtures of the knowledge-base tests: real SQLite files, a real PostgreSQL, the seed FAQ."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from knowledge_base.entries import EntryContent, PublishedEntry
from knowledge_base.files import load_file
from knowledge_base.retrieval import Searcher
from knowledge_base.service import SEED_FILE, make_searcher
from knowledge_base.store import KnowledgeStore

POSTGRES_URL = os.environ.get("TEST_DATABASE_URL",
                              "postgresql+asyncpg://postgres@127.0.0.1:5432/test")


def _asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'kb.db'}"


@asynccontextmanager
async def postgres_schema() -> AsyncIterator[str]:
    """A fresh schema of the test database, dropped afterwards, so runs never collide."""
    import asyncpg  # type: ignore[import-untyped]

    schema = "kbtest_" + uuid.uuid4().hex[:12]
    conn = await asyncpg.connect(_asyncpg_dsn(POSTGRES_URL))
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"')
        yield schema
    finally:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.close()


@pytest.fixture
async def pg_schema() -> AsyncIterator[str]:
    async with postgres_schema() as schema:
        yield schema


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[KnowledgeStore]:
    """The store on SQLite and on PostgreSQL (each in its own schema)."""
    if request.param == "sqlite":
        opened = await KnowledgeStore.open(f"sqlite+aiosqlite:///{tmp_path / 'kb.db'}")
        yield opened
        await opened.close()
        return
    async with postgres_schema() as schema:
        opened = await KnowledgeStore.open(
            POSTGRES_URL, connect_args={"server_settings": {"search_path": schema}})
        yield opened
        await opened.close()


@pytest.fixture(scope="session")
def seed_items() -> list[tuple[str, EntryContent]]:
    return load_file(SEED_FILE)


@pytest.fixture(scope="session")
def seed_entries(seed_items: list[tuple[str, EntryContent]]) -> list[PublishedEntry]:
    return [PublishedEntry(entry_id, 1, content) for entry_id, content in seed_items]


@pytest.fixture(scope="session")
def lexical_searcher(seed_entries: list[PublishedEntry]) -> Iterator[Searcher]:
    """The shipped ranking without the dense model, over the seed FAQ."""
    searcher = make_searcher(dense=False)
    searcher.rebuild(seed_entries)
    yield searcher


@pytest.fixture(scope="session")
def hybrid_searcher(seed_entries: list[PublishedEntry]) -> Iterator[Searcher]:
    """The shipped ranking with the packaged English MiniLM (loaded once per run)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    searcher = make_searcher(embedding_model="minilm")
    searcher.rebuild(seed_entries)
    yield searcher


def content(question: str = "怎么退款？", answer: str = "在订单详情申请售后。",
            **fields: object) -> EntryContent:
    """An entry's content for tests."""
    from knowledge_base.entries import content_from_mapping

    return content_from_mapping({"question": question, "answer": answer, **fields})
