"""The e-mail channel: MIME parsing as pure functions, and the real application against real local
servers: Debian's dovecot as the IMAP mailbox (started per test on a free port, a passwd-file
user, a temporary maildir; customers' mail is put there with IMAP APPEND) and aiosmtpd as the
SMTP server capturing what the bot sends. App tests run on both session stores."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import imaplib
import ipaddress
import os
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import make_msgid
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from bot.app import EVIDENCE, TICKETS
from channels.base import OnMessage
from channels.mail import (
    Fetched,
    FileThreadStore,
    Mail,
    MailConfig,
    MailDeliveryFailed,
    MalformedMail,
    Outbox,
    Security,
    SmtpLoginRefused,
    Thread,
    _logout,
    build_reply,
    html_to_text,
    incoming_message,
    parse_mail,
    reply_subject,
    strip_quoted,
    thread_root,
)
from channels.messages import Author, ConversationRef, IncomingMessage, OutgoingMessage
from handoff.evidence import EvidenceStore
from handoff.tickets import TicketStore

Client = TestClient[Any, Any]
AppFactory = Any  # tests.channels.conftest.AppFactory
AiohttpClient = Callable[..., Awaitable[Client]]

DOVECOT = "/usr/sbin/dovecot"
SERVICE = "service@shop.example"
NUMBER = re.compile(r"TS\d{8}-\d{4}")
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")


def mail(text: str = "", *, sender: str = "王先生 <wang@customer.example>",
         subject: str = "电饭煲坏了", html: str | None = None,
         attachments: tuple[tuple[str, str, bytes], ...] = (),
         headers: dict[str, str] | None = None,
         message_id: str | None = None) -> EmailMessage:
    """A customer's e-mail as a mail client writes it."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = SERVICE
    message["Subject"] = subject
    message["Message-ID"] = message_id or make_msgid(domain="customer.example")
    for name, value in (headers or {}).items():
        message[name] = value
    if html is not None and not text:
        message.set_content(html, subtype="html")
    else:
        message.set_content(text)
        if html is not None:
            message.add_alternative(html, subtype="html")
    for filename, content_type, data in attachments:
        maintype, subtype = content_type.split("/")
        message.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return message


# ---- parsing: pure functions ---------------------------------------------------------------


def test_a_first_mail_starts_a_thread_of_its_own() -> None:
    parsed = parse_mail(mail("我的快递一直没到", message_id="<first@customer.example>").as_bytes())
    assert parsed.message_id == parsed.root_id == "<first@customer.example>"
    assert parsed.sender == "wang@customer.example" and parsed.sender_name == "王先生"
    assert parsed.subject == "电饭煲坏了" and parsed.text == "我的快递一直没到"
    assert parsed.references == ("<first@customer.example>",) and not parsed.automatic
    incoming = incoming_message(parsed, ())
    assert incoming.conversation == ConversationRef("email", "<first@customer.example>")
    assert incoming.message_id == "<first@customer.example>"


def test_a_reply_joins_the_root_of_its_thread_without_the_quote() -> None:
    body = ("订单号是 SF1234567890\n\n"
            "在 2026年11月23日 10:00，客服 <service@shop.example> 写道：\n"
            "> 请问您的订单号是多少？\n> 谢谢\n")
    parsed = parse_mail(mail(body, subject="Re: 回复: 电饭煲坏了", headers={
        "In-Reply-To": "<bot-1@shop.example>",
        "References": "<first@customer.example> <bot-1@shop.example>"}).as_bytes())
    assert parsed.root_id == "<first@customer.example>"
    assert parsed.text == "订单号是 SF1234567890"
    assert parsed.references[:2] == ("<first@customer.example>", "<bot-1@shop.example>")
    assert parsed.references[-1] == parsed.message_id
    assert thread_root("<m>", ["<r>"], []) == "<r>" and thread_root("<m>", [], []) == "<m>"
    assert strip_quoted("ok\n> quoted\nthanks\nOn Mon, Bob <b@x.y> wrote:\nold") == "ok\nthanks"
    assert reply_subject("Re: 回复: 电饭煲坏了") == "Re: 电饭煲坏了"
    assert reply_subject("") == "Re: 您的咨询 / Your enquiry"


def test_html_only_mail_is_turned_to_text() -> None:
    html = ("<html><head><style>p{color:red}</style><title>t</title></head><body>"
            "<p>我买的耳机&nbsp;坏了&amp;没声音</p><div>订单号：<b>DD2026112012345</b></div>"
            "<script>alert(1)</script><blockquote>上一封邮件的内容</blockquote>"
            "<ul><li>一</li><li>二</li></ul></body></html>")
    parsed = parse_mail(mail(html=html).as_bytes())
    assert parsed.text == "我买的耳机 坏了&没声音\n\n订单号：DD2026112012345\n\n一\n\n二"
    assert "alert" not in html_to_text(html) and "上一封" not in html_to_text(html)
    # With a text part beside it, the text part is read.
    both = parse_mail(mail("纯文本", html="<p>网页</p>").as_bytes())
    assert both.text == "纯文本"


