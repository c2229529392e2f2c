"""The Telegram channel on the real application against a fake Bot API server (never the network):
the scripted complaint in webhook and polling mode, photos as evidence, inline keyboards, the
webhook's secret, duplicates, rate limits, retries and failures."""

from __future__ import annotations

import asyncio
import hashlib
import io
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from bot.app import EVIDENCE, TICKETS
from channels.base import ChannelAdapter, ChannelError, OnMessage
from channels.messages import Attachment, ConversationRef, IncomingMessage, OutgoingMessage
from channels.ratelimit import RateLimiter, RetryPolicy
from channels.telegram import (
    SECRET_HEADER,
    TelegramChannel,
    TelegramChannelError,
    TelegramConfig,
    TelegramDeliveryError,
    inline_keyboard,
    split_text,
)
from handoff.evidence import EvidenceStore
from handoff.tickets import TicketStore
from tests.channels.conftest import AppFactory
from tests.channels.fake_telegram import FakeTelegram

Client = TestClient[Any, Any]
AiohttpClient = Callable[..., Awaitable[Client]]

TOKEN = "123456:TEST-token_abc"
SECRET = "s3cret-token_1"
NUMBER = re.compile(r"TS\d{8}-\d{4}")
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4890000000d49444154789c"
    "63f8cfc0f00f0003860180a5a34f6b0000000049454e44ae426082")
# PTB 22 warns, inside its own request code, that RetryAfter.retry_after becomes a timedelta.
pytestmark = pytest.mark.filterwarnings(
    "ignore:.*retry_after.*:telegram.warnings.PTBDeprecationWarning")

FAST = RetryPolicy(attempts=3, base_delay=0.01, max_delay=2.0)


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(TOKEN) as server:
        yield server


def config(fake: FakeTelegram, **env: str) -> TelegramConfig:
    base = {"TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_WEBHOOK_SECRET": SECRET,
            "TELEGRAM_API_BASE": fake.url, "TELEGRAM_WEBHOOK_URL": "https://bot.example.com/",
            "TELEGRAM_SUPERVISOR_CHAT_ID": "-1009"}
    cfg = TelegramConfig.from_env({**base, **env})
    assert cfg is not None
    return cfg


async def start_app(make_app: AppFactory, aiohttp_client: AiohttpClient, cfg: TelegramConfig,
                    *, limiter: RateLimiter | None = None, evidence_max_bytes: int | None = None,
                    wrap: Callable[[OnMessage], OnMessage] | None = None,
                    ) -> tuple[Client, TelegramChannel]:
    built: list[TelegramChannel] = []
    options: dict[str, Any] = {}
    files = EvidenceStore(make_app.data_dir / "evidence")  # where the app keeps evidence
    if evidence_max_bytes is not None:
        options["evidence_max_bytes"] = evidence_max_bytes
        files = EvidenceStore(files.root, max_bytes=evidence_max_bytes)

    def build(on_message: OnMessage) -> list[ChannelAdapter]:
        handler = wrap(on_message) if wrap else on_message
        built.append(TelegramChannel(cfg, handler, files=files,
                                     limiter=limiter or RateLimiter(0, 0), policy=FAST,
                                     poll_timeout=1))
        return list(built)

    client = await aiohttp_client(make_app(channels=build, **options))
    return client, built[0]


def tickets(client: Client) -> TicketStore:
    return client.app[TICKETS]  # type: ignore[no-any-return]


async def post_update(client: Client, channel: TelegramChannel, update: dict[str, Any],
                      secret: str | None = SECRET) -> Any:
    headers = {SECRET_HEADER: secret} if secret is not None else {}
    return await client.post(channel.config.webhook_path, json=update, headers=headers)


async def settled(fake: FakeTelegram, chat: int, count: int) -> list[dict[str, Any]]:
    """The messages sent to `chat` once there are at least `count` and no more come for a
    moment: with Redis, replies leave through the outbound queue after the webhook's answer."""
    sent = await fake.wait_sent(chat, count)
    while True:
        await asyncio.sleep(0.3)
        if len(fake.sent_to(chat)) == len(sent):
            return sent
        sent = fake.sent_to(chat)


def texts(messages: list[dict[str, Any]]) -> str:
    return "\n".join(m.get("text", "") for m in messages)


