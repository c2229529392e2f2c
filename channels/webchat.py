"""The web chat channel: a JSON API, a WebSocket and the widget page the shop embeds.

Routes (mounted by the wiring, under ``/api/webchat`` by default):

- ``POST {prefix}/{conversation_id}/messages`` with ``{"text", "message_id"?, "attachments"?}``
  hands the message to the OnMessage callback and answers with its replies and the
  conversation's open ticket: ``{"replies": [{"text", "buttons"}], "ticket_id"}`` (from the
  callback's answer when it says, `KnownTicket`, else asked of the ticket store).
- ``GET {prefix}/{conversation_id}/messages?after=SEQ`` lists what the customer was sent after
  ``SEQ`` (bot replies, agent replies, updates), in order, from the durable outbox.
- ``GET {prefix}/{conversation_id}/ws`` pushes the same messages live; the client may send
  ``{"after": SEQ}`` to (re)start from a point.

The channel knows a callback, never the engine. Its OutputChannel (``WebChat.output``) appends to
the outbox and wakes the conversation's WebSocket subscribers through a `Fanout`: in-process here,
a Redis pub/sub implementation of the same protocol when the bot runs in several processes. The
fan-out only says "there is something new"; subscribers read the outbox itself, so a missed
notice never loses a message and the order is always the outbox's.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import re
import uuid
import weakref
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from aiohttp import WSCloseCode, WSMsgType, web

from channels.base import ChannelError, OnMessage, read_body
from channels.messages import Attachment, ConversationRef, IncomingMessage, OutgoingMessage
from handoff.errors import EvidenceError, EvidenceTooLarge, HandoffError
from handoff.intake import EvidenceRef

log = logging.getLogger(__name__)

CHANNEL = "webchat"
STATIC_DIR = Path(__file__).with_name("static")
MAX_TEXT_CHARS = 4_000
MAX_ATTACHMENTS = 5
MAX_MESSAGE_ID_CHARS = 128
PAGE_SIZE = 200
DEFAULT_MAX_BODY = 16 * 1024 * 1024  # one 10 MB photo in base64 (13.4 MB) and the text
# The page runs only its own files; no inline script, so injected markup could not run either.
# frame-ancestors is open: shops embed the widget in an iframe.
PAGE_POLICY = ("default-src 'self'; img-src 'self' blob: data:; connect-src 'self' ws: wss:; "
               "style-src 'self'; script-src 'self'; base-uri 'none'; form-action 'none'; "
               "frame-ancestors *")
_CONVERSATION_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_MESSAGE_ID = re.compile(r"[\x21-\x7e]{1,128}")
_DATA_URL = re.compile(r"data:([^;,]*)(;[^,]*)?,")

# Said when a message is over MAX_TEXT_CHARS, unless the wiring passes the engine's template.
TOO_LONG = {
    "zh-Hans": "抱歉，您的消息太长了（最多 {limit} 个字）。请分几条发送，或简要说明主要问题。",
    "zh-Hant": "抱歉，您的訊息太長了（最多 {limit} 個字）。請分幾條發送，或簡要說明主要問題。",
    "en": "Sorry, your message is too long (at most {limit} characters). Please send it in "
          "several parts or summarise the main problem.",
}


class WebChatError(ChannelError):
    """A request the web chat cannot accept; `status` is the HTTP status it maps to."""

    status = 400


class BadRequest(WebChatError):
    """Malformed JSON, a missing or wrong field, a bad conversation id."""

    status = 400


class PayloadTooLarge(WebChatError):
    """The body or an attachment is larger than accepted."""

    status = 413


class DeliveryFailed(ChannelError):
    """A message could not be written to the outbox."""


# ---- what the channel is given -------------------------------------------------------------


class LoggedMessage(Protocol):
    """A message in the outbox (handoff.tickets.OutboxMessage is one)."""

    @property
    def seq(self) -> int: ...
    @property
    def author(self) -> str: ...
    @property
    def text(self) -> str: ...
    @property
    def buttons(self) -> tuple[str, ...]: ...
    @property
    def sent_at(self) -> datetime: ...


class MessageLog(Protocol):
    """The durable per-conversation outbox (handoff.tickets.Outbox is one)."""

    async def append(self, channel: str, chat_id: str, *, author: str, text: str,
                     buttons: Sequence[str] = (), dedup_key: str | None = None,
                     now: datetime | None = None) -> LoggedMessage:
        """Store a message and return it with its seq; the same dedup_key stores it once."""
        ...

    async def after(self, channel: str, chat_id: str, after: int = 0, *,
                    limit: int = 200) -> Sequence[LoggedMessage]:
        """The messages with seq > `after`, in order."""
        ...


@runtime_checkable
class BatchMessageLog(Protocol):
    """An outbox that stores a turn's messages in one transaction (handoff.tickets.Outbox)."""

    async def append_many(self, channel: str, chat_id: str, *, author: str,
                          texts: Sequence[str], buttons: Sequence[Sequence[str]],
                          dedup_keys: Sequence[str], now: datetime | None = None
                          ) -> Sequence[LoggedMessage]:
        """Store the messages in order, each once per dedup key, all or none."""
        ...


