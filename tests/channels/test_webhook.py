"""The signed REST webhook on the real application, delivering to a real local callback server:
the scripted complaint, signatures and replays, bad input, duplicates, retries with backoff and
the dead-letter list."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bot.app import EVIDENCE, OUTBOUND, TICKETS
from channels.base import ChannelAdapter, OnMessage
from channels.messages import ConversationRef, IncomingMessage, OutgoingMessage
from channels.ratelimit import RetryPolicy
from channels.webhook import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookChannel,
    WebhookConfig,
    WebhookError,
    signature,
    signed_headers,
)
from handoff.api import USERS
from handoff.evidence import EvidenceStore
from handoff.tickets import TicketStore
from tests.channels.conftest import AppFactory

Client = TestClient[Any, Any]
AiohttpClient = Callable[..., Awaitable[Client]]

SECRET = "a-shared-secret-of-some-length"
NUMBER = re.compile(r"TS\d{8}-\d{4}")
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4890000000d49444154789c"
    "63f8cfc0f00f0003860180a5a34f6b0000000049454e44ae426082")
FAST = RetryPolicy(attempts=4, base_delay=0.01, max_delay=1.0)
FIRST = ("我买的电饭煲用了两天就坏了，完全不能加热。订单号DD2026112012345，"
         "商品是美的电饭煲，电话13812345678，我要求换货")


class Callback:
    """A real local server that receives signed deliveries; it can fail a number of times."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.attempts: list[str] = []  # delivery ids, one per request
        self.fail_next = 0
        self.fail_status = 500
        self.bad_signatures = 0
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self.server = TestServer(app, host="127.0.0.1")
        self._changed = asyncio.Event()

    @property
    def url(self) -> str:
        return str(self.server.make_url("/hook"))

    async def _hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        timestamp = request.headers.get(TIMESTAMP_HEADER, "")
        if request.headers.get(SIGNATURE_HEADER) != signature(SECRET, timestamp, body) or abs(
                time.time() - int(timestamp)) > 300:
            self.bad_signatures += 1
            return web.Response(status=401)
        delivery = json.loads(body)
        self.attempts.append(delivery["delivery_id"])
        if self.fail_next:
            self.fail_next -= 1
            return web.Response(status=self.fail_status, text="down for a moment")
        self.received.append(delivery)
        self._changed.set()
        return web.Response(status=204)

    def to(self, conversation: str) -> list[dict[str, Any]]:
        return [d for d in self.received if d["conversation_id"] == conversation]


@pytest.fixture
async def callback() -> AsyncIterator[Callback]:
    server = Callback()
    await server.server.start_server()
    yield server
    await server.server.close()


async def start_app(make_app: AppFactory, aiohttp_client: AiohttpClient, callback: Callback,
                    **options: Any) -> tuple[Client, WebhookChannel]:
    cfg = WebhookConfig.from_env({"WEBHOOK_SECRET": SECRET, "WEBHOOK_CALLBACK_URL": callback.url})
    assert cfg is not None
    holder: dict[str, Any] = {}

    def build(on_message: OnMessage) -> list[ChannelAdapter]:
        channel = WebhookChannel(cfg, on_message, files=EvidenceStore(make_app.data_dir /
                                                                      "evidence"),
                                 data_dir=make_app.data_dir, policy=FAST, **options)
        holder["channel"] = channel
        return [channel]

    client = await aiohttp_client(make_app(channels=build))
    return client, holder["channel"]


def tickets(client: Client) -> TicketStore:
    return client.app[TICKETS]  # type: ignore[no-any-return]


async def post(client: Client, body: dict[str, Any] | bytes, *, secret: str = SECRET,
               now: float | None = None, headers: dict[str, str] | None = None) -> Any:
    raw = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
    sent = headers if headers is not None else signed_headers(secret, raw, now)
    return await client.post("/api/webhook/messages", data=raw,
                             headers={"Content-Type": "application/json", **sent})


async def say(client: Client, channel: WebhookChannel, conversation: str, text: str,
              message_id: str | None = None, **extra: Any) -> None:
    response = await post(client, {"conversation_id": conversation, "text": text,
                                   "message_id": message_id or uuid.uuid4().hex, **extra})
    assert response.status == 200, await response.text()
    assert await response.json() == {"ok": True}
    await settled(client, channel)


