"""The WeChat official account channel on the real application, against a local fake of WeChat:
URL verification, the scripted complaint in plain and safe mode, the customer-service API for slow
answers, MsgId de-duplication, photos as evidence, and bad requests. Each app test runs on both
session stores; the signature and cipher are also checked on vectors built by hand."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import struct
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from bot.app import EVIDENCE, TICKETS
from channels.base import OnMessage
from channels.messages import IncomingMessage, OutgoingMessage
from channels.wechat import (
    WeChat,
    WeChatConfig,
    chosen_button,
    numbered_text,
    parse_message,
    parse_xml,
    split_text,
    text_reply_xml,
)
from channels.wechat_crypto import MessageCrypto, WeChatCryptoError, check_signature, signature
from handoff.evidence import EvidenceStore
from handoff.tickets import TicketStore
from tests.channels.fake_wechat import (
    AES_KEY,
    APP_ID,
    APP_SECRET,
    TOKEN,
    FakeWeChatApi,
    WeChatPlatform,
)

Client = TestClient[Any, Any]
AppFactory = Any  # tests.channels.conftest.AppFactory
AiohttpServer = Callable[..., Awaitable[TestServer]]
AiohttpClient = Callable[..., Awaitable[Client]]
Wrap = Callable[[OnMessage], OnMessage]

NUMBER = re.compile(r"TS\d{8}-\d{4}")
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")


# ---- the harness ---------------------------------------------------------------------------


@dataclass
class Account:
    """The app with a WeChat channel, the fake API it calls and the platform calling it."""

    client: Client
    channel: WeChat
    api: FakeWeChatApi
    platform: WeChatPlatform
    path: str = "/wechat"

    @property
    def tickets(self) -> TicketStore:
        return self.client.app[TICKETS]  # type: ignore[no-any-return]

    async def post(self, body: bytes, **kwargs: Any) -> Any:
        query, data = self.platform.post(body, **kwargs)
        return await self.client.post(self.path + query, data=data,
                                      headers={"Content-Type": "text/xml"})

    async def passive(self, body: bytes) -> str | None:
        """Post a message; the passive reply's text, None when the answer is ``success``."""
        response = await self.post(body)
        assert response.status == 200, await response.text()
        raw = await response.read()
        if raw == b"success":
            return None
        fields = self.platform.open_reply(raw)
        assert fields["MsgType"] == "text" and fields["FromUserName"] == self.platform.account
        return fields["Content"]


@dataclass
class Customer:
    """One WeChat user talking to the account."""

    account: Account
    openid: str = field(default_factory=lambda: "o" + uuid.uuid4().hex[:27])
    seen: int = 0
    last_passive: str | None = None

    async def say(self, text: str) -> list[str]:
        """Everything the customer is sent for one message: the passive reply, then the API's."""
        passive = await self.account.passive(
            self.account.platform.text_xml(self.openid, text, self.account.platform.next_id()))
        self.last_passive = passive
        return [*([passive] if passive is not None else []), *await self.pushed()]

    async def pushed(self) -> list[str]:
        await self.account.channel.idle()
        texts = self.account.api.texts(self.openid)
        new, self.seen = texts[self.seen:], len(texts)
        return new


@dataclass
class AccountFactory:
    make_app: AppFactory
    aiohttp_client: AiohttpClient
    api: FakeWeChatApi
    api_base: str

    async def __call__(self, *, aes: bool = False, wrap: Wrap | None = None,
                       reply_timeout: float = 4.5, max_body: int = 64 * 1024) -> Account:
        config = WeChatConfig.from_env({
            "WECHAT_TOKEN": TOKEN, "WECHAT_APP_ID": APP_ID, "WECHAT_APP_SECRET": APP_SECRET,
            "WECHAT_AES_KEY": AES_KEY if aes else "", "WECHAT_API_BASE": self.api_base,
            "WECHAT_REPLY_SECONDS": str(reply_timeout)})
        assert config is not None
        config = WeChatConfig(**{**_fields(config), "max_body": max_body})
        # The same directory as the app's EvidenceStore, so tickets find the files.
        files = EvidenceStore(self.make_app.data_dir / "evidence")
        channels: list[WeChat] = []

        def build(on_message: OnMessage) -> list[Any]:
            channels.append(WeChat(config, wrap(on_message) if wrap else on_message,
                                   files=files))
            return list(channels)

        client = await self.aiohttp_client(self.make_app(channels=build))
        return Account(client, channels[0], self.api,
                       WeChatPlatform(aes_key=AES_KEY if aes else None))


