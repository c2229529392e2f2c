"""Fixtures of the handoff tests: the ticket store on a real SQLite file and a real PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from handoff.sla import ManualClock
from handoff.tickets import TicketStore
from knowledge_base.retrieval import Searcher
from nlp.analyzer import Analyzer

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


# ---- the console API on the real application ------------------------------------------------

CONSOLE_PASSWORD = "s3cret-pass"


@pytest.fixture(scope="session")
def kb_searcher(e5_searcher: Searcher) -> Searcher:
    """The shipped default ranking (tests/conftest.py)."""
    return e5_searcher


@dataclass
class Desk:
    """The real application with staff users, a customer on the web chat and a movable clock."""

    client: TestClient[Any, Any]
    clock: ManualClock
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def app(self) -> web.Application:
        app: web.Application = self.client.app
        return app

    async def add_user(self, name: str, role: str, department: str | None = None) -> str:
        from handoff.api import USERS

        await self.app[USERS].add(name, CONSOLE_PASSWORD, role, department=department)
        response = await self.client.post("/api/auth/login",
                                          json={"username": name, "password": CONSOLE_PASSWORD})
        assert response.status == 200, await response.text()
        token: str = (await response.json())["token"]
        self.tokens[name] = token
        return token

    def auth(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[name]}"}

    async def call(self, method: str, path: str, user: str | None, *, status: int = 200,
                   **kwargs: Any) -> Any:
        headers = self.auth(user) if user else {}
        response = await self.client.request(method, path, headers=headers, **kwargs)
        assert response.status == status, await response.text()
        return await response.json()

    async def say(self, chat_id: str, text: str) -> dict[str, Any]:
        response = await self.client.post(f"/api/webchat/{chat_id}/messages",
                                          json={"text": text})
        assert response.status == 200, await response.text()
        data: dict[str, Any] = await response.json()
        return data

    async def outbox(self, chat_id: str) -> list[dict[str, Any]]:
        response = await self.client.get(f"/api/webchat/{chat_id}/messages")
        assert response.status == 200
        return list((await response.json())["messages"])

    async def complaint(self, chat_id: str | None = None) -> tuple[str, str]:
        """A customer registers a product complaint on the web chat: (chat id, ticket id)."""
        chat_id = chat_id or "c-" + uuid.uuid4().hex[:10]
        first = await self.say(chat_id, COMPLAINT)
        confirm = next(b for r in first["replies"] for b in r["buttons"])
        done = await self.say(chat_id, confirm)
        assert done["ticket_id"], done
        return chat_id, str(done["ticket_id"])


COMPLAINT = ("我买的电饭煲用了两天就坏了，完全不能加热。订单号DD2026112012345，"
             "商品是美的电饭煲，电话13812345678，我要求换货")


MakeDesk = Callable[..., Awaitable[Desk]]


@pytest.fixture
def make_desk(tmp_path: Path, analyzer: Analyzer, kb_searcher: Searcher,
              aiohttp_client: Callable[..., Awaitable[TestClient[Any, Any]]]) -> MakeDesk:
    """Builds the real application with extra INTAKEBOT_* variables (e.g. business hours)."""
    from bot.app import create_app
    from bot.settings import Settings

    async def make(**env: str) -> Desk:
        clock = ManualClock()
        settings = Settings.from_env({"INTAKEBOT_DATA_DIR": str(tmp_path / "data"),
                                      "INTAKEBOT_SLA_CHECK_SECONDS": "3600", **env})
        app = create_app(settings, analyzer=analyzer, searcher=kb_searcher, clock=clock)
        return Desk(await aiohttp_client(app), clock)

    return make


@pytest.fixture
async def desk(make_desk: MakeDesk) -> Desk:
    return await make_desk()