def test_legacy_chinese_encodings_are_read() -> None:
    def word(text: str) -> str:
        return "=?GB2312?B?" + base64.b64encode(text.encode("gb2312")).decode() + "?="

    raw = (f"From: {word('王先生')} <wang@customer.example>\r\n"
           "To: service@shop.example\r\n"
           f"Subject: {word('电饭锅坏了')}\r\n"
           "Message-ID: <gb@customer.example>\r\n"
           "MIME-Version: 1.0\r\n"
           "Content-Type: text/plain; charset=gb2312\r\n"
           "Content-Transfer-Encoding: base64\r\n\r\n").encode()
    # GBK-only characters (镕) in a part labelled GB2312, as mail clients send them.
    body = base64.b64encode("朱镕基牌电饭煲坏了".encode("gbk"))
    parsed = parse_mail(raw + body + b"\r\n")
    assert parsed.sender_name == "王先生" and parsed.subject == "电饭锅坏了"
    assert parsed.text == "朱镕基牌电饭煲坏了"


def test_attachments_and_inline_images_are_files() -> None:
    message = mail("看图", attachments=(("裂痕照片.png", "image/png", PNG),
                                      ("发票.pdf", "application/pdf", b"%PDF-1.4 fake")))
    parsed = parse_mail(message.as_bytes())
    assert [(f.filename, f.content_type, f.data) for f in parsed.files] == [
        ("裂痕照片.png", "image/png", PNG), ("发票.pdf", "application/pdf", b"%PDF-1.4 fake")]
    assert parsed.text == "看图"
    related = mail("", html='<p>见图 <img src="cid:p1"></p>')
    html_part = related.get_body(("html",))
    assert html_part is not None
    html_part.add_related(PNG, maintype="image", subtype="png", cid="<p1>")
    inline = parse_mail(related.as_bytes())
    assert [(f.filename, f.data) for f in inline.files] == [("attachment-1.png", PNG)]
    assert inline.text == "见图"


def test_automatic_and_malformed_mail() -> None:
    for headers in ({"Auto-Submitted": "auto-replied"}, {"Precedence": "bulk"},
                    {"X-Autoreply": "yes"}):
        assert parse_mail(mail("我不在办公室", headers=headers).as_bytes()).automatic
    assert parse_mail(mail("x", sender="mailer-daemon@shop.example").as_bytes()).automatic
    assert parse_mail(mail("x", sender=SERVICE).as_bytes(), own_address=SERVICE).automatic
    with pytest.raises(MalformedMail):
        parse_mail(b"Subject: no sender\r\n\r\nhello\r\n")
    # No Message-ID: a stable one from the content, so a re-poll is de-duplicated.
    raw = b"From: a@b.example\r\nSubject: x\r\n\r\nhello\r\n"
    assert parse_mail(raw).message_id == parse_mail(raw).message_id


def test_a_numbered_answer_is_the_button() -> None:
    quoting = "1\n\n在 昨天，客服 <service@shop.example> 写道：\n> 请确认"
    parsed = parse_mail(mail(quoting).as_bytes())
    assert incoming_message(parsed, (), ("确认", "修改")).text == "确认"
    assert incoming_message(parsed, (), ()).text == "1"
    longer = parse_mail(mail("1 个耳机坏了").as_bytes())
    assert incoming_message(longer, (), ("确认", "修改")).text == "1 个耳机坏了"


def test_a_reply_is_threaded_and_marked_automatic() -> None:
    thread = Thread(root_id="<first@c.example>", address="wang@customer.example", name="王先生",
                    subject="电饭煲坏了", references=("<first@c.example>", "<second@c.example>"))
    conversation = ConversationRef("email", thread.root_id)
    reply = build_reply(thread, [OutgoingMessage(conversation, "抱歉"),
                                 OutgoingMessage(conversation, "请确认", buttons=("确认", "修改"))],
                        mail_from=f"客服 <{SERVICE}>", message_id="<bot@shop.example>")
    assert reply["In-Reply-To"] == "<second@c.example>"
    assert reply["References"] == "<first@c.example> <second@c.example>"
    assert reply["Subject"] == "Re: 电饭煲坏了" and reply["Auto-Submitted"] == "auto-replied"
    assert "wang@customer.example" in str(reply["To"])
    body = reply.get_content()
    assert body.startswith("抱歉\n\n请确认") and "回复 2 选择「修改」" in body
    agent = build_reply(thread, [OutgoingMessage(conversation, "我是小王", author=Author.AGENT)],
                        mail_from=SERVICE, message_id="<a@shop.example>")
    assert agent["Auto-Submitted"] is None