async def settled(client: Client, channel: WebhookChannel) -> None:
    """Every reply so far delivered (or dead-lettered)."""
    if OUTBOUND in client.app:  # with Redis the replies leave through the outbound stream
        await client.app[OUTBOUND].idle()
    await channel.idle()


def texts(deliveries: list[dict[str, Any]]) -> str:
    return "\n".join(d["text"] for d in deliveries)


# ---- configuration and signing -------------------------------------------------------------


def test_config_from_env() -> None:
    assert WebhookConfig.from_env({}) is None
    cfg = WebhookConfig.from_env({"WEBHOOK_SECRET": SECRET,
                                  "WEBHOOK_CALLBACK_URL": "https://shop.example.com/hook"})
    assert cfg is not None and SECRET not in repr(cfg)
    with pytest.raises(ValueError, match="WEBHOOK_CALLBACK_URL"):
        WebhookConfig.from_env({"WEBHOOK_SECRET": SECRET})
    with pytest.raises(ValueError, match="16"):
        WebhookConfig.from_env({"WEBHOOK_SECRET": "short", "WEBHOOK_CALLBACK_URL": "https://x"})
    with pytest.raises(ValueError, match="http"):
        WebhookConfig.from_env({"WEBHOOK_SECRET": SECRET, "WEBHOOK_CALLBACK_URL": "ftp://x"})


def test_the_signature_is_hmac_sha256_over_timestamp_and_body() -> None:
    import hmac

    body = '{"text": "你好"}'.encode()
    expected = hmac.new(SECRET.encode(), b"1700000000." + body, hashlib.sha256).hexdigest()
    assert signature(SECRET, "1700000000", body) == "sha256=" + expected
    assert signed_headers(SECRET, body, now=1700000000.7) == {
        TIMESTAMP_HEADER: "1700000000", SIGNATURE_HEADER: "sha256=" + expected}


# ---- the scripted complaint ----------------------------------------------------------------


async def test_the_scripted_complaint_through_the_webhook(
        make_app: AppFactory, aiohttp_client: AiohttpClient, callback: Callback) -> None:
    client, channel = await start_app(make_app, aiohttp_client, callback)
    await say(client, channel, "shop-1", FIRST)
    first = callback.to("shop-1")
    assert first and "DD2026112012345" in texts(first)
    assert {d["author"] for d in first} == {"system"}
    buttons = [b for d in first for b in d["buttons"]]
    assert buttons, first
    await say(client, channel, "shop-1", buttons[0])
    done = callback.to("shop-1")[len(first):]
    number = NUMBER.search(texts(done))
    assert number, texts(done)
    ticket = await tickets(client).open_ticket("webhook", "shop-1")
    assert ticket is not None and ticket.number == number[0]
    assert ticket.order_id == "DD2026112012345" and ticket.phone == "13812345678"
    assert ticket.demand == "exchange" and ticket.product == "美的电饭煲"
    assert callback.bad_signatures == 0
    assert len(set(callback.attempts)) == len(callback.received)


async def test_an_attachment_becomes_evidence(
        make_app: AppFactory, aiohttp_client: AiohttpClient, callback: Callback) -> None:
    client, channel = await start_app(make_app, aiohttp_client, callback)
    await say(client, channel, "shop-2", "转人工", attachments=[
        {"filename": "裂痕.png", "content_type": "image/png",
         "data": base64.b64encode(PNG).decode()}])
    ticket = await tickets(client).open_ticket("webhook", "shop-2")
    assert ticket is not None
    digest = hashlib.sha256(PNG).hexdigest()
    refs = await tickets(client).evidence(ticket.id)
    assert [(r.filename, r.sha256) for r in refs] == [("裂痕.png", digest)]
    assert await client.app[EVIDENCE].read(digest) == PNG


# ---- authentication and bad input ----------------------------------------------------------


