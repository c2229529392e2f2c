"""Schemathesis against the running product's /api/openapi.json, over real HTTP.

The product runs in a background thread (its own event loop) on a free port of 127.0.0.1, with a
ticket and staff users; schemathesis reads the served OpenAPI document and sends generated
requests to every operation, as an agent, as a supervisor and as no one. No answer may be a 5xx,
and every error is JSON with an "error" message.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import requests
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.core.result import Ok

from bot.app import create_app
from bot.settings import Settings
from handoff.api import USERS
from knowledge_base.service import make_searcher
from nlp.analyzer import Analyzer
from tests.handoff.conftest import COMPLAINT

PASSWORD = "fuzz-pass-123"
T = TypeVar("T")


class LiveServer:
    """The real application served from a thread with its own event loop."""

    def __init__(self, data_dir: Path, analyzer: Analyzer) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        settings_ = Settings.from_env({"INTAKEBOT_DATA_DIR": str(data_dir),
                                       "INTAKEBOT_SLA_CHECK_SECONDS": "3600"})
        self.app = create_app(settings_, analyzer=analyzer, searcher=make_searcher(dense=False))
        self.runner = web.AppRunner(self.app)
        self.base = self.run(self._start())

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=120)

    async def _start(self) -> str:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        host, port = self.runner.addresses[0][:2]
        for name, role in (("alice", "agent"), ("sue", "supervisor")):
            await self.app[USERS].add(name, PASSWORD, role)
        return f"http://{host}:{port}"

    def close(self) -> None:
        self.run(self.runner.cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, analyzer: Analyzer) -> Iterator[LiveServer]:
    server = LiveServer(tmp_path_factory.mktemp("openapi-fuzz"), analyzer)
    try:
        with requests.Session() as http:  # one ticket for the ticket routes to find
            chat = f"{server.base}/api/webchat/fz-{uuid.uuid4().hex[:8]}/messages"
            first = http.post(chat, json={"text": COMPLAINT}, timeout=30).json()
            confirm = next(b for r in first["replies"] for b in r["buttons"])
            http.post(chat, json={"text": confirm}, timeout=30).raise_for_status()
        yield server
    finally:
        server.close()


def bearer(base: str, name: str) -> dict[str, str]:
    response = requests.post(base + "/api/auth/login",
                             json={"username": name, "password": PASSWORD}, timeout=30)
    response.raise_for_status()
    return {"Authorization": "Bearer " + response.json()["token"]}


def fuzz(live: LiveServer, who: str | None, examples: int) -> int:
    """Send `examples` generated requests to each operation; the number of requests sent."""
    schema = schemathesis.openapi.from_url(live.base + "/api/openapi.json")
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), f"the served document has an invalid operation: {result}"
        operations.append(result.ok())
    assert len(operations) >= 20, "the served document lists the console API"
    sent = 0
    with requests.Session() as http:
        for operation in operations:
            # Log out only at the very end: it would invalidate the token for the rest.
            if "logout" in operation.path:
                continue
            headers = bearer(live.base, who) if who else {}
            sent += check_operation(live.base, http, operation, headers, examples)
    return sent


def check_operation(base: str, http: requests.Session, operation: Any,
                    headers: dict[str, str], examples: int) -> int:
    """Generated requests to one operation, with `headers` (dropped at random); how many."""
    sent = 0

    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(), data=st.data())
    def check(case: Any, data: st.DataObject) -> None:
        nonlocal sent
        merged = {**(case.headers or {}), **headers}
        drop: bool = data.draw(st.booleans(), label="drop auth")
        if headers and drop:
            merged.pop("Authorization", None)
        case.headers = merged
        response = case.call(base_url=base, session=http, timeout=30)
        sent += 1
        detail = f"{case.method} {case.formatted_path} -> {response.status_code}"
        assert response.status_code < 500, detail + ": " + response.text[:300]
        if response.status_code >= 400 and response.status_code != 405:
            assert "error" in response.json(), detail

    check()
    return sent


def test_no_operation_answers_5xx_to_an_anonymous_caller(live: LiveServer) -> None:
    assert fuzz(live, None, examples=10) > 100


def test_no_operation_answers_5xx_to_an_agent(live: LiveServer) -> None:
    assert fuzz(live, "alice", examples=15) > 100


@pytest.mark.slow
def test_no_operation_answers_5xx_to_a_supervisor_many_examples(live: LiveServer) -> None:
    assert fuzz(live, "sue", examples=100) > 1000
