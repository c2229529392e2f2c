"""WeChat behind a load balancer: two real application instances (two aiohttp servers) on one
Redis, with the fake WeChat API. WeChat's retry of a message may reach the other process: it is
answered with the same passive reply and the message is handled once; a process that claimed a
message and died before handling it leaves it to the retry; and the number a customer answers a
numbered list with picks the right button on the other process."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from bot.app import create_app
from bot.keys import Keys
from bot.session import RedisSessionStore
from bot.settings import Settings
from channels.base import OnMessage
from channels.messages import Author, ConversationRef
from channels.wechat import WeChat, WeChatConfig
from channels.wechat_state import RedisWeChatState
from handoff.evidence import EvidenceStore
from knowledge_base.retrieval import Searcher
from nlp.analyzer import Analyzer
from tests.channels.conftest import REDIS_URL
from tests.channels.fake_wechat import APP_ID, APP_SECRET, TOKEN, FakeWeChatApi, WeChatPlatform
from tests.channels.test_wechat import NUMBER, Account, Customer, Wrap, option, slow

pytestmark = pytest.mark.redis

Client = TestClient[Any, Any]
AiohttpClient = Callable[..., Awaitable[Client]]
AiohttpServer = Callable[..., Awaitable[TestServer]]

COMPLAINT = ("我买的电饭煲用了两天就坏了，完全不能加热。订单号DD2026112012345，"
             "商品是美的电饭煲，电话13812345678，我要求换货")


@dataclass
class Processes:
    """Two instances of the app, each with its WeChat channel, sharing Redis and a database."""

    a: Account
    b: Account
    keys: Keys
    redis: Redis

    async def idle(self) -> None:
        await asyncio.gather(self.a.channel.idle(), self.b.channel.idle())

    async def customer_lines(self, openid: str) -> list[str]:
        session = await RedisSessionStore(self.redis, keys=self.keys).get(
            ConversationRef("wechat", openid).key)
        assert session is not None
        return [line.text for line in session.transcript if line.author is Author.CUSTOMER]


@pytest.fixture
async def processes(tmp_path: Path, analyzer: Analyzer, searcher: Searcher,
                    aiohttp_client: AiohttpClient, aiohttp_server: AiohttpServer
                    ) -> AsyncIterator[Callable[..., Awaitable[Processes]]]:
    api = FakeWeChatApi()
    api_base = str((await aiohttp_server(api.app())).make_url("")).rstrip("/")
    keys = Keys(f"intakebot-test-{uuid.uuid4().hex[:12]}:")
    redis = Redis.from_url(REDIS_URL)
    data = tmp_path / "data"
    settings = Settings.from_env({"INTAKEBOT_DATA_DIR": str(data), "REDIS_URL": REDIS_URL})
    config = WeChatConfig.from_env({
        "WECHAT_TOKEN": TOKEN, "WECHAT_APP_ID": APP_ID, "WECHAT_APP_SECRET": APP_SECRET,
        "WECHAT_API_BASE": api_base})
    assert config is not None
    platform = WeChatPlatform()  # one WeChat: its MsgIds are unique across both processes
    clients: list[Client] = []

    async def instance(wrap: Wrap | None) -> Account:
        built: list[WeChat] = []

        def channels(on_message: OnMessage) -> list[Any]:
            built.append(WeChat(config, wrap(on_message) if wrap else on_message,
                                files=EvidenceStore(data / "evidence"),
                                state=RedisWeChatState.from_url(REDIS_URL, keys)))
            return list(built)

        client = await aiohttp_client(create_app(
            settings, analyzer=analyzer, searcher=searcher, redis_prefix=keys.prefix,
            channels=channels))
        clients.append(client)
        return Account(client, built[0], api, platform)

    async def start(*, wrap: Wrap | None = None) -> Processes:
        # One after the other: the first migrates the shared database.
        return Processes(await instance(wrap), await instance(wrap), keys, redis)

    yield start
    for client in clients:  # stopped before their keys go
        await client.close()
    stale = [k async for k in redis.scan_iter(match=f"{keys.prefix}*")]
    if stale:
        await redis.delete(*stale)
    await redis.aclose()


async def test_a_retry_that_reaches_the_other_process_is_answered_once(
        processes: Callable[..., Awaitable[Processes]]) -> None:
    calls: list[str] = []
    both = await processes(wrap=slow(0.5, calls))  # each message takes a while to handle
    customer = Customer(both.a)
    body = both.a.platform.text_xml(customer.openid, "我的快递一直没到", "99001")
    first = asyncio.create_task(both.a.passive(body))
    await asyncio.sleep(0.2)
    # A's answer is late (for WeChat): the retry goes to B while A handles the message.
    retry = await both.b.passive(body)
    answer = await first
    assert answer and retry == answer
    await both.idle()
    assert await both.customer_lines(customer.openid) == ["我的快递一直没到"]
    pushed = both.a.api.texts(customer.openid)  # the other replies, by the API, once
    assert answer not in pushed and len(pushed) == len(set(pushed))
    # A later retry, to either process, gets the same answer and changes nothing.
    assert await both.b.passive(body) == answer
    assert await both.a.passive(body) == answer
    await both.idle()
    assert both.a.api.texts(customer.openid) == pushed
    assert await both.customer_lines(customer.openid) == ["我的快递一直没到"]


async def test_a_message_whose_first_process_died_is_handled_by_the_retry(
        processes: Callable[..., Awaitable[Processes]]) -> None:
    both = await processes()
    customer = Customer(both.b)
    # A claimed the message, then died before handling it (no lock, no record).
    state = RedisWeChatState(both.redis, both.keys, owned=False)
    assert await state.claim(ConversationRef("wechat", customer.openid).key, "99002")
    body = both.b.platform.text_xml(customer.openid, "我的快递一直没到", "99002")
    answer = await both.b.passive(body)
    assert answer and "订单号" in answer + "".join(await customer.pushed())
    assert await both.customer_lines(customer.openid) == ["我的快递一直没到"]
    assert await both.a.passive(body) == answer  # and a further retry is answered alike


async def test_a_numbered_answer_on_the_other_process_picks_the_right_button(
        processes: Callable[..., Awaitable[Processes]]) -> None:
    both = await processes()
    customer = Customer(both.a)
    first = await customer.say(COMPLAINT)
    assert "DD2026112012345" in "\n".join(first)
    customer.account = both.b  # the load balancer sends the answer to the other process
    done = await customer.say(option(first, "确认"))
    number = NUMBER.search("\n".join(done))
    assert number, done
    ticket = await both.b.tickets.open_ticket("wechat", customer.openid)
    assert ticket is not None and ticket.number == number[0]
    transcript = [line.text for line in await both.b.tickets.transcript(ticket.id)]
    assert "确认" in transcript  # handed on as the button's text, not as "1"
    # The list was used up: a later bare number is just text again.
    assert await both.a.channel.state.choices(ConversationRef("wechat", customer.openid).key) \
        is None
