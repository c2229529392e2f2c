"""The satisfaction survey as a small web form, for customers on channels without buttons (e-mail).

The invitation carries a signed link: ``/survey/<token>``, where the token is the ticket id and an
expiry time, signed with HMAC-SHA256 (stdlib `hmac`, compared in constant time) under the
product's secret (``INTAKEBOT_SECRET``, else a random one created once in the data directory).
A forged, expired or already used link gets a clear page and a 4xx status; a bad answer gets the
form again with what is wrong (400) and nothing stored.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import html
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from string import Template

from aiohttp import web

from handoff.aftercare import Aftercare
from handoff.errors import InvalidTicket, TicketNotFound
from handoff.sla import Clock, system_clock
from handoff.survey import ASPECTS, SCORES

PAGE = Template((Path(__file__).with_name("static") / "survey.html").read_text(encoding="utf-8"))
LINK_TTL = timedelta(days=14)
SECRET_FILE = "secret"  # in the data directory, when INTAKEBOT_SECRET is not set
_SCORE_TEXT = {"timeliness": "处理及时性 Timeliness",
               "effectiveness": "方案有效性 Effectiveness of the solution",
               "attitude": "服务态度 Staff attitude", "overall": "总体满意度 Overall"}
_ASPECT_TEXT = {"speed": "响应速度 Response speed", "result": "处理结果 Result",
                "attitude": "服务态度 Attitude", "clarity": "沟通清晰 Clarity",
                "other": "其他 Other"}


class InvalidLink(Exception):
    """A survey link that cannot be used; `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def load_secret(data_dir: Path, configured: str | None) -> bytes:
    """The signing secret: the configured one, else one created once (mode 0600) and kept."""
    if configured:
        return configured.encode()
    path = data_dir / SECRET_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process created it first: use theirs
        else:
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_urlsafe(48))
    return path.read_text().strip().encode()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True, slots=True)
class SurveyLinks:
    """Signs and checks survey links.

    Args:
        secret: the HMAC key.
        base_url: the public address of the app (``INTAKEBOT_PUBLIC_URL``).
        clock: the current time (expiry is measured on it).
        ttl: how long a link is valid.
    """

    secret: bytes
    base_url: str
    clock: Clock = system_clock
    ttl: timedelta = LINK_TTL

    def token(self, ticket_id: str) -> str:
        expires = int((self.clock() + self.ttl).timestamp())
        body = _b64(f"{ticket_id}:{expires}".encode())
        return f"{body}.{self._sign(body)}"

    def url(self, ticket_id: str) -> str:
        return f"{self.base_url.rstrip('/')}/survey/{self.token(ticket_id)}"

    def verify(self, token: str) -> str:
        """The ticket id the token was signed for.

        Raises:
            InvalidLink: forged or malformed (403), or expired (410).
        """
        body, _, signature = token.partition(".")
        if not signature or not hmac.compare_digest(signature, self._sign(body)):
            raise InvalidLink("这个链接无效。This link is not valid.", 403)
        try:
            ticket_id, _, expires = _unb64(body).decode().rpartition(":")
            expiry = datetime.fromtimestamp(int(expires), UTC)
        except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
            raise InvalidLink("这个链接无效。This link is not valid.", 403) from exc
        if expiry < self.clock():
            raise InvalidLink("这个链接已过期。This link has expired.", 410)
        return ticket_id

    def _sign(self, body: str) -> str:
        return _b64(hmac.new(self.secret, body.encode(), hashlib.sha256).digest())


class SurveyForm:
    """The web form's handlers: GET shows the form, POST records the answers once."""

    def __init__(self, links: SurveyLinks, aftercare: Aftercare) -> None:
        self.links = links
        self.aftercare = aftercare

    def routes(self, prefix: str = "/survey") -> list[web.RouteDef]:
        return [web.get(prefix + "/{token}", self.show),
                web.post(prefix + "/{token}", self.submit)]

    async def show(self, request: web.Request) -> web.Response:
        try:
            ticket_id = await self._open(request.match_info["token"])
        except InvalidLink as exc:
            return _page(str(exc), exc.status)
        number = (await self.aftercare.store.get(ticket_id)).number
        return _form(number, request.path, error=None, status=200)

    async def submit(self, request: web.Request) -> web.Response:
        try:
            ticket_id = await self._open(request.match_info["token"])
        except InvalidLink as exc:
            return _page(str(exc), exc.status)
        number = (await self.aftercare.store.get(ticket_id)).number
        form = await request.post()
        answers: dict[str, object] = {}
        missing = [name for name in SCORES if not form.get(name)]
        if missing:
            message = "请为每一项打分（1-5）。Please score every question (1-5): " + \
                ", ".join(missing)
            return _form(number, request.path, error=message, status=400)
        for name in (*SCORES, "best_aspect", "improve_aspect", "suggestion"):
            value = form.get(name)
            if isinstance(value, str) and value.strip():
                answers[name] = value
            elif value is not None and not isinstance(value, str):
                return _form(number, request.path, error=f"{name}: 只接受文字 text only",
                             status=400)
        try:
            await self.aftercare.answer_survey(ticket_id, answers)
        except InvalidTicket as exc:
            return _form(number, request.path, error=str(exc), status=400)
        return _page("感谢您的评价！Thank you for your feedback!", 200)

    async def _open(self, token: str) -> str:
        ticket_id = self.links.verify(token)
        survey = await self.aftercare.surveys.get(ticket_id)
        if survey is None:
            raise InvalidLink("没有找到这份问卷。This survey does not exist.", 404)
        if survey.answered_at is not None:
            raise InvalidLink("这份问卷已经提交过了，谢谢！This survey has already been answered.",
                              409)
        try:
            await self.aftercare.store.get(ticket_id)
        except TicketNotFound as exc:
            raise InvalidLink("没有找到这份问卷。This survey does not exist.", 404) from exc
        return ticket_id


def _page(message: str, status: int) -> web.Response:
    content = f"<h1>满意度回访 · Satisfaction survey</h1>\n<p>{html.escape(message)}</p>"
    return web.Response(text=PAGE.substitute(content=content), status=status,
                        content_type="text/html")


def _form(number: str, action: str, *, error: str | None, status: int) -> web.Response:
    parts = [f"<h1>投诉 {html.escape(number)} 满意度回访 · Satisfaction survey</h1>",
             '<p class="hint">1 分最低，5 分最高。1 is lowest, 5 is highest.</p>']
    if error:
        parts.append(f'<p class="error" role="alert">{html.escape(error)}</p>')
    parts.append(f'<form method="post" action="{html.escape(action)}">')
    for name in SCORES:
        choices = "".join(f'<label><input type="radio" name="{name}" value="{n}" required> '
                          f"{n}</label>" for n in range(1, 6))
        parts.append(f"<fieldset><legend>{_SCORE_TEXT[name]}</legend>{choices}</fieldset>")
    for name, legend in (("best_aspect", "最满意的方面 What satisfied you most"),
                         ("improve_aspect", "最需要改进的方面 What to improve most")):
        choices = "".join(f'<label><input type="radio" name="{name}" value="{a}"> '
                          f"{_ASPECT_TEXT[a]}</label> " for a in ASPECTS)
        parts.append(f"<fieldset><legend>{legend}</legend>{choices}</fieldset>")
    parts.append('<fieldset><legend>其他意见或建议 Other suggestions</legend>'
                 '<textarea name="suggestion" maxlength="2000"></textarea></fieldset>')
    parts.append('<button type="submit">提交 Submit</button></form>')
    return web.Response(text=PAGE.substitute(content="\n".join(parts)), status=status,
                        content_type="text/html")
