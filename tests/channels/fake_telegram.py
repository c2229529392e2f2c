"""A fake Telegram Bot API: a real aiohttp server on 127.0.0.1 that speaks the Bot API's paths.

It answers ``/bot{token}/{method}`` for getMe, getUpdates (long polling, honouring the offset),
sendMessage, sendPhoto, sendDocument, getFile, setWebhook, deleteWebhook and
answerCallbackQuery, and serves files at ``/file/bot{token}/{path}``. It records what the bot
sent, queues updates for getUpdates, builds updates for webhook tests, and can be told to fail a
method a number of times (429 with retry_after, or a 5xx), or to stall: carry a call out (the
message is sent) but keep its answer back, as when the bot's process dies or times out mid-call.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer
from aiohttp.web_request import FileField

BOT_ID = 7000001
BOT_USER = {"id": BOT_ID, "is_bot": True, "first_name": "Intake", "username": "intake_test_bot"}


@dataclass
class Failure:
    """Fail a method `times` times with `status` (and retry_after for 429), after letting
    `after` calls through."""

    status: int
    times: int
    retry_after: int = 1
    after: int = 0


@dataclass
class Call:
    """One request the bot made."""

    method: str
    params: dict[str, Any]
    at: float = field(default_factory=time.monotonic)


class FakeTelegram:
    """The fake Bot API server. Use as ``async with FakeTelegram(token) as fake: fake.url``."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.calls: list[Call] = []
        self.sent: list[dict[str, Any]] = []  # the messages the bot sent, as the API returns them
        self.webhook: dict[str, Any] | None = None
        self.failures: dict[str, list[Failure]] = {}
        self.stalls: dict[str, list[float]] = {}  # method -> seconds each next call is held
        self.stalled = asyncio.Event()  # set when a stalled call has been carried out
        self.files: dict[str, tuple[str, bytes]] = {}  # file_id -> (file_path, bytes)
        self.answered: list[str] = []  # callback query ids
        self._updates: list[dict[str, Any]] = []
        self._new_update = asyncio.Event()
        self._sent_changed = asyncio.Event()
        self._ids = itertools.count(1)
        self._update_ids = itertools.count(100)
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self._api)
        app.router.add_get("/file/bot{token}/{path:.+}", self._file)
        self._server = TestServer(app, host="127.0.0.1")

    async def __aenter__(self) -> FakeTelegram:
        await self._server.start_server()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._server.close()

    @property
    def url(self) -> str:
        """The base URL, as TELEGRAM_API_BASE takes it."""
        return str(self._server.make_url("")).rstrip("/")

    # ---- scripting -----------------------------------------------------------------------

    def fail(self, method: str, status: int, times: int = 1, retry_after: int = 1,
             after: int = 0) -> None:
        """Answer the next `times` calls of `method` with `status` (once `after` went through)."""
        self.failures.setdefault(method, []).append(Failure(status, times, retry_after, after))

    def stall(self, method: str, seconds: float = 3600.0, times: int = 1) -> None:
        """Carry out the next `times` calls of `method` but answer each only after `seconds`
        (0: at once, to stall a later call)."""
        self.stalls.setdefault(method, []).extend([seconds] * times)

    def add_file(self, data: bytes, path: str) -> str:
        """Make a file downloadable; returns its file_id."""
        file_id = f"file-{next(self._ids)}"
        self.files[file_id] = (path, data)
        return file_id

    def queue(self, update: dict[str, Any]) -> dict[str, Any]:
        """Queue an update for getUpdates."""
        self._updates.append(update)
        self._new_update.set()
        return update

    def text_update(self, chat_id: int, text: str, *, message_id: int | None = None
                    ) -> dict[str, Any]:
        """A message update with text."""
        return self._update({"message": self._message(chat_id, message_id, text=text)})

    def photo_update(self, chat_id: int, sizes: list[tuple[str, int, int, int]],
                     caption: str | None = None) -> dict[str, Any]:
        """A photo message; sizes are (file_id, width, height, file_size)."""
        extra: dict[str, Any] = {"photo": [
            {"file_id": fid, "file_unique_id": f"u-{fid}", "width": w, "height": h,
             "file_size": size} for fid, w, h, size in sizes]}
        if caption is not None:
            extra["caption"] = caption
        return self._update({"message": self._message(chat_id, None, **extra)})

    def callback_update(self, sent: Mapping[str, Any], data: str) -> dict[str, Any]:
        """A press on a button of a message the bot sent."""
        chat = sent["chat"]
        return self._update({"callback_query": {
            "id": f"cq-{next(self._ids)}", "chat_instance": "ci-1", "data": data,
            "from": {"id": chat["id"], "is_bot": False, "first_name": "Wang"},
            "message": dict(sent)}})

    def sent_to(self, chat_id: int) -> list[dict[str, Any]]:
        return [m for m in self.sent if m["chat"]["id"] == chat_id]

    async def wait_sent(self, chat_id: int, count: int,
                        timeout: float = 15) -> list[dict[str, Any]]:
        """Wait until at least `count` messages were sent to the chat."""
        async with asyncio.timeout(timeout):
            while len(self.sent_to(chat_id)) < count:
                self._sent_changed.clear()
                await self._sent_changed.wait()
        return self.sent_to(chat_id)

    def called(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    def pending(self) -> list[dict[str, Any]]:
        """Updates not yet confirmed by a getUpdates offset."""
        return list(self._updates)

    # ---- the API -------------------------------------------------------------------------

    def _update(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"update_id": next(self._update_ids), **body}

    def _message(self, chat_id: int, message_id: int | None, **extra: Any) -> dict[str, Any]:
        return {"message_id": message_id if message_id is not None else next(self._ids),
                "date": int(time.time()), "chat": {"id": chat_id, "type": "private"},
                "from": {"id": chat_id, "is_bot": False, "first_name": "Wang"}, **extra}

    async def _params(self, request: web.Request) -> dict[str, Any]:
        if request.content_type == "application/json":
            data = await request.json()
            return dict(data) if isinstance(data, dict) else {}
        form = await request.post()
        params: dict[str, Any] = {}
        for key, value in form.items():
            if isinstance(value, str):
                try:
                    params[key] = json.loads(value)
                except ValueError:
                    params[key] = value
            elif isinstance(value, FileField):  # an uploaded file
                params[key] = {"filename": value.filename, "data": value.file.read()}
            else:
                params[key] = bytes(value)
        return params

    async def _api(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return _error(401, "Unauthorized")
        method = request.match_info["method"]
        params = await self._params(request)
        self.calls.append(Call(method, params))
        queue = self.failures.get(method)
        if queue and queue[0].after:
            queue[0].after -= 1
        elif queue:
            failure = queue[0]
            failure.times -= 1
            if failure.times <= 0:
                queue.pop(0)
            if failure.status == 429:
                return _error(429, f"Too Many Requests: retry after {failure.retry_after}",
                              parameters={"retry_after": failure.retry_after})
            return _error(failure.status, "Internal Server Error")
        handler = getattr(self, "_" + method, None)
        if handler is None:
            return _error(404, "Not Found")
        result = await handler(params)
        stalls = self.stalls.get(method)
        if stalls:
            seconds = stalls.pop(0)
            if seconds > 0:
                self.stalled.set()
                await asyncio.sleep(seconds)
        return web.json_response({"ok": True, "result": result})

    async def _getMe(self, params: dict[str, Any]) -> Any:
        return BOT_USER

    async def _setWebhook(self, params: dict[str, Any]) -> Any:
        self.webhook = params
        return True

    async def _deleteWebhook(self, params: dict[str, Any]) -> Any:
        self.webhook = None
        return True

    async def _getUpdates(self, params: dict[str, Any]) -> Any:
        offset = int(params.get("offset") or 0)
        if offset:
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
        timeout = float(params.get("timeout") or 0)
        deadline = time.monotonic() + timeout
        while not self._updates and time.monotonic() < deadline:
            self._new_update.clear()
            try:
                async with asyncio.timeout(deadline - time.monotonic()):
                    await self._new_update.wait()
            except TimeoutError:
                break
        return list(self._updates)

    async def _record(self, chat_id: Any, **body: Any) -> dict[str, Any]:
        message = {"message_id": next(self._ids), "date": int(time.time()),
                   "chat": {"id": int(chat_id), "type": "private"}, "from": BOT_USER, **body}
        self.sent.append(message)
        self._sent_changed.set()
        return message

    async def _sendMessage(self, params: dict[str, Any]) -> Any:
        body: dict[str, Any] = {"text": str(params["text"])}
        if params.get("reply_markup"):
            body["reply_markup"] = params["reply_markup"]
        return await self._record(params["chat_id"], **body)

    async def _sendPhoto(self, params: dict[str, Any]) -> Any:
        upload = params.get("photo")
        size = len(upload["data"]) if isinstance(upload, dict) else 0
        return await self._record(params["chat_id"], photo=[{
            "file_id": f"sent-{next(self._ids)}", "file_unique_id": "s", "width": 1,
            "height": 1, "file_size": size}])

    async def _sendDocument(self, params: dict[str, Any]) -> Any:
        upload = params.get("document")
        name = upload["filename"] if isinstance(upload, dict) else "file"
        return await self._record(params["chat_id"], document={
            "file_id": f"sent-{next(self._ids)}", "file_unique_id": "d", "file_name": name})

    async def _getFile(self, params: dict[str, Any]) -> Any:
        file_id = str(params["file_id"])
        path, data = self.files[file_id]
        return {"file_id": file_id, "file_unique_id": f"u-{file_id}", "file_size": len(data),
                "file_path": path}

    async def _answerCallbackQuery(self, params: dict[str, Any]) -> Any:
        self.answered.append(str(params["callback_query_id"]))
        return True

    async def _file(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return _error(401, "Unauthorized")
        path = request.match_info["path"]
        for stored_path, data in self.files.values():
            if stored_path == path:
                return web.Response(body=data, content_type="application/octet-stream")
        return _error(404, "Not Found")


def _error(status: int, description: str, **extra: Any) -> web.Response:
    return web.json_response({"ok": False, "error_code": status, "description": description,
                              **extra}, status=status)
