"""The Telegram channel: Bot API updates in (webhook or polling), messages out.

Updates are processed by python-telegram-bot's `Application`, with one `TypeHandler` that hands
every update to `TelegramChannel.handle`. Inbound, in one of two modes:

- webhook (production): the Application is built with ``updater(None)`` and runs inside our
  aiohttp app. Telegram POSTs each update to ``/api/telegram/{path}``, a path derived from the
  bot token (unguessable, the same in every process), and must send the secret set with
  setWebhook in ``X-Telegram-Bot-Api-Secret-Token``: missing -> 401, wrong -> 403, a body that
  is not an update -> 400, over `max_body` -> 413. The route parses the body with `Update.de_json`
  and awaits ``application.process_update``. PTB gives a handler's exception to the error
  handlers rather than raising it, so our error handler hands it back to the route, which
  answers 503: Telegram delivers the update again. An update_id already handled is acknowledged
  and not handled twice.
- polling (development, ``TELEGRAM_POLLING=1`` or ``intakebot serve --telegram-polling``): PTB's
  `Updater` long-polls getUpdates (deleting any webhook first) and retries it on errors. It
  confirms updates as it fetches them, so an update that fails is retried in process with
  backoff, in order; after the retries it is logged as an error.

Text becomes an IncomingMessage (chat id, message id, sent time). A photo becomes an evidence
attachment: its largest size is fetched with getFile and stored in the evidence store. A press
on an inline button becomes a customer message with the button's text and is acknowledged with
answerCallbackQuery.

Outbound (`TelegramOutput`): sendMessage, buttons as an inline keyboard, image attachments with
sendPhoto; paced at most 1 message/s per chat and 30/s per bot, retried with backoff on 429
(honouring ``retry_after``), 5xx and connections that could not be made; a failure after the
retries raises `TelegramDeliveryError`, a ChannelError. The Bot API has no idempotency key, so a
send whose request left but whose answer never came (a read time-out, a connection lost while
waiting) is not tried again: it may have been carried out. It raises `TelegramDeliveryInDoubt`
(``maybe_delivered``), as does a failure after a long text's first parts were sent; the
outbound senders list such a reply for staff instead of sending it twice (bot.outbound).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import logging
import re
import warnings
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol

from aiohttp import web
from telegram import (
    Bot,
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    PhotoSize,
    Update,
)
from telegram.error import BadRequest as TelegramBadRequest
from telegram.error import NetworkError, RetryAfter, TelegramError
from telegram.ext import Application, ApplicationBuilder, CallbackContext, ExtBot, TypeHandler
from telegram.request import HTTPXRequest
from telegram.warnings import PTBDeprecationWarning

from channels.base import ChannelError, OnMessage, Rejected, read_body
from channels.messages import (
    Attachment,
    ConversationRef,
    IncomingMessage,
    OutgoingMessage,
)
from channels.ratelimit import RateLimiter, RetryPolicy, retrying
from handoff.errors import EvidenceError, EvidenceTooLarge
from handoff.intake import EvidenceRef

log = logging.getLogger(__name__)

CHANNEL = "telegram"
DEFAULT_API_BASE = "https://api.telegram.org"
DEFAULT_MAX_BODY = 1024 * 1024  # updates are a few kB; photos come by getFile, not in the body
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
ALLOWED_UPDATES = ("message", "callback_query")
MAX_CALLBACK_DATA = 64  # bytes, the Bot API's limit
MAX_TEXT_CHARS = 4096  # per message, the Bot API's limit
SEEN_UPDATES = 10_000  # update ids remembered for de-duplication
_SECRET = re.compile(r"[A-Za-z0-9_-]{1,256}")
_CHAT_ID = re.compile(r"-?\d{1,20}|@[A-Za-z0-9_]{5,32}")
_TRUE = {"1", "true", "yes", "on"}

# Said when a photo is over the evidence limit; the customer can send a smaller one.
PHOTO_TOO_LARGE = "抱歉，这张图片太大了（最大 {limit} MB），请压缩后重新发送。"


class TelegramChannelError(ChannelError):
    """Telegram could not be reached or refused a request."""


class TelegramDeliveryError(TelegramChannelError):
    """A message could not be sent, after the retries."""


class TelegramDeliveryInDoubt(TelegramDeliveryError):
    """A message may have been sent, in part or whole: sending it again could show it twice."""

    maybe_delivered = True




# ---- configuration -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TelegramConfig:
    """The Telegram channel's settings, from TELEGRAM_* variables.

    Attributes:
        token: the bot token from @BotFather (TELEGRAM_BOT_TOKEN).
        webhook_secret: the secret Telegram sends in the secret-token header
            (TELEGRAM_WEBHOOK_SECRET, 1-256 of A-Z a-z 0-9 _ -); required in webhook mode.
        webhook_url: the public base URL of this app (TELEGRAM_WEBHOOK_URL); when set, start-up
            calls setWebhook with it plus the webhook path. Unset: the webhook is managed
            elsewhere.
        polling: poll getUpdates instead of receiving a webhook (TELEGRAM_POLLING=1).
        supervisor_chat_id: the supervisors' chat for alerts (TELEGRAM_SUPERVISOR_CHAT_ID).
        api_base: the Bot API server (TELEGRAM_API_BASE; tests point it at a fake).
    """

    token: str = field(repr=False)
    webhook_secret: str | None = field(default=None, repr=False)
    webhook_url: str | None = None
    polling: bool = False
    supervisor_chat_id: str | None = None
    api_base: str = DEFAULT_API_BASE

    def __post_init__(self) -> None:
        if not self.token or any(c.isspace() for c in self.token):
            raise ValueError("TELEGRAM_BOT_TOKEN must be a bot token without spaces")
        if self.webhook_secret is not None and not _SECRET.fullmatch(self.webhook_secret):
            raise ValueError("TELEGRAM_WEBHOOK_SECRET must be 1-256 characters of "
                             "A-Z, a-z, 0-9, _ and -")
        if not self.polling and self.webhook_secret is None:
            raise ValueError("TELEGRAM_WEBHOOK_SECRET is required unless TELEGRAM_POLLING=1")
        for name, url in (("TELEGRAM_WEBHOOK_URL", self.webhook_url),
                          ("TELEGRAM_API_BASE", self.api_base)):
            if url is not None and not url.startswith(("https://", "http://")):
                raise ValueError(f"{name} must be an http(s) URL")
        if self.supervisor_chat_id is not None and not _CHAT_ID.fullmatch(
                self.supervisor_chat_id):
            raise ValueError("TELEGRAM_SUPERVISOR_CHAT_ID must be a chat id or @channelname")

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> TelegramConfig | None:
        """The settings, or None when TELEGRAM_BOT_TOKEN is unset (the channel is off).

        Raises:
            ValueError: a variable is set to something unusable.
        """
        token = env.get("TELEGRAM_BOT_TOKEN", "").strip()
        if not token:
            return None
        return cls(
            token=token,
            webhook_secret=env.get("TELEGRAM_WEBHOOK_SECRET", "").strip() or None,
            webhook_url=env.get("TELEGRAM_WEBHOOK_URL", "").strip() or None,
            polling=env.get("TELEGRAM_POLLING", "").strip().lower() in _TRUE,
            supervisor_chat_id=env.get("TELEGRAM_SUPERVISOR_CHAT_ID", "").strip() or None,
            api_base=(env.get("TELEGRAM_API_BASE", "").strip() or DEFAULT_API_BASE).rstrip("/"),
        )

    @property
    def webhook_path(self) -> str:
        """The webhook's path: derived from the token, so unguessable and stable."""
        digest = hashlib.sha256(b"intakebot-telegram-webhook:" + self.token.encode()).hexdigest()
        return f"/api/telegram/{digest[:32]}"