@runtime_checkable
class KnownTicket(Protocol):
    """The callback's replies when they also say the conversation's open ticket
    (bot.dispatcher.Handled): the answer then needs no ticket lookup."""

    ticket_id: str | None
    ticket_known: bool


class FileStore(Protocol):
    """Where attachments go (handoff.evidence.EvidenceStore is one)."""

    @property
    def max_bytes(self) -> int: ...

    async def put(self, filename: str, content_type: str | None, data: bytes) -> EvidenceRef:
        """Store a file; EvidenceTooLarge over `max_bytes`."""
        ...


class TicketLookup(Protocol):
    """Which ticket a conversation has open (handoff.tickets.TicketStore is one)."""

    async def open_ticket_id(self, channel: str, chat_id: str) -> str | None: ...


class Subscription(Protocol):
    """One listener's view of a conversation's notices."""

    async def wait(self) -> None:
        """Return once something was published (or `wake` was called) since the last wait."""
        ...

    def wake(self) -> None:
        """Make the next (or current) `wait` return."""
        ...


class Fanout(Protocol):
    """Tells a conversation's live listeners that its outbox grew.

    In-process now (`InProcessFanout`); the scale-out issue adds a Redis pub/sub one, publishing
    the same notices on a channel per conversation.
    """

    async def publish(self, conversation: str) -> None:
        """Wake every subscriber of `conversation` (ConversationRef.key)."""
        ...

    def subscribe(self, conversation: str) -> AbstractAsyncContextManager[Subscription]:
        """Listen to `conversation` for the `async with` block."""
        ...


class _Waiter:
    def __init__(self) -> None:
        self._event = asyncio.Event()

    async def wait(self) -> None:
        await self._event.wait()
        self._event.clear()

    def wake(self) -> None:
        self._event.set()


class InProcessFanout:
    """Notices to the subscribers in this process."""

    def __init__(self) -> None:
        self._subscribers: dict[str, set[_Waiter]] = {}

    def subscribers(self, conversation: str) -> int:
        return len(self._subscribers.get(conversation, ()))

    async def publish(self, conversation: str) -> None:
        for waiter in self._subscribers.get(conversation, ()):
            waiter.wake()

    @asynccontextmanager
    async def subscribe(self, conversation: str) -> AsyncIterator[Subscription]:
        waiter = _Waiter()
        self._subscribers.setdefault(conversation, set()).add(waiter)
        try:
            yield waiter
        finally:
            group = self._subscribers.get(conversation)
            if group is not None:
                group.discard(waiter)
                if not group:
                    del self._subscribers[conversation]


# ---- the output channel --------------------------------------------------------------------


def message_json(message: LoggedMessage) -> dict[str, Any]:
    """One outbox message as the API and the WebSocket show it."""
    return {"seq": message.seq, "author": message.author, "text": message.text,
            "buttons": list(message.buttons), "sent_at": message.sent_at.isoformat()}


