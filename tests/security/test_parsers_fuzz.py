"""Hypothesis on every channel payload parser: a value or the channel's own error, nothing else.

Telegram update JSON, WeChat XML (plain and the encrypted envelope), the signed REST webhook
(signature check and JSON body) and e-mail MIME (built with `email.message`, and junk bytes).
Each parser gets both random junk and inputs shaped like the real thing with random values, so
the examples reach past the first check.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import string
import tempfile
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from telegram import Bot, Update

from channels.base import ChannelError, Rejected
from channels.mail import MailError, ParsedMail, parse_mail
from channels.messages import IncomingMessage, OutgoingMessage
from channels.ratelimit import RetryPolicy
from channels.telegram import TelegramChannel, TelegramConfig, _parse_update
from channels.webhook import WebhookChannel, WebhookConfig, signature, verify
from channels.wechat import WeChat, WeChatConfig, WeChatMessage, parse_message, parse_xml
from channels.wechat_crypto import MessageCrypto
from channels.wechat_crypto import signature as wechat_signature
from handoff.evidence import EvidenceStore

FUZZ = settings(max_examples=100, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)
# Texts that look like ids, numbers and words, with hostile characters mixed in.
hostile_text = st.text(alphabet=st.characters(codec="utf-8"), max_size=60) | st.sampled_from([
    "", " ", "../../etc/passwd", "<script>alert(1)</script>", "' OR 1=1--", "\x00", "]]>",
    "%s%s%n", "😀" * 10, "a" * 5000, "-1", "1e309", "NaN",
])


async def _nothing(_message: IncomingMessage) -> list[OutgoingMessage]:
    return []


# ---- Telegram ------------------------------------------------------------------------------

BOT = Bot("123456:TEST-token-for-fuzzing")
chats = st.fixed_dictionaries(
    {"id": st.integers() | hostile_text, "type": st.sampled_from(["private", "group", "x"])},
    optional={"title": hostile_text, "username": hostile_text})
users = st.fixed_dictionaries(
    {"id": st.integers(), "is_bot": st.booleans(), "first_name": hostile_text},
    optional={"language_code": hostile_text})
messages = st.fixed_dictionaries(
    {"message_id": st.integers() | hostile_text, "date": st.integers(0, 2**33) | hostile_text,
     "chat": chats | json_values},
    optional={"text": hostile_text | json_values, "caption": hostile_text,
              "from": users | json_values,
              "document": st.fixed_dictionaries({"file_id": hostile_text,
                                                 "file_unique_id": hostile_text,
                                                 "file_name": hostile_text})})
updates = st.fixed_dictionaries(
    {"update_id": st.integers(0, 2**31)},
    optional={"message": messages | json_values, "edited_message": messages | json_values,
              "callback_query": st.fixed_dictionaries(
                  {"id": hostile_text, "from": users, "chat_instance": hostile_text},
                  optional={"data": hostile_text, "message": messages}) | json_values,
              "junk": json_values})


@FUZZ
@given(data=updates | st.dictionaries(st.text(max_size=15), json_values, max_size=5))
def test_telegram_update_json_parses_or_is_rejected(data: dict[str, Any]) -> None:
    try:
        update = _parse_update(data, BOT)
    except Rejected as exc:
        assert exc.status == 400
    else:
        assert isinstance(update, Update)


_RECEIVED: list[IncomingMessage] = []
_UPDATE_IDS = iter(range(1, 10**9))


async def _record(message: IncomingMessage) -> list[OutgoingMessage]:
    _RECEIVED.append(message)
    return []


# Built once: a PTB application is slow to build. Its API base is a closed port, so any call to
# Telegram fails as a ChannelError rather than reaching the network.
_TELEGRAM = TelegramChannel(
    TelegramConfig(token="123456:TEST-token", webhook_secret="s3cret",
                   api_base="http://127.0.0.1:9"),
    _record, files=EvidenceStore(Path(tempfile.mkdtemp(prefix="fuzz-telegram-"))),
    policy=RetryPolicy(attempts=1, base_delay=0.0, max_delay=0.0))


@FUZZ
@given(data=updates)
def test_telegram_channel_handles_any_parsed_update(data: dict[str, Any]) -> None:
    """What parses is handled: a message or nothing, a ChannelError at worst, never a crash."""
    data = {**data, "update_id": next(_UPDATE_IDS)}  # fresh: seen ids are skipped on purpose
    _RECEIVED.clear()
    try:
        update = _parse_update(data, _TELEGRAM.bot)
    except Rejected:
        return

    async def run() -> None:
        with contextlib.suppress(ChannelError):
            await _TELEGRAM.handle(update)

    asyncio.run(run())
    for message in _RECEIVED:
        assert isinstance(message.text, str) and message.text.strip()
        assert message.conversation.chat_id


def test_telegram_message_with_a_null_chat_is_refused() -> None:
    data = {"update_id": next(_UPDATE_IDS), "message": {
        "message_id": 1, "date": 0, "chat": None, "text": "hello"}}
    with pytest.raises(Rejected, match="no chat"):
        _parse_update(data, _TELEGRAM.bot)


# ---- WeChat --------------------------------------------------------------------------------

TOKEN = "wechat-token"
APP_ID = "wx0123456789abcdef"
AES_KEY = base64.b64encode(bytes(range(32))).decode()[:43]
CRYPTO = MessageCrypto(TOKEN, AES_KEY, APP_ID)
tags = st.sampled_from(["ToUserName", "FromUserName", "CreateTime", "MsgType", "Content",
                        "MsgId", "MediaId", "PicUrl", "Event", "Encrypt"]) | st.text(
    alphabet=string.ascii_letters, min_size=1, max_size=10)


def _cdata(value: str) -> str:
    return "<![CDATA[" + value.replace("]]>", "]]]]><![CDATA[>") + "]]>"


@st.composite
def wechat_xml(draw: st.DrawFn) -> bytes:
    fields = draw(st.dictionaries(tags, hostile_text, max_size=8))
    if draw(st.booleans()):
        fields.setdefault("MsgType", draw(st.sampled_from(["text", "image", "event", "voice"])))
    body = "".join(f"<{k}>{_cdata(v)}</{k}>" for k, v in fields.items())
    prefix = draw(st.sampled_from(["", '<?xml version="1.0"?>',
                                   '<!DOCTYPE x [<!ENTITY a "aaaa">]>']))
    return (prefix + f"<xml>{body}</xml>").encode("utf-8", "surrogatepass")


@FUZZ
@given(body=st.binary(max_size=300) | wechat_xml())
def test_wechat_xml_and_message_parse_or_are_bad_requests(body: bytes) -> None:
    try:
        fields = parse_xml(body)
        message = parse_message(fields)
    except ChannelError as exc:
        assert getattr(exc, "status", None) == 400
    else:
        assert isinstance(message, WeChatMessage)
        assert message.from_user and message.to_user and message.msg_type


@FUZZ
@given(inner=st.binary(max_size=200) | wechat_xml(), tamper=st.integers(0, 3),
       junk=st.text(max_size=80))
def test_wechat_encrypted_envelope_decrypts_or_is_refused(inner: bytes, tamper: int,
                                                          junk: str) -> None:
    """Any Encrypt value, signed or not, tampered or not: fields, or a 400/403 error."""
    config = WeChatConfig(token=TOKEN, app_id=APP_ID, app_secret="secret", aes_key=AES_KEY,
                          api_base="http://127.0.0.1:9")
    channel = WeChat(config, _nothing, files=EvidenceStore(Path(tempfile.gettempdir())))
    encrypted = CRYPTO.encrypt(inner)
    if tamper == 1:  # flip bits in the ciphertext but sign the result: padding/AppID checks
        raw = bytearray(base64.b64decode(encrypted))
        raw[len(raw) // 2] ^= 0xFF
        encrypted = base64.b64encode(bytes(raw)).decode()
    elif tamper == 2:  # not base64 or not whole blocks at all
        encrypted = junk
    timestamp, nonce = str(int(time.time())), "nonce"
    signed = wechat_signature(TOKEN, timestamp, nonce, encrypted)
    if tamper == 3:  # a forged signature
        signed = "0" * 40
    try:
        fields = channel._decrypt({"Encrypt": encrypted}, timestamp, nonce, signed)
    except ChannelError as exc:
        assert getattr(exc, "status", None) in (400, 403)
        if tamper == 3:
            assert getattr(exc, "status", None) in (400, 403)
    else:
        assert tamper in (0, 1) and isinstance(fields, dict)


# ---- REST webhook --------------------------------------------------------------------------

SECRET = "webhook-secret-0123456789"
header_values = hostile_text | st.from_regex(r"sha256=[0-9a-f]{64}", fullmatch=True) | \
    st.integers(-2**40, 2**40).map(str)


@FUZZ
@given(headers=st.dictionaries(st.sampled_from(["X-Intakebot-Timestamp",
                                                "X-Intakebot-Signature", "X-Other"]),
                               header_values, max_size=3),
       body=st.binary(max_size=100))
def test_webhook_signature_check_accepts_only_a_real_signature(headers: dict[str, str],
                                                               body: bytes) -> None:
    from channels.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER

    headers = {TIMESTAMP_HEADER if "Timestamp" in k else SIGNATURE_HEADER if "Signature" in k
               else k: v for k, v in headers.items()}
    try:
        verify(SECRET, headers, body)
    except Rejected as exc:
        assert exc.status == 401
    else:  # only possible with the right HMAC, which random headers never have
        assert headers[SIGNATURE_HEADER].lower() == signature(
            SECRET, headers[TIMESTAMP_HEADER], body)


webhook_bodies = st.fixed_dictionaries(
    {}, optional={"conversation_id": hostile_text | json_values,
                  "message_id": hostile_text | json_values,
                  "text": hostile_text | json_values,
                  "attachments": st.lists(st.fixed_dictionaries(
                      {"data": st.binary(max_size=40).map(lambda b: base64.b64encode(b).decode())
                       | hostile_text},
                      optional={"filename": hostile_text | json_values,
                                "content_type": hostile_text | json_values}),
                      max_size=7) | json_values})


@FUZZ
@given(body=webhook_bodies.map(lambda d: json.dumps(d).encode())
       | st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()))
def test_webhook_body_parses_or_is_rejected(body: bytes) -> None:
    async def run() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            evidence = EvidenceStore(Path(tmp) / "evidence")
            channel = WebhookChannel(WebhookConfig(secret=SECRET,
                                                   callback_url="http://127.0.0.1:9/cb"),
                                     _nothing, files=evidence, data_dir=Path(tmp))
            try:
                message = await channel._parse(body)
            except Rejected as exc:
                assert exc.status in (400, 413)
                return
            assert isinstance(message, IncomingMessage)
            assert message.text.strip() or message.attachments
            for attachment in message.attachments:  # stored inside the evidence directory
                assert evidence.path(attachment.sha256).resolve().is_relative_to(
                    evidence.root.resolve())
                assert "/" not in attachment.filename and "\\" not in attachment.filename

    asyncio.run(run())


# ---- e-mail --------------------------------------------------------------------------------

header_text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]),
                      max_size=60)
charsets = st.sampled_from(["utf-8", "gb2312", "gbk", "big5", "latin-1", "x-unknown", "utf-16"])


@st.composite
def mime_messages(draw: st.DrawFn) -> tuple[EmailMessage, int, bytes]:
    """A message built with email.message, and where to splice junk into its bytes (-1: none).

    Serialised in the test, not here: the e-mail generator draws MIME boundaries from `random`.
    """
    mail = EmailMessage()
    for name in draw(st.lists(st.sampled_from(
            ["From", "Reply-To", "Subject", "Message-ID", "In-Reply-To", "References",
             "Auto-Submitted", "Precedence"]), unique=True, max_size=8)):
        value = draw(header_text | st.sampled_from(
            ["客户 <kehu@example.com>", "<a@b>", "=?utf-8?b?5oqV6K+J?=", "=?x-bad?q?zz?=",
             "<<<>>>", "no-address"]))
        try:
            mail[name] = value
        except (ValueError, TypeError, IndexError):  # IndexError: a stdlib header-parser bug
            continue
    charset = draw(charsets)
    text = draw(hostile_text)
    try:
        mail.set_content(text, charset="utf-8" if charset == "x-unknown" else charset)
    except (LookupError, UnicodeError, ValueError):
        mail.set_content(text.encode("utf-8", "replace"), maintype="text", subtype="plain")
    if draw(st.booleans()):
        mail.add_alternative(f"<p>{draw(hostile_text)}</p><script>x()</script>", subtype="html")
    for _ in range(draw(st.integers(0, 3))):
        maintype, subtype = draw(st.sampled_from([("image", "jpeg"), ("application", "pdf"),
                                                  ("application", "octet-stream"),
                                                  ("text", "plain")]))
        filename = draw(hostile_text | st.sampled_from(
            ["../../../etc/passwd", "..\\..\\boot.ini", "/abs/path.jpg", ".hidden",
             "a\x00b.png", "=?utf-8?q?..=2F..=2Fevil.jpg?="]))
        data = draw(st.binary(max_size=50))
        try:
            mail.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
        except (ValueError, TypeError):
            continue
    splice = draw(st.integers(-1, 2000))
    return mail, splice, draw(st.binary(max_size=30))


def mime_bytes(drawn: tuple[EmailMessage, int, bytes]) -> bytes:
    mail, splice, junk = drawn
    try:
        raw = mail.as_bytes()
    except (UnicodeError, ValueError, TypeError):
        assume(False)  # a header email.message itself cannot serialise: not an input
    if splice >= 0:  # truncate or splice junk into the bytes
        raw = raw[:splice] + junk + raw[splice:]
    return raw


@FUZZ
@given(drawn=mime_messages(), junk=st.binary(max_size=400), use_junk=st.booleans())
def test_mail_parses_or_is_malformed(drawn: tuple[EmailMessage, int, bytes], junk: bytes,
                                     use_junk: bool) -> None:
    raw = junk if use_junk else mime_bytes(drawn)
    try:
        mail = parse_mail(raw, own_address="service@shop.example")
    except MailError:
        return
    assert isinstance(mail, ParsedMail)
    assert "@" in mail.sender and mail.message_id and mail.root_id
    assert isinstance(mail.text, str) and len(mail.text) <= 4000
    for file in mail.files:
        assert isinstance(file.filename, str) and isinstance(file.data, bytes) and file.data


@FUZZ
@given(drawn=mime_messages())
def test_mail_attachment_names_never_leave_the_evidence_directory(
        drawn: tuple[EmailMessage, int, bytes]) -> None:
    raw = mime_bytes(drawn)
    try:
        mail = parse_mail(raw)
    except MailError:
        return

    async def store() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            evidence = EvidenceStore(Path(tmp) / "evidence")
            for file in mail.files:
                ref = await evidence.put(file.filename, file.content_type, file.data)
                assert "/" not in ref.filename and "\\" not in ref.filename
                assert not ref.filename.startswith(".")
                assert "\x00" not in ref.filename
                stored = evidence.path(ref.sha256).resolve()
                assert stored.is_relative_to(evidence.root.resolve()) and stored.exists()
            outside = sorted(p.name for p in Path(tmp).iterdir())
            assert outside in ([], ["evidence"])

    asyncio.run(store())