def keyboard(message: dict[str, Any]) -> list[dict[str, Any]]:
    markup = message.get("reply_markup") or {}
    return [button for row in markup.get("inline_keyboard", []) for button in row]


FIRST = ("我买的电饭煲用了两天就坏了，完全不能加热。订单号DD2026112012345，"
         "商品是美的电饭煲，电话13812345678，我要求换货")


async def check_ticket(client: Client, chat_id: int, done: str) -> None:
    number = NUMBER.search(done)
    assert number, done
    ticket = await tickets(client).open_ticket("telegram", str(chat_id))
    assert ticket is not None and ticket.number == number[0]
    assert (ticket.category, ticket.department) == ("product", "quality")
    assert ticket.order_id == "DD2026112012345" and ticket.product == "美的电饭煲"
    assert ticket.phone == "13812345678" and ticket.demand == "exchange"


# ---- configuration -------------------------------------------------------------------------


def test_config_from_env() -> None:
    assert TelegramConfig.from_env({}) is None
    cfg = TelegramConfig.from_env({"TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_POLLING": "1"})
    assert cfg is not None and cfg.polling and cfg.api_base == "https://api.telegram.org"
    assert TOKEN not in repr(cfg)
    assert cfg.webhook_path.startswith("/api/telegram/") and TOKEN not in cfg.webhook_path
    with pytest.raises(ValueError, match="TELEGRAM_WEBHOOK_SECRET"):
        TelegramConfig.from_env({"TELEGRAM_BOT_TOKEN": TOKEN})
    with pytest.raises(ValueError, match="TELEGRAM_WEBHOOK_SECRET"):
        TelegramConfig.from_env({"TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_WEBHOOK_SECRET": "a b"})
    with pytest.raises(ValueError, match="SUPERVISOR"):
        TelegramConfig.from_env({"TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_POLLING": "yes",
                                 "TELEGRAM_SUPERVISOR_CHAT_ID": "not a chat"})


def test_buttons_become_an_inline_keyboard() -> None:
    assert inline_keyboard(()) is None
    markup = inline_keyboard(("1", "2", "3", "4", "5"))
    assert markup is not None
    assert [[b.text for b in row] for row in markup.inline_keyboard] == [["1", "2", "3"],
                                                                         ["4", "5"]]
    long = "这是一个很长很长很长很长很长很长很长很长很长很长很长很长的按钮文字"
    markup = inline_keyboard(("确认", long))
    assert markup is not None
    rows = markup.inline_keyboard
    assert [len(row) for row in rows] == [1, 1]
    assert rows[0][0].callback_data == "确认" and rows[1][0].callback_data == "#1"


def test_long_texts_are_split() -> None:
    assert split_text("短") == ["短"]
    text = "第一行\n" * 1500  # 6,000 characters
    parts = split_text(text)
    assert "".join(parts) == text and all(len(p) <= 4096 for p in parts)
    assert all(p.endswith("\n") for p in parts[:-1])
    assert split_text("x" * 9000) == ["x" * 4096, "x" * 4096, "x" * 808]


# ---- the scripted complaint ----------------------------------------------------------------


async def test_the_scripted_complaint_through_the_webhook(
        make_app: AppFactory, aiohttp_client: AiohttpClient, fake: FakeTelegram) -> None:
    client, channel = await start_app(make_app, aiohttp_client, config(fake))
    # start-up checked the token and registered the webhook with its secret
    assert fake.called("getMe")
    assert fake.webhook is not None
    assert fake.webhook["url"] == "https://bot.example.com" + channel.config.webhook_path
    assert fake.webhook["secret_token"] == SECRET
    chat = 5551
    response = await post_update(client, channel, fake.text_update(chat, FIRST))
    assert response.status == 200, await response.text()
    first = await settled(fake, chat, 1)
    assert first and "DD2026112012345" in texts(first)
    with_buttons = [m for m in first if keyboard(m)]
    assert with_buttons, first
    confirm = keyboard(with_buttons[-1])[0]
    press = fake.callback_update(with_buttons[-1], confirm["callback_data"])
    response = await post_update(client, channel, press)
    assert response.status == 200, await response.text()
    assert fake.answered == [press["callback_query"]["id"]]
    done = (await settled(fake, chat, len(first) + 1))[len(first):]
    await check_ticket(client, chat, texts(done))
    ticket = await tickets(client).open_ticket("telegram", str(chat))
    assert ticket is not None
    transcript = [line.text for line in await tickets(client).transcript(ticket.id)]
    assert transcript[0] == FIRST and confirm["text"] in transcript