def _fields(config: WeChatConfig) -> dict[str, Any]:
    return {name: getattr(config, name) for name in config.__slots__}


@pytest.fixture
async def account_factory(make_app: AppFactory, aiohttp_client: AiohttpClient,
                          aiohttp_server: AiohttpServer) -> AccountFactory:
    api = FakeWeChatApi()
    server = await aiohttp_server(api.app())
    return AccountFactory(make_app, aiohttp_client, api, str(server.make_url("")).rstrip("/"))


def slow(delay: float, calls: list[str]) -> Wrap:
    """Wraps the callback so that every message takes `delay` seconds more and is counted."""

    def wrap(on_message: OnMessage) -> OnMessage:
        async def handle(message: IncomingMessage) -> list[OutgoingMessage]:
            calls.append(message.message_id)
            await asyncio.sleep(delay)
            return await on_message(message)

        return handle

    return wrap


def option(texts: list[str], label: str) -> str:
    """The number the numbered lines give to `label`."""
    for text in texts:
        found = re.search(r"回[复覆] (\d+) 选择「" + re.escape(label) + "」", text)
        if found:
            return found[1]
    raise AssertionError(f"no numbered option {label!r} in {texts}")


# ---- signatures and the cipher, on hand-built vectors --------------------------------------


def test_signature_is_sha1_of_the_sorted_parts() -> None:
    expected = hashlib.sha1(b"1372623149" + b"1409659813" + b"token").hexdigest()
    assert signature("token", "1409659813", "1372623149") == expected
    assert check_signature(expected, "1409659813", "token", "1372623149")
    assert check_signature(expected.upper(), "token", "1409659813", "1372623149")
    assert not check_signature(expected, "token", "1409659813", "1372623140")
    assert not check_signature("", "token", "1409659813", "1372623149")


def test_a_hand_built_message_decrypts_and_encrypts_alike() -> None:
    key = base64.b64decode(AES_KEY + "=")
    message = "<xml><Content><![CDATA[你好]]></Content></xml>".encode()
    random = bytes(range(16))
    plain = random + struct.pack(">I", len(message)) + message + APP_ID.encode()
    pad = 32 - len(plain) % 32
    plain += bytes([pad]) * pad
    encryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    sealed = base64.b64encode(encryptor.update(plain) + encryptor.finalize()).decode()
    crypto = MessageCrypto(TOKEN, AES_KEY, APP_ID)
    assert crypto.decrypt(sealed) == message
    assert crypto.encrypt(message, random=random) == sealed
    assert crypto.decrypt(crypto.encrypt(b"")) == b""
    long = "退款".encode() * 500
    assert crypto.decrypt(crypto.encrypt(long)) == long
    assert crypto.sign("1", "2", sealed) == signature(TOKEN, "1", "2", sealed)


def test_decrypt_refuses_what_is_not_ours() -> None:
    crypto = MessageCrypto(TOKEN, AES_KEY, APP_ID)
    other = MessageCrypto(TOKEN, AES_KEY, "wx-someone-else")
    for bad in (other.encrypt(b"<xml/>"), "not base64!", base64.b64encode(b"x" * 15).decode(),
                base64.b64encode(b"x" * 32).decode(), ""):
        with pytest.raises(WeChatCryptoError):
            crypto.decrypt(bad)
    with pytest.raises(ValueError):
        MessageCrypto(TOKEN, AES_KEY[:-1], APP_ID)


