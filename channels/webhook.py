"""The signed REST webhook: any other app sends customers' messages in and receives the replies.

Signing (both ways): ``X-Intakebot-Timestamp`` holds unix seconds and ``X-Intakebot-Signature``
holds ``sha256=<hex>``, the HMAC-SHA256 with the shared secret over ``"{timestamp}.{raw body}"``.
A timestamp older than 5 minutes (a replay) or more than 30 s ahead is refused, like a signature
that does not match: 401.

Inbound: ``POST /api/webhook/messages`` with ``{"conversation_id", "message_id", "text",
"attachments"?}`` (attachments as ``{"filename", "content_type", "data": base64}``). A body over
the limit is 413, one that is not such an object 400. The message is handled before the answer
(``{"ok": true}``); the same message_id in a conversation is handled once.

Outbound: each reply is POSTed, signed, to the callback URL with ``{"delivery_id",
"conversation_id", "author", "text", "buttons", "attachments", "sent_at"}``. A reply the
dispatcher sends with a key (`send_once`) carries it as ``delivery_id``, the same on every
retry, so the receiver can drop a second copy after a crash.

- In process (`WebhookOutput`, the default): replies are queued in memory and POSTed in order,
  retried with exponential backoff on 429, 5xx and lost connections. A delivery that still fails,
  is refused (other 4xx), or is still queued at shutdown goes to the dead-letter list, JSON
  Lines in ``data_dir/webhook/dead_letters.jsonl``, which ``GET /api/webhook/dead-letters``
  (signed the same way, over an empty body) lists.
- Direct (`DirectWebhookOutput`, ``queued=False``; the wiring uses it with REDIS_URL): `send`
  POSTs at once, with a few quick retries, and raises `WebhookError` when it fails. The caller
  (the durable outbound queue, `bot.outbound`) keeps the reply, retries later and keeps the
  dead letters, so nothing waits in this process's memory.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import logging
import os
import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from channels.base import ChannelError, OnMessage, Rejected, read_body
from channels.messages import Attachment, ConversationRef, IncomingMessage, OutgoingMessage
from channels.ratelimit import RetryPolicy, retrying
from channels.webchat import FileStore
from handoff.errors import EvidenceError, EvidenceTooLarge

log = logging.getLogger(__name__)

CHANNEL = "webhook"
TIMESTAMP_HEADER = "X-Intakebot-Timestamp"
SIGNATURE_HEADER = "X-Intakebot-Signature"
MAX_AGE = 300  # seconds a signed request stays valid
MAX_SKEW = 30  # seconds a sender's clock may run ahead
DEFAULT_MAX_BODY = 16 * 1024 * 1024
MAX_TEXT_CHARS = 4_000
MAX_ATTACHMENTS = 5
QUEUE_SIZE = 10_000
DEAD_LETTERS_SHOWN = 1_000
_ID = re.compile(r"[\x21-\x7e]{1,128}")
_TIMESTAMP = re.compile(r"\d{1,12}")
_SIGNATURE = re.compile(r"sha256=([0-9a-fA-F]{64})")


class WebhookError(ChannelError):
    """The webhook channel could not accept or deliver a message."""


class DeliveryQueueFull(WebhookError):
    """Too many replies are waiting for the callback URL; this one was not queued."""




class _Transient(Exception):
    """A delivery attempt that may succeed later (429, 5xx, a lost connection)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


