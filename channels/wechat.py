"""The WeChat official account (公众号) channel: the message callback and the customer-service API.

Routes (mounted by the wiring at ``WeChatConfig.path``, ``/wechat`` by default):

- ``GET {path}?signature&timestamp&nonce&echostr``: the platform's URL check; the signature is
  ``sha1(sorted([token, timestamp, nonce]))`` and the answer is ``echostr``, else 403.
- ``POST {path}?signature&timestamp&nonce[&encrypt_type=aes&msg_signature]``: one XML message.
  Text and image messages go to the OnMessage callback; other kinds (voice, events…) are
  acknowledged with ``success`` and not handled.

Replies: WeChat waits 5 s for the HTTP answer. The message is handled in its own task; the first
reply the dispatcher sends within ``reply_timeout`` (4.5 s) becomes the passive XML reply, and the
rest, or everything after the time-out (the answer is then ``success``), goes through the
customer-service message API (``/cgi-bin/message/custom/send``) with an access token fetched from
``/cgi-bin/token`` and cached until shortly before it expires. The output tells the two apart with
a context variable set on the handling task, so agents' replies and other conversations' messages
always take the API.

Texts longer than WeChat takes are sent in parts (`split_text`). Buttons become numbered lines
(``回复 1 选择「确认」``); the customer's next message, if it is one of those numbers, is handed on
as the button's text. WeChat retries a message three times when it gets no answer in 5 s: a retry
of a MsgId still being handled (or handled in the last `RETRY_WINDOW` seconds) gets the same
answer; later ones are de-duplicated by the dispatcher. What a retry or a number needs is kept in
a `channels.wechat_state.WeChatState`: in this process, or in Redis (`RedisWeChatState`, with
REDIS_URL) so that any process behind a load balancer can take them:

- the first process to get a MsgId claims it; the passive reply's text (or ``success``) is
  recorded as soon as it is given. A retry in the same process joins the message's task; in
  another process it is answered with the recorded answer, or, while the claim is pending, the
  message is handed to the dispatcher again (which answers a handled message from its record
  under the conversation's lock, and handles it if the first process died before its commit)
  while the recorded answer is watched for.
- the buttons shown are stored with a token when sent; handling the customer's next message
  reads them and, once handled, drops them unless newer ones were shown meanwhile (a message
  handled again after a crash still finds them).

Authentication: the signature, and a timestamp within `MAX_CLOCK_SKEW` of now (in plain mode the
signature does not cover the body). Safe mode (``WECHAT_AES_KEY``): only messages with
``encrypt_type=aes`` are accepted, checked with ``msg_signature`` and decrypted
(`channels.wechat_crypto`), and the passive reply is encrypted. Photos are fetched by MediaId
from the API, never from the message's PicUrl.

XML is parsed with the standard library's expat with any DOCTYPE refused, so no entity can be
declared, let alone expanded (billion laughs, external entities).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import secrets
import time
import unicodedata
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from xml.parsers import expat

import aiohttp
from aiohttp import web

from channels.base import ChannelError, OnMessage, read_body
from channels.messages import Attachment, ConversationRef, IncomingMessage, OutgoingMessage
from channels.ratelimit import RetryPolicy, retrying
from channels.webchat import FileStore
from channels.wechat_crypto import MessageCrypto, WeChatCryptoError, check_signature
from channels.wechat_state import (
    ANSWER_TTL,
    InMemoryWeChatState,
    WeChatState,
    WeChatStateError,
)
from handoff.errors import EvidenceError, EvidenceTooLarge

log = logging.getLogger(__name__)

CHANNEL = "wechat"
DEFAULT_API_BASE = "https://api.weixin.qq.com"
DEFAULT_PATH = "/wechat"
DEFAULT_REPLY_TIMEOUT = 4.5  # WeChat gives up after 5 s
DEFAULT_MAX_BODY = 64 * 1024  # WeChat's messages are a few hundred bytes
RETRY_WINDOW = ANSWER_TTL.total_seconds()  # WeChat retries three times within about 15 s
TOKEN_MARGIN = 300.0  # refresh the access token this long before it expires
# How often a retry that another process is handling looks for the answer that process gave.
ANSWER_POLL = 0.1
MAX_TEXT_BYTES = 2_000  # WeChat takes at most 2,048 bytes of text per message
# A signed query older (or newer) than this is refused: in plain mode the signature does not
# cover the body, so a captured query string must not be reusable for long.
MAX_CLOCK_SKEW = 300.0
SEND_ATTEMPTS = 3
# The access token expired, was revoked or is not the latest one: fetch a new one and retry.
_TOKEN_ERRORS = {40001, 40014, 42001}
_BUSY = -1  # "system busy, try again"

_NUMBERED = {
    "zh-Hans": "回复 {n} 选择「{label}」",
    "zh-Hant": "回覆 {n} 選擇「{label}」",
    "en": 'Reply {n} for "{label}"',
}


# ---- errors ----------------------------------------------------------------------------------


class WeChatRequestError(ChannelError):
    """A callback request the channel refuses; `status` is its HTTP status."""

    status = 400


class BadRequest(WeChatRequestError):
    """Malformed XML, a missing field, an encrypted message without a key."""

    status = 400


class Forbidden(WeChatRequestError):
    """The signature does not match: the request is not from WeChat."""

    status = 403


class PayloadTooLarge(WeChatRequestError):
    """The body, or a photo it refers to, is larger than accepted."""

    status = 413


class WeChatApiError(ChannelError):
    """The WeChat API refused a call or could not be reached."""

    def __init__(self, message: str, errcode: int | None = None) -> None:
        super().__init__(message)
        self.errcode = errcode


# ---- configuration ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WeChatConfig:
    """An official account's callback settings.

    Attributes:
        token: the Token set on the platform (signs every callback).
        app_id: the AppID (access tokens; the AppID inside encrypted messages).
        app_secret: the AppSecret (access tokens).
        aes_key: the 43-character EncodingAESKey for safe mode; None in plain mode.
        api_base: the API's origin; tests point it at a local fake.
        path: where the callback is mounted.
        reply_timeout: how long to wait for a passive reply before answering ``success``.
        max_body: the largest callback body accepted, in bytes.
    """

    token: str
    app_id: str
    app_secret: str
    aes_key: str | None = None
    api_base: str = DEFAULT_API_BASE
    path: str = DEFAULT_PATH
    reply_timeout: float = DEFAULT_REPLY_TIMEOUT
    max_body: int = DEFAULT_MAX_BODY

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> WeChatConfig | None:
        """The settings from ``WECHAT_*`` variables; None when WECHAT_TOKEN is not set.

        Variables: WECHAT_TOKEN, WECHAT_APP_ID, WECHAT_APP_SECRET (all three needed),
        WECHAT_AES_KEY (safe mode), WECHAT_API_BASE, WECHAT_PATH, WECHAT_REPLY_SECONDS.

        Raises:
            ValueError: WECHAT_TOKEN is set but the rest is missing or malformed.
        """
        token = env.get("WECHAT_TOKEN", "").strip()
        if not token:
            return None
        app_id = env.get("WECHAT_APP_ID", "").strip()
        app_secret = env.get("WECHAT_APP_SECRET", "").strip()
        if not app_id or not app_secret:
            raise ValueError("WECHAT_TOKEN is set: WECHAT_APP_ID and WECHAT_APP_SECRET are "
                             "needed too")
        aes_key = env.get("WECHAT_AES_KEY", "").strip() or None
        if aes_key is not None:
            MessageCrypto(token, aes_key, app_id)  # raises ValueError when malformed
        path = env.get("WECHAT_PATH", "").strip() or DEFAULT_PATH
        if not path.startswith("/"):
            raise ValueError("WECHAT_PATH must start with /")
        raw_timeout = env.get("WECHAT_REPLY_SECONDS", "").strip()
        try:
            reply_timeout = float(raw_timeout) if raw_timeout else DEFAULT_REPLY_TIMEOUT
        except ValueError as exc:
            raise ValueError("WECHAT_REPLY_SECONDS must be a number of seconds") from exc
        if not 0 < reply_timeout < 5:
            raise ValueError("WECHAT_REPLY_SECONDS must be between 0 and 5 (WeChat waits 5 s)")
        return cls(token=token, app_id=app_id, app_secret=app_secret, aes_key=aes_key,
                   api_base=(env.get("WECHAT_API_BASE", "").strip() or DEFAULT_API_BASE
                             ).rstrip("/"),
                   path=path, reply_timeout=reply_timeout)


# ---- XML ---------------------------------------------------------------------------------------


def parse_xml(body: bytes) -> dict[str, str]:
    """The text of each child of the root element (WeChat's messages are flat).

    Raises:
        BadRequest: not well-formed XML, or a DOCTYPE (refused: no entities can be declared).
    """
    parser = expat.ParserCreate()
    fields: dict[str, str] = {}
    depth = 0
    current: list[str] = []

    def start(name: str, _attrs: dict[str, str]) -> None:
        nonlocal depth
        depth += 1
        if depth == 2:
            current.clear()

    def end(name: str) -> None:
        nonlocal depth
        if depth == 2:
            fields[name] = "".join(current)
        depth -= 1

    def text(data: str) -> None:
        if depth == 2:
            current.append(data)

    def doctype(*_args: object) -> None:
        raise BadRequest("XML with a DOCTYPE is not accepted")

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = text
    parser.StartDoctypeDeclHandler = doctype
    parser.EntityDeclHandler = doctype
    try:
        parser.Parse(body, True)
    except expat.ExpatError as exc:
        raise BadRequest(f"the body is not well-formed XML: {exc}") from exc
    return fields


def _cdata(value: str) -> str:
    return "<![CDATA[" + value.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def text_reply_xml(to_user: str, from_user: str, content: str, *, now: int) -> str:
    """A passive text reply."""
    return (f"<xml><ToUserName>{_cdata(to_user)}</ToUserName>"
            f"<FromUserName>{_cdata(from_user)}</FromUserName>"
            f"<CreateTime>{now}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
            f"<Content>{_cdata(content)}</Content></xml>")


def encrypted_xml(encrypted: str, signature: str, timestamp: str, nonce: str) -> str:
    """The envelope of an encrypted reply."""
    return (f"<xml><Encrypt>{_cdata(encrypted)}</Encrypt>"
            f"<MsgSignature>{_cdata(signature)}</MsgSignature>"
            f"<TimeStamp>{timestamp}</TimeStamp><Nonce>{_cdata(nonce)}</Nonce></xml>")


@dataclass(frozen=True, slots=True)
class WeChatMessage:
    """One inbound message as the callback carries it."""

    to_user: str  # the official account's id (gh_…)
    from_user: str  # the customer's OpenID: the conversation
    msg_type: str
    msg_id: str
    content: str = ""
    pic_url: str = ""
    media_id: str = ""


def parse_message(fields: Mapping[str, str]) -> WeChatMessage:
    """The fields of a callback message; BadRequest when a needed one is missing."""
    missing = [name for name in ("ToUserName", "FromUserName", "MsgType") if not fields.get(name)]
    if missing:
        raise BadRequest(f"the message has no {', '.join(missing)}")
    msg_type = fields["MsgType"].strip().lower()
    msg_id = fields.get("MsgId", "").strip()
    if msg_type in ("text", "image") and not msg_id:
        raise BadRequest(f"the {msg_type} message has no MsgId")
    if msg_type == "text" and not fields.get("Content", "").strip():
        raise BadRequest("the text message has no Content")
    if msg_type == "image" and not fields.get("MediaId", "").strip():
        # PicUrl is not fetched: in plain mode the body is not signed, and a URL from it
        # would let anyone with a captured query string make the server fetch any address.
        raise BadRequest("the image message has no MediaId")
    return WeChatMessage(to_user=fields["ToUserName"], from_user=fields["FromUserName"],
                         msg_type=msg_type, msg_id=msg_id, content=fields.get("Content", ""),
                         pic_url=fields.get("PicUrl", "").strip(),
                         media_id=fields.get("MediaId", "").strip())


def numbered_text(text: str, buttons: tuple[str, ...]) -> str:
    """The text with its buttons as numbered lines, in the text's language."""
    if not buttons:
        return text
    from nlp.normalize import detect_lang

    template = _NUMBERED.get(detect_lang(text[:500]).value, _NUMBERED["zh-Hans"])
    lines = [template.format(n=n, label=label) for n, label in enumerate(buttons, start=1)]
    return text + "\n\n" + "\n".join(lines)


def split_text(text: str, max_bytes: int = MAX_TEXT_BYTES) -> list[str]:
    """`text` in parts of at most `max_bytes` of UTF-8, cut between lines where possible."""
    parts: list[str] = []
    current = ""
    for line in text.split("\n"):
        candidate = line if not current else current + "\n" + line
        if len(candidate.encode()) <= max_bytes:
            current = candidate
            continue
        if current:
            parts.append(current)
        current = ""
        for char in line:  # a line longer than a part: cut between characters
            if len((current + char).encode()) > max_bytes:
                parts.append(current)
                current = ""
            current += char
    if current or not parts:
        parts.append(current)
    return parts


def chosen_button(text: str, buttons: tuple[str, ...]) -> str | None:
    """The button a numbered answer ("1", "２ ") picks, if it is one."""
    value = unicodedata.normalize("NFKC", text).strip().rstrip(".。")
    if value.isdigit() and 1 <= int(value) <= len(buttons):
        return buttons[int(value) - 1]
    return None


# ---- the API client ----------------------------------------------------------------------------


class WeChatApi:
    """The parts of the WeChat API the channel uses, on one shared HTTP session."""

    def __init__(self, config: WeChatConfig, session: aiohttp.ClientSession) -> None:
        self._config = config
        self._session = session
        self._token: str | None = None
        self._expires = 0.0
        self._lock = asyncio.Lock()
        self._policy = RetryPolicy(attempts=SEND_ATTEMPTS, base_delay=0.5, max_delay=5.0)

    async def access_token(self, *, stale: str | None = None) -> str:
        """A valid access token, fetched again when none is cached, it expires, or is `stale`."""
        async with self._lock:
            if self._token is not None and self._token != stale and (
                    time.monotonic() < self._expires):
                return self._token
            data = await self._json("GET", "/cgi-bin/token", params={
                "grant_type": "client_credential", "appid": self._config.app_id,
                "secret": self._config.app_secret})
            token = data.get("access_token")
            if not isinstance(token, str) or not token:
                raise WeChatApiError(f"no access token in the answer: {data}")
            expires_in = data.get("expires_in", 7200)
            lifetime = float(expires_in) if isinstance(expires_in, int | float) else 7200.0
            self._token = token
            self._expires = time.monotonic() + max(lifetime - TOKEN_MARGIN, lifetime / 2)
            return token

    async def send_text(self, openid: str, content: str) -> None:
        """Send a text through the customer-service message API.

        Raises:
            WeChatApiError: WeChat refused it (e.g. 45015: the customer has not written for
                48 hours) or could not be reached after `SEND_ATTEMPTS` tries.
        """
        payload = {"touser": openid, "msgtype": "text", "text": {"content": content}}
        await self._call("/cgi-bin/message/custom/send", payload)

    async def _call(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        stale: list[str] = []

        async def attempt() -> dict[str, Any]:
            token = await self.access_token(stale=stale[-1] if stale else None)
            try:
                return await self._json("POST", path, params={"access_token": token},
                                        payload=payload)
            except WeChatApiError as exc:
                if exc.errcode in _TOKEN_ERRORS:
                    stale.append(token)
                raise

        return await retrying(attempt, policy=self._policy, transient=_transient)

    async def _json(self, method: str, path: str, *, params: Mapping[str, str],
                    payload: dict[str, Any] | None = None) -> dict[str, Any]:
        import json

        url = self._config.api_base + path
        body = None if payload is None else json.dumps(payload, ensure_ascii=False).encode()
        try:
            async with self._session.request(
                    method, url, params=params, data=body,
                    headers={"Content-Type": "application/json; charset=utf-8"}
                    if body is not None else None) as response:
                text = await response.text()
                if response.status != 200:
                    raise WeChatApiError(f"{path} answered HTTP {response.status}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise WeChatApiError(f"{path} could not be reached: {exc}") from exc
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise WeChatApiError(f"{path} answered something other than JSON") from exc
        if not isinstance(data, dict):
            raise WeChatApiError(f"{path} answered something other than a JSON object")
        errcode = data.get("errcode", 0)
        if errcode:
            raise WeChatApiError(f"{path} failed: {errcode} {data.get('errmsg', '')}",
                                 errcode=int(errcode) if isinstance(errcode, int) else None)
        return data

    async def download_media(self, media_id: str, max_bytes: int) -> tuple[bytes, str]:
        """A temporary media file's bytes and content type (``/cgi-bin/media/get``)."""
        token = await self.access_token()
        return await self._download(self._config.api_base + "/cgi-bin/media/get",
                                    {"access_token": token, "media_id": media_id}, max_bytes)

    async def _download(self, url: str, params: Mapping[str, str],
                        max_bytes: int) -> tuple[bytes, str]:
        try:
            async with self._session.get(url, params=params) as response:
                content_type = response.content_type
                if response.status != 200:
                    raise WeChatApiError(f"the media download answered HTTP {response.status}")
                if content_type in ("application/json", "text/plain"):
                    raise WeChatApiError(f"the media download failed: {await response.text()}")
                if response.content_length is not None and response.content_length > max_bytes:
                    raise EvidenceTooLarge(response.content_length, max_bytes)
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.content.iter_chunked(64 * 1024):
                    size += len(chunk)
                    if size > max_bytes:
                        raise EvidenceTooLarge(size, max_bytes)
                    chunks.append(chunk)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise WeChatApiError(f"the media download failed: {exc}") from exc
        return b"".join(chunks), content_type


# ---- passive replies -----------------------------------------------------------------------------


class _Passive:
    """The passive reply of one callback request: filled by the first reply sent in time."""

    def __init__(self, conversation: ConversationRef, msg_id: str) -> None:
        self.conversation = conversation
        self.msg_id = msg_id
        self.filled: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.closed = False
        self.responded = asyncio.Event()

    def offer(self, message: OutgoingMessage, text: str) -> bool:
        if self.closed or self.filled.done() or message.conversation != self.conversation:
            return False
        self.filled.set_result(text)
        return True

    def close(self) -> None:
        self.closed = True
        self.responded.set()


# The passive reply of the message the current task handles; unset everywhere else.
_PASSIVE: contextvars.ContextVar[_Passive | None] = contextvars.ContextVar(
    "wechat_passive", default=None)


@dataclass
class _InFlight:
    passive: _Passive
    task: asyncio.Task[list[OutgoingMessage]]


class WeChatOutput:
    """The WeChat OutputChannel: the pending passive reply if there is one, else the API."""

    name = CHANNEL

    def __init__(self, channel: WeChat) -> None:
        self._channel = channel

    async def send(self, message: OutgoingMessage) -> None:
        """Deliver one message; WeChatApiError when the customer-service API refuses it."""
        if message.buttons:  # before it is shown: the customer may answer at once
            await self._channel.state.show_choices(message.conversation.key, message.buttons)
        parts = split_text(self._channel.render(message))
        passive = _PASSIVE.get()
        if passive is not None:
            if passive.offer(message, parts[0]):
                # Recorded before the dispatcher counts it sent and frees the conversation,
                # so a retry that finds the message handled finds this answer too. The reply
                # is given either way: failing here would have it counted unsent and repeated.
                try:
                    await self._channel.state.answered(message.conversation.key,
                                                       passive.msg_id, parts[0])
                except WeChatStateError as exc:
                    log.warning("wechat: the answer to %s was not recorded: %s",
                                passive.msg_id, exc)
                parts = parts[1:]
            if parts and not passive.responded.is_set():
                # Keep the order: the passive reply leaves before the rest goes by the API.
                try:
                    async with asyncio.timeout(DEFAULT_REPLY_TIMEOUT):
                        await passive.responded.wait()
                except TimeoutError:
                    pass
        for part in parts:
            await self._channel.api.send_text(message.conversation.chat_id, part)


# ---- the channel -------------------------------------------------------------------------------


class WeChat:
    """The WeChat official account channel: the callback route in, an OutputChannel out.

    Args:
        config: from `WeChatConfig.from_env`.
        on_message: the wiring's callback (dispatcher): handles a message, returns its replies.
        files: where photos are stored as evidence (handoff.evidence.EvidenceStore).
        state: the answers and choices (`RedisWeChatState` when several processes serve the
            account); in this process by default. Closed with the channel.
    """

    name = CHANNEL

    def __init__(self, config: WeChatConfig, on_message: OnMessage, *,
                 files: FileStore, state: WeChatState | None = None) -> None:
        self.config = config
        self._on_message = on_message
        self._files = files
        self._crypto = (MessageCrypto(config.token, config.aes_key, config.app_id)
                        if config.aes_key else None)
        self._output = WeChatOutput(self)
        self._session: aiohttp.ClientSession | None = None
        self._api: WeChatApi | None = None
        self.state: WeChatState = state if state is not None else InMemoryWeChatState()
        self._in_flight: dict[str, _InFlight] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def output(self) -> WeChatOutput:
        return self._output

    @property
    def api(self) -> WeChatApi:
        """The API client; ChannelError before `start`."""
        if self._api is None:
            raise WeChatApiError("the WeChat channel is not started")
        return self._api

    def routes(self) -> list[web.RouteDef]:
        """The callback: GET (URL check) and POST (messages) on `config.path`."""
        return [web.get(self.config.path, self._guard(self.verify), allow_head=False),
                web.post(self.config.path, self._guard(self.receive))]

    async def start(self) -> None:
        """Open the HTTP session for the API."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15))
            self._api = WeChatApi(self.config, self._session)

    async def idle(self) -> None:
        """Wait until every message being handled is done, its replies sent (or failed)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def close(self) -> None:
        """Cancel messages still being handled and close the HTTP session."""
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None
            self._api = None
        await self.state.close()

    # ---- rendering and choices -------------------------------------------------------------

    def render(self, message: OutgoingMessage) -> str:
        """The text WeChat shows: buttons as numbered lines (the output remembers them)."""
        text = numbered_text(message.text, message.buttons)
        if message.attachments:
            # The API would need a media upload per file; name them so nothing goes unsaid.
            log.warning("wechat: %d attachment(s) sent as names only", len(message.attachments))
            text += "\n" + "\n".join(f"[{a.filename}]" for a in message.attachments)
        return text

    # ---- requests --------------------------------------------------------------------------

    @staticmethod
    def _guard(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
               ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def guarded(request: web.Request) -> web.StreamResponse:
            try:
                return await handler(request)
            except WeChatRequestError as exc:
                return web.json_response({"error": str(exc)}, status=exc.status)

        return guarded

    def _check(self, request: web.Request) -> None:
        query = request.query
        _check_fresh(query.get("timestamp", ""))
        if not check_signature(query.get("signature", ""), self.config.token,
                               query.get("timestamp", ""), query.get("nonce", "")):
            raise Forbidden("the signature does not match")

    async def verify(self, request: web.Request) -> web.Response:
        """The platform's URL check: echo ``echostr`` when the signature matches."""
        echostr = request.query.get("echostr", "")
        if not echostr:
            raise BadRequest("echostr is missing")
        self._check(request)
        return web.Response(text=echostr)

    async def receive(self, request: web.Request) -> web.StreamResponse:
        """One callback message: the passive reply, or ``success`` and the API later."""
        query = request.query
        encrypted = query.get("encrypt_type", "raw").lower() == "aes"
        if not encrypted:
            self._check(request)
            if self._crypto is not None:
                raise Forbidden("the account is in safe mode: messages must be encrypted")
        fields = parse_xml(await self._read(request))
        nonce = query.get("nonce", "")
        if encrypted:
            fields = self._decrypt(fields, query.get("timestamp", ""), nonce,
                                   query.get("msg_signature", ""))
        message = parse_message(fields)
        if message.msg_type not in ("text", "image"):
            log.info("wechat: %s message acknowledged, not handled", message.msg_type)
            return _success()
        content = await self._answer(message)
        if content is None:
            return _success()
        reply = text_reply_xml(message.from_user, message.to_user, content,
                               now=int(time.time()))
        if encrypted and self._crypto is not None:
            timestamp = str(int(time.time()))
            reply_nonce = nonce or secrets.token_hex(8)
            sealed = self._crypto.encrypt(reply.encode())
            reply = encrypted_xml(sealed, self._crypto.sign(timestamp, reply_nonce, sealed),
                                  timestamp, reply_nonce)
        response = web.StreamResponse(headers={"Content-Type": "application/xml; charset=utf-8"})
        body = reply.encode()
        response.content_length = len(body)
        flight = self._in_flight.get(_flight_key(message))
        try:
            await response.prepare(request)
            await response.write(body)
            await response.write_eof()
        finally:
            if flight is not None:
                flight.passive.responded.set()
        return response

    async def _answer(self, message: WeChatMessage) -> str | None:
        """The passive reply's text for a text or image message, None for ``success``."""
        key = _flight_key(message)
        conversation = ConversationRef(CHANNEL, message.from_user).key
        flight = self._in_flight.get(key)
        if flight is not None:
            log.info("wechat: message %s delivered again while known; answered alike", key)
            return await self._wait(flight)
        if await self.state.claim(conversation, message.msg_id):
            content = await self._wait(self._begin(key, message))
            if content is None:
                await self.state.answered(conversation, message.msg_id, None)
            return content
        known = await self.state.answer(conversation, message.msg_id)
        if known is not None and not known.pending:
            log.info("wechat: message %s delivered again, answered elsewhere; answered alike",
                     key)
            return known.text
        # Another process is handling it (or died doing so): the dispatcher answers it from
        # its record once that one is done, or handles it if it never committed.
        log.info("wechat: message %s delivered again while another process handles it", key)
        return await self._wait(self._begin(key, message, claimed=False), watch=True)

    def _decrypt(self, fields: dict[str, str], timestamp: str, nonce: str,
                 msg_signature: str) -> dict[str, str]:
        if self._crypto is None:
            raise BadRequest("an encrypted message, but WECHAT_AES_KEY is not configured")
        encrypted = fields.get("Encrypt", "")
        if not encrypted:
            raise BadRequest("an encrypted message without Encrypt")
        _check_fresh(timestamp)
        if not check_signature(msg_signature, self.config.token, timestamp, nonce, encrypted):
            raise Forbidden("the msg_signature does not match")
        try:
            return parse_xml(self._crypto.decrypt(encrypted))
        except WeChatCryptoError as exc:
            raise BadRequest(str(exc)) from exc

    async def _read(self, request: web.Request) -> bytes:
        return await read_body(request, self.config.max_body, PayloadTooLarge)

    def _begin(self, key: str, message: WeChatMessage, *, claimed: bool = True) -> _InFlight:
        passive = _Passive(ConversationRef(CHANNEL, message.from_user), message.msg_id)
        context = contextvars.copy_context()
        context.run(_PASSIVE.set, passive)
        task = asyncio.create_task(self._handle(message), context=context)
        flight = _InFlight(passive, task)
        self._in_flight[key] = flight
        self._tasks.add(task)

        def finished(done: asyncio.Task[list[OutgoingMessage]]) -> None:
            self._tasks.discard(done)
            if done.cancelled():
                self._in_flight.pop(key, None)
                return
            error = done.exception()
            if error is not None:
                # Forget it, so WeChat's retry handles the message again, in any process
                # (the claim is another process's when this was a retry of its message).
                self._in_flight.pop(key, None)
                if claimed:
                    forget = asyncio.create_task(self.state.forget(passive.conversation.key,
                                                                   message.msg_id))
                    self._tasks.add(forget)
                    forget.add_done_callback(self._tasks.discard)
                if passive.closed or passive.filled.done():  # no request will report it
                    log.error("wechat: message %s failed after the HTTP answer: %s: %s",
                              key, type(error).__name__, error)
                return
            asyncio.get_running_loop().call_later(
                RETRY_WINDOW, lambda: self._in_flight.pop(key, None))

        task.add_done_callback(finished)
        return flight

    async def _wait(self, flight: _InFlight, *, watch: bool = False) -> str | None:
        """The passive reply's text, or None to answer ``success``; the handling's error.

        A message another process handles (or handled) is answered as that process answered
        it: with `watch` (a retry of a message claimed elsewhere) that answer is looked for
        while waiting, and in any case once more when no reply of ours came.
        """
        passive, task = flight.passive, flight.task
        conversation = passive.conversation.key
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.reply_timeout
        either: set[asyncio.Future[Any]] = {passive.filled, task}
        while True:
            left = max(deadline - loop.time(), 0.0)
            await asyncio.wait(either, timeout=min(left, ANSWER_POLL) if watch else left,
                               return_when=asyncio.FIRST_COMPLETED)
            if passive.filled.done():
                return passive.filled.result()
            if watch:
                known = await self.state.answer(conversation, passive.msg_id)
                if known is not None and not known.pending:
                    passive.close()
                    return known.text
            if task.done() or loop.time() >= deadline:
                break
        passive.close()  # too late: what comes goes by the customer-service API
        if task.done():
            error = task.exception()
            if error is not None:
                raise error
        known = await self.state.answer(conversation, passive.msg_id)
        return known.text if known is not None else None

    async def _handle(self, message: WeChatMessage) -> list[OutgoingMessage]:
        conversation = ConversationRef(CHANNEL, message.from_user)
        attachments: tuple[Attachment, ...] = ()
        text = message.content
        choices = await self.state.choices(conversation.key)
        if message.msg_type == "image":
            attachments = (await self._fetch_image(message),)
        elif choices is not None:
            text = chosen_button(text, choices.buttons) or text
        replies = await self._on_message(IncomingMessage(
            conversation=conversation, text=text, message_id=message.msg_id,
            attachments=attachments))
        if choices is not None:  # answered (or passed over): the list is used up
            await self.state.consume(conversation.key, choices)
        return replies

    async def _fetch_image(self, message: WeChatMessage) -> Attachment:
        limit = self._files.max_bytes
        try:
            data, content_type = await self.api.download_media(message.media_id, limit)
        except EvidenceTooLarge as exc:
            raise PayloadTooLarge(str(exc)) from exc
        extension = {"image/png": ".png", "image/gif": ".gif"}.get(content_type, ".jpg")
        try:
            ref = await self._files.put(f"wechat-{message.msg_id}{extension}",
                                        content_type, data)
        except EvidenceTooLarge as exc:
            raise PayloadTooLarge(str(exc)) from exc
        except EvidenceError as exc:
            raise WeChatApiError(f"cannot store the photo: {exc}") from exc
        return Attachment(filename=ref.filename, content_type=ref.content_type,
                          sha256=ref.sha256, size=ref.size)


def _flight_key(message: WeChatMessage) -> str:
    return f"{message.from_user}:{message.msg_id}"


def _transient(exc: Exception) -> bool:
    """Worth another try: unreachable, busy, or a token that a fresh one replaces."""
    return isinstance(exc, WeChatApiError) and (
        exc.errcode is None or exc.errcode == _BUSY or exc.errcode in _TOKEN_ERRORS)


def _check_fresh(timestamp: str) -> None:
    if not timestamp.isdigit() or len(timestamp) > 12:
        raise Forbidden("the timestamp is missing or not a number")
    if abs(time.time() - int(timestamp)) > MAX_CLOCK_SKEW:
        raise Forbidden("the timestamp is too old or in the future (replayed?)")


def _success() -> web.Response:
    return web.Response(text="success", content_type="text/plain")