def test_config_from_env() -> None:
    assert WeChatConfig.from_env({}) is None
    config = WeChatConfig.from_env({"WECHAT_TOKEN": "t", "WECHAT_APP_ID": "a",
                                    "WECHAT_APP_SECRET": "s"})
    assert config == WeChatConfig(token="t", app_id="a", app_secret="s")
    assert config.api_base == "https://api.weixin.qq.com" and config.aes_key is None
    for bad in ({"WECHAT_TOKEN": "t"}, {"WECHAT_TOKEN": "t", "WECHAT_APP_ID": "a",
                                       "WECHAT_APP_SECRET": "s", "WECHAT_AES_KEY": "short"},
                {"WECHAT_TOKEN": "t", "WECHAT_APP_ID": "a", "WECHAT_APP_SECRET": "s",
                 "WECHAT_REPLY_SECONDS": "6"}):
        with pytest.raises(ValueError):
            WeChatConfig.from_env(bad)


def test_buttons_become_numbered_lines_and_numbers_map_back() -> None:
    text = numbered_text("请确认以上信息", ("确认", "修改"))
    assert text.endswith("回复 1 选择「确认」\n回复 2 选择「修改」")
    assert "Reply 2 for \"Edit\"" in numbered_text("Please confirm the details", ("OK", "Edit"))
    assert numbered_text("好的", ()) == "好的"
    assert chosen_button(" 2 ", ("确认", "修改")) == "修改"
    assert chosen_button("１", ("确认", "修改")) == "确认"  # full-width digit
    assert chosen_button("3", ("确认", "修改")) is None
    assert chosen_button("确认", ("确认", "修改")) is None


def test_long_texts_are_split_within_wechat_limit() -> None:
    assert split_text("短") == ["短"] and split_text("") == [""]
    lines = "\n".join(f"第{n}条：" + "退款说明" * 20 for n in range(40))
    parts = split_text(lines)
    assert len(parts) > 1 and all(len(p.encode()) <= 2000 for p in parts)
    assert "\n".join(parts) == lines  # cut between lines, nothing lost
    one_line = "很" * 1500
    parts = split_text(one_line)
    assert [len(p.encode()) for p in parts] == [1998, 1998, 504] and "".join(parts) == one_line


def test_xml_parsing_refuses_entities_and_keeps_cdata() -> None:
    reply = text_reply_xml("o1", "gh", "a ]]> b <c>", now=1)
    assert parse_xml(reply.encode())["Content"] == "a ]]> b <c>"
    bomb = (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaa">'
            b'<!ENTITY b "&a;&a;&a;&a;&a;&a;">]><xml><Content>&b;</Content></xml>')
    from channels.wechat import BadRequest

    with pytest.raises(BadRequest):
        parse_xml(bomb)
    with pytest.raises(BadRequest):
        parse_message({"ToUserName": "gh", "FromUserName": "o", "MsgType": "text",
                       "Content": "hi"})  # no MsgId


# ---- the callback on the real application ----------------------------------------------------


async def test_url_verification(account_factory: AccountFactory) -> None:
    account = await account_factory()
    query = account.platform.signed_query(echostr="4897153216584")
    response = await account.client.get("/wechat", params=query)
    assert response.status == 200 and await response.text() == "4897153216584"
    forged = account.platform.signed_query(token="not-the-token", echostr="1")
    assert (await account.client.get("/wechat", params=forged)).status == 403
    no_echo = account.platform.signed_query()
    assert (await account.client.get("/wechat", params=no_echo)).status == 400


