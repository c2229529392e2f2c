"""The web chat through its HTTP API on the real application: scripted conversations, the outbox
(GET and WebSocket), de-duplication and bad input. Each test runs on both session stores."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestClient

from bot.app import EVIDENCE, TICKETS, WEBCHAT
from channels.webchat import MAX_TEXT_CHARS, TOO_LONG
from handoff.tickets import Ticket, TicketStore
from nlp.labels import Lang
from nlp.normalize import detect_lang

Client = TestClient[Any, Any]
AppFactory = Callable[..., web.Application]

NUMBER = re.compile(r"TS\d{8}-\d{4}")
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")


@dataclass
class Chat:
    """One customer talking to the bot through the HTTP API."""

    client: Client
    conversation: str

    @property
    def url(self) -> str:
        return f"/api/webchat/{self.conversation}/messages"

    @property
    def tickets(self) -> TicketStore:
        return self.client.app[TICKETS]  # type: ignore[no-any-return]

    async def say(self, text: str, **extra: Any) -> dict[str, Any]:
        response = await self.client.post(self.url, json={"text": text, **extra})
        assert response.status == 200, await response.text()
        data: dict[str, Any] = await response.json()
        assert set(data) == {"replies", "ticket_id"}
        for reply in data["replies"]:
            assert set(reply) == {"text", "buttons"} and reply["text"]
        return data

    async def messages(self, after: int = 0) -> list[dict[str, Any]]:
        response = await self.client.get(self.url, params={"after": str(after)})
        assert response.status == 200, await response.text()
        data: dict[str, Any] = await response.json()
        return list(data["messages"])

    async def ticket(self) -> Ticket | None:
        return await self.tickets.open_ticket("webchat", self.conversation)


def texts(data: dict[str, Any]) -> str:
    return "\n".join(reply["text"] for reply in data["replies"])


def buttons(data: dict[str, Any]) -> list[str]:
    return [b for reply in data["replies"] for b in reply["buttons"]]


@pytest.fixture
def chat(client: Client) -> Chat:
    return Chat(client, "c-" + uuid.uuid4().hex[:10])


# ---- scripted conversations ----------------------------------------------------------------


async def test_product_complaint_with_every_slot_in_the_first_message(chat: Chat) -> None:
    first = await chat.say("我买的电饭煲用了两天就坏了，完全不能加热。订单号DD2026112012345，"
                           "商品是美的电饭煲，电话13812345678，我要求换货")
    assert first["ticket_id"] is None
    assert "抱歉" in texts(first)
    assert "DD2026112012345" in texts(first)  # read back for confirmation
    confirm = buttons(first)[0]
    done = await chat.say(confirm)
    number = NUMBER.search(texts(done))
    assert number, texts(done)
    ticket = await chat.ticket()
    assert ticket is not None and done["ticket_id"] == ticket.id and ticket.number == number[0]
    assert (ticket.category, ticket.department) == ("product", "quality")
    assert ticket.order_id == "DD2026112012345" and ticket.product == "美的电饭煲"
    assert ticket.phone == "13812345678" and ticket.demand == "exchange"
    assert ticket.lang == "zh-Hans" and ticket.receiver == "intakebot"
    transcript = [line.text for line in await chat.tickets.transcript(ticket.id)]
    assert transcript[0].startswith("我买的电饭煲") and confirm in transcript
    # Everything the customer was told is in the outbox, in order, once.
    sent = await chat.messages()
    assert [m["text"] for m in sent] == [r["text"] for r in first["replies"] + done["replies"]]
    assert [m["seq"] for m in sent] == list(range(1, len(sent) + 1))


async def test_logistics_complaint_slot_by_slot_with_a_correction(chat: Chat) -> None:
    opening = await chat.say("我的快递一直没到")
    assert "订单号" in texts(opening)
    await chat.say("订单号是 SF1234567890")
    corrected = await chat.say("不对，订单号是 SF1234567899")
    assert "SF1234567899" in texts(corrected)
    await chat.say("一个蓝牙耳机")
    demand = await chat.say("13900001111")
    assert "退款" in buttons(demand)
    summary = await chat.say("退款")
    assert "SF1234567899" in texts(summary) and "SF1234567890" not in texts(summary)
    done = await chat.say(buttons(summary)[0])
    assert NUMBER.search(texts(done)) and done["ticket_id"]
    ticket = await chat.ticket()
    assert ticket is not None
    assert (ticket.category, ticket.department) == ("logistics", "logistics")
    assert ticket.order_id == "SF1234567899" and ticket.product == "蓝牙耳机"
    assert ticket.phone == "13900001111" and ticket.demand == "refund"


async def test_an_inquiry_is_answered_from_the_knowledge_base(chat: Chat) -> None:
    answer = await chat.say("怎么开发票？")
    assert "发票" in texts(answer)
    assert len(buttons(answer)) == 2  # did this help? yes / no
    assert answer["ticket_id"] is None and await chat.ticket() is None


async def test_a_request_for_a_human_at_the_first_turn(chat: Chat) -> None:
    reply = await chat.say("转人工")
    assert "人工" in texts(reply) and NUMBER.search(texts(reply))
    ticket = await chat.ticket()
    assert ticket is not None and reply["ticket_id"] == ticket.id
    assert ticket.handoff_reason == "requested_human"


async def test_a_cancellation_registers_nothing(chat: Chat) -> None:
    await chat.say("我要投诉，买的衣服质量太差了")
    cancelled = await chat.say("算了")
    assert "取消" in texts(cancelled)
    assert cancelled["ticket_id"] is None and await chat.ticket() is None
    assert await chat.tickets.recent() == []


async def test_a_traditional_chinese_conversation(chat: Chat) -> None:
    first = await chat.say("我買的手機螢幕有裂痕，訂單號DD2026112099999，請幫我退貨")
    assert detect_lang(texts(first)) is Lang.ZH_HANT, texts(first)
    assert "DD2026112099999" in texts(first)
    reply = first
    for answer in ("iPhone 15 手機", "電郵 wang@example.com"):
        if "確認" in buttons(reply):
            break
        reply = await chat.say(answer)
        assert detect_lang(texts(reply)) is Lang.ZH_HANT, texts(reply)
    assert "確認" in buttons(reply), texts(reply)
    done = await chat.say("確認")
    assert detect_lang(texts(done)) is Lang.ZH_HANT and NUMBER.search(texts(done))
    ticket = await chat.ticket()
    assert ticket is not None and ticket.lang == "zh-Hant"
    assert ticket.order_id == "DD2026112099999" and ticket.email == "wang@example.com"


async def test_an_english_conversation(chat: Chat) -> None:
    first = await chat.say("My order DD2026112055555 never arrived, the headphones were supposed "
                           "to come last week. I want a refund. My email is li@example.com")
    assert detect_lang(texts(first)) is Lang.EN and "sorry" in texts(first).lower()
    assert "Confirm" in buttons(first), texts(first)
    done = await chat.say("Confirm")
    assert NUMBER.search(texts(done)) and detect_lang(texts(done)) is Lang.EN
    ticket = await chat.ticket()
    assert ticket is not None and ticket.lang == "en"
    assert ticket.order_id == "DD2026112055555" and ticket.email == "li@example.com"
    assert ticket.demand == "refund"


# ---- the outbox: GET and WebSocket ---------------------------------------------------------


async def _receive(ws: Any, count: int) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    async with asyncio.timeout(10):
        while len(got) < count:
            frame = await ws.receive()
            assert frame.type == WSMsgType.TEXT, frame
            got.append(frame.json())
    return got


async def test_get_after_and_the_websocket_receive_the_same_messages(chat: Chat) -> None:
    ws = await chat.client.ws_connect(f"/api/webchat/{chat.conversation}/ws")
    try:
        first = await chat.say("我的快递一直没到")
        second = await chat.say("订单号是 SF1234567890")
        sent = await chat.messages()
        assert len(sent) == len(first["replies"]) + len(second["replies"])
        assert await _receive(ws, len(sent)) == sent
        assert set(sent[0]) == {"seq", "author", "text", "buttons", "sent_at"}
        assert {m["author"] for m in sent} == {"system"}
        assert await chat.messages(after=sent[0]["seq"]) == sent[1:]
        assert await chat.messages(after=sent[-1]["seq"]) == []
        # The client resumes from a point of its choosing.
        await ws.send_json({"after": 1})
        assert await _receive(ws, len(sent) - 1) == sent[1:]
        await ws.send_str("not json")
        assert "error" in (await _receive(ws, 1))[0]
    finally:
        await ws.close()
    # A socket opened later starts where it is asked to.
    late = await chat.client.ws_connect(f"/api/webchat/{chat.conversation}/ws?after=2")
    try:
        assert await _receive(late, len(sent) - 2) == sent[2:]
    finally:
        await late.close()


async def test_messages_pushed_by_other_parts_reach_the_socket(chat: Chat) -> None:
    from channels.messages import Author, ConversationRef, OutgoingMessage

    ws = await chat.client.ws_connect(f"/api/webchat/{chat.conversation}/ws")
    try:
        webchat = chat.client.app[WEBCHAT]
        await webchat.output.send(OutgoingMessage(
            ConversationRef("webchat", chat.conversation), "我是客服小王，您的问题我来跟进",
            buttons=("好的",), author=Author.AGENT))
        pushed = await _receive(ws, 1)
        assert pushed[0]["author"] == "agent" and pushed[0]["buttons"] == ["好的"]
        assert await chat.messages() == pushed
    finally:
        await ws.close()



async def test_a_batch_of_replies_is_stored_in_order_once_and_pushed(chat: Chat) -> None:
    from channels.messages import ConversationRef, OutgoingMessage

    ws = await chat.client.ws_connect(f"/api/webchat/{chat.conversation}/ws")
    try:
        output = chat.client.app[WEBCHAT].output
        conversation = ConversationRef("webchat", chat.conversation)
        batch = [OutgoingMessage(conversation, text, buttons=buttons)
                 for text, buttons in (("一", ()), ("二", ("是", "否")), ("三", ()))]
        keys = [f"k-{n}" for n in range(3)]
        await output.send_batch_once(batch, keys)
        await output.send_batch_once(batch[1:], keys[1:])  # a resend after a crash
        pushed = await _receive(ws, 3)
        assert [(m["seq"], m["text"], m["buttons"]) for m in pushed] == [
            (1, "一", []), (2, "二", ["是", "否"]), (3, "三", [])]
        assert await chat.messages() == pushed
        with pytest.raises(ValueError, match="one conversation"):
            await output.send_batch_once(
                [batch[0], OutgoingMessage(ConversationRef("webchat", "other"), "四")],
                ["k-4", "k-5"])
    finally:
        await ws.close()


@dataclass
class CountingLookup:
    """A TicketLookup on the real store that counts how often the web chat asks it."""

    store: TicketStore
    asked: int = 0

    async def open_ticket_id(self, channel: str, chat_id: str) -> str | None:
        self.asked += 1
        return await self.store.open_ticket_id(channel, chat_id)


async def test_the_answer_asks_for_the_ticket_only_when_the_callback_cannot_say(
        chat: Chat, aiohttp_client: Callable[..., Any]) -> None:
    from bot.dispatcher import Handled
    from channels.messages import IncomingMessage, OutgoingMessage
    from channels.webchat import WebChat

    store = chat.tickets
    lookup = CountingLookup(store)
    answers: list[list[OutgoingMessage]] = []

    async def on_message(message: IncomingMessage) -> list[OutgoingMessage]:
        return answers.pop(0)

    webchat = WebChat(on_message, store.outbox, files=chat.client.app[EVIDENCE], tickets=lookup)
    app = web.Application()
    app.add_routes(webchat.routes())
    client = await aiohttp_client(app)
    url = f"/api/webchat/{chat.conversation}/messages"
    answers += [Handled([], ticket_id="t-1", ticket_known=True), Handled([]), []]
    for expected, asked in (("t-1", 0), (None, 1), (None, 2)):
        response = await client.post(url, json={"text": "hi"})
        assert (await response.json())["ticket_id"] == expected and lookup.asked == asked


async def test_a_duplicate_message_id_is_answered_once(chat: Chat) -> None:
    first = await chat.say("我的快递一直没到", message_id="m-1")
    again = await chat.say("我的快递一直没到", message_id="m-1")
    assert again["replies"] == first["replies"]
    assert len(await chat.messages()) == len(first["replies"])
    # Many concurrent retries of one message: still handled once.
    results = await asyncio.gather(*[chat.say("订单号是 SF1234567890", message_id="m-2")
                                     for _ in range(5)])
    assert len({texts(r) for r in results if r["replies"]}) == 1
    sent = await chat.messages()
    assert [m["text"] for m in sent].count("好的，订单号 SF1234567890 已记下。") <= 1
    assert len(sent) == len(first["replies"]) + max(len(r["replies"]) for r in results)


# ---- bad input: a clear error, never a 500, nothing lost or stored twice -------------------


async def _error(response: Any, status: int) -> str:
    assert response.status == status, await response.text()
    assert response.content_type == "application/json"
    data = await response.json()
    assert isinstance(data["error"], str) and data["error"]
    return str(data["error"])


EMPTY: list[dict[str, Any]] = [
    {"text": ""}, {"text": "   \n "}, {}, {"text": None}, {"attachments": []},
]


async def test_an_empty_message_is_refused(chat: Chat) -> None:
    for body in EMPTY:
        error = await _error(await chat.client.post(chat.url, json=body), 400)
        assert "empty" in error, body
    assert await chat.messages() == []


async def test_text_over_the_limit_tells_the_customer_once(chat: Chat) -> None:
    long_text = "我要投诉" * (MAX_TEXT_CHARS // 4) + "。"
    assert len(long_text) == MAX_TEXT_CHARS + 1
    reply = await chat.say(long_text, message_id="long-1")
    assert texts(reply) == TOO_LONG["zh-Hans"].format(limit=MAX_TEXT_CHARS)
    assert reply["ticket_id"] is None
    again = await chat.say(long_text, message_id="long-1")
    assert again == reply
    assert [m["text"] for m in await chat.messages()] == [texts(reply)]
    english = await chat.say("word " * 1000)
    assert texts(english) == TOO_LONG["en"].format(limit=MAX_TEXT_CHARS)
    # The bot never saw the long messages: the conversation starts afresh.
    follow = await chat.say("我的快递一直没到")
    assert "订单号" in texts(follow)
    ok = await chat.say("订单号是 SF1234567890。" + "很急" * 100)
    assert ok["replies"]


MALFORMED = [b"{", b"not json", b"[1, 2]", b'"text"', b"\xff\xfe", b"", b"null"]


async def test_malformed_json_is_a_400(chat: Chat) -> None:
    for raw in MALFORMED:
        response = await chat.client.post(chat.url, data=raw,
                                          headers={"Content-Type": "application/json"})
        await _error(response, 400)
    assert await chat.messages() == []


BAD_FIELDS: list[dict[str, Any]] = [
    {"text": 5},
    {"text": ["a"]},
    {"text": "hi", "message_id": ""},
    {"text": "hi", "message_id": "has space"},
    {"text": "hi", "message_id": "x" * 129},
    {"text": "hi", "message_id": 7},
    {"text": "hi", "attachments": "photo"},
    {"text": "hi", "attachments": [{"filename": "a.png"}]},
    {"text": "hi", "attachments": [{"filename": "a.png", "data": "!!not base64!!"}]},
    {"text": "hi", "attachments": [{"filename": 3, "data": "aGk="}]},
    {"text": "hi", "attachments": [{"data": ""}]},
    {"text": "hi", "attachments": [{"data": "aGk="}] * 6},
]


async def test_bad_fields_are_a_400(chat: Chat) -> None:
    for body in BAD_FIELDS:
        await _error(await chat.client.post(chat.url, json=body), 400)
    assert await chat.messages() == []


async def test_a_bad_conversation_id_is_a_400(client: Client) -> None:
    for conversation in ("a%20b", "x" * 65, "bad!id", "%E4%B8%AD%E6%96%87", "a.b"):
        base = f"/api/webchat/{conversation}"
        await _error(await client.post(base + "/messages", json={"text": "hi"}), 400)
        await _error(await client.get(base + "/messages"), 400)
        await _error(await client.get(base + "/ws"), 400)
    assert await client.app[TICKETS].recent() == []


async def test_an_unknown_conversation_is_created(chat: Chat) -> None:
    assert await chat.messages() == []
    reply = await chat.say("你好")
    assert reply["replies"]
    assert len(await chat.messages()) == len(reply["replies"])


async def test_a_bad_after_is_a_400(chat: Chat) -> None:
    for after in ("abc", "-1", "1.5", "9" * 30):
        await _error(await chat.client.get(chat.url, params={"after": after}), 400)


async def test_an_attachment_is_stored_as_evidence(chat: Chat) -> None:
    data = base64.b64encode(PNG).decode()
    first = await chat.say("转人工", attachments=[
        {"filename": "../../裂痕.png", "content_type": "image/png", "data": data}])
    assert first["ticket_id"]
    digest = hashlib.sha256(PNG).hexdigest()
    evidence = chat.client.app[EVIDENCE]
    assert await evidence.read(digest) == PNG
    refs = await chat.tickets.evidence(first["ticket_id"])
    assert [(r.filename, r.sha256, r.size) for r in refs] == [("裂痕.png", digest, len(PNG))]
    # A photo alone, as a data: URL (what the widget's FileReader gives), is a message too.
    photo = await chat.say("", attachments=[
        {"filename": "b.png", "data": "data:image/png;base64," + data}])
    assert photo["replies"] is not None


async def test_an_attachment_over_the_limit_is_a_413(make_app: AppFactory,
                                                     aiohttp_client: Any) -> None:
    client = await aiohttp_client(make_app(evidence_max_bytes=1024))
    chat = Chat(client, "big")
    data = base64.b64encode(b"x" * 1025).decode()
    error = await _error(await client.post(chat.url, json={
        "text": "看图", "attachments": [{"filename": "a.jpg", "data": data}]}), 413)
    assert "1,024" in error
    ok = base64.b64encode(b"x" * 1024).decode()
    assert (await client.post(chat.url, json={
        "text": "看图", "attachments": [{"filename": "a.jpg", "data": ok}]})).status == 200
    # A body over the limit is refused before it is read to the end.
    huge = b'{"text": "' + b"x" * (3 * 1024 * 1024) + b'"}'
    await _error(await client.post(chat.url, data=io.BytesIO(huge),
                                   headers={"Content-Type": "application/json"}), 413)
    evidence_dir = client.app[EVIDENCE].root
    stored = [p for p in evidence_dir.rglob("*") if p.is_file() and p.suffix != ".json"]
    assert [p.name for p in stored] == [hashlib.sha256(b"x" * 1024).hexdigest()]


async def test_unknown_routes_and_methods_answer_json(client: Client) -> None:
    await _error(await client.get("/api/webchat/abc/nothing"), 404)
    response = await client.delete("/api/webchat/abc/messages")
    await _error(response, 405)
    assert "POST" in response.headers["Allow"]