def test_config_from_env() -> None:
    assert MailConfig.from_env({}) is None
    env = {"MAIL_IMAP_HOST": "imap.example", "MAIL_IMAP_USER": "u", "MAIL_IMAP_PASSWORD": "p",
           "MAIL_SMTP_HOST": "smtp.example", "MAIL_FROM": "客服 <service@shop.example>"}
    config = MailConfig.from_env(env)
    assert config is not None
    assert (config.imap_port, config.smtp_port, config.imap_tls) == (993, 587, True)
    assert config.smtp_security is Security.STARTTLS and config.poll_seconds == 30
    assert config.from_address == "service@shop.example"
    plain = MailConfig.from_env({**env, "MAIL_IMAP_TLS": "false", "MAIL_SMTP_SECURITY": "tls"})
    assert plain is not None and (plain.imap_port, plain.smtp_port) == (143, 465)
    for bad in ({"MAIL_IMAP_HOST": "x"}, {**env, "MAIL_FROM": "nobody"},
                {**env, "MAIL_SMTP_SECURITY": "ssl3"}, {**env, "MAIL_POLL_SECONDS": "0"},
                {**env, "MAIL_IMAP_TLS": "maybe"}, {**env, "MAIL_TLS_CA_FILE": "/no/such.pem"}):
        with pytest.raises(ValueError):
            MailConfig.from_env(bad)
    assert config.tls_ca_file is None
    ca = MailConfig.from_env({**env, "MAIL_TLS_CA_FILE": __file__})
    assert ca is not None and ca.tls_ca_file == __file__


async def test_threads_in_files_outlive_the_process(tmp_path: Path) -> None:
    store = FileThreadStore(tmp_path / "mail")
    thread = Thread("<r@x>", "a@b.example", "名字", "主题", ("<r@x>", "<bot@y>"), ("确认",))
    await store.put(thread)
    again = FileThreadStore(tmp_path / "mail")
    assert await again.get("<r@x>") == thread
    assert await again.root_of("<bot@y>") == "<r@x>" and await again.get("<nope@x>") is None


# ---- real servers ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Dovecot:
    """A dovecot IMAP server of our own, with one user and an empty maildir."""

    port: int
    tls_port: int = 0  # IMAPS, when started with a certificate
    user: str = "shop"
    password: str = "imap-test-password"

    def client(self) -> imaplib.IMAP4:
        client = imaplib.IMAP4("127.0.0.1", self.port, timeout=10)
        client.login(self.user, self.password)
        client.select("INBOX")
        return client

    def deliver(self, message: EmailMessage) -> None:
        client = self.client()
        try:
            status, data = client.append("INBOX", "", imaplib.Time2Internaldate(time.time()),
                                         message.as_bytes(policy=policy.SMTP))
            assert status == "OK", data
        finally:
            client.logout()

    def flags(self) -> list[str]:
        client = self.client()
        try:
            _, data = client.uid("FETCH", "1:*", "(FLAGS)")
            return [item.decode() for item in data if isinstance(item, bytes)]
        finally:
            client.logout()


CONF = """protocols = imap
listen = 127.0.0.1
base_dir = {base}/run
state_dir = {base}/state
log_path = {base}/dovecot.log
{ssl}
disable_plaintext_auth = no
auth_mechanisms = plain login
first_valid_uid = 1
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {base}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={base}/home/%u
}}
mail_location = maildir:~/Maildir
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {tls_port}
  }}
}}
"""


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    """Debian's dovecot-imapd, run in the foreground on a free port, stopped afterwards."""
    with run_dovecot(None) as server:
        yield server


