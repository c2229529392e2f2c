"""A local fake of WeChat: the API server the channel calls, and the platform's callbacks to it.

`FakeWeChatApi` is a real aiohttp application serving ``/cgi-bin/token``,
``/cgi-bin/message/custom/send`` and ``/cgi-bin/media/get`` as WeChat documents them (errcode
JSON, access tokens that can be revoked), recording every message sent. `WeChatPlatform` builds
the callback requests WeChat would make: signed query strings, message XML, safe-mode envelopes.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from channels.wechat import parse_xml
from channels.wechat_crypto import MessageCrypto, signature

APP_ID = "wx1234567890abcdef"
APP_SECRET = "fake-app-secret"
TOKEN = "fake-callback-token"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"  # 43 characters
ACCOUNT = "gh_0123456789ab"


@dataclass
class FakeWeChatApi:
    """The WeChat API, as far as the channel uses it."""

    app_id: str = APP_ID
    app_secret: str = APP_SECRET
    issued: list[str] = field(default_factory=list)
    revoked: set[str] = field(default_factory=set)
    sent: list[dict[str, Any]] = field(default_factory=list)
    media: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    busy: int = 0  # answer this many sends with errcode -1 (system busy)
    _counter: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/cgi-bin/token", self.token)
        app.router.add_post("/cgi-bin/message/custom/send", self.custom_send)
        app.router.add_get("/cgi-bin/media/get", self.media_get)
        return app

    def revoke_tokens(self) -> None:
        """Make every issued token invalid (as when another client fetched a new one)."""
        self.revoked.update(self.issued)

    def texts(self, openid: str) -> list[str]:
        return [m["text"]["content"] for m in self.sent if m["touser"] == openid]

    async def wait_sent(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        async with asyncio.timeout(timeout):
            while len(self.sent) < count:
                await asyncio.sleep(0.01)
        return self.sent

    @staticmethod
    def _error(code: int, message: str) -> web.Response:
        return web.json_response({"errcode": code, "errmsg": message})

    def _valid(self, request: web.Request) -> bool:
        token = request.query.get("access_token", "")
        return token in self.issued and token not in self.revoked

    async def token(self, request: web.Request) -> web.Response:
        query = request.query
        if query.get("grant_type") != "client_credential":
            return self._error(40002, "invalid grant_type")
        if query.get("appid") != self.app_id:
            return self._error(40013, "invalid appid")
        if query.get("secret") != self.app_secret:
            return self._error(40001, "invalid credential, access_token is invalid or not latest")
        token = f"ACCESS_TOKEN_{next(self._counter)}_{secrets.token_hex(4)}"
        self.issued.append(token)
        return web.json_response({"access_token": token, "expires_in": 7200})

    async def custom_send(self, request: web.Request) -> web.Response:
        if not self._valid(request):
            return self._error(40001, "invalid credential, access_token is invalid or not latest")
        try:
            payload = json.loads(await request.read())
        except ValueError:
            return self._error(47001, "data format error")
        text = payload.get("text")
        if (payload.get("msgtype") != "text" or not payload.get("touser")
                or not isinstance(text, dict) or not isinstance(text.get("content"), str)):
            return self._error(47001, "data format error")
        if self.busy:
            self.busy -= 1
            return self._error(-1, "system error")
        self.sent.append(payload)
        return self._error(0, "ok")

    async def media_get(self, request: web.Request) -> web.Response:
        if not self._valid(request):
            return self._error(40001, "invalid credential, access_token is invalid or not latest")
        found = self.media.get(request.query.get("media_id", ""))
        if found is None:
            return self._error(40007, "invalid media_id")
        data, content_type = found
        return web.Response(body=data, content_type=content_type, headers={
            "Content-Disposition": 'attachment; filename="media.jpg"'})


@dataclass
class WeChatPlatform:
    """Builds the callbacks WeChat sends to the official account's server."""

    token: str = TOKEN
    aes_key: str | None = None
    app_id: str = APP_ID
    account: str = ACCOUNT
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(10**16))

    @property
    def crypto(self) -> MessageCrypto:
        assert self.aes_key is not None
        return MessageCrypto(self.token, self.aes_key, self.app_id)

    def next_id(self) -> str:
        return str(next(self._ids))

    def text_xml(self, openid: str, content: str, msg_id: str) -> bytes:
        return (f"<xml><ToUserName><![CDATA[{self.account}]]></ToUserName>"
                f"<FromUserName><![CDATA[{openid}]]></FromUserName>"
                f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
                f"<Content><![CDATA[{content}]]></Content><MsgId>{msg_id}</MsgId></xml>").encode()

    def image_xml(self, openid: str, media_id: str, msg_id: str) -> bytes:
        return (f"<xml><ToUserName><![CDATA[{self.account}]]></ToUserName>"
                f"<FromUserName><![CDATA[{openid}]]></FromUserName>"
                f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[image]]></MsgType>"
                f"<PicUrl><![CDATA[http://127.0.0.1:9/never-used.jpg]]></PicUrl>"
                f"<MediaId><![CDATA[{media_id}]]></MediaId><MsgId>{msg_id}</MsgId></xml>"
                ).encode()

    def signed_query(self, *, token: str | None = None, timestamp: str | None = None,
                     **extra: str) -> dict[str, str]:
        timestamp, nonce = timestamp or str(int(time.time())), secrets.token_hex(5)
        return {"signature": signature(token or self.token, timestamp, nonce),
                "timestamp": timestamp, "nonce": nonce, **extra}

    def post(self, body: bytes, *, token: str | None = None,
             timestamp: str | None = None) -> tuple[str, bytes]:
        """The query string and body of a callback: encrypted when the platform has a key."""
        query = self.signed_query(token=token, timestamp=timestamp)
        if self.aes_key is None:
            return "?" + urlencode(query), body
        sealed = self.crypto.encrypt(body)
        query["encrypt_type"] = "aes"
        query["msg_signature"] = signature(token or self.token, query["timestamp"],
                                           query["nonce"], sealed)
        envelope = (f"<xml><ToUserName><![CDATA[{self.account}]]></ToUserName>"
                    f"<Encrypt><![CDATA[{sealed}]]></Encrypt></xml>").encode()
        return "?" + urlencode(query), envelope

    def open_reply(self, body: bytes) -> dict[str, str]:
        """The fields of a passive reply, checked and decrypted in safe mode."""
        fields = parse_xml(body)
        if self.aes_key is None:
            return fields
        sealed = fields["Encrypt"]
        assert fields["MsgSignature"] == signature(self.token, fields["TimeStamp"],
                                                   fields["Nonce"], sealed)
        return parse_xml(self.crypto.decrypt(sealed))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
