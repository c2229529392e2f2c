"""Crash safety with real `intakebot serve` processes behind no sticky load balancer.

Concurrent web-chat conversations go to two servers at random; clients resend the same
message_id after a connection error or a 5xx, as the widget does. In the middle, a server is
killed with SIGKILL (or a private Redis is killed, or a private PostgreSQL stopped in
immediate mode, and restarted); afterwards every customer
message is in its session exactly once and at most once in its ticket, and every reply is in the
web chat's outbox exactly once: none lost, none answered twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis

from bot.keys import Keys

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

POSTGRES_ADMIN = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
SHARED_REDIS = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
CONVERSATIONS = 20
START_TIMEOUT = 300.0
FINISH_TIMEOUT = 300.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def script(n: int) -> list[str]:
    """One customer's messages; each text is unique, so a doubled line shows."""
    return [f"我买的蓝牙耳机坏了，不能充电（第{n}位顾客）",
            f"订单号 45219876341{n:02d}",
            f"我的手机是 138123456{n:02d}，请尽快处理（{n}）",
            f"我要求退货退款，编号{n}"]


@pytest.fixture
async def database() -> AsyncIterator[str]:
    """A fresh PostgreSQL database for the servers, dropped afterwards."""
    import asyncpg  # type: ignore[import-untyped]

    name = "crash_" + uuid.uuid4().hex[:12]
    conn = await asyncpg.connect(POSTGRES_ADMIN)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
        yield POSTGRES_ADMIN.rsplit("/", 1)[0] + "/" + name
    finally:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()


@pytest.fixture
def server_data(tmp_path: Path, data_dir: Path, analyzer: object) -> Path:
    """A data directory sharing the trained triage model, so no server retrains it."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "models").symlink_to(data_dir / "models", target_is_directory=True)
    return data


class PrivateRedis:
    """A redis-server of this test's own, with every write fsynced (AOF), restartable."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.dir),
             "--daemonize", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    directory = Path(tempfile.mkdtemp(prefix="ib-crash-redis-"))
    server = PrivateRedis(directory)
    server.start()
    try:
        yield server
    finally:
        server.kill()
        shutil.rmtree(directory, ignore_errors=True)


class PrivatePostgres:
    """A PostgreSQL cluster of this test's own (initdb as the postgres user), restartable."""

    def __init__(self, directory: Path) -> None:
        bins = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
        assert bins, "the postgres tests need PostgreSQL's server binaries"
        self.bin = bins[-1]
        self.dir = directory
        self.data = directory / "data"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        command = [str(a) for a in args]
        if os.geteuid() == 0:  # initdb and postgres refuse to run as root
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def init(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres",
                  "--auth=trust", "--no-sync")

    def start(self) -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-w", "-l",
                  str(self.dir / "log"), "-o",
                  f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1", "start")

    def crash(self) -> None:
        """Stop at once, as a crash does: no checkpoint, WAL replay on the next start."""
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    directory = Path(tempfile.mkdtemp(prefix="ib-crash-pg-"))
    server = PrivatePostgres(directory)
    server.init()
    server.start()
    try:
        yield server
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            server.crash()
        shutil.rmtree(directory, ignore_errors=True)


