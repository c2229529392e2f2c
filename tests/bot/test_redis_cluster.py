"""The Redis parts on a real Redis Cluster (three masters started here with redis-server).

`INTAKEBOT_REDIS_CLUSTER=true` makes the dispatcher's client a `RedisCluster`, which follows
the slot map; every multi-key operation stays in one slot (tests/bot/test_cluster_slots.py
checks that on the wire), so the same scripts and MULTIs run on the cluster unchanged.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from bench.redis_cluster import ClusterUnavailable, running_cluster
from bot.app import create_app
from bot.dispatcher import Dispatcher
from bot.engine import Engine
from bot.keys import Keys
from bot.outbound import RedisOutbound
from bot.redis_client import connect
from bot.session import RedisDeduplicator, RedisLockStore, RedisSessionStore
from bot.settings import Settings
from channels.messages import ConversationRef, IncomingMessage
from channels.wechat_state import RedisWeChatState
from knowledge_base.service import make_searcher
from nlp.analyzer import Analyzer
from tests.bot.conftest import Flaky

pytestmark = pytest.mark.redis


@pytest.fixture(scope="module")
def cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Three masters on free ports, the 16,384 slots split between them; a node's URL."""
    try:
        with running_cluster(tmp_path_factory.mktemp("redis-cluster")) as url:
            yield url
    except ClusterUnavailable as exc:
        pytest.fail(str(exc))


@pytest.fixture
async def cluster(cluster_url: str) -> AsyncIterator[RedisCluster]:
    client = connect(cluster_url, cluster=True)
    assert isinstance(client, RedisCluster)
    await client.initialize()  # the slot map and the nodes
    yield client
    await client.aclose()


async def _keys_per_node(client: RedisCluster, prefix: str) -> dict[str, list[bytes]]:
    found = {}
    for node in client.get_primaries():
        plain = Redis(host=node.host, port=node.port)
        found[node.name] = [k async for k in plain.scan_iter(match=f"{prefix}*")]
        await plain.aclose()
    return found


async def _delete_prefix(client: RedisCluster, prefix: str) -> None:
    for keys in (await _keys_per_node(client, prefix)).values():
        for key in keys:  # one by one: a DEL of several slots is refused, even on one node
            await client.delete(key)


async def test_conversations_on_a_cluster_are_answered_once_and_spread(
        cluster: RedisCluster, engine: Engine) -> None:
    """Sessions, locks, de-duplication, the atomic commit, the outbound streams (blocking reads
    by the background senders, a failed send retried, acknowledgements, the reaper) and the
    WeChat state, all on three masters."""
    keys = Keys(prefix=f"intakebot-test:{uuid.uuid4().hex[:12]}:")
    sessions = RedisSessionStore(cluster, keys=keys)
    dedup = RedisDeduplicator(cluster, keys=keys)
    output = Flaky()
    dispatcher = Dispatcher(engine, sessions, RedisLockStore(cluster, keys=keys), dedup,
                            {"telegram": output}, commit=dedup, queued={"telegram"})
    outbound = RedisOutbound(cluster, dedup, {"telegram": output}, keys=keys,
                             min_idle=timedelta(seconds=0.2), stale_after=timedelta(0),
                             block=0.05)
    await outbound.start()
    try:
        now = datetime.now(UTC)
        chats = [ConversationRef("telegram", str(200 + i)) for i in range(12)]
        first = await asyncio.gather(*(
            dispatcher(IncomingMessage(chat, "我的快递一直没到", "1", received_at=now))
            for chat in chats))
        again = await dispatcher(IncomingMessage(chats[0], "我的快递一直没到", "1",
                                                 received_at=now))
        assert again == first[0]  # a duplicate delivery: the record's replies, not queued again
        for _ in range(100):
            if not await outbound.queued():
                break
            await asyncio.sleep(0.1)
        assert await outbound.queued() == 0
        answered = [m.conversation for m in output.sent]
        assert sorted({c.chat_id for c in answered}) == sorted(c.chat_id for c in chats)
        assert len(answered) == len(set((m.conversation, m.text) for m in output.sent))
        assert (await sessions.get(chats[0].key)) is not None
        await outbound.reap()

        wechat = RedisWeChatState(cluster, keys, owned=False)
        openid = ConversationRef("wechat", "oOPENID").key
        assert await wechat.claim(openid, "77")
        assert not await wechat.claim(openid, "77")  # WeChat's retry of the same message
        await wechat.answered(openid, "77", "您好")
        assert (await wechat.answer(openid, "77")) is not None
        await wechat.show_choices(openid, ("确认", "修改"))
        choices = await wechat.choices(openid)
        assert choices is not None and choices.buttons == ("确认", "修改")
        await wechat.consume(openid, choices)  # a compare-and-delete script
        assert await wechat.choices(openid) is None

        spread = await _keys_per_node(cluster, keys.prefix)
        assert sum(1 for found in spread.values() if found) >= 2, spread
    finally:
        await outbound.close()
        await _delete_prefix(cluster, keys.prefix)


async def test_the_app_on_a_cluster(cluster_url: str, cluster: RedisCluster, tmp_path: Path,
                                    analyzer: Analyzer) -> None:
    """`INTAKEBOT_REDIS_CLUSTER=true`: the web chat's conversations keep their sessions on the
    cluster, a resent message gets the same answer, and the console's events still flow
    (pub/sub on the named node, which a cluster broadcasts)."""
    prefix = f"intakebot-test-{uuid.uuid4().hex[:12]}:"
    settings = Settings.from_env({"INTAKEBOT_DATA_DIR": str(tmp_path), "REDIS_URL": cluster_url,
                                  "INTAKEBOT_REDIS_CLUSTER": "true"})
    assert settings.redis_cluster
    app = create_app(settings, analyzer=analyzer, searcher=make_searcher(dense=False),
                     redis_prefix=prefix)
    async with TestClient(TestServer(app)) as client:
        answers = {}
        for n in range(8):
            url = f"/api/webchat/cluster-{n}/messages"
            response = await client.post(url, json={"text": "转人工", "message_id": "1"})
            assert response.status == 200, await response.text()
            answers[n] = await response.json()
            assert answers[n]["ticket_id"]
        again = await client.post("/api/webchat/cluster-0/messages",
                                  json={"text": "转人工", "message_id": "1"})
        assert await again.json() == answers[0]
        assert (await client.get("/healthz")).status == 200
    spread = await _keys_per_node(cluster, prefix)
    assert sum(map(len, spread.values())) >= 8, spread
    assert sum(1 for found in spread.values() if found) >= 2, spread
    await _delete_prefix(cluster, prefix)