class EvidenceFiles(Protocol):
    """Where photos go and images come from (handoff.evidence.EvidenceStore is one)."""

    @property
    def max_bytes(self) -> int: ...

    async def put(self, filename: str, content_type: str | None, data: bytes) -> EvidenceRef:
        """Store a file; EvidenceTooLarge over `max_bytes`."""
        ...

    async def read(self, sha256: str) -> bytes:
        """The bytes of a stored file."""
        ...


# ---- outbound ------------------------------------------------------------------------------


def _chat(chat_id: str) -> int | str:
    return int(chat_id) if chat_id.lstrip("-").isdigit() else chat_id


def _callback_data(index: int, text: str) -> str:
    # The button's own text when it fits, so a press reads naturally in the logs.
    return text if len(text.encode()) <= MAX_CALLBACK_DATA else f"#{index}"


def inline_keyboard(buttons: Sequence[str]) -> InlineKeyboardMarkup | None:
    """Buttons as an inline keyboard: rows of three (one per row when any label is long)."""
    if not buttons:
        return None
    keys = [InlineKeyboardButton(text, callback_data=_callback_data(i, text))
            for i, text in enumerate(buttons)]
    width = 3 if all(len(text) <= 8 for text in buttons) else 1
    return InlineKeyboardMarkup([keys[i:i + width] for i in range(0, len(keys), width)])


