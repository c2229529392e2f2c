"""Fixtures of the channel tests: the real application on a temporary data directory.

Every app is the one `create_app` builds for production, with the session-wide trained analyzer
and a lexical knowledge-base searcher passed in so that no test retrains or re-embeds; it runs
once with the in-process session stores and once with Redis (a unique key prefix per test,
whose keys are deleted afterwards).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from bot.app import create_app
from bot.settings import Settings
from knowledge_base.retrieval import Searcher
from nlp.analyzer import Analyzer

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

Client = TestClient[Any, Any]
AiohttpClient = Callable[..., Awaitable[Client]]


@pytest.fixture(scope="session")
def searcher(e5_searcher: Searcher) -> Searcher:
    """The shipped default ranking (tests/conftest.py)."""
    return e5_searcher


@dataclass
class AppFactory:
    """Builds the real application, on in-process state or on Redis."""

    data_dir: Path
    analyzer: Analyzer
    searcher: Searcher
    redis_url: str | None
    prefixes: list[str] = field(default_factory=list)

    def settings(self) -> Settings:
        env = {"INTAKEBOT_DATA_DIR": str(self.data_dir)}
        if self.redis_url:
            env["REDIS_URL"] = self.redis_url
        return Settings.from_env(env)

    def __call__(self, **options: Any) -> web.Application:
        prefix = f"intakebot-test-{uuid.uuid4().hex[:12]}:"
        self.prefixes.append(prefix)
        return create_app(self.settings(), analyzer=self.analyzer, searcher=self.searcher,
                          redis_prefix=prefix, **options)


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def make_app(request: pytest.FixtureRequest, tmp_path: Path, analyzer: Analyzer,
                   searcher: Searcher) -> AsyncIterator[AppFactory]:
    """A factory of real apps, run once per session store."""
    factory = AppFactory(tmp_path / "data", analyzer, searcher,
                         REDIS_URL if request.param == "redis" else None)
    yield factory
    if factory.redis_url:
        from redis.asyncio import Redis

        redis = Redis.from_url(factory.redis_url)
        try:
            for prefix in factory.prefixes:
                keys = [key async for key in redis.scan_iter(match=prefix + "*")]
                if keys:
                    await redis.delete(*keys)
        finally:
            await redis.aclose()


@pytest.fixture
async def client(make_app: AppFactory, aiohttp_client: AiohttpClient) -> Client:
    """A test client of the real application."""
    return await aiohttp_client(make_app())