async def test_the_scripted_complaint_by_polling(
        make_app: AppFactory, aiohttp_client: AiohttpClient, fake: FakeTelegram) -> None:
    cfg = config(fake, TELEGRAM_POLLING="1", TELEGRAM_WEBHOOK_SECRET="")
    client, channel = await start_app(make_app, aiohttp_client, cfg)
    assert channel.routes() == [] and fake.called("deleteWebhook")
    chat = 5552
    fake.queue(fake.text_update(chat, FIRST))
    first = await fake.wait_sent(chat, 1)
    await asyncio.sleep(0.2)  # the turn may send more than one message
    first = fake.sent_to(chat)
    with_buttons = [m for m in first if keyboard(m)]
    assert with_buttons, first
    confirm = keyboard(with_buttons[-1])[0]
    fake.queue(fake.callback_update(with_buttons[-1], confirm["callback_data"]))
    await fake.wait_sent(chat, len(first) + 1)
    async with asyncio.timeout(10):
        while await tickets(client).open_ticket("telegram", str(chat)) is None:
            await asyncio.sleep(0.05)
    await check_ticket(client, chat, texts(fake.sent_to(chat)[len(first):]))
    # handled updates are confirmed with the offset, so they are not fetched again
    async with asyncio.timeout(5):
        while fake.pending():
            await asyncio.sleep(0.05)
    offsets = [c.params.get("offset") for c in fake.called("getUpdates")]
    assert any(offsets), offsets


async def test_polling_retries_an_update_that_failed(
        make_app: AppFactory, aiohttp_client: AiohttpClient, fake: FakeTelegram) -> None:
    cfg = config(fake, TELEGRAM_POLLING="1")
    calls: list[str] = []
    chat = 5553
    _client, _channel = await start_app(make_app, aiohttp_client, cfg,
                                        wrap=failing_for(chat, 2, calls))
    fake.fail("getUpdates", 500, times=1)  # and polling survives a failed getUpdates
    fake.queue(fake.text_update(chat, "我的快递一直没到", message_id=1))
    async with asyncio.timeout(20):
        while "订单号" not in texts(fake.sent_to(chat)):
            await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)
    sent = [m["text"] for m in fake.sent_to(chat)]
    assert len(sent) == len(set(sent)), sent  # each reply once: the message handled once
    assert calls == [str(chat)] * 3


def failing_for(chat: int, times: int | None,
                calls: list[str]) -> Callable[[OnMessage], OnMessage]:
    """Wraps the wiring's callback: messages from `chat` fail `times` times (None: always)."""
    def wrap(on_message: OnMessage) -> OnMessage:
        async def handle(message: IncomingMessage) -> list[OutgoingMessage]:
            calls.append(message.conversation.chat_id)
            failed = calls.count(str(chat))
            if message.conversation.chat_id == str(chat) and (times is None or failed <= times):
                raise TelegramChannelError("the conversation could not be handled")
            return await on_message(message)

        return handle

    return wrap


async def test_polling_goes_on_after_an_update_that_keeps_failing(
        make_app: AppFactory, aiohttp_client: AiohttpClient, fake: FakeTelegram,
        caplog: pytest.LogCaptureFixture) -> None:
    calls: list[str] = []
    cfg = config(fake, TELEGRAM_POLLING="1")
    _client, channel = await start_app(make_app, aiohttp_client, cfg,
                                       wrap=failing_for(5562, None, calls))
    updater = channel.application.updater
    assert updater is not None and updater.running and channel.application.running
    fake.queue(fake.text_update(5562, "我的快递一直没到"))
    fake.queue(fake.text_update(5563, "我的快递一直没到"))
    await fake.wait_sent(5563, 1)
    # retried in order, with the policy's attempts, before the next update; then logged
    assert calls[:4] == ["5562", "5562", "5562", "5563"], calls
    assert fake.sent_to(5562) == []
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert any("not handled" in e and "could not be handled" in e for e in errors), errors
    await channel.close()
    assert not updater.running and not channel.application.running
    await channel.close()  # the app's clean-up closes it again: harmless


# ---- photos, buttons, supervisors ----------------------------------------------------------