@contextlib.contextmanager
def run_dovecot(certificate: Certificate | None) -> Iterator[Dovecot]:
    """Start dovecot; with a certificate it serves IMAPS as well, on `Dovecot.tls_port`."""
    if not os.path.exists(DOVECOT):
        pytest.fail("the e-mail tests need Debian's dovecot-imapd: apt-get install dovecot-imapd")
    if os.geteuid() != 0:
        pytest.fail("dovecot is started as root here (it drops to 'nobody' for the maildir)")
    # A short path: dovecot's sockets live under base_dir and a socket path is at most 108 bytes.
    base = Path(tempfile.mkdtemp(prefix="dovecot-", dir="/tmp"))
    base.chmod(0o755)
    server = Dovecot(free_port(), free_port() if certificate else 0)
    ssl_conf = "ssl = no" if certificate is None else (
        f"ssl = yes\nssl_cert = <{certificate.cert}\nssl_key = <{certificate.key}")
    (base / "home").mkdir()
    os.chown(base / "home", 65534, 65534)
    (base / "passwd").write_text(f"{server.user}:{{PLAIN}}{server.password}::::::\n")
    (base / "dovecot.conf").write_text(CONF.format(base=base, uid=65534, gid=65534,
                                                   port=server.port, tls_port=server.tls_port,
                                                   ssl=ssl_conf))
    process = subprocess.Popen([DOVECOT, "-F", "-c", str(base / "dovecot.conf")],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                server.client().logout()
                break
            except (OSError, imaplib.IMAP4.error):
                if process.poll() is not None or time.monotonic() > deadline:
                    output = process.stdout.read().decode() if process.stdout else ""
                    log = base / "dovecot.log"
                    pytest.fail("dovecot did not start: " + output
                                + (log.read_text() if log.exists() else ""))
                time.sleep(0.05)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout:
            process.stdout.close()
        shutil.rmtree(base, ignore_errors=True)


@dataclass
class SmtpRecorder:
    """An aiosmtpd handler that keeps every message, or refuses as told."""

    received: list[tuple[str, list[str], EmailMessage]] = field(default_factory=list)
    refuse: list[str] = field(default_factory=list)  # answers to give instead of accepting
    secured: list[bool] = field(default_factory=list)  # each accepted message came over TLS

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.refuse:
            return self.refuse.pop(0)
        # session.ssl is set by STARTTLS only; an implicit-TLS transport tells its cipher
        self.secured.append(session.ssl is not None
                            or server.transport.get_extra_info("cipher") is not None)
        message = BytesParser(policy=policy.default).parsebytes(envelope.content)
        assert isinstance(message, EmailMessage)
        self.received.append((envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 OK"


@dataclass
class Smtp:
    port: int
    recorder: SmtpRecorder

    @property
    def messages(self) -> list[EmailMessage]:
        return [message for _, _, message in self.recorder.received]


@pytest.fixture
def smtp() -> Iterator[Smtp]:
    """aiosmtpd's SMTP server on a free port, capturing mail."""
    from aiosmtpd.controller import Controller

    recorder = SmtpRecorder()
    controller = Controller(recorder, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield Smtp(controller.port, recorder)
    finally:
        controller.stop()


Wrap = Callable[[OnMessage], OnMessage]


@dataclass
class Shop:
    """The app with an e-mail channel, the mailbox it polls and the server it sends through."""

    client: Client
    channel: Mail
    dovecot: Dovecot
    smtp: Smtp

    @property
    def tickets(self) -> TicketStore:
        return self.client.app[TICKETS]  # type: ignore[no-any-return]


@pytest.fixture
async def shop_factory(make_app: AppFactory, aiohttp_client: AiohttpClient, dovecot: Dovecot,
                       smtp: Smtp) -> Callable[..., Awaitable[Shop]]:
    async def build(*, poll_seconds: float = 3600.0, wrap: Wrap | None = None,
                    server: Smtp | None = None, **smtp_settings: Any) -> Shop:
        outgoing = server or smtp
        config = MailConfig(
            imap_host="127.0.0.1", imap_port=dovecot.port, imap_user=dovecot.user,
            imap_password=dovecot.password, smtp_host="127.0.0.1", smtp_port=outgoing.port,
            smtp_user="", smtp_password="", mail_from=f"网店客服 <{SERVICE}>",
            poll_seconds=poll_seconds, imap_tls=False, smtp_security=Security.NONE)
        config = replace(config, **smtp_settings)
        files = EvidenceStore(make_app.data_dir / "evidence")
        channels: list[Mail] = []

        def channel_list(on_message: OnMessage) -> list[Any]:
            channels.append(Mail(config, wrap(on_message) if wrap else on_message, files=files))
            return list(channels)

        client = await aiohttp_client(make_app(channels=channel_list))
        # The poller's start-up round must not race a test's own poll() for the same mail.
        await asyncio.wait_for(channels[0].polled.wait(), timeout=30)
        return Shop(client, channels[0], dovecot, outgoing)

    return build


@dataclass
class MailCustomer:
    """A customer writing to the shop and answering in the thread, as a mail client does."""

    shop: Shop
    address: str = field(default_factory=lambda: f"c{uuid.uuid4().hex[:8]}@customer.example")
    first_id: str | None = None
    last_reply: EmailMessage | None = None

    async def write(self, text: str, **options: Any) -> EmailMessage:
        """Send a mail (a reply to the bot's last one, quoting it) and return the bot's answer."""
        if self.last_reply is not None:
            quoted = "\n".join("> " + line for line in self.last_reply.get_content().splitlines())
            text = f"{text}\n\n在 今天，网店客服 <{SERVICE}> 写道：\n{quoted}\n"
            references = f"{self.last_reply['References']} {self.last_reply['Message-ID']}"
            options.setdefault("headers", {}).update({
                "In-Reply-To": self.last_reply["Message-ID"], "References": references})
            options.setdefault("subject", self.last_reply["Subject"])
        message = mail(text, sender=f"顾客 <{self.address}>", **options)
        self.first_id = self.first_id or message["Message-ID"]
        before = len(self.shop.smtp.messages)
        await asyncio.to_thread(self.shop.dovecot.deliver, message)
        await self.shop.channel.poll()
        sent = self.shop.smtp.messages[before:]
        assert len(sent) == 1, [m.get_content() for m in sent]
        self.last_reply = sent[0]
        assert self.last_reply["In-Reply-To"] == message["Message-ID"]
        assert self.address in str(self.last_reply["To"])
        return self.last_reply


async def test_the_scripted_complaint_by_mail_registers_a_ticket(
        shop_factory: Callable[..., Awaitable[Shop]]) -> None:
    shop = await shop_factory()
    customer = MailCustomer(shop)
    first = await customer.write(
        "您好，我买的电饭煲用了两天就坏了，完全不能加热。订单号DD2026112012345，"
        "商品是美的电饭煲，电话13812345678，我要求换货\n\n-- \n王先生")
    body = first.get_content()
    assert "抱歉" in body and "DD2026112012345" in body and "回复 1 选择「确认」" in body
    assert first["Subject"] == "Re: 电饭煲坏了" and first["Auto-Submitted"] == "auto-replied"
    assert first["References"].split()[0] == customer.first_id
    done = await customer.write("1")
    number = NUMBER.search(done.get_content())
    assert number, done.get_content()
    assert customer.first_id is not None
    ticket = await shop.tickets.open_ticket("email", customer.first_id)
    assert ticket is not None and ticket.number == number[0]
    assert (ticket.category, ticket.department) == ("product", "quality")
    assert ticket.order_id == "DD2026112012345" and ticket.product == "美的电饭煲"
    assert ticket.phone == "13812345678" and ticket.demand == "exchange"
    transcript = [line.text for line in await shop.tickets.transcript(ticket.id)]
    assert "确认" in transcript and not any("写道" in line for line in transcript)
    assert all("\\Seen" in flags for flags in shop.dovecot.flags())


async def test_attachments_become_evidence(shop_factory: Callable[..., Awaitable[Shop]]) -> None:
    shop = await shop_factory()
    customer = MailCustomer(shop)
    reply = await customer.write("转人工", attachments=(("裂痕.png", "image/png", PNG),))
    assert NUMBER.search(reply.get_content())
    assert customer.first_id is not None
    ticket = await shop.tickets.open_ticket("email", customer.first_id)
    assert ticket is not None
    digest = hashlib.sha256(PNG).hexdigest()
    refs = await shop.tickets.evidence(ticket.id)
    assert [(r.filename, r.sha256, r.content_type) for r in refs] == [
        ("裂痕.png", digest, "image/png")]
    assert await shop.client.app[EVIDENCE].read(digest) == PNG


async def test_html_only_mail_is_answered(shop_factory: Callable[..., Awaitable[Shop]]) -> None:
    shop = await shop_factory()
    reply = await MailCustomer(shop).write(
        "", html="<div>怎么开发票？</div><blockquote>旧邮件</blockquote>")
    assert "发票" in reply.get_content()


async def test_a_failed_send_leaves_the_mail_for_the_next_poll(
        shop_factory: Callable[..., Awaitable[Shop]]) -> None:
    calls: list[str] = []

    def counting(on_message: OnMessage) -> OnMessage:
        async def handle(message: IncomingMessage) -> list[OutgoingMessage]:
            calls.append(message.message_id)
            return await on_message(message)

        return handle

    shop = await shop_factory(wrap=counting)
    shop.smtp.recorder.refuse = ["550 5.7.1 refused"]  # permanent: not retried in this poll
    message = mail("我的快递一直没到", sender="顾客 <late@customer.example>")
    await asyncio.to_thread(shop.dovecot.deliver, message)
    assert await shop.channel.poll() == 0
    assert shop.smtp.messages == [] and not any("\\Seen" in f for f in shop.dovecot.flags())
    # A transient refusal is retried within the poll; the message is handled only once.
    shop.smtp.recorder.refuse = ["451 4.3.0 try again"]
    assert await shop.channel.poll() == 1
    assert len(shop.smtp.messages) == 1 and "订单号" in shop.smtp.messages[0].get_content()
    assert calls == [message["Message-ID"]] * 2  # handed on twice, handled once (de-dup)
    assert await shop.channel.poll() == 0 and len(shop.smtp.messages) == 1


async def test_another_sender_in_a_thread_gets_a_conversation_of_its_own(
        shop_factory: Callable[..., Awaitable[Shop]]) -> None:
    shop = await shop_factory()
    customer = MailCustomer(shop)
    await customer.write("我的快递一直没到")
    assert customer.last_reply is not None and customer.first_id is not None
    intruder = MailCustomer(shop, address="intruder@elsewhere.example",
                            last_reply=customer.last_reply)
    await intruder.write("转人工")
    assert intruder.last_reply is not None
    assert "intruder@elsewhere.example" in str(intruder.last_reply["To"])
    assert await shop.tickets.open_ticket("email", customer.first_id) is None
    # The customer's own thread still answers the customer.
    again = await customer.write("订单号是 SF1234567890")
    assert customer.address in str(again["To"]) and "SF1234567890" in again.get_content()


async def test_automatic_mail_is_not_answered(shop_factory: Callable[..., Awaitable[Shop]]
                                              ) -> None:
    shop = await shop_factory()
    auto = mail("我正在休假", sender="顾客 <away@customer.example>",
                headers={"Auto-Submitted": "auto-replied"})
    broken = EmailMessage()
    broken["Subject"] = "no sender"
    broken.set_content("hello")
    for message in (auto, broken):
        await asyncio.to_thread(shop.dovecot.deliver, message)
    assert await shop.channel.poll() == 2
    assert shop.smtp.messages == [] and await shop.tickets.recent() == []
    flags = shop.dovecot.flags()
    assert all("\\Seen" in f for f in flags) and sum("\\Flagged" in f for f in flags) == 1


async def test_an_agent_reply_is_sent_in_the_thread(
        shop_factory: Callable[..., Awaitable[Shop]]) -> None:
    shop = await shop_factory()
    customer = MailCustomer(shop)
    await customer.write("我的快递一直没到")
    assert customer.first_id is not None and customer.last_reply is not None
    await shop.channel.output.send(OutgoingMessage(
        ConversationRef("email", customer.first_id), "我是客服小王，已为您加急",
        author=Author.AGENT))
    agent = shop.smtp.messages[-1]
    assert agent.get_content().strip() == "我是客服小王，已为您加急"
    assert agent["In-Reply-To"] == customer.last_reply["Message-ID"]
    assert agent["Auto-Submitted"] is None
    from channels.mail import UnknownThread

    with pytest.raises(UnknownThread):
        await shop.channel.output.send(OutgoingMessage(ConversationRef("email", "<x@y>"), "hi"))


async def test_the_poller_runs_on_its_own(shop_factory: Callable[..., Awaitable[Shop]]) -> None:
    shop = await shop_factory(poll_seconds=0.2)
    await asyncio.to_thread(shop.dovecot.deliver, mail("怎么开发票？", sender="p@customer.example"))
    async with asyncio.timeout(15):
        while not shop.smtp.messages:
            await asyncio.sleep(0.05)
    assert "发票" in shop.smtp.messages[0].get_content()


# ---- logins and TLS: aiosmtpd with an authenticator, dovecot's IMAPS, a generated certificate ---


@dataclass(frozen=True)
class Certificate:
    """A self-signed certificate for 127.0.0.1 and localhost, and its key, as PEM files."""

    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        return context


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    """Made with `cryptography`; it is its own authority (the clients' MAIL_TLS_CA_FILE)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "intakebot test server")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    directory = tmp_path_factory.mktemp("tls")
    directory.chmod(0o755)  # dovecot reads the files
    paths = Certificate(directory / "cert.pem", directory / "key.pem")
    paths.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths.key.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                            serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()))
    return paths


@dataclass
class Logins:
    """aiosmtpd's authenticator: one user, whose password a test can change; logs attempts."""

    user: str = "bot@shop.example"
    password: str = "smtp-test-password"
    attempts: list[tuple[str, str, bool]] = field(default_factory=list)  # mechanism, user, ok

    def __call__(self, server: Any, session: Any, envelope: Any, mechanism: str,
                 auth_data: Any) -> Any:
        from aiosmtpd.smtp import AuthResult, LoginPassword

        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        user = auth_data.login.decode()
        ok = user == self.user and auth_data.password.decode() == self.password
        self.attempts.append((mechanism, user, ok))
        return AuthResult(success=ok, handled=False)


@dataclass
class SecureSmtp(Smtp):
    logins: Logins = field(default_factory=Logins)


SecureSmtpFactory = Callable[..., SecureSmtp]


@pytest.fixture
def secure_smtp(certificate: Certificate) -> Iterator[SecureSmtpFactory]:
    """Starts aiosmtpd servers that need a login over TLS: STARTTLS, or implicit TLS."""
    from aiosmtpd.controller import Controller

    controllers: list[Controller] = []

    def start(security: Security, *, mechanisms: tuple[str, ...] = ("PLAIN", "LOGIN")
              ) -> SecureSmtp:
        recorder, logins = SmtpRecorder(), Logins()
        options: dict[str, Any] = {
            "authenticator": logins, "auth_required": True,
            "auth_exclude_mechanism": [m for m in ("PLAIN", "LOGIN") if m not in mechanisms]}
        if security is Security.TLS:
            # aiosmtpd's auth_require_tls only counts STARTTLS, and it warns about requiring AUTH
            # without it; every byte is over TLS here, and the tests check the login happened.
            options.update(ssl_context=certificate.server_context(), auth_require_tls=False,
                           auth_required=False)
        else:
            options.update(tls_context=certificate.server_context(), require_starttls=True)
        controller = Controller(recorder, hostname="127.0.0.1", port=free_port(), **options)
        controller.start()
        controllers.append(controller)
        return SecureSmtp(controller.port, recorder, logins)

    try:
        yield start
    finally:
        for controller in controllers:
            controller.stop()


def smtp_config(server: Smtp, security: Security, **options: Any) -> MailConfig:
    logins = server.logins if isinstance(server, SecureSmtp) else Logins()
    settings: dict[str, Any] = {
        "imap_host": "127.0.0.1", "imap_port": 1, "imap_user": "-", "imap_password": "-",
        "smtp_host": "127.0.0.1", "smtp_port": server.port, "smtp_user": logins.user,
        "smtp_password": logins.password, "mail_from": SERVICE, "smtp_security": security,
        **options}
    return MailConfig(**settings)


def outgoing(text: str = "您好") -> EmailMessage:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = SERVICE, "c@customer.example", "Re: 您好"
    message.set_content(text)
    return message


@pytest.mark.parametrize(("security", "mechanism"), [
    (Security.STARTTLS, "PLAIN"), (Security.STARTTLS, "LOGIN"), (Security.TLS, "PLAIN"),
    (Security.TLS, "LOGIN")])
async def test_smtp_logs_in_over_tls(secure_smtp: SecureSmtpFactory, certificate: Certificate,
                                     security: Security, mechanism: str) -> None:
    server = secure_smtp(security, mechanisms=(mechanism,))
    outbox = Outbox(smtp_config(server, security, tls_ca_file=str(certificate.cert)))
    await outbox.send(outgoing())
    assert [m.get_content().strip() for m in server.messages] == ["您好"]
    assert server.logins.attempts == [(mechanism, "bot@shop.example", True)]
    assert server.recorder.secured == [True]


async def test_a_wrong_smtp_password_is_a_clear_error_and_not_retried(
        secure_smtp: SecureSmtpFactory, certificate: Certificate) -> None:
    # one mechanism offered: smtplib tries each one the server offers, in one session
    server = secure_smtp(Security.STARTTLS, mechanisms=("LOGIN",))
    config = smtp_config(server, Security.STARTTLS, tls_ca_file=str(certificate.cert),
                         smtp_password="wrong")
    with pytest.raises(SmtpLoginRefused,
                       match=r"refused the login of 'bot@shop.example' \(535 .*MAIL_SMTP_PASSWORD"):
        await Outbox(config).send(outgoing())
    assert server.logins.attempts == [("LOGIN", "bot@shop.example", False)]  # not retried
    assert server.messages == []


async def test_smtp_refuses_untrusted_certificates_and_login_without_tls(
        secure_smtp: SecureSmtpFactory) -> None:
    for security in (Security.STARTTLS, Security.TLS):
        server = secure_smtp(security)
        # the system's authorities do not know the test's self-signed certificate
        with pytest.raises(MailDeliveryFailed, match=r"not trusted.*MAIL_TLS_CA_FILE"):
            await Outbox(smtp_config(server, security)).send(outgoing())
        assert server.logins.attempts == [] and server.messages == []
    # without TLS the server does not offer AUTH at all: the password is never sent in clear
    server = secure_smtp(Security.STARTTLS)
    with pytest.raises(SmtpLoginRefused, match="offers no login"):
        await Outbox(smtp_config(server, Security.NONE)).send(outgoing())


async def test_a_refused_smtp_login_leaves_the_mail_for_the_next_poll(
        shop_factory: Callable[..., Awaitable[Shop]], secure_smtp: SecureSmtpFactory,
        certificate: Certificate, caplog: pytest.LogCaptureFixture) -> None:
    server = secure_smtp(Security.STARTTLS)
    shop = await shop_factory(server=server, smtp_security=Security.STARTTLS,
                              smtp_user=server.logins.user, smtp_password="rotated-yesterday",
                              tls_ca_file=str(certificate.cert))
    message = mail("我的快递一直没到", sender="顾客 <login@customer.example>")
    await asyncio.to_thread(shop.dovecot.deliver, message)
    assert await shop.channel.poll() == 0
    assert server.messages == [] and not any("\\Seen" in f for f in shop.dovecot.flags())
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert any("refused the login" in e and "MAIL_SMTP_PASSWORD" in e for e in errors), errors
    server.logins.password = "rotated-yesterday"  # the server's password is put right
    assert await shop.channel.poll() == 1
    [reply] = server.messages
    assert "订单号" in reply.get_content() and reply["In-Reply-To"] == message["Message-ID"]
    assert all("\\Seen" in f for f in shop.dovecot.flags())


async def test_imap_over_tls(certificate: Certificate, smtp: Smtp, tmp_path: Path) -> None:
    async def on_message(message: IncomingMessage) -> list[OutgoingMessage]:
        return [OutgoingMessage(message.conversation, f"收到：{message.text}")]

    with run_dovecot(certificate) as server:
        config = MailConfig(
            imap_host="127.0.0.1", imap_port=server.tls_port, imap_user=server.user,
            imap_password=server.password, smtp_host="127.0.0.1", smtp_port=smtp.port,
            smtp_user="", smtp_password="", mail_from=SERVICE, imap_tls=True,
            smtp_security=Security.NONE, tls_ca_file=str(certificate.cert))
        await asyncio.to_thread(server.deliver, mail("怎么开发票？"))
        untrusted = Mail(replace(config, tls_ca_file=None), on_message,
                         files=EvidenceStore(tmp_path))
        with pytest.raises(ssl.SSLCertVerificationError):
            await untrusted.poll()
        channel = Mail(config, on_message, files=EvidenceStore(tmp_path))
        assert await channel.poll() == 1
        assert [m.get_content().strip() for m in smtp.messages] == ["收到：怎么开发票？"]
        assert all("\\Seen" in f for f in server.flags())


class HeldFetch:
    """Holds a channel's IMAP fetch once it has fetched, until the test releases it."""

    def __init__(self, channel: Mail) -> None:
        self.fetched = threading.Event()
        self.release = threading.Event()
        self.clients: list[imaplib.IMAP4] = []
        self._unseen = channel._mailbox.unseen
        channel._mailbox.unseen = self._held  # type: ignore[method-assign]

    def _held(self, limit: int = 50) -> tuple[imaplib.IMAP4, list[Fetched]]:
        client, items = self._unseen(limit)
        self.clients.append(client)
        self.fetched.set()
        self.release.wait(10)
        return client, items


async def test_a_poll_cancelled_mid_fetch_logs_its_connection_out(
        shop_factory: Callable[..., Awaitable[Shop]]) -> None:
    """Stopping the app while the IMAP thread fetches: the thread's connection is logged out
    when it finishes, not left for the garbage collector."""
    shop = await shop_factory()
    held = HeldFetch(shop.channel)
    poll = asyncio.create_task(shop.channel.poll())
    assert await asyncio.to_thread(held.fetched.wait, 10)
    poll.cancel()
    with pytest.raises(asyncio.CancelledError):
        await poll
    assert held.clients[0].state == "SELECTED"  # still connected while the thread waits
    held.release.set()
    async with asyncio.timeout(10):
        while held.clients[0].state != "LOGOUT":
            await asyncio.sleep(0.02)


async def test_a_cancelled_fetch_is_logged_out_after_its_event_loop_closed(
        shop_factory: Callable[..., Awaitable[Shop]], tmp_path: Path) -> None:
    """The app's loop closes (shutdown, a test's end) while the IMAP thread still fetches: the
    connection is logged out all the same when the thread finishes."""
    shop = await shop_factory()

    async def on_message(message: IncomingMessage) -> list[OutgoingMessage]:
        return []

    channel = Mail(shop.channel.config, on_message, files=EvidenceStore(tmp_path))
    held = HeldFetch(channel)

    def poll_in_a_loop_that_closes() -> None:
        async def poll_then_cancel() -> None:
            poll = asyncio.create_task(channel.poll())
            assert await asyncio.to_thread(held.fetched.wait, 10)
            poll.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poll

        asyncio.run(poll_then_cancel())  # and its loop is closed

    await asyncio.to_thread(poll_in_a_loop_that_closes)
    assert held.clients[0].state == "SELECTED"  # the fetch is still under way
    held.release.set()
    async with asyncio.timeout(10):
        while held.clients[0].state != "LOGOUT":
            await asyncio.sleep(0.02)


def test_a_failed_logout_still_closes_the_socket(dovecot: Dovecot,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """LOGOUT fails (the server dropped us, another thread confused the connection): imaplib
    would leave the socket open; the channel closes it."""
    client = dovecot.client()

    def lost(*args: Any) -> Any:
        raise imaplib.IMAP4.abort("socket error: EOF")

    monkeypatch.setattr(client, "_simple_command", lost)
    _logout(client)
    assert client.sock.fileno() == -1