@pytest.mark.parametrize("aes", [False, True], ids=["plain", "encrypted"])
async def test_the_scripted_complaint_registers_a_ticket(account_factory: AccountFactory,
                                                         aes: bool) -> None:
    account = await account_factory(aes=aes)
    customer = Customer(account)
    first = await customer.say("我买的电饭煲用了两天就坏了，完全不能加热。订单号DD2026112012345，"
                               "商品是美的电饭煲，电话13812345678，我要求换货")
    joined = "\n".join(first)
    assert "抱歉" in joined and "DD2026112012345" in joined
    done = await customer.say(option(first, "确认"))
    number = NUMBER.search("\n".join(done))
    assert number, done
    ticket = await account.tickets.open_ticket("wechat", customer.openid)
    assert ticket is not None and ticket.number == number[0]
    assert (ticket.category, ticket.department) == ("product", "quality")
    assert ticket.order_id == "DD2026112012345" and ticket.product == "美的电饭煲"
    assert ticket.phone == "13812345678" and ticket.demand == "exchange"
    transcript = [line.text for line in await account.tickets.transcript(ticket.id)]
    assert "确认" in transcript  # the number was handed on as the button's text
    # Each turn: the first reply passively, the others by the API, in order, once.
    assert customer.last_passive == done[0]
    assert len(first) >= 2 and account.api.texts(customer.openid) == first[1:] + done[1:]
    assert len(account.api.issued) == 1


async def test_a_photo_becomes_evidence(account_factory: AccountFactory) -> None:
    account = await account_factory()
    account.api.media["MEDIA_1"] = (PNG, "image/png")
    customer = Customer(account)
    platform = account.platform
    replies = [await account.passive(platform.image_xml(customer.openid, "MEDIA_1",
                                                        platform.next_id()))]
    assert replies[0]
    handed = await customer.say("转人工")
    assert NUMBER.search("\n".join(handed))
    ticket = await account.tickets.open_ticket("wechat", customer.openid)
    assert ticket is not None
    refs = await account.tickets.evidence(ticket.id)
    digest = hashlib.sha256(PNG).hexdigest()
    assert [(r.sha256, r.content_type, r.size) for r in refs] == [(digest, "image/png", len(PNG))]
    assert await account.client.app[EVIDENCE].read(digest) == PNG
    # An unknown media id is not a lost message: WeChat is asked to send it again.
    response = await account.post(platform.image_xml(customer.openid, "NOPE", platform.next_id()))
    assert response.status == 503


async def test_a_slow_answer_goes_by_the_customer_service_api(
        account_factory: AccountFactory) -> None:
    calls: list[str] = []
    account = await account_factory(wrap=slow(0.6, calls), reply_timeout=0.1)
    account.api.busy = 1  # the first send is refused as "system busy" and tried again
    customer = Customer(account)
    started = asyncio.get_running_loop().time()
    response = await account.post(account.platform.text_xml(customer.openid, "我的快递一直没到",
                                                            account.platform.next_id()))
    assert await response.read() == b"success"
    assert asyncio.get_running_loop().time() - started < 0.5
    pushed = await customer.pushed()
    assert pushed and "订单号" in "\n".join(pushed)
    # A revoked token is replaced and the send tried again.
    account.api.revoke_tokens()
    more = await customer.say("订单号是 SF1234567890")
    assert more and len(account.api.issued) == 2
    assert len(calls) == 2


async def test_a_duplicate_msgid_is_handled_once(account_factory: AccountFactory) -> None:
    calls: list[str] = []
    account = await account_factory(wrap=slow(0.3, calls))
    customer = Customer(account)
    body = account.platform.text_xml(customer.openid, "我的快递一直没到", "77001")
    # WeChat's retries arrive while the first delivery is still being handled.
    answers = await asyncio.gather(*[account.passive(body) for _ in range(3)])
    assert answers[0] and answers.count(answers[0]) == 3
    assert calls == ["77001"]
    await account.channel.idle()
    sent = account.api.texts(customer.openid)
    later = await account.passive(body)
    await account.channel.idle()
    assert later == answers[0] and calls == ["77001"]
    assert account.api.texts(customer.openid) == sent


async def test_a_duplicate_after_a_slow_answer_is_not_sent_twice(
        account_factory: AccountFactory) -> None:
    calls: list[str] = []
    account = await account_factory(wrap=slow(0.4, calls), reply_timeout=0.1)
    customer = Customer(account)
    body = account.platform.text_xml(customer.openid, "我的快递一直没到", "88001")
    assert await account.passive(body) is None
    assert await account.passive(body) is None  # the retry: still "success", nothing twice
    first = await customer.pushed()
    assert first and calls == ["88001"]
    assert await account.passive(body) is None and await customer.pushed() == []