async def test_unsigned_forged_old_and_future_requests_are_401(
        make_app: AppFactory, aiohttp_client: AiohttpClient, callback: Callback) -> None:
    client, channel = await start_app(make_app, aiohttp_client, callback)
    body = {"conversation_id": "shop-3", "message_id": "m1", "text": "我的快递一直没到"}
    raw = json.dumps(body).encode()
    now = time.time()
    cases = [
        {},
        {TIMESTAMP_HEADER: str(int(now))},
        signed_headers("another-secret-entirely", raw),
        {**signed_headers(SECRET, raw), SIGNATURE_HEADER: "sha256=" + "0" * 64},
        {**signed_headers(SECRET, raw), SIGNATURE_HEADER: "md5=abc"},
        {**signed_headers(SECRET, raw), TIMESTAMP_HEADER: str(int(now) - 1)},  # not what was signed
        signed_headers(SECRET, raw, now=now - 301),  # a replay
        signed_headers(SECRET, raw, now=now + 600),  # from the future
        {TIMESTAMP_HEADER: "soon", SIGNATURE_HEADER: signature(SECRET, "soon", raw)},
    ]
    for headers in cases:
        response = await post(client, raw, headers=headers)
        assert response.status == 401, headers
        assert (await response.json())["error"]
    # a body changed after signing
    headers = signed_headers(SECRET, raw)
    tampered = raw.replace(b"m1", b"m2")
    assert (await post(client, tampered, headers=headers)).status == 401
    # a little clock skew is fine
    assert (await post(client, raw, now=now + 10)).status == 200
    await settled(client, channel)
    assert callback.to("shop-3")


async def test_malformed_and_oversized_bodies(
        make_app: AppFactory, aiohttp_client: AiohttpClient, callback: Callback) -> None:
    client, _channel = await start_app(make_app, aiohttp_client, callback, max_body=64 * 1024)
    good = {"conversation_id": "shop-4", "message_id": "m1", "text": "你好"}
    malformed: list[bytes | dict[str, Any]] = [
        b"{", b"[1]", b"\xff", b"", b"null",
        {**good, "conversation_id": ""}, {**good, "conversation_id": "has space"},
        {**good, "message_id": 5}, {k: v for k, v in good.items() if k != "message_id"},
        {**good, "text": 5}, {**good, "text": "  "}, {**good, "text": "x" * 4001},
        {**good, "attachments": "photo"}, {**good, "attachments": [{"filename": "a"}]},
        {**good, "attachments": [{"data": "!!not base64!!"}]},
    ]
    for body in malformed:
        response = await post(client, body)
        assert response.status == 400, body
        assert (await response.json())["error"]
    huge = json.dumps({**good, "text": "x" * (100 * 1024)}).encode()
    response = await client.post("/api/webhook/messages", data=io.BytesIO(huge), headers={
        "Content-Type": "application/json", **signed_headers(SECRET, huge)})
    assert response.status == 413
    assert await tickets(client).recent() == []


async def test_a_duplicate_message_id_is_handled_once(
        make_app: AppFactory, aiohttp_client: AiohttpClient, callback: Callback) -> None:
    client, channel = await start_app(make_app, aiohttp_client, callback)
    await say(client, channel, "shop-5", "我的快递一直没到", message_id="m-1")
    first = len(callback.to("shop-5"))
    assert first
    await asyncio.gather(*[say(client, channel, "shop-5", "我的快递一直没到", message_id="m-1")
                           for _ in range(3)])
    assert len(callback.to("shop-5")) == first


# ---- delivery: retries and dead letters ----------------------------------------------------


def reply(conversation: str, text: str) -> OutgoingMessage:
    return OutgoingMessage(ConversationRef("webhook", conversation), text, buttons=("是", "否"))


async def dead_letters(client: Client) -> list[dict[str, Any]]:
    response = await client.get("/api/webhook/dead-letters",
                                headers=signed_headers(SECRET, b""))
    assert response.status == 200, await response.text()
    data = await response.json()
    return list(data["dead_letters"])


async def test_a_failing_callback_is_retried_with_backoff(
        make_app: AppFactory, aiohttp_client: AiohttpClient, callback: Callback) -> None:
    client, channel = await start_app(make_app, aiohttp_client, callback)
    callback.fail_next = 3
    await channel.output.send(reply("shop-6", "您好"))
    await channel.output.send(reply("shop-6", "还在吗"))
    await settled(client, channel)
    assert [d["text"] for d in callback.to("shop-6")] == ["您好", "还在吗"]  # in order
    first = callback.to("shop-6")[0]
    assert first["buttons"] == ["是", "否"] and first["author"] == "system"
    assert callback.attempts.count(first["delivery_id"]) == 4  # 3 failures, then delivered
    assert await dead_letters(client) == []