async def test_a_photo_becomes_evidence(make_app: AppFactory, aiohttp_client: AiohttpClient,
                                        fake: FakeTelegram) -> None:
    client, channel = await start_app(make_app, aiohttp_client, config(fake))
    chat = 5554
    small = fake.add_file(b"thumbnail", "photos/small.jpg")
    large = fake.add_file(PNG, "photos/large.png")
    update = fake.photo_update(chat, [(small, 90, 90, 9), (large, 1280, 960, len(PNG))],
                               caption="转人工")
    response = await post_update(client, channel, update)
    assert response.status == 200, await response.text()
    ticket = await tickets(client).open_ticket("telegram", str(chat))
    assert ticket is not None
    assert [c.params["file_id"] for c in fake.called("getFile")] == [large]
    digest = hashlib.sha256(PNG).hexdigest()
    assert await client.app[EVIDENCE].read(digest) == PNG
    refs = await tickets(client).evidence(ticket.id)
    assert [(r.sha256, r.content_type, r.size) for r in refs] == [(digest, "image/png",
                                                                    len(PNG))]


async def test_a_photo_over_the_limit_is_refused_with_a_message(
        make_app: AppFactory, aiohttp_client: AiohttpClient, fake: FakeTelegram) -> None:
    client, channel = await start_app(make_app, aiohttp_client, config(fake),
                                      evidence_max_bytes=1024 * 1024)
    chat = 5555
    big = fake.add_file(b"x" * (1024 * 1024 + 1), "photos/big.jpg")
    update = fake.photo_update(chat, [(big, 4000, 3000, 1024 * 1024 + 1)])
    assert (await post_update(client, channel, update)).status == 200
    assert "太大" in texts(fake.sent_to(chat)) and not fake.called("getFile")
    # the size Telegram announces can be missing or wrong: the store still refuses it
    update = fake.photo_update(chat, [(big, 4000, 3000, 10)])
    assert (await post_update(client, channel, update)).status == 200
    assert texts(fake.sent_to(chat)).count("太大") == 2
    assert not [p for p in client.app[EVIDENCE].root.rglob("*") if p.is_file()]


async def test_outgoing_buttons_images_and_supervisor_alerts(
        make_app: AppFactory, aiohttp_client: AiohttpClient, fake: FakeTelegram) -> None:
    client, channel = await start_app(make_app, aiohttp_client, config(fake))
    ref = await client.app[EVIDENCE].put("a.png", "image/png", PNG)
    await channel.output.send(OutgoingMessage(
        ConversationRef("telegram", "42"), "请为本次服务打分", buttons=("1", "2", "3", "4", "5"),
        attachments=(Attachment(ref.filename, ref.content_type, ref.sha256, ref.size),)))
    text, photo = fake.sent_to(42)
    assert [b["text"] for b in keyboard(text)] == ["1", "2", "3", "4", "5"]
    assert photo["photo"][0]["file_size"] == len(PNG)
    await channel.output.send(OutgoingMessage(ConversationRef("telegram", "43"), "长" * 5000,
                                              buttons=("好的",)))
    first, last = fake.sent_to(43)
    assert len(first["text"]) == 4096 and not keyboard(first)
    assert len(last["text"]) == 904 and [b["text"] for b in keyboard(last)] == ["好的"]
    await channel.notify_supervisors("工单 TS20261123-0001 已超时")
    assert texts(fake.sent_to(-1009)) == "工单 TS20261123-0001 已超时"


async def test_a_press_counts_even_when_the_query_is_too_old_to_answer(
        make_app: AppFactory, aiohttp_client: AiohttpClient, fake: FakeTelegram) -> None:
    client, channel = await start_app(make_app, aiohttp_client, config(fake))
    chat = 5560
    await channel.output.send(OutgoingMessage(ConversationRef("telegram", str(chat)),
                                              "需要人工吗？", buttons=("转人工",)))
    [offer] = fake.sent_to(chat)
    fake.fail("answerCallbackQuery", 400)
    response = await post_update(client, channel, fake.callback_update(offer, "转人工"))
    assert response.status == 200, await response.text()
    assert len(fake.called("answerCallbackQuery")) == 1  # a 400 is not retried
    ticket = await tickets(client).open_ticket("telegram", str(chat))
    assert ticket is not None and ticket.handoff_reason == "requested_human"
    assert NUMBER.search(texts(fake.sent_to(chat)[1:]))