async def test_forged_signatures_are_refused(account_factory: AccountFactory) -> None:
    for aes in (False, True):
        account = await account_factory(aes=aes)
        body = account.platform.text_xml("o-forger", "转人工", account.platform.next_id())
        response = await account.post(body, token="guessed-token")
        assert response.status == 403, await response.text()
        # Unsigned altogether.
        response = await account.client.post("/wechat", data=body)
        assert response.status == 403
        # Correctly signed, but a query string captured an hour ago.
        stale = str(int(time.time()) - 3600)
        response = await account.post(body, timestamp=stale)
        assert response.status == 403, await response.text()
        old = account.platform.signed_query(timestamp=stale, echostr="1")
        assert (await account.client.get("/wechat", params=old)).status == 403
        if aes:  # a plain message to an account in safe mode, however well signed
            plain = WeChatPlatform()
            query, data = plain.post(body)
            response = await account.client.post("/wechat" + query, data=data)
            assert response.status == 403, await response.text()
        assert await account.tickets.recent() == [] and account.api.sent == []


MALFORMED = [
    b"", b"not xml", b"<xml><ToUserName>", b"\xff\xfe<xml/>",
    b"<xml><ToUserName>gh</ToUserName></xml>",
    b'<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
    b"<xml><Content>&e;</Content></xml>",
]


async def test_malformed_xml_is_a_400(account_factory: AccountFactory) -> None:
    account = await account_factory()
    for body in MALFORMED:
        response = await account.post(body)
        assert response.status == 400, body
        assert (await response.json())["error"]
    encrypted = await account_factory(aes=True)
    query, _ = encrypted.platform.post(b"<xml/>")
    garbage = b"<xml><Encrypt><![CDATA[bm90IGEgY2lwaGVydGV4dA==]]></Encrypt></xml>"
    # Signed correctly but not decryptable: a 400, not a 500.
    from urllib.parse import parse_qsl

    params = dict(parse_qsl(query[1:]))
    params["msg_signature"] = signature(TOKEN, params["timestamp"], params["nonce"],
                                        "bm90IGEgY2lwaGVydGV4dA==")
    response = await encrypted.client.post("/wechat", params=params, data=garbage)
    assert response.status == 400
    assert await account.tickets.recent() == []


async def test_an_oversized_body_is_a_413(account_factory: AccountFactory) -> None:
    account = await account_factory(max_body=1024)
    body = account.platform.text_xml("o-big", "很急" * 1000, account.platform.next_id())
    response = await account.post(body)
    assert response.status == 413
    assert account.api.sent == [] and await account.tickets.recent() == []


async def test_other_message_kinds_are_acknowledged(account_factory: AccountFactory) -> None:
    account = await account_factory()
    event = (b"<xml><ToUserName>gh</ToUserName><FromUserName>o1</FromUserName>"
             b"<CreateTime>1</CreateTime><MsgType>event</MsgType><Event>subscribe</Event></xml>")
    response = await account.post(event)
    assert response.status == 200 and await response.read() == b"success"


async def test_agent_messages_go_by_the_api(account_factory: AccountFactory) -> None:
    from channels.messages import Author, ConversationRef

    account = await account_factory()
    await account.channel.output.send(OutgoingMessage(
        ConversationRef("wechat", "o-agent"), "我是客服小王", buttons=("好的",),
        author=Author.AGENT))
    assert account.api.texts("o-agent") == ["我是客服小王\n\n回复 1 选择「好的」"]
    long = "\n".join(["您的退款已受理，预计三个工作日内到账。"] * 100)
    await account.channel.output.send(OutgoingMessage(ConversationRef("wechat", "o-long"), long))
    parts = account.api.texts("o-long")
    assert len(parts) > 1 and "\n".join(parts) == long