# ---- configuration and signing -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    """The webhook channel's settings.

    Attributes:
        secret: the shared HMAC secret (WEBHOOK_SECRET), at least 16 characters.
        callback_url: where replies are POSTed (WEBHOOK_CALLBACK_URL).
    """

    secret: str = field(repr=False)
    callback_url: str

    def __post_init__(self) -> None:
        if len(self.secret) < 16:
            raise ValueError("WEBHOOK_SECRET must be at least 16 characters")
        if not self.callback_url.startswith(("https://", "http://")):
            raise ValueError("WEBHOOK_CALLBACK_URL must be an http(s) URL")

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> WebhookConfig | None:
        """The settings, or None when WEBHOOK_SECRET is unset (the channel is off).

        Raises:
            ValueError: the secret is too short, or the callback URL missing or not http(s).
        """
        secret = env.get("WEBHOOK_SECRET", "").strip()
        if not secret:
            return None
        callback_url = env.get("WEBHOOK_CALLBACK_URL", "").strip()
        if not callback_url:
            raise ValueError("WEBHOOK_CALLBACK_URL is required when WEBHOOK_SECRET is set")
        return cls(secret=secret, callback_url=callback_url)


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header's value: ``sha256=`` and the HMAC-SHA256 of "{timestamp}.{body}"."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def signed_headers(secret: str, body: bytes, now: float | None = None) -> dict[str, str]:
    """The timestamp and signature headers for `body`, as senders and this channel use them."""
    timestamp = str(int(time.time() if now is None else now))
    return {TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: signature(secret, timestamp, body)}


def verify(secret: str, headers: Mapping[str, str], body: bytes,
           now: float | None = None) -> None:
    """Check a request's signature and age; `Rejected` (401) when it is not good."""
    timestamp = headers.get(TIMESTAMP_HEADER, "")
    given = headers.get(SIGNATURE_HEADER, "")
    if not timestamp or not given:
        raise Rejected(401, f"missing {TIMESTAMP_HEADER} or {SIGNATURE_HEADER}")
    match = _SIGNATURE.fullmatch(given)
    if not _TIMESTAMP.fullmatch(timestamp) or match is None:
        raise Rejected(401, f"{SIGNATURE_HEADER} must be sha256=<hex> and {TIMESTAMP_HEADER} "
                             "unix seconds")
    expected = signature(secret, timestamp, body)
    if not hmac.compare_digest(("sha256=" + match[1].lower()).encode(), expected.encode()):
        raise Rejected(401, "the signature does not match")
    age = (time.time() if now is None else now) - int(timestamp)
    if age > MAX_AGE:
        raise Rejected(401, f"the request is older than {MAX_AGE} seconds")
    if age < -MAX_SKEW:
        raise Rejected(401, "the timestamp is in the future")


# ---- dead letters --------------------------------------------------------------------------


