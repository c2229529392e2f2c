"""Redis Cluster readiness: every multi-key command, Lua script and MULTI the bot sends keeps its
keys in one hash slot.

The check watches what really reaches Redis (MONITOR, on the real server) while the Redis parts
work: the dispatcher on the real engine (queued replies, a message id with a ``:``), the
outbound senders (a failed send, a retry, a reply in doubt, acknowledgements, the reaper) and
the WeChat state. Every command whose arguments name one of this test's keys is looked at: a
script's KEYS, a command's keys, and all the keys of a MULTI … EXEC must hash to one slot. A
command the table below does not know fails the test, so a new one cannot slip by unchecked.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from redis.asyncio import Redis
from redis.crc import key_slot

from bot.dispatcher import Dispatcher
from bot.engine import Engine
from bot.keys import SHARDS, Keys, shard_of, shard_tags
from bot.outbound import RedisOutbound
from bot.session import (
    RedisDeduplicator,
    RedisLockStore,
    RedisSessionStore,
    dedup_key,
)
from channels.messages import ConversationRef, IncomingMessage
from channels.wechat_state import RedisWeChatState
from tests.bot.conftest import REDIS_URL, Flaky

pytestmark = pytest.mark.redis

Args = list[bytes]


def _first(args: Args) -> Args:
    return args[:1]


def _streams(args: Args) -> Args:
    names = args[[a.upper() for a in args].index(b"STREAMS") + 1:]
    return names[:len(names) // 2]


# Where each command the bot sends has its keys (its arguments after the name).
KEYS_OF: dict[bytes, Callable[[Args], Args]] = {
    b"GET": _first, b"SET": _first, b"INCR": _first, b"INCRBY": _first, b"EXPIRE": _first,
    b"TTL": _first,
    b"DEL": lambda args: args, b"XADD": _first, b"XLEN": _first, b"XACK": _first,
    b"XDEL": _first, b"XRANGE": _first, b"XREVRANGE": _first, b"XAUTOCLAIM": _first,
    b"XGROUP": lambda args: args[1:2], b"XINFO": lambda args: args[1:2],
    b"XREADGROUP": _streams,
    b"EVALSHA": lambda args: args[2:2 + int(args[1])],
    b"EVAL": lambda args: args[2:2 + int(args[1])],
}
# Commands without keys.
KEYLESS = {b"MULTI", b"EXEC", b"DISCARD", b"PING", b"SCRIPT", b"CLIENT", b"HELLO", b"SELECT",
           b"INFO", b"MONITOR", b"PUBLISH", b"SUBSCRIBE"}

_ARG = re.compile(rb'"((?:[^"\\]|\\.)*)"')
_LINE = re.compile(rb"^\S+ \[\d+ (\S+)\] (.*)$", re.DOTALL)


def _unescape(raw: bytes) -> bytes:
    return re.sub(rb"\\x([0-9a-f]{2})|\\(.)",
                  lambda m: bytes([int(m[1], 16)]) if m[1] else m[2], raw)


@dataclass
class Monitor:
    """What reached Redis: (client, command name, arguments) in order."""

    commands: list[tuple[str, bytes, Args]] = field(default_factory=list)

    def add(self, line: bytes) -> None:
        found = _LINE.match(line)
        if found is None:
            return
        client, rest = found[1].decode(), found[2]
        args = [_unescape(a) for a in _ARG.findall(rest)]
        if args:
            self.commands.append((client, args[0].upper(), args[1:]))


@pytest.fixture
async def monitor() -> AsyncIterator[Monitor]:
    seen = Monitor()
    client = Redis.from_url(REDIS_URL)
    connection = await client.connection_pool.get_connection()  # type: ignore[no-untyped-call]
    await connection.send_command("MONITOR")
    assert await connection.read_response() in (b"OK", "OK")
    started = asyncio.Event()

    async def read() -> None:
        started.set()
        while True:
            response = await connection.read_response()
            if isinstance(response, bytes):
                seen.add(response)

    task = asyncio.create_task(read())
    await started.wait()
    yield seen
    await asyncio.sleep(0.2)  # the last commands' lines
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await connection.disconnect()
    await client.aclose()


def slot_groups(monitor: Monitor, prefix: bytes) -> list[tuple[str, list[bytes]]]:
    """Each multi-key unit (a command, a script, a MULTI … EXEC) that names our keys, with its
    keys; a command of ours that KEYS_OF does not know fails."""
    units: list[tuple[str, list[bytes]]] = []
    open_multi: dict[str, list[bytes]] = {}
    for client, name, args in monitor.commands:
        if client == "lua":
            continue  # inside a script: the script's declared KEYS are checked
        if name in KEYLESS:
            if name == b"MULTI":
                open_multi[client] = []
            elif name in (b"EXEC", b"DISCARD") and client in open_multi:
                keys = open_multi.pop(client)
                if any(k.startswith(prefix) for k in keys):
                    units.append(("MULTI", keys))
            continue
        ours = any(a.startswith(prefix) for a in args)
        if name not in KEYS_OF:
            assert not ours, f"{name!r} sent with our keys: add where its keys are to KEYS_OF"
            continue
        keys = KEYS_OF[name](args)
        if client in open_multi:
            open_multi[client] += keys
        elif ours:
            units.append((name.decode(), keys))
    return units


async def test_every_multi_key_operation_stays_in_one_slot(
        monitor: Monitor, engine: Engine, redis_client: Redis, redis_keys: Keys) -> None:
    sessions = RedisSessionStore(redis_client, keys=redis_keys)
    dedup = RedisDeduplicator(redis_client, keys=redis_keys)
    output = Flaky()
    dispatcher = Dispatcher(engine, sessions, RedisLockStore(redis_client, keys=redis_keys),
                            dedup, {"telegram": output}, commit=dedup, queued={"telegram"})
    outbound = RedisOutbound(redis_client, dedup, {"telegram": output}, keys=redis_keys,
                             min_idle=timedelta(seconds=0.1), stale_after=timedelta(0),
                             block=0.01)
    await outbound.ensure_group()
    now = datetime.now(UTC)
    chats = [ConversationRef("telegram", str(100 + i)) for i in range(6)]
    for n, conversation in enumerate(chats):
        for message_id in ("1", f"m:{n}:2"):  # a ``:`` in a message id too
            await dispatcher(IncomingMessage(conversation, "我的快递一直没到", message_id,
                                             received_at=now))
    await dispatcher(IncomingMessage(chats[0], "我的快递一直没到", "1", received_at=now))  # again
    for _ in range(20):
        if not await outbound.queued():
            break
        await outbound.run_once(block=False)
        await asyncio.sleep(0.12)
    assert await outbound.queued() == 0 and output.sent
    await outbound.reap()
    await sessions.delete(chats[0].key)

    wechat = RedisWeChatState(redis_client, redis_keys, owned=False)
    openid = ConversationRef("wechat", "oOPENID").key
    assert await wechat.claim(openid, "77")
    await wechat.answered(openid, "77", "您好")
    assert (await wechat.answer(openid, "77")) is not None
    await wechat.forget(openid, "77")
    await wechat.show_choices(openid, ("确认", "修改"))
    choices = await wechat.choices(openid)
    assert choices is not None
    await wechat.consume(openid, choices)

    await asyncio.sleep(0.2)
    units = slot_groups(monitor, redis_keys.prefix.encode())
    names = {name for name, _ in units}
    # The multi-key ones were all seen: the commit, the compare-and-set scripts, both MULTIs.
    assert {"EVALSHA", "MULTI", "XREADGROUP", "SET", "GET"} <= names, names
    assert any(name == "EVALSHA" and len(keys) == 3 for name, keys in units)  # the commit
    assert sum(name == "MULTI" for name, _ in units) >= 2  # a failure counted, acks
    for name, keys in units:
        slots = {key_slot(k) for k in keys}
        assert len(slots) == 1, f"{name} touches keys of {len(slots)} slots: {keys}"


@pytest.mark.parametrize("prefix", ["intakebot:", "", "tenant-7:", "a{b:", "a}b:", "{t}:"])
def test_a_conversations_keys_share_a_slot_under_any_prefix(prefix: str) -> None:
    keys = Keys(prefix)
    for chat in ("1", "oABC", "a:b", "x{y}z"):
        conversation = ConversationRef("wechat", chat)
        message = dedup_key(conversation, "m:1%")
        names = [keys.session(conversation.key), keys.lock(conversation.key),
                 keys.dedup(message), keys.seen(message), keys.outbound_of(conversation.key),
                 keys.outbound_attempts(shard_of(conversation.key), "1-0"),
                 keys.wechat_answer(conversation.key, "9"),
                 keys.wechat_choices(conversation.key)]
        assert all(name.startswith(prefix) for name in names)
        assert len({key_slot(name.encode()) for name in names}) == 1, names


def test_the_shards_spread_over_the_slot_range() -> None:
    width = 16_384 // SHARDS
    slots = [key_slot(Keys().outbound(shard).encode()) for shard in range(SHARDS)]
    assert [slot // width for slot in slots] == list(range(SHARDS))
    assert len(set(shard_tags())) == SHARDS
    # conversations land on every shard
    assert {shard_of(f"webchat:{n}") for n in range(1_000)} == set(range(SHARDS))