class WebChatOutput:
    """The web chat's OutputChannel: append to the outbox, then wake the live listeners."""

    name = CHANNEL

    def __init__(self, log: MessageLog, fanout: Fanout) -> None:
        self._log = log
        self._fanout = fanout

    async def send(self, message: OutgoingMessage) -> None:
        """Store the message for the customer; DeliveryFailed when the outbox refuses it."""
        await self.post(message.conversation.chat_id, author=message.author.value,
                        text=message.text, buttons=message.buttons)

    async def send_once(self, message: OutgoingMessage, key: str) -> None:
        """Store the message unless one with the same key is stored (a re-send after a crash)."""
        await self.post(message.conversation.chat_id, author=message.author.value,
                        text=message.text, buttons=message.buttons, dedup_key=key)

    async def send_batch_once(self, messages: Sequence[OutgoingMessage],
                              keys: Sequence[str]) -> None:
        """Store the messages of one conversation and author by key, in one transaction when
        the outbox can; then wake the listeners once."""
        if not messages:
            return
        first = messages[0]
        chat_id = first.conversation.chat_id
        if any(m.conversation != first.conversation or m.author is not first.author
               for m in messages) or len(keys) != len(messages):
            raise ValueError("a batch is one conversation's messages of one author, each keyed")
        if not isinstance(self._log, BatchMessageLog):
            for message, key in zip(messages, keys, strict=True):
                await self.send_once(message, key)
            return
        try:
            await self._log.append_many(CHANNEL, chat_id, author=first.author.value,
                                        texts=[m.text for m in messages],
                                        buttons=[m.buttons for m in messages], dedup_keys=keys)
        except HandoffError as exc:
            raise DeliveryFailed(f"cannot store the messages for {CHANNEL}:{chat_id}: {exc}"
                                 ) from exc
        await self._fanout.publish(first.conversation.key)

    async def post(self, chat_id: str, *, author: str, text: str, buttons: Sequence[str] = (),
                   dedup_key: str | None = None) -> LoggedMessage:
        try:
            logged = await self._log.append(CHANNEL, chat_id, author=author, text=text,
                                            buttons=buttons, dedup_key=dedup_key)
        except HandoffError as exc:
            raise DeliveryFailed(f"cannot store the message for {CHANNEL}:{chat_id}: {exc}"
                                 ) from exc
        await self._fanout.publish(ConversationRef(CHANNEL, chat_id).key)
        return logged


# ---- requests ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Upload:
    filename: str
    content_type: str | None
    data: bytes


@dataclass(frozen=True, slots=True)
class _Post:
    text: str
    message_id: str
    uploads: tuple[_Upload, ...]


def conversation_id(request: web.Request) -> str:
    """The path's conversation id; BadRequest unless it is 1-64 of [A-Za-z0-9_-]."""
    value = request.match_info.get("conversation_id", "")
    if not _CONVERSATION_ID.fullmatch(value):
        raise BadRequest("conversation id must be 1-64 characters of A-Z, a-z, 0-9, _ and -")
    return value


def _too_long_default(text: str, limit: int) -> str:
    from nlp.normalize import detect_lang

    lang = detect_lang(text[:500]).value
    return TOO_LONG.get(lang, TOO_LONG["zh-Hans"]).format(limit=limit)