# ---- the webhook's checks ------------------------------------------------------------------


async def test_the_webhook_checks_the_secret_and_the_body(
        make_app: AppFactory, aiohttp_client: AiohttpClient, fake: FakeTelegram) -> None:
    client, channel = await start_app(make_app, aiohttp_client, config(fake))
    update = fake.text_update(5556, "我的快递一直没到")
    assert (await post_update(client, channel, update, secret=None)).status == 401
    assert (await post_update(client, channel, update, secret="wrong")).status == 403
    assert (await client.post("/api/telegram/guess", json=update,
                              headers={SECRET_HEADER: SECRET})).status == 404
    path = channel.config.webhook_path
    for raw in (b"{", b"[]", b'{"message": {}}', b'{"update_id": "1"}', b"\xff",
                b'{"update_id": 1, "message": {}}', b'{"update_id": 1, "callback_query": "x"}',
                b'{"update_id": 1, "message": {"message_id": "x", "date": "y", '
                b'"chat": {"id": 1, "type": "private"}}}'):
        response = await client.post(path, data=raw, headers={
            SECRET_HEADER: SECRET, "Content-Type": "application/json"})
        assert response.status == 400, raw
        assert (await response.json())["error"]
    huge = b'{"update_id": 1, "x": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    response = await client.post(path, data=io.BytesIO(huge), headers={
        SECRET_HEADER: SECRET, "Content-Type": "application/json"})
    assert response.status == 413
    assert fake.sent == []


async def test_a_duplicate_update_is_handled_once(
        make_app: AppFactory, aiohttp_client: AiohttpClient, fake: FakeTelegram) -> None:
    client, channel = await start_app(make_app, aiohttp_client, config(fake))
    update = fake.text_update(5557, "我的快递一直没到")
    assert (await post_update(client, channel, update)).status == 200
    sent = len(await settled(fake, 5557, 1))
    results = await asyncio.gather(*[post_update(client, channel, update) for _ in range(4)])
    assert [r.status for r in results] == [200] * 4
    await asyncio.sleep(0.5)
    assert len(fake.sent_to(5557)) == sent


async def test_a_failed_update_is_not_swallowed_by_the_application(
        make_app: AppFactory, aiohttp_client: AiohttpClient, fake: FakeTelegram) -> None:
    # PTB's process_update hands a handler's error to error handlers instead of raising it;
    # ours hands it back to the route, which answers 503 so that Telegram delivers again.
    calls: list[str] = []
    client, channel = await start_app(make_app, aiohttp_client, config(fake),
                                      wrap=failing_for(5561, 1, calls))
    assert channel.application.updater is None and channel.application.running
    update = fake.text_update(5561, "我的快递一直没到")
    response = await post_update(client, channel, update)
    assert response.status == 503, await response.text()
    assert "could not be handled" in (await response.json())["error"]
    assert fake.sent_to(5561) == []
    response = await post_update(client, channel, update)  # Telegram's redelivery
    assert response.status == 200, await response.text()
    replies = await settled(fake, 5561, 1)
    assert "订单号" in texts(replies)
    response = await post_update(client, channel, update)  # and one more: already handled
    assert response.status == 200
    await asyncio.sleep(0.3)
    assert calls == ["5561", "5561"] and fake.sent_to(5561) == replies


# ---- outbound: pacing, retries, failures ---------------------------------------------------


async def test_a_429_is_retried_after_the_delay_asked(
        make_app: AppFactory, aiohttp_client: AiohttpClient, fake: FakeTelegram) -> None:
    _client, channel = await start_app(make_app, aiohttp_client, config(fake))
    fake.fail("sendMessage", 429, times=1, retry_after=1)
    fake.fail("sendMessage", 502, times=1)
    started = time.monotonic()
    await channel.output.send(OutgoingMessage(ConversationRef("telegram", "77"), "您好"))
    assert time.monotonic() - started >= 0.95
    assert [m["text"] for m in fake.sent_to(77)] == ["您好"]
    assert len(fake.called("sendMessage")) == 3


