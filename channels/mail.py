"""The e-mail channel: IMAP polling in, SMTP out, one conversation per thread.

Named ``mail`` rather than ``email`` so that nothing (a script run from this directory, a tool
that puts it on sys.path) can mistake it for the standard library's ``email`` package.

Inbound: every `MailConfig.poll_seconds` the mailbox is searched for unseen messages (imaplib,
in a thread). Each is fetched with ``BODY.PEEK[]`` (which leaves it unseen), parsed by the pure
functions below, its attachments stored as evidence, handed to the OnMessage callback, its
replies sent as one e-mail, and only then flagged ``\\Seen``: a failure leaves it unseen and the
next poll tries again; the dispatcher's de-duplication by Message-ID makes that safe and resends
replies that were not delivered. Automatic mail (``Auto-Submitted``, ``Precedence: bulk``,
mail from our own address) is marked seen without an answer, so two robots never talk forever;
a message that cannot be parsed is marked seen and ``\\Flagged`` for a person.

Threads: the conversation id is the thread's root Message-ID: the first of ``References``, else
``In-Reply-To``, else the message's own. Our replies carry ``In-Reply-To`` and ``References``, so
the customer's answer to them lands in the same conversation. What a reply needs to be sent
(the customer's address, the subject, the thread's Message-IDs) is kept in a `ThreadStore`.

Outbound: smtplib in a thread (STARTTLS, implicit TLS or none; login when a user is set),
retried with backoff on transient failures (`channels.ratelimit.retrying`). Buttons become
numbered lines, as on WeChat, and a numbered answer is handed on as the button's text.

HTML-only mail is turned to text with the standard library's html.parser: block elements become
line breaks, scripts, styles and quoted blocks (``<blockquote>``) are dropped. Quoted history
in plain text (lines starting with ``>`` and everything after "On … wrote:" / "在…写道：") is
cut, so the bot reads only what the customer just wrote.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import hashlib
import imaplib
import json
import logging
import os
import re
import smtplib
import ssl
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.utils import formatdate, getaddresses, make_msgid, parseaddr
from enum import Enum
from html.parser import HTMLParser
from pathlib import Path
from typing import Protocol, TypeVar

from aiohttp import web

from channels.base import ChannelError, OnMessage, env_flag
from channels.messages import Attachment, ConversationRef, IncomingMessage, OutgoingMessage
from channels.ratelimit import RetryPolicy, retrying
from channels.webchat import FileStore
from channels.wechat import chosen_button, numbered_text
from handoff.errors import EvidenceError, EvidenceTooLarge

log = logging.getLogger(__name__)

CHANNEL = "email"
MAX_TEXT_CHARS = 4_000
MAX_ATTACHMENTS = 10
DEFAULT_POLL_SECONDS = 30.0
DEFAULT_SUBJECT = "您的咨询 / Your enquiry"
_MSGID = re.compile(r"<[^<>\s]+>")
_QUOTE_HEAD = re.compile(
    r"^\s*(On .{0,200} wrote:|在.{0,200}写道[:：]|於.{0,200}寫道[:：]|"
    r"-{2,}\s*(Original Message|原始邮件|原始郵件)\s*-{2,}|From: .*<.*@.*>)\s*$",
    re.IGNORECASE)
_REPLY_PREFIX = re.compile(r"^\s*((re|fwd?|回复|答复|回覆|转发)\s*[:：]\s*)+", re.IGNORECASE)


# ---- errors ----------------------------------------------------------------------------------


class MailError(ChannelError):
    """The mail channel could not reach a server or deliver a message."""


class MailDeliveryFailed(MailError):
    """An e-mail could not be sent (SMTP refused it or could not be reached)."""


class SmtpLoginRefused(MailDeliveryFailed):
    """The SMTP server refused the login (a wrong MAIL_SMTP_USER or MAIL_SMTP_PASSWORD)."""


class UnknownThread(MailError):
    """A reply for a conversation whose customer address is not known."""


# ---- configuration ---------------------------------------------------------------------------


class Security(str, Enum):
    """How the SMTP connection is protected."""

    STARTTLS = "starttls"
    TLS = "tls"  # implicit TLS (port 465)
    NONE = "none"  # only for local servers (tests, a relay on localhost)


@dataclass(frozen=True, slots=True)
class MailConfig:
    """The mailbox the bot reads and the server it sends through.

    Attributes:
        imap_host, imap_port, imap_user, imap_password: the mailbox (IMAP4 over TLS unless
            `imap_tls` is false).
        smtp_host, smtp_port, smtp_user, smtp_password: the outgoing server; no login when
            `smtp_user` is empty.
        mail_from: the address replies come from (``Name <addr>`` allowed).
        poll_seconds: the pause between two polls of the mailbox.
        imap_tls: IMAP over TLS (port 993) rather than plain IMAP.
        smtp_security: STARTTLS (587), implicit TLS (465) or none.
        mailbox: the folder polled.
        tls_ca_file: a PEM file of the certificate authorities trusted for IMAP and SMTP
            instead of the system's (a company CA; the tests' self-signed certificate).
    """

    imap_host: str
    imap_port: int
    imap_user: str
    imap_password: str
    smtp_host: str
    smtp_port: int
    smtp_user: str
    smtp_password: str
    mail_from: str
    poll_seconds: float = DEFAULT_POLL_SECONDS
    imap_tls: bool = True
    smtp_security: Security = Security.STARTTLS
    mailbox: str = "INBOX"
    tls_ca_file: str | None = None

    def tls_context(self) -> ssl.SSLContext:
        """The TLS client settings: certificates and host names checked, against `tls_ca_file`
        when set, else the system's authorities."""
        return ssl.create_default_context(cafile=self.tls_ca_file)

    @property
    def from_address(self) -> str:
        """The bare address of `mail_from`."""
        return parseaddr(self.mail_from)[1].lower()

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> MailConfig | None:
        """The settings from ``MAIL_*`` variables; None when MAIL_IMAP_HOST is not set.

        Variables: MAIL_IMAP_HOST, MAIL_IMAP_PORT (993), MAIL_IMAP_USER, MAIL_IMAP_PASSWORD,
        MAIL_IMAP_TLS (true), MAIL_IMAP_MAILBOX (INBOX), MAIL_SMTP_HOST, MAIL_SMTP_PORT (587),
        MAIL_SMTP_USER, MAIL_SMTP_PASSWORD, MAIL_SMTP_SECURITY (starttls | tls | none),
        MAIL_FROM, MAIL_POLL_SECONDS (30), MAIL_TLS_CA_FILE (the system's authorities).

        Raises:
            ValueError: MAIL_IMAP_HOST is set but the rest is missing or malformed.
        """
        imap_host = env.get("MAIL_IMAP_HOST", "").strip()
        if not imap_host:
            return None
        needed = ["MAIL_IMAP_USER", "MAIL_IMAP_PASSWORD", "MAIL_SMTP_HOST", "MAIL_FROM"]
        missing = [name for name in needed if not env.get(name, "").strip()]
        if missing:
            raise ValueError(f"MAIL_IMAP_HOST is set: {', '.join(missing)} needed too")
        mail_from = env["MAIL_FROM"].strip()
        if "@" not in parseaddr(mail_from)[1]:
            raise ValueError("MAIL_FROM must be an e-mail address")
        imap_tls = env_flag(env, "MAIL_IMAP_TLS", True)
        try:
            security = Security(env.get("MAIL_SMTP_SECURITY", "starttls").strip().lower())
        except ValueError as exc:
            raise ValueError("MAIL_SMTP_SECURITY must be starttls, tls or none") from exc
        poll = _number(env, "MAIL_POLL_SECONDS", DEFAULT_POLL_SECONDS)
        if poll <= 0:
            raise ValueError("MAIL_POLL_SECONDS must be positive")
        ca_file = env.get("MAIL_TLS_CA_FILE", "").strip() or None
        if ca_file is not None and not Path(ca_file).is_file():
            raise ValueError(f"MAIL_TLS_CA_FILE: no file {ca_file}")
        return cls(
            imap_host=imap_host, imap_port=int(_number(env, "MAIL_IMAP_PORT",
                                                       993 if imap_tls else 143)),
            imap_user=env["MAIL_IMAP_USER"].strip(), imap_password=env["MAIL_IMAP_PASSWORD"],
            smtp_host=env["MAIL_SMTP_HOST"].strip(),
            smtp_port=int(_number(env, "MAIL_SMTP_PORT",
                                  465 if security is Security.TLS else 587)),
            smtp_user=env.get("MAIL_SMTP_USER", "").strip(),
            smtp_password=env.get("MAIL_SMTP_PASSWORD", ""), mail_from=mail_from,
            poll_seconds=poll, imap_tls=imap_tls, smtp_security=security,
            mailbox=env.get("MAIL_IMAP_MAILBOX", "").strip() or "INBOX", tls_ca_file=ca_file)


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be a number") from exc