async def test_a_permanent_failure_lands_in_the_dead_letters(
        make_app: AppFactory, aiohttp_client: AiohttpClient, callback: Callback) -> None:
    client, channel = await start_app(make_app, aiohttp_client, callback)
    callback.fail_next = 100
    await channel.output.send(reply("shop-7", "您好"))
    await settled(client, channel)
    assert callback.received == []
    letters = await dead_letters(client)
    assert len(letters) == 1
    assert letters[0]["delivery"]["text"] == "您好" and letters[0]["attempts"] == 4
    assert "500" in letters[0]["error"]
    # a refusal (4xx) is not retried
    callback.fail_next, callback.fail_status = 1, 422
    attempts = len(callback.attempts)
    await channel.output.send(reply("shop-7", "第二条"))
    await settled(client, channel)
    assert len(callback.attempts) == attempts + 1
    letters = await dead_letters(client)
    assert [entry["delivery"]["text"] for entry in letters] == ["您好", "第二条"]
    assert channel.dead_letters.path == make_app.data_dir / "webhook" / "dead_letters.jsonl"
    # the list is signed like the messages
    assert (await client.get("/api/webhook/dead-letters")).status == 401
    forged = signed_headers("not-the-shared-secret", b"")
    assert (await client.get("/api/webhook/dead-letters", headers=forged)).status == 401


async def test_staff_see_the_dead_letters_in_the_console_api(
        make_app: AppFactory, aiohttp_client: AiohttpClient, callback: Callback) -> None:
    client, channel = await start_app(make_app, aiohttp_client, callback)
    callback.fail_next = 100
    await channel.output.send(reply("shop-8", "您好"))
    await settled(client, channel)
    users = client.app[USERS]
    await users.add("agent1", "agent-password", "agent")
    await users.add("editor1", "editor-password", "kb_editor")

    async def token(name: str, password: str) -> dict[str, str]:
        response = await client.post("/api/auth/login",
                                     json={"username": name, "password": password})
        return {"Authorization": f"Bearer {(await response.json())['token']}"}

    path = "/api/channels/dead-letters"
    assert (await client.get(path)).status == 401
    assert (await client.get(path, headers=await token("editor1", "editor-password"))).status == 403
    response = await client.get(path, headers=await token("agent1", "agent-password"))
    assert response.status == 200
    [entry] = (await response.json())["dead_letters"]
    assert entry["channel"] == "webhook" and entry["delivery"]["text"] == "您好"


async def test_replies_left_at_shutdown_are_dead_lettered(tmp_path: Path,
                                                          callback: Callback) -> None:
    async def on_message(message: IncomingMessage) -> list[OutgoingMessage]:
        return []

    cfg = WebhookConfig(secret=SECRET, callback_url=callback.url)
    channel = WebhookChannel(cfg, on_message, files=EvidenceStore(tmp_path / "evidence"),
                             data_dir=tmp_path, policy=RetryPolicy(attempts=50, base_delay=0.2))
    await channel.start()
    callback.fail_next = 1000
    await channel.output.send(reply("shop-8", "一"))
    await channel.output.send(reply("shop-8", "二"))
    await asyncio.sleep(0.1)
    await channel.close()
    letters = await channel.dead_letters.list()
    assert sorted(entry["delivery"]["text"] for entry in letters) == ["一", "二"]
    assert {entry["error"] for entry in letters} == {"not delivered before shutdown"}
    with pytest.raises(WebhookError):
        await channel.output.send(reply("shop-8", "三"))


async def test_an_unreachable_callback_is_retried_then_dead_lettered(tmp_path: Path) -> None:
    async def on_message(message: IncomingMessage) -> list[OutgoingMessage]:
        return []

    server = TestServer(web.Application(), host="127.0.0.1")
    await server.start_server()
    url = str(server.make_url("/hook"))
    await server.close()  # nothing listens there any more
    channel = WebhookChannel(WebhookConfig(secret=SECRET, callback_url=url), on_message,
                             files=EvidenceStore(tmp_path / "evidence"), data_dir=tmp_path,
                             policy=FAST)
    await channel.start()
    try:
        await channel.output.send(reply("shop-9", "您好"))
        await channel.idle()
        letters = await channel.dead_letters.list()
        assert len(letters) == 1 and letters[0]["attempts"] == 4
        assert "cannot reach" in letters[0]["error"]
    finally:
        await channel.close()
