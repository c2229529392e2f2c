"""The wiring: start-up and shut-down, /healthz, the error middleware, masked logs, `serve`,
and the whole product on PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from bot.app import (
    DISPATCHER,
    EVIDENCE,
    TICKETS,
    MaskPii,
    configure_logging,
    create_app,
    error_middleware,
)
from bot.session import LockTimeout, StaleSession
from bot.settings import Settings
from channels.webchat import BadRequest, DeliveryFailed, PayloadTooLarge
from handoff.errors import (
    EvidenceError,
    EvidenceNotFound,
    EvidenceTooLarge,
    InvalidTicket,
    TicketNotFound,
    TicketStoreUnavailable,
)
from knowledge_base.errors import InvalidEntry, StoreUnavailable
from knowledge_base.retrieval import Searcher
from knowledge_base.service import make_searcher
from nlp.analyzer import Analyzer

Client = TestClient[Any, Any]
AiohttpClient = Callable[..., Awaitable[Client]]
POSTGRES_ADMIN = os.environ.get("TEST_DATABASE_URL",
                                "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
NUMBER = re.compile(r"TS\d{8}-\d{4}")


@pytest.fixture(scope="module")
def searcher() -> Searcher:
    return make_searcher(dense=False)


def settings_for(data_dir: Path, **env: str) -> Settings:
    return Settings.from_env({"INTAKEBOT_DATA_DIR": str(data_dir), **env})


async def test_start_up_wires_everything_and_health_checks_the_database(
        tmp_path: Path, analyzer: Analyzer, searcher: Searcher,
        aiohttp_client: AiohttpClient) -> None:
    client = await aiohttp_client(create_app(settings_for(tmp_path), analyzer=analyzer,
                                             searcher=searcher))
    response = await client.get("/healthz")
    assert response.status == 200 and await response.json() == {"status": "ok"}
    assert (tmp_path / "intakebot.db").exists()
    assert client.app[EVIDENCE].root == tmp_path / "evidence"
    assert DISPATCHER in client.app
    page = await client.get("/chat")
    assert page.status == 200 and "在线客服" in await page.text()
    for asset in ("chat.js", "chat.css"):
        assert (await client.get(f"/chat/static/{asset}")).status == 200
    assert (await client.get("/chat/static/../../bot/settings.py")).status in (403, 404)
    kb = await client.get("/api/kb/entries")
    assert kb.status == 401 and "error" in await kb.json()


async def test_health_check_reports_an_unreachable_database(
        tmp_path: Path, analyzer: Analyzer, searcher: Searcher,
        aiohttp_client: AiohttpClient, monkeypatch: pytest.MonkeyPatch) -> None:
    client = await aiohttp_client(create_app(settings_for(tmp_path), analyzer=analyzer,
                                             searcher=searcher))

    async def down() -> None:
        raise TicketStoreUnavailable("connection refused")

    monkeypatch.setattr(client.app[TICKETS], "ping", down)
    response = await client.get("/healthz")
    assert response.status == 503 and (await response.json())["status"] == "unavailable"


async def test_start_up_fails_clearly_without_a_database(
        tmp_path: Path, analyzer: Analyzer, searcher: Searcher) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens here
    app = create_app(settings_for(
        tmp_path, DATABASE_URL=f"postgresql://postgres@127.0.0.1:{port}/none"),
        analyzer=analyzer, searcher=searcher)
    runner = web.AppRunner(app)
    with pytest.raises(TicketStoreUnavailable, match="cannot open the ticket store"):
        await runner.setup()
    await runner.cleanup()


# ---- the error middleware -------------------------------------------------------------------

ERRORS: list[tuple[Exception, int]] = [
    (BadRequest("bad"), 400),
    (PayloadTooLarge("big"), 413),
    (EvidenceTooLarge(11, 10), 413),
    (TicketNotFound("none"), 404),
    (EvidenceNotFound("none"), 404),
    (InvalidTicket("bad form"), 400),
    (LockTimeout("webchat:a"), 503),
    (StaleSession("webchat:a"), 503),
    (DeliveryFailed("outbox down"), 503),
    (TicketStoreUnavailable("down"), 503),
    (StoreUnavailable("down"), 503),
    (EvidenceError("disk full"), 500),
    (InvalidEntry("kb"), 500),
    (RuntimeError("bug"), 500),
]


@pytest.fixture
async def failing(aiohttp_client: AiohttpClient) -> Client:
    app = web.Application(middlewares=[error_middleware])

    async def fail(request: web.Request) -> web.Response:
        raise ERRORS[int(request.match_info["n"])][0]

    app.router.add_get("/fail/{n}", fail)
    return await aiohttp_client(app)


async def test_the_middleware_maps_every_error_to_json(failing: Client) -> None:
    for number, (error, status) in enumerate(ERRORS):
        response = await failing.get(f"/fail/{number}")
        assert response.status == status, error
        data = await response.json()
        assert isinstance(data["error"], str) and data["error"], error
        if status == 503:
            assert response.headers["Retry-After"] == "5"
        if status == 500:
            assert "bug" not in data["error"]  # internals are logged, not shown
    assert (await failing.get("/nothing")).status == 404
    assert (await (await failing.get("/nothing")).json()) == {"error": "Not Found"}


# ---- logs -----------------------------------------------------------------------------------


def test_log_records_are_masked() -> None:
    record = logging.LogRecord("bot", logging.INFO, __file__, 1,
                               "customer %s wrote from %s", ("王小明", "13812345678"), None)
    assert MaskPii().filter(record)
    message = record.getMessage()
    assert "13812345678" not in message and "customer" in message


def test_configure_logging_masks_through_the_root_handler(
        capfd: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    try:
        configure_logging()
        logging.getLogger("bot.test").info("call me on 13912345678 or a@example.com")
        err = capfd.readouterr().err
    finally:
        root.handlers[:] = saved
        root.setLevel(level)
    assert "call me on" in err
    assert "13912345678" not in err and "a@example.com" not in err


# ---- the whole product on PostgreSQL and Redis ----------------------------------------------


@pytest.fixture
async def postgres_database() -> AsyncIterator[str]:
    """A fresh database on the test server (DATABASE_URL as a platform gives it), dropped after."""
    import asyncpg  # type: ignore[import-untyped]

    name = "intakebot_" + uuid.uuid4().hex[:12]
    admin_dsn = POSTGRES_ADMIN.replace("postgresql+asyncpg://", "postgresql://", 1)
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
        yield admin_dsn.rsplit("/", 1)[0] + "/" + name
    finally:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()


@pytest.mark.postgres
@pytest.mark.redis
async def test_a_complaint_end_to_end_on_postgres_and_redis(
        tmp_path: Path, analyzer: Analyzer, searcher: Searcher, postgres_database: str,
        aiohttp_client: AiohttpClient) -> None:
    prefix = f"intakebot-test-{uuid.uuid4().hex[:12]}:"
    settings = settings_for(tmp_path, DATABASE_URL=postgres_database,
                            REDIS_URL="redis://127.0.0.1:6379/0")
    assert settings.database_url.startswith("postgresql+asyncpg://")
    client = await aiohttp_client(create_app(settings, analyzer=analyzer, searcher=searcher,
                                             redis_prefix=prefix))
    try:
        url = "/api/webchat/pg-1/messages"
        first = await (await client.post(url, json={"text": "转人工", "message_id": "1"})).json()
        assert first["ticket_id"] and NUMBER.search(first["replies"][0]["text"])
        again = await (await client.post(url, json={"text": "转人工", "message_id": "1"})).json()
        assert again == first
        ticket = await client.app[TICKETS].get(first["ticket_id"])
        assert ticket.handoff_reason == "requested_human"
        assert (await client.get("/healthz")).status == 200
    finally:
        from redis.asyncio import Redis

        redis = Redis.from_url("redis://127.0.0.1:6379/0")
        keys = [key async for key in redis.scan_iter(match=prefix + "*")]
        assert keys, "the sessions were kept in Redis"
        await redis.delete(*keys)
        await redis.aclose()



@pytest.mark.postgres
@pytest.mark.redis
async def test_connections_the_database_dropped_cost_one_resend_at_most(
        tmp_path: Path, analyzer: Analyzer, searcher: Searcher, postgres_database: str,
        aiohttp_client: AiohttpClient) -> None:
    """The ticket store's pool does not ping each connection before use (three round trips on
    asyncpg): a connection the server dropped fails once, and the pool replaces them all."""
    import asyncpg

    from bot.app import PG_POOL_SIZE

    prefix = f"intakebot-test-{uuid.uuid4().hex[:12]}:"
    settings = settings_for(tmp_path, DATABASE_URL=postgres_database,
                            REDIS_URL="redis://127.0.0.1:6379/0")
    client = await aiohttp_client(create_app(settings, analyzer=analyzer, searcher=searcher,
                                             redis_prefix=prefix))
    pool = client.app[TICKETS].engine.pool
    assert not pool._pre_ping and pool.size() == PG_POOL_SIZE
    url = "/api/webchat/pg-drop/messages"
    for turn in range(3):  # several pooled connections in use
        assert (await client.post(url, json={"text": "我的快递一直没到",
                                             "message_id": f"m{turn}"})).status == 200
    database = postgres_database.rsplit("/", 1)[1]
    admin = await asyncpg.connect(postgres_database.rsplit("/", 1)[0] + "/test")
    try:
        dropped = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = $1 AND pid <> pg_backend_pid()", database)
    finally:
        await admin.close()
    assert dropped >= 1
    statuses = []
    for _attempt in range(3):  # the client resends with the same message id after a 503
        response = await client.post(url, json={"text": "订单号 SF1234567890",
                                                "message_id": "after-drop"})
        statuses.append(response.status)
        if response.status == 200:
            break
    assert statuses in ([200], [503, 200]), statuses
    assert (await client.get("/healthz")).status == 200
    from redis.asyncio import Redis

    redis = Redis.from_url("redis://127.0.0.1:6379/0")
    keys = [key async for key in redis.scan_iter(match=prefix + "*")]
    if keys:
        await redis.delete(*keys)
    await redis.aclose()

# ---- `intakebot serve` ----------------------------------------------------------------------


def test_serve_has_host_and_port_options() -> None:
    from typer.testing import CliRunner

    from bot.cli import app

    result = CliRunner().invoke(app, ["serve", "--help"])
    assert result.exit_code == 0
    assert "--host" in result.output and "--port" in result.output


@pytest.mark.parametrize(("name", "value"), [("INTAKEBOT_REDIS_CLUSTER", "maybe"),
                                              ("MAIL_IMAP_TLS", "sometimes")])
def test_serve_names_a_malformed_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          name: str, value: str) -> None:
    from typer.testing import CliRunner

    from bot.cli import app

    monkeypatch.setenv("INTAKEBOT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv(name, value)
    if name.startswith("MAIL_"):  # the mail channel reads its flags once it is configured
        for variable, setting in {"MAIL_IMAP_HOST": "imap.example.com",
                                  "MAIL_IMAP_USER": "desk", "MAIL_IMAP_PASSWORD": "secret",
                                  "MAIL_SMTP_HOST": "smtp.example.com",
                                  "MAIL_FROM": "desk@example.com"}.items():
            monkeypatch.setenv(variable, setting)
    result = CliRunner().invoke(app, ["serve"])
    assert result.exit_code == 2, result.output
    assert f"{name} must be true or false" in result.output
    assert "Traceback" not in result.output


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_serve_runs_the_product_with_masked_logs(tmp_path: Path, data_dir: Path,
                                                       analyzer: Analyzer) -> None:
    # Reuse the session's trained model; everything else is fresh (the dense FAQ model too).
    data = tmp_path / "data"
    data.mkdir()
    (data / "models").symlink_to(data_dir / "models", target_is_directory=True)
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "PORT")}
    env["INTAKEBOT_DATA_DIR"] = str(data)
    process = subprocess.Popen(
        [sys.executable, "-c", "from bot.cli import main; main()", "serve",
         "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as http:
            deadline = time.monotonic() + 180
            while True:
                assert process.poll() is None, process.communicate()[0]
                try:
                    async with http.get(base + "/healthz") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    pass
                assert time.monotonic() < deadline, "serve did not start"
                await asyncio.sleep(0.5)
            async with http.post(base + "/api/webchat/serve-1/messages", json={
                    "text": "我的快递丢了，电话13812345678，找人工"}) as response:
                assert response.status == 200
                assert (await response.json())["ticket_id"]
            async with http.post(base + "/api/webchat/serve-1/messages", data=b"{") as response:
                assert response.status == 400
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    assert "/api/webchat/serve-1/messages" in output  # the access log
    assert "13812345678" not in output