class DeadLetters:
    """Deliveries that failed for good, as JSON Lines in one file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = asyncio.Lock()

    async def add(self, delivery: dict[str, Any], *, error: str, attempts: int) -> None:
        """Append one failed delivery (fsynced: it is the only record left of the reply)."""
        line = json.dumps({"delivery": delivery, "error": error, "attempts": attempts,
                           "failed_at": datetime.now(UTC).isoformat()}, ensure_ascii=False)
        async with self._lock:
            await asyncio.to_thread(self._append, line)

    def _append(self, line: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(line + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    async def list(self, limit: int = DEAD_LETTERS_SHOWN) -> list[dict[str, Any]]:
        """The latest `limit` dead letters, oldest first."""
        async with self._lock:
            text = await asyncio.to_thread(self._read)
        entries = []
        for line in text.splitlines()[-limit:]:
            with contextlib.suppress(ValueError):
                entries.append(json.loads(line))
        return entries

    def _read(self) -> str:
        try:
            return self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return ""


# ---- outbound ------------------------------------------------------------------------------


def delivery_json(message: OutgoingMessage, delivery_id: str) -> dict[str, Any]:
    """The body POSTed to the callback URL for one reply."""
    return {
        "delivery_id": delivery_id,
        "conversation_id": message.conversation.chat_id,
        "author": message.author.value,
        "text": message.text,
        "buttons": list(message.buttons),
        "attachments": [{"filename": a.filename, "content_type": a.content_type,
                         "sha256": a.sha256, "size": a.size} for a in message.attachments],
        "sent_at": datetime.now(UTC).isoformat(),
    }


class WebhookOutput:
    """The webhook's OutputChannel: queues each reply for the delivery worker."""

    name = CHANNEL

    def __init__(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        self._queue = queue
        self.closed = False

    async def send(self, message: OutgoingMessage) -> None:
        """Queue the message for the callback URL.

        Raises:
            DeliveryQueueFull: the queue is full (the callback URL has been failing for long).
            WebhookError: the channel is shut down.
        """
        await self.send_once(message, uuid.uuid4().hex)

    async def send_once(self, message: OutgoingMessage, key: str) -> None:
        """Queue the message with `key` as its delivery_id (the receiver drops repeats)."""
        if self.closed:
            raise WebhookError("the webhook channel is shut down")
        delivery = delivery_json(message, key)
        try:
            self._queue.put_nowait(delivery)
        except asyncio.QueueFull as exc:
            raise DeliveryQueueFull(
                f"{QUEUE_SIZE:,} replies are waiting for the webhook callback URL") from exc


class DirectWebhookOutput:
    """The webhook's OutputChannel without a queue: POST now, raise when that fails."""

    name = CHANNEL

    def __init__(self, channel: WebhookChannel) -> None:
        self._channel = channel

    async def send(self, message: OutgoingMessage) -> None:
        """POST the message to the callback URL.

        Raises:
            WebhookError: the callback URL refused it or stayed unreachable (a few quick tries).
        """
        await self.send_once(message, uuid.uuid4().hex)

    async def send_once(self, message: OutgoingMessage, key: str) -> None:
        """POST the message with `key` as its delivery_id (the receiver drops repeats)."""
        await self._channel.post_now(delivery_json(message, key))


# ---- the channel ---------------------------------------------------------------------------


class WebhookChannel:
    """The signed REST webhook: routes in, a delivery queue to the callback URL out.

    Args:
        config: from `WebhookConfig.from_env`.
        on_message: the wiring's callback; it handles a message and sends the replies.
        files: where attachments are stored (the evidence store).
        data_dir: the data directory; dead letters go to ``data_dir/webhook``.
        policy: retries of a delivery.
        max_body: the largest request body accepted, in bytes.
        timeout: seconds one delivery attempt may take.
        queued: queue replies in this process (True), or POST each at once and let the caller
            keep and retry it (False: the durable outbound queue does).
        direct_policy: the quick retries of a direct POST.
    """

    name = CHANNEL

    def __init__(self, config: WebhookConfig, on_message: OnMessage, *, files: FileStore,
                 data_dir: Path, policy: RetryPolicy | None = None,
                 max_body: int = DEFAULT_MAX_BODY, timeout: float = 10.0, queued: bool = True,
                 direct_policy: RetryPolicy | None = None) -> None:
        self.config = config
        self._on_message = on_message
        self._files = files
        self._policy = policy or RetryPolicy(attempts=8, base_delay=1.0, max_delay=300.0)
        self.max_body = max_body
        self._timeout = timeout
        self.dead_letters = DeadLetters(data_dir / "webhook" / "dead_letters.jsonl")
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(QUEUE_SIZE)
        self._direct_policy = direct_policy or RetryPolicy(attempts=3, base_delay=0.5,
                                                           max_delay=2.0)
        self._output: WebhookOutput | DirectWebhookOutput = (
            WebhookOutput(self._queue) if queued else DirectWebhookOutput(self))
        self._session: aiohttp.ClientSession | None = None
        self._worker: asyncio.Task[None] | None = None
        self._current: dict[str, Any] | None = None
        self._attempts = 0

    @property
    def output(self) -> WebhookOutput | DirectWebhookOutput:
        """Where replies to webhook conversations go."""
        return self._output

    def routes(self, prefix: str = "/api/webhook") -> list[web.RouteDef]:
        """The inbound message route and the dead-letter list."""
        return [web.post(prefix + "/messages", self.post_message),
                web.get(prefix + "/dead-letters", self.list_dead_letters, allow_head=False)]

    async def start(self) -> None:
        """Open the HTTP client and start delivering."""
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self._timeout))
        if isinstance(self._output, WebhookOutput):
            self._worker = asyncio.create_task(self._deliver_all(), name="webhook-delivery")

    async def close(self) -> None:
        """Stop delivering; what is still queued goes to the dead letters, not lost."""
        if isinstance(self._output, WebhookOutput):
            self._output.closed = True
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        left = [self._current] if self._current is not None else []
        self._current = None
        while not self._queue.empty():
            left.append(self._queue.get_nowait())
        for delivery in left:
            await self.dead_letters.add(delivery, error="not delivered before shutdown",
                                        attempts=0)
        if left:
            log.error("webhook: %d replies not delivered before shutdown; see %s", len(left),
                      self.dead_letters.path)
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def idle(self) -> None:
        """Wait until every queued reply was delivered or dead-lettered (tests, shutdown)."""
        await self._queue.join()

    # ---- inbound -------------------------------------------------------------------------

    async def post_message(self, request: web.Request) -> web.Response:
        """Handle one signed message."""
        try:
            body = await self._read(request)
            verify(self.config.secret, request.headers, body)
            message = await self._parse(body)
        except Rejected as exc:
            return web.json_response({"error": str(exc)}, status=exc.status)
        await self._on_message(message)
        return web.json_response({"ok": True})

    async def list_dead_letters(self, request: web.Request) -> web.Response:
        """The deliveries that failed for good, latest last; signed like a message."""
        try:
            verify(self.config.secret, request.headers, await self._read(request))
        except Rejected as exc:
            return web.json_response({"error": str(exc)}, status=exc.status)
        return web.json_response({"dead_letters": await self.dead_letters.list()})

    async def _read(self, request: web.Request) -> bytes:
        return await read_body(request, self.max_body, lambda message: Rejected(413, message))

    async def _parse(self, body: bytes) -> IncomingMessage:
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise Rejected(400, f"the body is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise Rejected(400, 'the body must be a JSON object like {"conversation_id", '
                                 '"message_id", "text"}')
        ids = {}
        for key in ("conversation_id", "message_id"):
            value = data.get(key)
            if not isinstance(value, str) or not _ID.fullmatch(value):
                raise Rejected(400, f'"{key}" must be 1-128 printable ASCII characters '
                                     "without spaces")
            ids[key] = value
        text = data.get("text", "")
        if text is None:
            text = ""
        if not isinstance(text, str):
            raise Rejected(400, '"text" must be a string')
        if len(text) > MAX_TEXT_CHARS:
            raise Rejected(400, f'"text" is longer than {MAX_TEXT_CHARS:,} characters')
        attachments = await self._attachments(data.get("attachments"))
        if not text.strip() and not attachments:
            raise Rejected(400, 'the message is empty: send some "text" or an attachment')
        return IncomingMessage(conversation=ConversationRef(CHANNEL, ids["conversation_id"]),
                               text=text, message_id=ids["message_id"],
                               attachments=attachments)

    async def _attachments(self, raw: object) -> tuple[Attachment, ...]:
        if raw is None:
            return ()
        if not isinstance(raw, list) or len(raw) > MAX_ATTACHMENTS:
            raise Rejected(400, f'"attachments" must be a list of at most {MAX_ATTACHMENTS}')
        decoded = []
        for number, item in enumerate(raw, start=1):
            where = f"attachment {number}"
            if not isinstance(item, dict) or not isinstance(item.get("data"), str):
                raise Rejected(400, f'{where}: expected {{"filename", "content_type", "data"}}'
                                     " with data in base64")
            filename = item.get("filename") or "attachment"
            content_type = item.get("content_type")
            if not isinstance(filename, str) or not (
                    content_type is None or isinstance(content_type, str)):
                raise Rejected(400, f"{where}: filename and content_type must be strings")
            try:
                data = base64.b64decode(item["data"], validate=True)
            except (binascii.Error, ValueError) as exc:
                raise Rejected(400, f"{where}: data is not valid base64") from exc
            if not data:
                raise Rejected(400, f"{where} is empty")
            decoded.append((filename, content_type, data))
        stored = []
        for filename, content_type, data in decoded:
            try:
                ref = await self._files.put(filename, content_type, data)
            except EvidenceTooLarge as exc:
                raise Rejected(413, str(exc)) from exc
            except EvidenceError as exc:
                raise WebhookError(f"cannot store the attachment: {exc}") from exc
            stored.append(Attachment(filename=ref.filename, content_type=ref.content_type,
                                     sha256=ref.sha256, size=ref.size))
        return tuple(stored)

    # ---- delivery ------------------------------------------------------------------------

    async def _deliver_all(self) -> None:
        while True:
            delivery = await self._queue.get()
            self._current = delivery
            try:
                await self._deliver(delivery)
                self._current = None  # kept when cancelled: close() dead-letters it
            except Exception as exc:
                # Never let one delivery stop the worker; the reply is kept, not dropped.
                log.exception("webhook delivery %s failed unexpectedly", delivery["delivery_id"])
                self._current = None
                await self.dead_letters.add(delivery, error=repr(exc), attempts=self._attempts)
            finally:
                self._queue.task_done()

    async def _deliver(self, delivery: dict[str, Any]) -> None:
        self._attempts = 0
        try:
            await retrying(lambda: self._post(delivery), policy=self._policy,
                           transient=lambda exc: isinstance(exc, _Transient),
                           retry_after=lambda exc: getattr(exc, "retry_after", None))
        except (_Transient, WebhookError) as exc:
            log.error("webhook delivery %s to conversation %s failed after %d attempts: %s",
                      delivery["delivery_id"], delivery["conversation_id"], self._attempts, exc)
            await self.dead_letters.add(delivery, error=str(exc), attempts=self._attempts)

    async def post_now(self, delivery: dict[str, Any]) -> None:
        """POST one delivery with the quick retries; WebhookError when it does not get there."""
        if self._session is None:
            raise WebhookError("the webhook channel is not started or shut down")
        try:
            await retrying(lambda: self._post(delivery), policy=self._direct_policy,
                           transient=lambda exc: isinstance(exc, _Transient),
                           retry_after=lambda exc: getattr(exc, "retry_after", None))
        except _Transient as exc:
            raise WebhookError(str(exc)) from exc

    async def _post(self, delivery: dict[str, Any]) -> None:
        assert self._session is not None, "start() opens the session"
        self._attempts += 1
        body = json.dumps(delivery, ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json",
                   **signed_headers(self.config.secret, body)}
        try:
            async with self._session.post(self.config.callback_url, data=body,
                                          headers=headers) as response:
                status = response.status
                retry_after = response.headers.get("Retry-After", "")
                reason = (await response.text())[:200]
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _Transient(f"cannot reach the callback URL: {exc!r}") from exc
        if 200 <= status < 300:
            return
        message = f"the callback URL answered {status}: {reason}"
        if status == 429 or status >= 500 or status == 408:
            raise _Transient(message, float(retry_after) if retry_after.isdigit() else None)
        raise WebhookError(message)