def split_text(text: str, limit: int = MAX_TEXT_CHARS) -> list[str]:
    """`text` in parts of at most `limit` characters, cut at line ends where possible."""
    parts = []
    while len(text) > limit:
        cut = text.rfind("\n", limit // 2, limit)
        cut = cut + 1 if cut > 0 else limit
        parts.append(text[:cut])
        text = text[cut:]
    parts.append(text)
    return parts


def _retry_after(exc: Exception) -> float | None:
    if not isinstance(exc, RetryAfter):
        return None
    with warnings.catch_warnings():  # PTB 22 warns that the int form is going away
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value = exc.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def _maybe_delivered(exc: Exception) -> bool:
    """Whether the failed request may have been carried out: it left, no answer came back.

    PTB raises NetworkError from the HTTP client's error for a failed transport (no cause: the
    Bot API answered a 5xx, so nothing was done); only errors before the whole request was
    written are known not to have reached Telegram.
    """
    import httpx

    cause = exc.__cause__
    if not isinstance(exc, NetworkError) or isinstance(exc, TelegramBadRequest) or cause is None:
        return False
    return not isinstance(cause, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout
                          | httpx.WriteError | httpx.WriteTimeout | httpx.ProxyError
                          | httpx.UnsupportedProtocol)


def _transient(exc: Exception) -> bool:
    # NetworkError covers 5xx, timeouts and lost connections; BadRequest (400) is a subclass
    # but resending the same request cannot help, and a request that may have been carried
    # out is not sent again.
    return isinstance(exc, RetryAfter) or (
        isinstance(exc, NetworkError) and not isinstance(exc, TelegramBadRequest)
        and not _maybe_delivered(exc))


class TelegramOutput:
    """The Telegram OutputChannel: paced, retried sends through the wrapped Bot."""

    name = CHANNEL

    def __init__(self, bot: Bot, files: EvidenceFiles, *, limiter: RateLimiter,
                 policy: RetryPolicy) -> None:
        self._bot = bot
        self._files = files
        self._limiter = limiter
        self._policy = policy

    async def send(self, message: OutgoingMessage) -> None:
        """Send the text (with its inline keyboard), then its image attachments.

        Raises:
            TelegramDeliveryError: Telegram refused a part, or kept failing past the retries.
        """
        chat_id = message.conversation.chat_id
        markup = inline_keyboard(message.buttons)
        sent = 0  # parts and attachments sent: after the first, a failure leaves it half sent
        try:
            if message.text or markup is not None:
                parts = split_text(message.text or "…")
                for number, part in enumerate(parts, start=1):
                    keys = markup if number == len(parts) else None  # the keyboard goes last
                    await self._call(chat_id, "sendMessage", functools.partial(
                        self._bot.send_message, _chat(chat_id), part, reply_markup=keys))
                    sent += 1
            for attachment in message.attachments:
                await self._send_photo(chat_id, attachment)
                sent += 1
        except TelegramDeliveryInDoubt:
            raise
        except TelegramDeliveryError as exc:
            if sent:
                raise TelegramDeliveryInDoubt(
                    f"{exc} (after {sent} part(s) of the message were sent)") from exc
            raise

    async def _send_photo(self, chat_id: str, attachment: Attachment) -> None:
        try:
            data = await self._files.read(attachment.sha256)
        except EvidenceError as exc:
            raise TelegramDeliveryError(
                f"cannot read attachment {attachment.sha256} for {CHANNEL}:{chat_id}: {exc}"
            ) from exc
        if attachment.content_type.startswith("image/"):
            await self._call(chat_id, "sendPhoto", lambda: self._bot.send_photo(
                _chat(chat_id), data, filename=attachment.filename))
        else:
            await self._call(chat_id, "sendDocument", lambda: self._bot.send_document(
                _chat(chat_id), data, filename=attachment.filename))

    async def _call(self, chat_id: str, method: str,
                    request: Callable[[], Awaitable[Message]]) -> None:
        async def attempt() -> Message:
            await self._limiter.acquire(chat_id)
            return await request()

        try:
            await retrying(attempt, policy=self._policy, transient=_transient,
                           retry_after=_retry_after)
        except TelegramError as exc:
            error = TelegramDeliveryInDoubt if _maybe_delivered(exc) else TelegramDeliveryError
            raise error(f"{method} to {CHANNEL}:{chat_id} failed: {exc}") from exc


def _parse_update(data: dict[str, Any], bot: Bot) -> Update:
    try:
        update = Update.de_json(data, bot)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        # PTB's parser trusts the Bot API's shapes; anything else is not an update.
        raise Rejected(400, f"the body is not a Telegram update: {exc!r}") from exc
    # PTB does not check types: a missing chat stays None, a number stays a number.
    query = update.callback_query
    for message in (update.message, query.message if query is not None else None):
        if message is None:
            continue
        if message.chat is None:
            raise Rejected(400, "the body is not a Telegram update: the message has no chat")
        texts = (getattr(message, "text", None), getattr(message, "caption", None))
        if not all(isinstance(v, str | None) for v in texts):
            raise Rejected(400, "the body is not a Telegram update: text must be a string")
    if query is not None and (query.from_user is None or not isinstance(query.data, str | None)):
        raise Rejected(400, "the body is not a Telegram update: a malformed callback query")
    return update


# ---- the channel ---------------------------------------------------------------------------

# The PTB application this channel runs: default context types, no JobQueue (nothing is
# scheduled through PTB; the SLA checker has its own loop).
TelegramApplication = Application[ExtBot[None], CallbackContext[ExtBot[None], dict[Any, Any],
                                  dict[Any, Any], dict[Any, Any]], dict[Any, Any],
                                  dict[Any, Any], dict[Any, Any], None]
Context = CallbackContext[ExtBot[None], dict[Any, Any], dict[Any, Any], dict[Any, Any]]


class TelegramChannel:
    """The Telegram channel: a PTB `Application` fed by our webhook route or by PTB's poller.

    Args:
        config: from `TelegramConfig.from_env`.
        on_message: the wiring's callback; it handles a message and sends the replies.
        files: the evidence store photos are saved to.
        policy: retries of outbound calls, and of a failed update in polling mode.
        limiter: outbound pacing; default 30 messages/s per bot and 1/s per chat.
        max_body: the largest webhook body accepted, in bytes.
        poll_timeout: the long-polling timeout of getUpdates, in seconds.
        send_timeout: how long a call waits for the Bot API's answer, in seconds; a send that
            gets none may have been carried out (`TelegramDeliveryInDoubt`).
    """

    name = CHANNEL

    def __init__(self, config: TelegramConfig, on_message: OnMessage, *, files: EvidenceFiles,
                 policy: RetryPolicy | None = None, limiter: RateLimiter | None = None,
                 max_body: int = DEFAULT_MAX_BODY, poll_timeout: int = 25,
                 send_timeout: float = 5.0) -> None:
        self.config = config
        self._on_message = on_message
        self._files = files
        self._policy = policy or RetryPolicy()
        self.max_body = max_body
        self.poll_timeout = poll_timeout
        # Owned here, so close() shuts them even when start-up failed half-way (PTB's shutdown
        # does nothing for an application that never finished initialising).
        self._requests = (HTTPXRequest(connection_pool_size=64, read_timeout=send_timeout),
                          HTTPXRequest(read_timeout=float(poll_timeout) + 10.0))
        builder = (ApplicationBuilder().token(config.token)
                   .base_url(f"{config.api_base}/bot")
                   .base_file_url(f"{config.api_base}/file/bot")
                   .request(self._requests[0]).get_updates_request(self._requests[1])
                   .job_queue(None))
        if not config.polling:
            builder = builder.updater(None)  # updates come through our aiohttp route
        self._application: TelegramApplication = builder.build()
        self._application.add_handler(TypeHandler(Update, self._on_update))
        self._application.add_error_handler(self._on_error)
        self._output = TelegramOutput(self._application.bot, files, policy=self._policy,
                                      limiter=limiter or RateLimiter(30, 1.0))
        self._seen: OrderedDict[int, None] = OrderedDict()
        self._in_flight: set[int] = set()
        # Updates the webhook route is processing, by id(update), and the error each raised:
        # PTB hands handler errors to error handlers instead of raising them from
        # process_update, so the route collects them here to answer 503.
        self._awaited: dict[int, Exception | None] = {}
        self._initialized = False

    @property
    def output(self) -> TelegramOutput:
        """Where replies to Telegram chats go."""
        return self._output

    @property
    def bot(self) -> Bot:
        """The Bot API client (the application's ExtBot)."""
        return self._application.bot

    @property
    def application(self) -> TelegramApplication:
        """The python-telegram-bot Application that processes the updates."""
        return self._application

    def routes(self) -> list[web.RouteDef]:
        """The webhook route; none in polling mode."""
        if self.config.polling:
            return []
        return [web.post(self.config.webhook_path, self.webhook)]

    async def start(self) -> None:
        """Initialise the application (getMe checks the token), then start PTB's poller, or
        register the webhook when a URL is set.

        Raises:
            TelegramChannelError: the Bot API refused the token or the webhook.
        """
        application = self._application
        try:
            await application.initialize()
            self._initialized = True
            if application.updater is not None:
                # start_polling deletes any webhook first: Telegram refuses getUpdates otherwise.
                await application.updater.start_polling(
                    timeout=timedelta(seconds=self.poll_timeout),
                    allowed_updates=list(ALLOWED_UPDATES), error_callback=self._poll_failed)
            elif self.config.webhook_url is not None:
                await application.bot.set_webhook(
                    self.config.webhook_url.rstrip("/") + self.config.webhook_path,
                    secret_token=self.config.webhook_secret,
                    allowed_updates=list(ALLOWED_UPDATES))
            await application.start()
        except TelegramError as exc:
            raise TelegramChannelError(f"cannot start the Telegram channel: {exc}") from exc

    async def close(self) -> None:
        """Stop polling and the application, and close the HTTP clients."""
        application = self._application
        if application.updater is not None and application.updater.running:
            await application.updater.stop()
        if application.running:
            await application.stop()
        if self._initialized:
            await application.shutdown()
            self._initialized = False
        for request in self._requests:
            await request.shutdown()

    async def notify_supervisors(self, text: str) -> None:
        """Send an alert to the supervisors' chat (TELEGRAM_SUPERVISOR_CHAT_ID).

        Raises:
            TelegramChannelError: no supervisors' chat is configured.
            TelegramDeliveryError: the alert could not be sent.
        """
        if self.config.supervisor_chat_id is None:
            raise TelegramChannelError("no supervisors' chat: set TELEGRAM_SUPERVISOR_CHAT_ID")
        await self._output.send(OutgoingMessage(
            ConversationRef(CHANNEL, self.config.supervisor_chat_id), text))

    # ---- webhook -------------------------------------------------------------------------

    async def webhook(self, request: web.Request) -> web.Response:
        """Handle one update POSTed by Telegram, before answering.

        Raises:
            ChannelError (503 through the app's error middleware): the update failed and was
                not marked handled, so Telegram's redelivery tries it again.
        """
        try:
            self._authenticate(request)
            update = _parse_update(await self._read_json(request), self._application.bot)
        except Rejected as exc:
            return web.json_response({"error": str(exc)}, status=exc.status)
        if not self._application.running:
            raise TelegramChannelError("the Telegram channel is not started yet")
        key = id(update)  # unique while `update` is alive, which it is until the pop below
        self._awaited[key] = None
        try:
            await self._application.process_update(update)
        finally:
            failure = self._awaited.pop(key, None)
        if failure is not None:
            raise failure
        return web.json_response({"ok": True})

    def _authenticate(self, request: web.Request) -> None:
        given = request.headers.get(SECRET_HEADER)
        if given is None:
            raise Rejected(401, f"missing {SECRET_HEADER}")
        expected = self.config.webhook_secret or ""
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise Rejected(403, f"wrong {SECRET_HEADER}")

    async def _read_json(self, request: web.Request) -> dict[str, Any]:
        body = await read_body(request, self.max_body, lambda message: Rejected(413, message))
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise Rejected(400, f"the body is not valid JSON: {exc}") from exc
        update_id = data.get("update_id") if isinstance(data, dict) else None
        if isinstance(update_id, bool) or not isinstance(update_id, int):
            raise Rejected(400, "the body is not a Telegram update (no integer update_id)")
        return data  # type: ignore[no-any-return]

    # ---- PTB callbacks -------------------------------------------------------------------

    async def _on_update(self, update: Update, _context: Context) -> None:
        if id(update) in self._awaited:
            await self.handle(update)  # a failure goes to the route: Telegram redelivers
            return
        # Polling: PTB's Updater has already confirmed the update to Telegram, so a failure is
        # retried here, in order (updates are processed one at a time), with backoff.
        await retrying(lambda: self.handle(update), policy=self._policy,
                       transient=lambda exc: isinstance(exc, ChannelError | EvidenceError))

    async def _on_error(self, update: object, context: Context) -> None:
        error = context.error
        if error is None:
            return
        if id(update) in self._awaited:
            self._awaited[id(update)] = error
            return
        update_id = update.update_id if isinstance(update, Update) else None
        log.error("Telegram update %s not handled (polled; retries used up or not retryable): "
                  "%s: %s", update_id, type(error).__name__, error,
                  exc_info=not isinstance(error, ChannelError | EvidenceError))

    @staticmethod
    def _poll_failed(error: TelegramError) -> None:
        # PTB's Updater retries getUpdates itself, waiting longer after each failure.
        log.warning("Telegram getUpdates failed, retrying: %s", error)

    # ---- updates -------------------------------------------------------------------------

    async def handle(self, update: Update) -> None:
        """Handle one update once; an update id seen before, or in progress, is skipped.

        Raises:
            ChannelError: a photo could not be fetched or stored, or a reply not sent; the
                update is not marked handled, so a redelivery tries again.
        """
        update_id = update.update_id
        if update_id in self._seen or update_id in self._in_flight:
            log.info("Telegram update %s delivered again; not handled twice", update_id)
            return
        self._in_flight.add(update_id)
        try:
            if update.callback_query is not None:
                await self._callback(update.callback_query)
            elif update.message is not None:
                await self._message(update.message)
            else:
                log.debug("Telegram update %s has nothing for the bot", update_id)
        finally:
            self._in_flight.discard(update_id)
        self._seen[update_id] = None
        while len(self._seen) > SEEN_UPDATES:
            self._seen.popitem(last=False)

    async def _message(self, message: Message) -> None:
        conversation = ConversationRef(CHANNEL, str(message.chat.id))
        text = message.text or message.caption or ""
        attachments: tuple[Attachment, ...] = ()
        if message.photo:
            photo = max(message.photo, key=lambda p: (p.width * p.height, p.file_size or 0))
            if photo.file_size is not None and photo.file_size > self._files.max_bytes:
                await self._photo_too_large(conversation)
                return
            stored = await self._store_photo(photo, message.message_id)
            if stored is None:
                await self._photo_too_large(conversation)
                return
            attachments = (stored,)
        if not text.strip() and not attachments:
            log.debug("Telegram message %s has no text or photo", message.message_id)
            return
        await self._on_message(IncomingMessage(
            conversation=conversation, text=text, message_id=str(message.message_id),
            attachments=attachments, received_at=message.date))

    async def _store_photo(self, photo: PhotoSize, message_id: int) -> Attachment | None:
        try:
            file = await self._application.bot.get_file(photo.file_id)
            data = bytes(await file.download_as_bytearray())
        except TelegramError as exc:
            raise TelegramChannelError(f"cannot fetch the photo of message {message_id}: {exc}"
                                       ) from exc
        suffix = (file.file_path or "").rsplit(".", 1)[-1].lower()
        content_type = "image/png" if suffix == "png" else "image/jpeg"
        try:
            ref = await self._files.put(f"telegram-{message_id}.{suffix or 'jpg'}",
                                        content_type, data)
        except EvidenceTooLarge:
            return None
        except EvidenceError as exc:
            raise TelegramChannelError(f"cannot store the photo of message {message_id}: {exc}"
                                       ) from exc
        return Attachment(filename=ref.filename, content_type=ref.content_type,
                          sha256=ref.sha256, size=ref.size)

    async def _photo_too_large(self, conversation: ConversationRef) -> None:
        limit = max(1, self._files.max_bytes // (1024 * 1024))
        await self._output.send(OutgoingMessage(conversation,
                                                PHOTO_TOO_LARGE.format(limit=limit)))

    async def _callback(self, query: CallbackQuery) -> None:
        try:
            await retrying(lambda: self._application.bot.answer_callback_query(query.id),
                           policy=self._policy, transient=_transient, retry_after=_retry_after)
        except TelegramBadRequest as exc:
            # A query too old to answer: the press itself still counts.
            log.warning("answerCallbackQuery %s refused: %s", query.id, exc)
        except TelegramError as exc:
            raise TelegramChannelError(f"answerCallbackQuery failed: {exc}") from exc
        data = query.data or ""
        text = data
        message = query.message
        if isinstance(message, Message) and message.reply_markup is not None:
            for row in message.reply_markup.inline_keyboard:
                for button in row:
                    if button.callback_data == data:
                        text = button.text
        if not text.strip():
            return
        chat_id = message.chat.id if message is not None else query.from_user.id
        await self._on_message(IncomingMessage(
            conversation=ConversationRef(CHANNEL, str(chat_id)), text=text,
            message_id=f"cb-{query.id}"))
