"""The WeChat channel's state, in the process and on the real Redis: a MsgId is claimed once and
its answer kept a minute; buttons are kept a week and an answer consumes only the list it read."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from bot.keys import Keys
from channels.wechat_state import Answer, InMemoryWeChatState, RedisWeChatState, WeChatState
from tests.channels.conftest import REDIS_URL

CONVERSATION = "wechat:oCUSTOMER"


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def state(request: pytest.FixtureRequest) -> AsyncIterator[WeChatState]:
    if request.param == "memory":
        yield InMemoryWeChatState()
        return
    redis = Redis.from_url(REDIS_URL)
    keys = Keys(f"intakebot-test-{uuid.uuid4().hex[:12]}:")
    yield RedisWeChatState(redis, keys, owned=False)
    stale = [k async for k in redis.scan_iter(match=f"{keys.prefix}*")]
    if stale:
        await redis.delete(*stale)
    await redis.aclose()


async def test_a_message_is_claimed_once_and_answered_alike(state: WeChatState) -> None:
    assert await state.answer(CONVERSATION, "1") is None
    assert await state.claim(CONVERSATION, "1")
    assert not await state.claim(CONVERSATION, "1")  # a retry: someone has it
    assert await state.answer(CONVERSATION, "1") == Answer(pending=True)
    await state.answered(CONVERSATION, "1", "您好")
    assert await state.answer(CONVERSATION, "1") == Answer(text="您好")
    await state.answered(CONVERSATION, "2", None)
    assert await state.answer(CONVERSATION, "2") == Answer()  # "success"
    await state.forget(CONVERSATION, "1")  # its handling failed: the retry takes it
    assert await state.claim(CONVERSATION, "1")
    assert await state.answer("wechat:other", "1") is None


async def test_an_answer_consumes_only_the_list_it_read(state: WeChatState) -> None:
    await state.show_choices(CONVERSATION, ("确认", "修改"))
    read = await state.choices(CONVERSATION)
    assert read is not None and read.buttons == ("确认", "修改")
    await state.show_choices(CONVERSATION, ("确认", "修改"))  # shown again meanwhile
    await state.consume(CONVERSATION, read)
    newer = await state.choices(CONVERSATION)
    assert newer is not None and newer.buttons == ("确认", "修改")  # kept: not the one read
    await state.consume(CONVERSATION, newer)
    assert await state.choices(CONVERSATION) is None


async def test_in_memory_entries_expire() -> None:
    now = [0.0]
    state = InMemoryWeChatState(clock=lambda: now[0])
    assert await state.claim(CONVERSATION, "1")
    await state.show_choices(CONVERSATION, ("是",))
    now[0] = 61.0
    assert await state.answer(CONVERSATION, "1") is None
    assert await state.choices(CONVERSATION) is not None
    now[0] = 7 * 86400 + 1.0
    assert await state.choices(CONVERSATION) is None


@pytest.mark.redis
async def test_redis_keys_have_their_ttls() -> None:
    redis = Redis.from_url(REDIS_URL)
    keys = Keys(f"intakebot-test-{uuid.uuid4().hex[:12]}:")
    state = RedisWeChatState(redis, keys, owned=False)
    try:
        await state.claim(CONVERSATION, "1")
        await state.show_choices(CONVERSATION, ("是",))
        assert 50 < await redis.ttl(keys.wechat_answer(CONVERSATION, "1")) <= 60
        await state.answered(CONVERSATION, "1", "好")
        assert 50 < await redis.ttl(keys.wechat_answer(CONVERSATION, "1")) <= 60
        assert 6 * 86400 < await redis.ttl(keys.wechat_choices(CONVERSATION)) <= 7 * 86400
    finally:
        await redis.delete(keys.wechat_answer(CONVERSATION, "1"), keys.wechat_choices(CONVERSATION))
        await redis.aclose()