class Server:
    """One `intakebot serve` process on its own port."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-c", "from bot.cli import main; main()", "serve",
                 "--host", "127.0.0.1", "--port", str(self.port)],
                env=self.env, stdout=out, stderr=subprocess.STDOUT)

    async def ready(self, http: aiohttp.ClientSession) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert self.process is not None and self.process.poll() is None, \
                self.log.read_text(errors="replace")[-3000:]
            try:
                async with http.get(self.base + "/healthz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            assert time.monotonic() < deadline, "serve did not start"
            await asyncio.sleep(0.5)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class Customer:
    chat_id: str
    texts: list[str]
    replies: list[str] = field(default_factory=list)
    retries: int = 0


@dataclass
class Load:
    """Conversations at random servers, each message resent with its id until accepted."""

    servers: list[Server]
    customers: list[Customer]
    done: int = 0

    async def run(self, http: aiohttp.ClientSession) -> None:
        await asyncio.wait_for(asyncio.gather(*(self._talk(http, c) for c in self.customers)),
                               FINISH_TIMEOUT)

    async def _talk(self, http: aiohttp.ClientSession, customer: Customer) -> None:
        for number, text in enumerate(customer.texts):
            body = {"text": text, "message_id": f"{customer.chat_id}-{number}"}
            while True:
                server = random.choice(self.servers)
                url = f"{server.base}/api/webchat/{customer.chat_id}/messages"
                try:
                    async with http.post(url, json=body) as response:
                        if response.status == 200:
                            data = await response.json()
                            customer.replies += [r["text"] for r in data["replies"]]
                            break
                        assert response.status >= 500, await response.text()
                except (TimeoutError, aiohttp.ClientError):
                    pass
                customer.retries += 1
                await asyncio.sleep(0.2)
            self.done += 1


async def check(http: aiohttp.ClientSession, server: Server, load: Load, redis_url: str,
                prefix: str, database: str) -> None:
    """No customer message lost or doubled, no reply lost or doubled."""
    import asyncpg

    redis = Redis.from_url(redis_url)
    conn = await asyncpg.connect(database)
    try:
        for customer in load.customers:
            raw = await redis.get(Keys(prefix).session(f"webchat:{customer.chat_id}"))
            assert raw is not None, customer.chat_id
            said = [line["text"] for line in json.loads(raw)["transcript"]
                    if line["author"] == "customer"]
            assert said == customer.texts, customer.chat_id  # each once, in order
            async with http.get(f"{server.base}/api/webchat/{customer.chat_id}/messages"
                                ) as response:
                assert response.status == 200
                shown = [m["text"] for m in (await response.json())["messages"]]
            assert shown == customer.replies, customer.chat_id  # each reply once, in order
            rows = await conn.fetch(
                "SELECT tr.text FROM ticket_transcript tr JOIN tickets t ON t.id = tr.ticket_id"
                " WHERE t.channel = 'webchat' AND t.chat_id = $1 AND tr.author = 'customer'",
                customer.chat_id)
            texts = [r["text"] for r in rows]
            assert len(texts) == len(set(texts)), customer.chat_id  # no line twice
            assert set(texts) <= set(customer.texts)
    finally:
        await conn.close()
        await redis.aclose()


def server_env(data: Path, database: str, redis_url: str, prefix: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "REDIS_URL", "PORT", "INTAKEBOT_PORT")}
    env.update(INTAKEBOT_DATA_DIR=str(data), DATABASE_URL=database, REDIS_URL=redis_url,
               INTAKEBOT_REDIS_PREFIX=prefix, INTAKEBOT_KB_EMBEDDING_MODEL="none")
    return env


async def drop_keys(redis_url: str, prefix: str) -> None:
    redis = Redis.from_url(redis_url)
    try:
        stale = [k async for k in redis.scan_iter(match=prefix + "*")]
        if stale:
            await redis.delete(*stale)
    finally:
        await redis.aclose()


async def wait_until(condition: Any, timeout: float = FINISH_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)


@pytest.mark.slow  # over a minute on a loaded machine
async def test_kill_9_of_a_server_under_load_loses_and_doubles_nothing(
        tmp_path: Path, server_data: Path, database: str) -> None:
    prefix = f"intakebot-crash-{uuid.uuid4().hex[:10]}:"
    env = server_env(server_data, database, SHARED_REDIS, prefix)
    a, b = Server(env, tmp_path / "a.log"), Server(env, tmp_path / "b.log")
    customers = [Customer(f"crash-{uuid.uuid4().hex[:8]}-{n}", script(n))
                 for n in range(CONVERSATIONS)]
    load = Load([a, b], customers)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
            a.start()
            await a.ready(http)  # the first start migrates and seeds the fresh database
            b.start()
            await b.ready(http)
            running = asyncio.create_task(load.run(http))
            await wait_until(lambda: load.done >= CONVERSATIONS or running.done())
            a.kill()  # in the middle of conversations, with requests in flight
            a.start()
            await a.ready(http)
            await running
            await check(http, b, load, SHARED_REDIS, prefix, database)
    finally:
        a.stop()
        b.stop()
        await drop_keys(SHARED_REDIS, prefix)
    assert sum(c.retries for c in customers) > 0, "the kill hit no request"


@pytest.mark.slow  # over a minute on a loaded machine
async def test_a_redis_restart_under_load_loses_and_doubles_nothing(
        tmp_path: Path, server_data: Path, database: str, private_redis: PrivateRedis) -> None:
    prefix = f"intakebot-crash-{uuid.uuid4().hex[:10]}:"
    env = server_env(server_data, database, private_redis.url, prefix)
    server = Server(env, tmp_path / "server.log")
    customers = [Customer(f"redis-{uuid.uuid4().hex[:8]}-{n}", script(n))
                 for n in range(CONVERSATIONS)]
    load = Load([server], customers)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
            server.start()
            await server.ready(http)
            running = asyncio.create_task(load.run(http))
            await wait_until(lambda: load.done >= CONVERSATIONS or running.done())
            private_redis.kill()  # kill -9: only what was fsynced to the AOF survives
            await asyncio.sleep(1.0)  # clients keep resending meanwhile (503s)
            private_redis.start()
            await running
            await check(http, server, load, private_redis.url, prefix, database)
    finally:
        server.stop()
    assert sum(c.retries for c in customers) > 0, "the restart hit no request"


async def test_a_postgresql_restart_under_load_loses_and_doubles_nothing(
        tmp_path: Path, server_data: Path, private_postgres: PrivatePostgres) -> None:
    prefix = f"intakebot-crash-{uuid.uuid4().hex[:10]}:"
    env = server_env(server_data, private_postgres.url, SHARED_REDIS, prefix)
    server = Server(env, tmp_path / "server.log")
    customers = [Customer(f"pg-{uuid.uuid4().hex[:8]}-{n}", script(n))
                 for n in range(CONVERSATIONS)]
    load = Load([server], customers)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
            server.start()
            await server.ready(http)
            running = asyncio.create_task(load.run(http))
            await wait_until(lambda: load.done >= CONVERSATIONS or running.done())
            await asyncio.to_thread(private_postgres.crash)
            await asyncio.sleep(1.0)  # clients keep resending meanwhile (503s)
            await asyncio.to_thread(private_postgres.start)
            await running
            await check(http, server, load, SHARED_REDIS, prefix, private_postgres.url)
    finally:
        server.stop()
        await drop_keys(SHARED_REDIS, prefix)
    assert sum(c.retries for c in customers) > 0, "the restart hit no request"


@pytest.mark.slow  # the take-over waits the 30 s idle time
async def test_kill_9_during_a_telegram_send_sends_no_reply_twice(
        tmp_path: Path, server_data: Path, database: str) -> None:
    """The server dies while the Bot API carries out its sendMessage (the message is sent, the
    answer never reaches the server): the server taking over does not send it again but lists
    it as a dead letter in doubt, and sends the message's other replies once."""
    from bot.session import Delivery, dedup_key
    from channels.messages import ConversationRef
    from channels.telegram import SECRET_HEADER, TelegramConfig
    from tests.channels.fake_telegram import FakeTelegram

    token, secret, chat = "123456:CRASH-token", "crash-secret", 8801
    prefix = f"intakebot-crash-{uuid.uuid4().hex[:10]}:"
    keys = Keys(prefix)
    redis = Redis.from_url(SHARED_REDIS)
    async with FakeTelegram(token) as fake:
        env = {**server_env(server_data, database, SHARED_REDIS, prefix),
               "TELEGRAM_BOT_TOKEN": token, "TELEGRAM_WEBHOOK_SECRET": secret,
               "TELEGRAM_API_BASE": fake.url}
        config = TelegramConfig.from_env(env)
        assert config is not None
        a, b = Server(env, tmp_path / "a.log"), Server(env, tmp_path / "b.log")
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
                a.start()
                await a.ready(http)
                fake.stall("sendMessage", 20.0)  # carried out, answered after the kill
                update = fake.text_update(chat, "我的快递一直没到，已经一个星期了")
                async with http.post(a.base + config.webhook_path, json=update,
                                     headers={SECRET_HEADER: secret}) as response:
                    assert response.status == 200, await response.text()
                await asyncio.wait_for(fake.stalled.wait(), 60)
                a.kill()  # between Telegram sending the reply and the server counting it
                assert len(fake.sent_to(chat)) == 1
                b.start()
                await b.ready(http)
                key = keys.dedup(dedup_key(ConversationRef("telegram", str(chat)),
                                           str(update["message"]["message_id"])))

                async def delivery() -> Delivery:
                    raw = await redis.get(key)
                    assert raw is not None
                    return Delivery.loads(raw)

                deadline = time.monotonic() + FINISH_TIMEOUT
                while not (await delivery()).complete:
                    assert time.monotonic() < deadline, "the replies were never sent"
                    await asyncio.sleep(0.5)
                replies = [r.text for r in (await delivery()).replies]
                await asyncio.sleep(1.0)  # nothing more comes
                assert [m["text"] for m in fake.sent_to(chat)] == replies  # each once
                assert len(fake.called("sendMessage")) == len(replies)
                dead: Any = await redis.xrange(keys.outbound_dead)
                [(_, letter)] = dead
                assert letter[b"reply"] == b"0" and letter[b"error"].startswith(b"in doubt")
        finally:
            a.stop()
            b.stop()
            await redis.aclose()
            await drop_keys(SHARED_REDIS, prefix)
