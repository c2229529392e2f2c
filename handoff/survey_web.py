"""The satisfaction survey as a small web form, for customers on channels without buttons (e-mail).

The invitation carries a signed link: ``/survey/<token>``, where the token is the ticket id and an
expiry time, signed with HMAC-SHA256 (stdlib `hmac`, compared in constant time) under the
product's secret (``INTAKEBOT_SECRET``, else a random one created once in the data directory).
A forged, expired or already used link gets a clear page and a 4xx status; a bad answer gets the
form again with what is wrong (400) and nothing stored.

The form speaks the customer's language, the one the ticket recorded from what they wrote
(`Ticket.lang`): Simplified Chinese, Traditional Chinese (the Simplified text through OpenCC,
as the bot's replies) or English. A ticket of mixed or unknown language, and a link that names
no ticket we can trust (forged or malformed), get Chinese and English side by side.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import html
import os
import secrets
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from string import Template

from aiohttp import web

from handoff.aftercare import Aftercare
from handoff.errors import InvalidTicket, TicketNotFound
from handoff.sla import Clock, system_clock
from handoff.survey import ASPECTS, SCORES
from handoff.tickets import Ticket

PAGE = Template((Path(__file__).with_name("static") / "survey.html").read_text(encoding="utf-8"))
LINK_TTL = timedelta(days=14)
SECRET_FILE = "secret"  # in the data directory, when INTAKEBOT_SECRET is not set


@dataclass(frozen=True, slots=True)
class FormText:
    """The words of the form and its pages in one language."""

    lang: str  # the page's lang attribute
    title: str
    heading: str  # {number} is the complaint number
    hint: str
    scores: dict[str, str]
    aspects: dict[str, str]
    best: str
    improve: str
    suggestion: str
    submit: str
    missing: str
    text_only: str
    thanks: str
    answered: str


_ZH = FormText(
    lang="zh-Hans", title="满意度回访", heading="投诉 {number} 满意度回访",
    hint="1 分最低，5 分最高。",
    scores={"timeliness": "处理及时性", "effectiveness": "方案有效性", "attitude": "服务态度",
            "overall": "总体满意度"},
    aspects={"speed": "响应速度", "result": "处理结果", "attitude": "服务态度",
             "clarity": "沟通清晰", "other": "其他"},
    best="最满意的方面", improve="最需要改进的方面", suggestion="其他意见或建议", submit="提交",
    missing="请为每一项打分（1-5）：", text_only="只接受文字", thanks="感谢您的评价！",
    answered="这份问卷已经提交过了，谢谢！")
_EN = FormText(
    lang="en", title="Satisfaction survey", heading="Satisfaction survey: complaint {number}",
    hint="1 is lowest, 5 is highest.",
    scores={"timeliness": "Timeliness", "effectiveness": "Effectiveness of the solution",
            "attitude": "Staff attitude", "overall": "Overall"},
    aspects={"speed": "Response speed", "result": "Result", "attitude": "Attitude",
             "clarity": "Clarity", "other": "Other"},
    best="What satisfied you most", improve="What to improve most",
    suggestion="Other suggestions", submit="Submit",
    missing="Please score every question (1-5): ", text_only="text only",
    thanks="Thank you for your feedback!", answered="This survey has already been answered.")


def _side_by_side(zh: FormText, en: FormText) -> FormText:
    def both(a: str, b: str) -> str:
        return f"{a} · {b}" if a.endswith(("回访", "建议")) else f"{a} {b}"

    values: dict[str, object] = {"lang": "zh-Hans",
                                 "heading": zh.heading + " · " + en.title}
    for item in fields(FormText):
        a, b = getattr(zh, item.name), getattr(en, item.name)
        if item.name in values:
            continue
        values[item.name] = ({k: both(v, b[k]) for k, v in a.items()} if isinstance(a, dict)
                             else both(a, b))
    return replace(zh, **values)  # type: ignore[arg-type]


BILINGUAL = _side_by_side(_ZH, _EN)


@lru_cache(maxsize=1)
def _traditional() -> FormText:
    from nlp.normalize import to_traditional

    values: dict[str, object] = {"lang": "zh-Hant"}
    for item in fields(FormText):
        value = getattr(_ZH, item.name)
        if item.name != "lang":
            values[item.name] = ({k: to_traditional(v) for k, v in value.items()}
                                 if isinstance(value, dict) else to_traditional(value))
    return replace(_ZH, **values)  # type: ignore[arg-type]


def form_text(lang: str | None) -> FormText:
    """The form's words for a ticket's language (zh-Hans, zh-Hant, en); both Chinese and
    English for any other (mixed, unknown)."""
    if lang == "zh-Hant":
        return _traditional()
    return {"zh-Hans": _ZH, "en": _EN}.get(lang or "", BILINGUAL)


class InvalidLink(Exception):
    """A survey link that cannot be used; `status` is the HTTP status to answer with, `text`
    the words of the page (both languages unless the ticket's language is known)."""

    def __init__(self, message: str, status: int, text: FormText = BILINGUAL) -> None:
        super().__init__(message)
        self.status = status
        self.text = text


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
            ticket = await self._open(request.match_info["token"])
        except InvalidLink as exc:
            return _page(str(exc), exc.status, exc.text)
        return _form(ticket.number, request.path, form_text(ticket.lang), error=None,
                     status=200)

    async def submit(self, request: web.Request) -> web.Response:
        try:
            ticket = await self._open(request.match_info["token"])
        except InvalidLink as exc:
            return _page(str(exc), exc.status, exc.text)
        words = form_text(ticket.lang)
        form = await request.post()
        answers: dict[str, object] = {}
        missing = [name for name in SCORES if not form.get(name)]
        if missing:
            message = words.missing + ", ".join(words.scores[name] for name in missing)
            return _form(ticket.number, request.path, words, error=message, status=400)
        for name in (*SCORES, "best_aspect", "improve_aspect", "suggestion"):
            value = form.get(name)
            if isinstance(value, str) and value.strip():
                answers[name] = value
            elif value is not None and not isinstance(value, str):
                return _form(ticket.number, request.path, words,
                             error=f"{name}: {words.text_only}", status=400)
        try:
            await self.aftercare.answer_survey(ticket.id, answers)
        except InvalidTicket as exc:
            return _form(ticket.number, request.path, words, error=str(exc), status=400)
        return _page(words.thanks, 200, words)

    async def _open(self, token: str) -> Ticket:
        ticket_id = self.links.verify(token)
        survey = await self.aftercare.surveys.get(ticket_id)
        if survey is None:
            raise InvalidLink("没有找到这份问卷。This survey does not exist.", 404)
        try:
            ticket = await self.aftercare.store.get(ticket_id)
        except TicketNotFound as exc:
            raise InvalidLink("没有找到这份问卷。This survey does not exist.", 404) from exc
        if survey.answered_at is not None:
            words = form_text(ticket.lang)
            raise InvalidLink(words.answered, 409, words)
        return ticket


def _html(words: FormText, content: str) -> str:
    return PAGE.substitute(lang=words.lang, title=html.escape(words.title), content=content)


def _page(message: str, status: int, words: FormText = BILINGUAL) -> web.Response:
    content = f"<h1>{html.escape(words.title)}</h1>\n<p>{html.escape(message)}</p>"
    return web.Response(text=_html(words, content), status=status, content_type="text/html")


def _form(number: str, action: str, words: FormText, *, error: str | None,
          status: int) -> web.Response:
    parts = [f"<h1>{html.escape(words.heading.format(number=number))}</h1>",
             f'<p class="hint">{html.escape(words.hint)}</p>']
    if error:
        parts.append(f'<p class="error" role="alert">{html.escape(error)}</p>')
    parts.append(f'<form method="post" action="{html.escape(action)}">')
    for name in SCORES:
        choices = "".join(f'<label><input type="radio" name="{name}" value="{n}" required> '
                          f"{n}</label>" for n in range(1, 6))
        parts.append(f"<fieldset><legend>{html.escape(words.scores[name])}</legend>"
                     f"{choices}</fieldset>")
    for name, legend in (("best_aspect", words.best), ("improve_aspect", words.improve)):
        choices = "".join(f'<label><input type="radio" name="{name}" value="{a}"> '
                          f"{html.escape(words.aspects[a])}</label> " for a in ASPECTS)
        parts.append(f"<fieldset><legend>{html.escape(legend)}</legend>{choices}</fieldset>")
    parts.append(f"<fieldset><legend>{html.escape(words.suggestion)}</legend>"
                 '<textarea name="suggestion" maxlength="2000"></textarea></fieldset>')
    parts.append(f'<button type="submit">{html.escape(words.submit)}</button></form>')
    return web.Response(text=_html(words, "\n".join(parts)), status=status,
                        content_type="text/html")