async def test_a_failure_after_the_retries_surfaces(
        make_app: AppFactory, aiohttp_client: AiohttpClient, fake: FakeTelegram) -> None:
    _client, channel = await start_app(make_app, aiohttp_client, config(fake))
    fake.fail("sendMessage", 500, times=3)
    with pytest.raises(TelegramDeliveryError, match="sendMessage"):
        await channel.output.send(OutgoingMessage(ConversationRef("telegram", "78"), "您好"))
    assert len(fake.called("sendMessage")) == 3
    # a 400 is not retried
    fake.fail("sendMessage", 400, times=1)
    with pytest.raises(ChannelError):
        await channel.output.send(OutgoingMessage(ConversationRef("telegram", "78"), "您好"))
    assert len(fake.called("sendMessage")) == 4


async def test_a_reply_that_cannot_be_sent_makes_telegram_deliver_again(
        make_app: AppFactory, aiohttp_client: AiohttpClient, fake: FakeTelegram) -> None:
    if make_app.redis_url:
        pytest.skip("with Redis, replies leave through the outbound queue, which retries them")
    client, channel = await start_app(make_app, aiohttp_client, config(fake))
    # through the webhook: the reply fails, Telegram is answered 503 and delivers again,
    # and the redelivery sends the reply without handling the message twice
    update = fake.text_update(5558, "我的快递一直没到")
    fake.fail("sendMessage", 500, times=3)
    response = await post_update(client, channel, update)
    assert response.status == 503
    assert fake.sent_to(5558) == []
    response = await post_update(client, channel, update)
    assert response.status == 200
    assert "订单号" in texts(fake.sent_to(5558))


async def test_sends_are_paced_per_chat_and_per_bot(fake: FakeTelegram, tmp_path: Any) -> None:
    async def on_message(message: IncomingMessage) -> list[OutgoingMessage]:
        return []

    cfg = config(fake)
    channel = TelegramChannel(cfg, on_message, files=EvidenceStore(tmp_path), policy=FAST,
                              limiter=RateLimiter(rate=4, per_key_interval=0.5))
    await channel.start()
    try:
        started = time.monotonic()
        await asyncio.gather(*[channel.output.send(OutgoingMessage(
            ConversationRef("telegram", "1"), f"m{i}")) for i in range(3)])
        one_chat = time.monotonic() - started
        assert one_chat >= 0.95  # 0, 0.5, 1.0 s
        assert [m["text"] for m in fake.sent_to(1)] == ["m0", "m1", "m2"]
        started = time.monotonic()
        await asyncio.gather(*[channel.output.send(OutgoingMessage(
            ConversationRef("telegram", str(100 + i)), "hi")) for i in range(8)])
        assert time.monotonic() - started >= 0.95  # 8 sends at 4/s: the second 4 wait
    finally:
        await channel.close()


async def test_a_bad_token_fails_start_up(fake: FakeTelegram, tmp_path: Any) -> None:
    async def on_message(message: IncomingMessage) -> list[OutgoingMessage]:
        return []

    cfg = TelegramConfig.from_env({"TELEGRAM_BOT_TOKEN": "999:wrong", "TELEGRAM_POLLING": "1",
                                   "TELEGRAM_API_BASE": fake.url})
    assert cfg is not None
    channel = TelegramChannel(cfg, on_message, files=EvidenceStore(tmp_path))
    with pytest.raises(ChannelError, match="cannot start"):
        await channel.start()
    await channel.close()


def test_serve_has_a_telegram_polling_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    import bot.app
    from bot.cli import app
    from bot.settings import Settings

    served: list[Settings] = []
    monkeypatch.setattr(bot.app, "run", lambda settings, **_: served.append(settings))
    for name in ("TELEGRAM_WEBHOOK_SECRET", "TELEGRAM_POLLING", "TELEGRAM_WEBHOOK_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", TOKEN)
    result = CliRunner().invoke(app, ["serve", "--telegram-polling"])
    assert result.exit_code == 0, result.output
    [settings] = served
    assert settings.telegram is not None and settings.telegram.polling
    # without the switch (or TELEGRAM_POLLING=1) the webhook's secret is needed
    result = CliRunner().invoke(app, ["serve"])
    assert result.exit_code == 2 and "TELEGRAM_WEBHOOK_SECRET" in result.output
    monkeypatch.delenv("TELEGRAM_BOT_TOKEN")
    result = CliRunner().invoke(app, ["serve", "--telegram-polling"])
    assert result.exit_code == 2 and "TELEGRAM_BOT_TOKEN" in result.output
    assert len(served) == 1