class WebChat:
    """The web chat channel: routes in, an OutputChannel out.

    Args:
        on_message: the wiring's callback (dispatcher): handles a message, returns its replies.
        log: the durable outbox every message to a customer is written to.
        files: where attachments are stored.
        tickets: answers which ticket a conversation has open (for the POST response).
        fanout: wakes live listeners; in-process by default.
        too_long: the reply to an over-long message, given its text and the limit.
        max_body: the largest request body accepted, in bytes.
        max_text: the longest text handed to the bot, in characters.
    """

    name = CHANNEL

    def __init__(self, on_message: OnMessage, log: MessageLog, *, files: FileStore,
                 tickets: TicketLookup | None = None, fanout: Fanout | None = None,
                 too_long: Callable[[str, int], str] = _too_long_default,
                 max_body: int = DEFAULT_MAX_BODY, max_text: int = MAX_TEXT_CHARS) -> None:
        self._on_message = on_message
        self._log = log
        self._files = files
        self._tickets = tickets
        self._fanout = fanout or InProcessFanout()
        self._too_long = too_long
        self.max_body = max_body
        self.max_text = max_text
        self.output = WebChatOutput(log, self._fanout)
        self._sockets: weakref.WeakSet[web.WebSocketResponse] = weakref.WeakSet()

    def routes(self, prefix: str = "/api/webchat") -> list[web.RouteDef]:
        """The API routes, for the wiring to add to its application."""
        base = prefix.rstrip("/") + "/{conversation_id}"
        return [
            web.post(base + "/messages", self.post_message),
            web.get(base + "/messages", self.list_messages, allow_head=False),
            web.get(base + "/ws", self.websocket, allow_head=False),
        ]

    def page_routes(self, path: str = "/chat") -> list[web.AbstractRouteDef]:
        """The widget page and its scripts (plain files, no build step)."""

        async def page(_request: web.Request) -> web.FileResponse:
            return web.FileResponse(STATIC_DIR / "chat.html", headers={
                "Cache-Control": "no-cache", "Content-Security-Policy": PAGE_POLICY})

        return [web.get(path, page), web.static(path + "/static", STATIC_DIR)]

    async def close(self) -> None:
        """Close the open WebSockets (at shutdown, so the server need not wait for them)."""
        for ws in list(self._sockets):
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")

    # ---- POST ----------------------------------------------------------------------------

    async def post_message(self, request: web.Request) -> web.Response:
        chat_id = conversation_id(request)
        post = self._parse(await self._read_json(request))
        conversation = ConversationRef(CHANNEL, chat_id)
        if len(post.text) > self.max_text:
            # The bot never sees it; the customer is told once per message id, however often
            # the client retries.
            logged = await self.output.post(
                chat_id, author="system", text=self._too_long(post.text, self.max_text),
                dedup_key=f"too-long:{post.message_id}")
            return await self._answer(conversation, [{"text": logged.text,
                                                      "buttons": list(logged.buttons)}])
        attachments = await self._store(post.uploads)
        incoming = IncomingMessage(conversation=conversation, text=post.text,
                                   message_id=post.message_id, attachments=attachments)
        replies = await self._on_message(incoming)
        known = replies if isinstance(replies, KnownTicket) and replies.ticket_known else None
        return await self._answer(conversation, [{"text": r.text, "buttons": list(r.buttons)}
                                                 for r in replies], known)

    async def _answer(self, conversation: ConversationRef, replies: list[dict[str, Any]],
                      known: KnownTicket | None = None) -> web.Response:
        ticket_id = None
        if known is not None:
            ticket_id = known.ticket_id
        elif self._tickets is not None:
            ticket_id = await self._tickets.open_ticket_id(conversation.channel,
                                                           conversation.chat_id)
        return web.json_response({"replies": replies, "ticket_id": ticket_id})

    async def _read_json(self, request: web.Request) -> dict[str, Any]:
        body = await read_body(request, self.max_body, PayloadTooLarge)
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadRequest(f"the body is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise BadRequest('the body must be a JSON object like {"text": "…"}')
        return data

    def _parse(self, data: dict[str, Any]) -> _Post:
        text = data.get("text")
        if text is None:
            text = ""
        if not isinstance(text, str):
            raise BadRequest('"text" must be a string')
        message_id = data.get("message_id")
        if message_id is None:
            message_id = uuid.uuid4().hex
        elif not isinstance(message_id, str) or not _MESSAGE_ID.fullmatch(message_id):
            raise BadRequest(f'"message_id" must be 1-{MAX_MESSAGE_ID_CHARS} printable ASCII '
                             "characters without spaces")
        uploads = self._uploads(data.get("attachments"))
        if not text.strip() and not uploads:
            raise BadRequest('the message is empty: send some "text" or an attachment')
        return _Post(text=text, message_id=message_id, uploads=uploads)

    def _uploads(self, raw: object) -> tuple[_Upload, ...]:
        if raw is None:
            return ()
        if not isinstance(raw, list):
            raise BadRequest('"attachments" must be a list')
        if len(raw) > MAX_ATTACHMENTS:
            raise BadRequest(f"at most {MAX_ATTACHMENTS} attachments per message")
        uploads = []
        for number, item in enumerate(raw, start=1):
            where = f"attachment {number}"
            if not isinstance(item, dict) or not isinstance(item.get("data"), str):
                raise BadRequest(f'{where}: expected {{"filename", "content_type", "data"}} '
                                 "with data in base64")
            filename = item.get("filename") or "attachment"
            content_type = item.get("content_type")
            if not isinstance(filename, str) or not (
                    content_type is None or isinstance(content_type, str)):
                raise BadRequest(f"{where}: filename and content_type must be strings")
            encoded: str = item["data"]
            match = _DATA_URL.match(encoded)
            if match:  # a data: URL, as FileReader.readAsDataURL gives it
                content_type = content_type or match.group(1) or None
                encoded = encoded[match.end():]
            estimate = len(encoded) * 3 // 4 - encoded[-2:].count("=")
            if estimate > self._files.max_bytes:
                raise PayloadTooLarge(
                    f"{where} is {estimate:,} bytes; at most {self._files.max_bytes:,} "
                    "bytes per file are accepted")
            try:
                data = base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise BadRequest(f"{where}: data is not valid base64") from exc
            if not data:
                raise BadRequest(f"{where} is empty")
            uploads.append(_Upload(filename, content_type, data))
        return tuple(uploads)

    async def _store(self, uploads: tuple[_Upload, ...]) -> tuple[Attachment, ...]:
        stored = []
        for upload in uploads:
            try:
                ref = await self._files.put(upload.filename, upload.content_type, upload.data)
            except EvidenceTooLarge as exc:
                raise PayloadTooLarge(str(exc)) from exc
            except EvidenceError as exc:
                raise DeliveryFailed(f"cannot store the attachment: {exc}") from exc
            stored.append(Attachment(filename=ref.filename, content_type=ref.content_type,
                                     sha256=ref.sha256, size=ref.size))
        return tuple(stored)

    # ---- GET and WebSocket ---------------------------------------------------------------

    async def list_messages(self, request: web.Request) -> web.Response:
        chat_id = conversation_id(request)
        after = _int_param(request, "after", 0)
        limit = min(_int_param(request, "limit", PAGE_SIZE), PAGE_SIZE) or PAGE_SIZE
        messages = await self._log.after(CHANNEL, chat_id, after, limit=limit)
        return web.json_response({"messages": [message_json(m) for m in messages]})

    async def websocket(self, request: web.Request) -> web.WebSocketResponse:
        chat_id = conversation_id(request)
        cursor = _Cursor(_int_param(request, "after", 0))
        ws = web.WebSocketResponse(heartbeat=30.0)
        await ws.prepare(request)
        self._sockets.add(ws)
        key = ConversationRef(CHANNEL, chat_id).key
        async with self._fanout.subscribe(key) as subscription:
            pusher = asyncio.create_task(self._push(ws, chat_id, cursor, subscription))
            try:
                async for frame in ws:
                    if frame.type != WSMsgType.TEXT:
                        continue
                    after = _resume_point(frame.data)
                    if after is None:
                        await ws.send_json({"error": 'send {"after": SEQ} to resume after SEQ'})
                        continue
                    cursor.rewind(after)
                    subscription.wake()
            finally:
                pusher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pusher
        return ws

    async def _push(self, ws: web.WebSocketResponse, chat_id: str, cursor: _Cursor,
                    subscription: Subscription) -> None:
        try:
            while not ws.closed:
                last = cursor.take()
                messages = await self._log.after(CHANNEL, chat_id, last, limit=PAGE_SIZE)
                for message in messages:
                    await ws.send_json(message_json(message))
                if messages:
                    cursor.advance(messages[-1].seq)
                if len(messages) < PAGE_SIZE:
                    await subscription.wait()
        except (ConnectionError, RuntimeError) as exc:
            # The client went away mid-send; it resumes with {"after": SEQ} when it is back.
            log.debug("web chat socket of %s closed while sending: %s", chat_id, exc)
        except HandoffError as exc:
            log.warning("web chat socket of %s: the outbox failed: %s", chat_id, exc)
            await ws.close(code=WSCloseCode.TRY_AGAIN_LATER, message=b"outbox unavailable")


class _Cursor:
    """The last seq a socket has sent; a client's {"after": N} rewinds it."""

    def __init__(self, after: int) -> None:
        self._last = after
        self._rewind: int | None = None

    def take(self) -> int:
        if self._rewind is not None:
            self._last, self._rewind = self._rewind, None
        return self._last

    def advance(self, seq: int) -> None:
        if self._rewind is None:
            self._last = seq

    def rewind(self, after: int) -> None:
        self._rewind = after


def _resume_point(data: str) -> int | None:
    try:
        payload = json.loads(data)
    except ValueError:
        return None
    if not isinstance(payload, dict):
        return None
    after = payload.get("after")
    if isinstance(after, bool) or not isinstance(after, int) or after < 0:
        return None
    return after


def _int_param(request: web.Request, name: str, default: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or len(raw) > 18:
        raise BadRequest(f"{name} must be a whole number ≥ 0")
    return int(raw)