# ---- parsing: pure functions -----------------------------------------------------------------


class _HtmlText(HTMLParser):
    _BLOCK = frozenset({"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6",
                        "table", "ul", "ol", "section", "article", "header", "footer", "hr"})
    _SKIP = frozenset({"script", "style", "head", "title", "blockquote"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skipping += 1
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP:
            self._skipping = max(0, self._skipping - 1)
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    """The readable text of an HTML body: blocks as lines, no scripts, styles or quotes."""
    parser = _HtmlText()
    parser.feed(html)
    parser.close()
    lines = [re.sub(r"[ \t\r\f\v\xa0]+", " ", line).strip()
             for line in "".join(parser.parts).split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def strip_quoted(text: str) -> str:
    """What the customer wrote, without the quoted history a mail client adds below it."""
    kept: list[str] = []
    for line in text.replace("\r\n", "\n").split("\n"):
        if _QUOTE_HEAD.match(line):
            break
        if line.lstrip().startswith(">"):
            continue
        kept.append(line.rstrip())
    return re.sub(r"\n{3,}", "\n\n", "\n".join(kept)).strip()


def message_ids(value: str | None) -> list[str]:
    """The ``<id>`` tokens of a References / In-Reply-To / Message-ID header, in order."""
    return _MSGID.findall(value or "")


def thread_root(message_id: str, in_reply_to: Sequence[str], references: Sequence[str]) -> str:
    """The thread's root Message-ID: the first reference, else the replied-to, else itself."""
    if references:
        return references[0]
    if in_reply_to:
        return in_reply_to[0]
    return message_id


@dataclass(frozen=True, slots=True)
class MailFile:
    """An attachment as it came in the mail."""

    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True, slots=True)
class ParsedMail:
    """The parts of an inbound e-mail the channel uses."""

    message_id: str
    root_id: str
    references: tuple[str, ...]  # the thread's ids to carry on, root first
    sender: str  # the address to answer (Reply-To, else From), lower case
    sender_name: str
    subject: str
    text: str  # what the customer wrote, quotes cut, at most MAX_TEXT_CHARS
    files: tuple[MailFile, ...]
    automatic: bool  # an auto-reply, a bounce or bulk mail: not answered


class MalformedMail(MailError):
    """A message without a usable sender."""


def _decoded(part: Message) -> str:
    payload = part.get_payload(decode=True)
    data = payload if isinstance(payload, bytes) else b""
    charset = (part.get_content_charset() or "utf-8").lower()
    if charset in ("gb2312", "gbk", "x-gbk", "gb_2312-80"):
        charset = "gb18030"  # mail labelled GB2312 is often GBK; GB18030 reads both
    try:
        return data.decode(charset, errors="replace")
    except LookupError:
        return data.decode("utf-8", errors="replace")


def _automatic(message: Message, own_address: str, sender: str) -> bool:
    auto = str(message.get("Auto-Submitted", "no")).strip().lower()
    precedence = str(message.get("Precedence", "")).strip().lower()
    return (auto != "no" or precedence in ("bulk", "junk", "list")
            or bool(message.get("X-Autoreply")) or bool(message.get("X-Autorespond"))
            or sender == own_address or sender.startswith(("mailer-daemon@", "postmaster@")))


def parse_mail(raw: bytes, *, own_address: str = "") -> ParsedMail:
    """An inbound e-mail's thread, sender, text and attachments.

    The text is the text/plain body, else the HTML body turned to text, with quoted history cut.
    Attachments are the parts with a filename or a non-text type (inline images included).

    Raises:
        MalformedMail: no sender address could be read.
    """
    message = BytesParser(policy=policy.compat32).parsebytes(raw)
    name, sender = _sender(message)
    if "@" not in sender:
        raise MalformedMail("the message has no sender address")
    own_ids = message_ids(str(message.get("Message-ID", "")))
    message_id = own_ids[0] if own_ids else (
        "<" + hashlib.sha256(raw).hexdigest()[:32] + "@intakebot.invalid>")
    references = message_ids(_header(message, "References"))
    in_reply_to = message_ids(_header(message, "In-Reply-To"))
    root = thread_root(message_id, in_reply_to, references)
    chain = list(references)
    for known in (*in_reply_to, message_id):
        if known not in chain:
            chain.append(known)
    plain: str | None = None
    html: str | None = None
    files: list[MailFile] = []
    for part in message.walk():
        if part.is_multipart():
            continue
        content_type = part.get_content_type()
        filename = part.get_filename()
        disposition = (part.get_content_disposition() or "").lower()
        if filename or disposition == "attachment" or part.get_content_maintype() != "text":
            data = part.get_payload(decode=True)
            if isinstance(data, bytes) and data:
                files.append(MailFile(_filename(filename, content_type, len(files) + 1),
                                      content_type, data))
            continue
        if content_type == "text/plain" and plain is None:
            plain = _decoded(part)
        elif content_type == "text/html" and html is None:
            html = _decoded(part)
    body = plain if plain is not None and plain.strip() else html_to_text(html or "")
    text = strip_quoted(body)[:MAX_TEXT_CHARS]
    subject = _subject(message)
    return ParsedMail(message_id=message_id, root_id=root, references=tuple(chain),
                      sender=sender, sender_name=name, subject=subject, text=text,
                      files=tuple(files), automatic=_automatic(message, own_address, sender))


def _header(message: Message, name: str) -> str:
    return str(message.get(name, "") or "")


def _decode_header(value: str) -> str:
    from email.errors import MessageError
    from email.header import decode_header, make_header

    try:
        return str(make_header(decode_header(value)))
    except (LookupError, UnicodeError, ValueError, MessageError):
        return value  # a broken encoded word: keep the raw text rather than lose the mail


def _subject(message: Message) -> str:
    return " ".join(_decode_header(_header(message, "Subject")).split())


def _sender(message: Message) -> tuple[str, str]:
    for header in ("Reply-To", "From"):
        raw = _header(message, header)
        if raw:
            pairs = getaddresses([_decode_header(raw)])
            if pairs and "@" in pairs[0][1]:
                return pairs[0][0], pairs[0][1].strip().lower()
    return "", ""


def _filename(raw: str | None, content_type: str, number: int) -> str:
    if raw:
        return _decode_header(raw)
    extension = {"image/jpeg": ".jpg", "image/png": ".png", "image/gif": ".gif",
                 "application/pdf": ".pdf"}.get(content_type, "")
    return f"attachment-{number}{extension}"


def incoming_message(mail: ParsedMail, attachments: Sequence[Attachment],
                     choices: Sequence[str] = ()) -> IncomingMessage:
    """The IncomingMessage of a parsed mail, its files already stored as `attachments`.

    A reply that is only the number of one of `choices` (the buttons of our last mail) is
    handed on as that button's text.
    """
    text = mail.text
    if choices:
        first_line = text.split("\n", 1)[0] if text else ""
        chosen = chosen_button(first_line, tuple(choices))
        if chosen is not None and not text[len(first_line):].strip():
            text = chosen
    return IncomingMessage(conversation=ConversationRef(CHANNEL, mail.root_id), text=text,
                           message_id=mail.message_id, attachments=tuple(attachments))


def reply_subject(subject: str) -> str:
    """``Re: `` and the thread's subject, without piling up prefixes."""
    bare = _REPLY_PREFIX.sub("", subject).strip()
    return "Re: " + (bare or DEFAULT_SUBJECT)


def build_reply(thread: Thread, messages: Sequence[OutgoingMessage], *, mail_from: str,
                message_id: str) -> EmailMessage:
    """One e-mail holding the replies of one turn, threaded under the customer's mail."""
    mail = EmailMessage(policy=policy.SMTP)
    mail["From"] = mail_from
    mail["To"] = (str(Address(thread.name, addr_spec=thread.address)) if thread.name
                  else thread.address)
    mail["Subject"] = reply_subject(thread.subject)
    mail["Date"] = formatdate(localtime=False)
    mail["Message-ID"] = message_id
    references = thread.references
    if len(references) > 20:  # trimmed as RFC 5322 allows, keeping the root
        references = (references[0], *references[-19:])
    if references:
        mail["In-Reply-To"] = references[-1]
        mail["References"] = " ".join(references)
    if all(m.author.value == "system" for m in messages):
        mail["Auto-Submitted"] = "auto-replied"  # RFC 3834: other robots do not answer it
    body = "\n\n".join(numbered_text(m.text, m.buttons) for m in messages)
    mail.set_content(body + "\n")
    return mail


# ---- threads ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Thread:
    """What answering a conversation needs: whom, about what, under which Message-IDs."""

    root_id: str
    address: str
    name: str = ""
    subject: str = ""
    references: tuple[str, ...] = ()
    choices: tuple[str, ...] = ()  # the buttons of our last mail, for a numbered answer

    def with_message(self, message_id: str) -> Thread:
        if message_id in self.references:
            return self
        return replace(self, references=(*self.references, message_id))


class ThreadStore(Protocol):
    """Where threads are kept (in-process, or as files so they outlive a restart)."""

    async def get(self, root_id: str) -> Thread | None: ...
    async def put(self, thread: Thread) -> None: ...
    async def root_of(self, message_id: str) -> str | None:
        """The root of the thread one of our messages belongs to, if it is ours."""
        ...


@dataclass
class InMemoryThreadStore:
    """Threads in this process."""

    threads: dict[str, Thread] = field(default_factory=dict)
    roots: dict[str, str] = field(default_factory=dict)

    async def get(self, root_id: str) -> Thread | None:
        return self.threads.get(root_id)

    async def put(self, thread: Thread) -> None:
        self.threads[thread.root_id] = thread
        for message_id in thread.references:
            self.roots.setdefault(message_id, thread.root_id)

    async def root_of(self, message_id: str) -> str | None:
        return self.roots.get(message_id)


class FileThreadStore:
    """Threads as one JSON file each under a directory (``data_dir/mail`` say)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, kind: str, message_id: str) -> Path:
        digest = hashlib.sha256(message_id.encode()).hexdigest()
        return self.directory / kind / digest[:2] / f"{digest}.json"

    async def get(self, root_id: str) -> Thread | None:
        path = self._path("threads", root_id)
        try:
            data = json.loads(await asyncio.to_thread(path.read_text, "utf-8"))
        except FileNotFoundError:
            return None
        return Thread(root_id=data["root_id"], address=data["address"], name=data["name"],
                      subject=data["subject"], references=tuple(data["references"]),
                      choices=tuple(data["choices"]))

    async def put(self, thread: Thread) -> None:
        data = {"root_id": thread.root_id, "address": thread.address, "name": thread.name,
                "subject": thread.subject, "references": list(thread.references),
                "choices": list(thread.choices)}
        await asyncio.to_thread(self._write, self._path("threads", thread.root_id),
                                json.dumps(data, ensure_ascii=False))
        for message_id in thread.references:
            path = self._path("roots", message_id)
            if not await asyncio.to_thread(path.exists):  # a message belongs to one thread
                await asyncio.to_thread(self._write, path, thread.root_id)

    async def root_of(self, message_id: str) -> str | None:
        try:
            return await asyncio.to_thread(self._path("roots", message_id).read_text, "utf-8")
        except FileNotFoundError:
            return None

    @staticmethod
    def _write(path: Path, text: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)


# ---- the servers -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Fetched:
    uid: str
    raw: bytes


Fetch = tuple[imaplib.IMAP4, list[Fetched]]  # a logged-in client and what it fetched


class Mailbox:
    """The IMAP side, blocking (imaplib): call its methods in a thread."""

    def __init__(self, config: MailConfig) -> None:
        self._config = config

    def _connect(self) -> imaplib.IMAP4:
        config = self._config
        client: imaplib.IMAP4
        if config.imap_tls:
            client = imaplib.IMAP4_SSL(config.imap_host, config.imap_port,
                                       ssl_context=config.tls_context(), timeout=30)
        else:
            client = imaplib.IMAP4(config.imap_host, config.imap_port, timeout=30)
        try:
            client.login(config.imap_user, config.imap_password)
            status, _ = client.select(_quote(config.mailbox))
            if status != "OK":
                raise MailError(f"the mailbox {config.mailbox!r} cannot be selected")
        except BaseException:
            _logout(client)
            raise
        return client

    def unseen(self, limit: int = 50) -> Fetch:
        """Log in and fetch up to `limit` unseen messages, oldest first, leaving them unseen."""
        client = self._connect()
        try:
            status, data = client.uid("SEARCH", "UNSEEN")
            if status != "OK":
                raise MailError(f"IMAP SEARCH failed: {data!r}")
            uids = (data[0] or b"").split()[:limit] if data else []
            fetched = []
            for uid in uids:
                status, parts = client.uid("FETCH", uid.decode(), "(BODY.PEEK[])")
                raw = next((p[1] for p in parts if isinstance(p, tuple) and len(p) > 1), None)
                if status != "OK" or not isinstance(raw, bytes):
                    raise MailError(f"IMAP FETCH of {uid!r} failed")
                fetched.append(Fetched(uid.decode(), raw))
        except BaseException:
            _logout(client)
            raise
        return client, fetched

    @staticmethod
    def mark(client: imaplib.IMAP4, uid: str, flags: str) -> None:
        status, data = client.uid("STORE", uid, "+FLAGS", flags)
        if status != "OK":
            raise MailError(f"IMAP STORE {flags} on {uid} failed: {data!r}")


def _quote(mailbox: str) -> str:
    return '"' + mailbox.replace("\\", "\\\\").replace('"', '\\"') + '"'


_T = TypeVar("_T")


def _in_thread(work: Callable[[], _T]) -> concurrent.futures.Future[_T]:
    """Run `work` in a thread of its own. A plain future, not an asyncio one: its callbacks
    run in that thread, so they still run after the event loop has closed, and the work does
    not depend on the loop's executor, which is gone once the loop shuts down."""
    future: concurrent.futures.Future[_T] = concurrent.futures.Future()

    def run() -> None:
        if future.set_running_or_notify_cancel():
            try:
                future.set_result(work())
            except BaseException as exc:
                future.set_exception(exc)

    threading.Thread(target=run, name="imap", daemon=True).start()
    return future


def _logout_fetched(fetching: concurrent.futures.Future[Fetch]) -> None:
    """Log out the client of a fetch nobody is waiting for any more (its poll was cancelled)."""
    if not fetching.cancelled() and fetching.exception() is None:
        client, _ = fetching.result()
        threading.Thread(target=_logout, args=(client,), name="imap-logout", daemon=True).start()


def _logout(client: imaplib.IMAP4) -> None:
    """Log out, and close the socket even when LOGOUT fails: imaplib closes it only after the
    server's answer, so a dropped or confused connection would be left to the garbage collector."""
    try:
        client.logout()
    except Exception as exc:  # whatever went wrong, the socket is closed below
        log.debug("mail: IMAP logout failed: %s", exc)
        with contextlib.suppress(OSError):
            client.shutdown()


def _smtp_transient(exc: Exception) -> bool:
    if isinstance(exc, smtplib.SMTPResponseException):
        return 400 <= exc.smtp_code < 500
    return isinstance(exc, smtplib.SMTPServerDisconnected | ConnectionError | TimeoutError)


class Outbox:
    """The SMTP side: one connection per e-mail, in a thread, retried when transient."""

    def __init__(self, config: MailConfig, policy: RetryPolicy | None = None) -> None:
        self._config = config
        self._policy = policy or RetryPolicy(attempts=3, base_delay=1.0, max_delay=10.0)

    async def send(self, mail: EmailMessage) -> None:
        """Send one e-mail; MailDeliveryFailed when it cannot be."""
        server = f"{self._config.smtp_host}:{self._config.smtp_port}"
        try:
            await retrying(lambda: asyncio.to_thread(self._send, mail), policy=self._policy,
                           transient=_smtp_transient)
        except ssl.SSLCertVerificationError as exc:
            raise MailDeliveryFailed(
                f"the e-mail to {mail['To']} was not sent: the TLS certificate of {server} is "
                f"not trusted ({exc.verify_message}); set MAIL_TLS_CA_FILE for a private "
                "authority") from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise MailDeliveryFailed(
                f"the e-mail to {mail['To']} was not sent through {server}: {exc}") from exc

    def _send(self, mail: EmailMessage) -> None:
        config = self._config
        smtp: smtplib.SMTP
        if config.smtp_security is Security.TLS:
            smtp = smtplib.SMTP_SSL(config.smtp_host, config.smtp_port, timeout=30,
                                    context=config.tls_context())
        else:
            smtp = smtplib.SMTP(config.smtp_host, config.smtp_port, timeout=30)
        with smtp:
            if config.smtp_security is Security.STARTTLS:
                smtp.starttls(context=config.tls_context())
            if config.smtp_user:
                self._login(smtp)
            smtp.send_message(mail, from_addr=config.from_address)

    def _login(self, smtp: smtplib.SMTP) -> None:
        # smtplib picks the strongest mechanism both sides offer (CRAM-MD5, PLAIN, LOGIN).
        config = self._config
        server = f"{config.smtp_host}:{config.smtp_port}"
        try:
            smtp.login(config.smtp_user, config.smtp_password)
        except smtplib.SMTPAuthenticationError as exc:
            error = exc.smtp_error
            answer = error.decode(errors="replace") if isinstance(error, bytes) else str(error)
            raise SmtpLoginRefused(
                f"{server} refused the login of {config.smtp_user!r} ({exc.smtp_code} {answer}):"
                " check MAIL_SMTP_USER and MAIL_SMTP_PASSWORD") from exc
        except smtplib.SMTPNotSupportedError as exc:
            raise SmtpLoginRefused(
                f"{server} offers no login (AUTH) on this connection; many servers offer it "
                "only over TLS (MAIL_SMTP_SECURITY starttls or tls)") from exc


# ---- the channel -------------------------------------------------------------------------------


# The conversation whose mail the current task is answering: its replies go out as one e-mail.
_ANSWERING: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "mail_answering", default=None)


class MailOutput:
    """The e-mail OutputChannel: one e-mail per message, threaded under the conversation."""

    name = CHANNEL

    def __init__(self, channel: Mail) -> None:
        self._channel = channel

    async def send(self, message: OutgoingMessage) -> None:
        """Send `message` (or leave it to the poller answering this very conversation)."""
        if _ANSWERING.get() == message.conversation.chat_id:
            return  # the poller sends the turn's replies together once the callback returns
        await self._channel.send_replies(message.conversation.chat_id, [message])


class Mail:
    """The e-mail channel: an IMAP poller in, SMTP out; no HTTP routes.

    Args:
        config: from `MailConfig.from_env`.
        on_message: the wiring's callback (dispatcher): handles a message, returns its replies.
        files: where attachments are stored as evidence (handoff.evidence.EvidenceStore).
        threads: where threads are kept; in-process by default (pass a FileThreadStore on
            ``data_dir/mail`` so agents can answer after a restart).
    """

    name = CHANNEL

    def __init__(self, config: MailConfig, on_message: OnMessage, *, files: FileStore,
                 threads: ThreadStore | None = None) -> None:
        self.config = config
        self._on_message = on_message
        self._files = files
        self.threads: ThreadStore = threads or InMemoryThreadStore()
        self._mailbox = Mailbox(config)
        self._outbox = Outbox(config)
        self._output = MailOutput(self)
        self._poll_lock = asyncio.Lock()
        self._poller: asyncio.Task[None] | None = None
        # Set once the background poller has finished a round (successful or not): tells a
        # caller, e.g. a health check or a test, that the start-up poll is behind it.
        self.polled = asyncio.Event()
        self._domain = config.from_address.rpartition("@")[2] or "intakebot.invalid"

    @property
    def output(self) -> MailOutput:
        return self._output

    def routes(self) -> list[web.RouteDef]:
        """None: mail comes by polling."""
        return []

    async def start(self) -> None:
        """Start polling the mailbox every `config.poll_seconds`."""
        if self._poller is None:
            self._poller = asyncio.create_task(self._poll_forever(), name="mail-poller")

    async def close(self) -> None:
        """Stop polling (a poll under way is cancelled; its messages stay unseen)."""
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
            self._poller = None

    async def _poll_forever(self) -> None:
        failures = 0
        while True:
            try:
                await self.poll()
                failures = 0
            except Exception as exc:
                failures += 1
                log.error("mail: polling %s failed (%d in a row): %s: %s", self.config.imap_host,
                          failures, type(exc).__name__, exc,
                          exc_info=not isinstance(exc, MailError | imaplib.IMAP4.error | OSError))
            self.polled.set()
            await asyncio.sleep(min(self.config.poll_seconds * 2 ** min(failures, 4), 600.0))

    async def poll(self) -> int:
        """Handle the unseen mail once; the number of messages answered or set aside.

        Raises:
            MailError, imaplib.IMAP4.error, OSError: the mailbox could not be read. A message
                whose handling or reply failed stays unseen (tried again at the next poll) and
                the error is logged.
        """
        async with self._poll_lock:
            fetching = _in_thread(self._mailbox.unseen)
            waiting = asyncio.wrap_future(fetching)
            try:
                client, fetched = await asyncio.shield(waiting)
            except asyncio.CancelledError:
                # The thread logs in and fetches anyway: log it out when it is done, even if
                # the event loop has closed by then, or its connection stays open until the
                # garbage collector finds it. Its failure is nobody's now (the mailbox may be
                # gone with the app): retrieved here, not reported as "never retrieved".
                fetching.add_done_callback(_logout_fetched)
                waiting.add_done_callback(lambda f: f.cancelled() or f.exception())
                raise
            try:
                done = 0
                for item in fetched:
                    if await self._process(client, item):
                        done += 1
                return done
            finally:
                # A poll cancelled while it handles a message (the app is closing) must still
                # log out: the thread runs on even if this await is cancelled again or the
                # loop's executor has shut down.
                await asyncio.shield(asyncio.wrap_future(_in_thread(lambda: _logout(client))))

    async def _process(self, client: imaplib.IMAP4, item: Fetched) -> bool:
        try:
            mail = parse_mail(item.raw, own_address=self.config.from_address)
        except MalformedMail as exc:
            log.error("mail: message uid %s set aside (flagged): %s", item.uid, exc)
            await asyncio.to_thread(Mailbox.mark, client, item.uid, "(\\Seen \\Flagged)")
            return True
        if mail.automatic:
            log.info("mail: automatic message %s not answered", mail.message_id)
            await asyncio.to_thread(Mailbox.mark, client, item.uid, "(\\Seen)")
            return True
        try:
            await self._answer(mail)
        except Exception as exc:
            log.error("mail: message %s not handled, left unseen for the next poll: %s: %s",
                      mail.message_id, type(exc).__name__, exc,
                      exc_info=not isinstance(exc, ChannelError | EvidenceError))
            return False
        await asyncio.to_thread(Mailbox.mark, client, item.uid, "(\\Seen)")
        return True

    async def _answer(self, mail: ParsedMail) -> None:
        root = await self.threads.root_of(mail.root_id) or mail.root_id
        thread = await self.threads.get(root)
        if thread is not None and thread.address != mail.sender:
            # Someone else writing into a customer's thread (a forward, a Cc, a guessed
            # Message-ID) gets a conversation of their own: replies never change address.
            log.info("mail: %s answers a thread of another address; a new conversation",
                     mail.message_id)
            root, thread = mail.message_id, None
            mail = replace(mail, references=(mail.message_id,))
        mail = replace(mail, root_id=root)
        if thread is None:
            thread = Thread(root_id=root, address=mail.sender, name=mail.sender_name,
                            subject=mail.subject)
        for message_id in mail.references:
            thread = thread.with_message(message_id)
        await self.threads.put(thread)
        attachments = await self._store(mail)
        incoming = incoming_message(mail, attachments, thread.choices)
        if not incoming.text.strip() and not incoming.attachments:
            log.info("mail: message %s is empty; not answered", mail.message_id)
            return
        token = _ANSWERING.set(root)
        try:
            replies = await self._on_message(incoming)
        finally:
            _ANSWERING.reset(token)
        mine = [r for r in replies if r.conversation.chat_id == root
                and r.conversation.channel == CHANNEL]
        if mine:
            await self.send_replies(root, mine)

    async def _store(self, mail: ParsedMail) -> tuple[Attachment, ...]:
        stored: list[Attachment] = []
        for file in mail.files[:MAX_ATTACHMENTS]:
            try:
                ref = await self._files.put(file.filename, file.content_type, file.data)
            except EvidenceTooLarge as exc:
                # The mail stays in the mailbox with the file; the bot goes on without it.
                log.warning("mail: attachment %r of %s not stored: %s", file.filename,
                            mail.message_id, exc)
                continue
            stored.append(Attachment(filename=ref.filename, content_type=ref.content_type,
                                     sha256=ref.sha256, size=ref.size))
        if len(mail.files) > MAX_ATTACHMENTS:
            log.warning("mail: %s has %d attachments; the first %d were stored",
                        mail.message_id, len(mail.files), MAX_ATTACHMENTS)
        return tuple(stored)

    async def send_replies(self, root_id: str, messages: Sequence[OutgoingMessage]) -> None:
        """Send `messages` as one e-mail in the thread `root_id`.

        Raises:
            UnknownThread: the conversation's address is not known (no mail came from it).
            MailDeliveryFailed: the SMTP server refused it or could not be reached.
        """
        thread = await self.threads.get(root_id)
        if thread is None:
            raise UnknownThread(f"no e-mail thread {root_id}: its customer's address is "
                                "unknown")
        message_id = make_msgid(domain=self._domain)
        await self._outbox.send(build_reply(thread, messages, mail_from=self.config.mail_from,
                                            message_id=message_id))
        choices = next((m.buttons for m in reversed(messages) if m.buttons), ())
        await self.threads.put(replace(thread.with_message(message_id), choices=choices))

