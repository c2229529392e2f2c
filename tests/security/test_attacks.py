"""Attacks on the running product: forged and replayed signatures, oversized bodies, path
traversal in attachment names, cross-site requests, SQL injection and another agent's PII.

Everything runs against the real application (`create_app`) with the webhook, WeChat and
Telegram channels switched on by their environment variables; Telegram talks to a local fake of
the Bot API.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from bot.app import DISPATCHER, EVIDENCE, create_app
from bot.settings import Settings
from channels.telegram import SECRET_HEADER, TelegramConfig
from channels.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, signature, signed_headers
from channels.wechat_crypto import signature as wechat_signature
from handoff.api import USERS
from knowledge_base.retrieval import Searcher
from nlp.analyzer import Analyzer
from tests.channels.fake_telegram import FakeTelegram
from tests.handoff.conftest import COMPLAINT

Client = TestClient[Any, Any]
AiohttpClient = Callable[..., Awaitable[Client]]

WEBHOOK_SECRET = "webhook-secret-0123456789"
WECHAT_TOKEN = "wechat-token"
TELEGRAM_TOKEN = "123456:attack-test-token"
TELEGRAM_SECRET = "telegram-secret"
PASSWORD = "attack-pass-1"
EVIDENCE_MAX = 64 * 1024


@pytest.fixture(scope="module")
def searcher() -> Searcher:
    from knowledge_base.service import make_searcher

    return make_searcher(dense=False)


@pytest.fixture
async def telegram_api() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(TELEGRAM_TOKEN) as server:
        yield server


@pytest.fixture
async def client(tmp_path: Path, analyzer: Analyzer, searcher: Searcher,
                 telegram_api: FakeTelegram, aiohttp_client: AiohttpClient) -> Client:
    """The product with every HTTP channel on, two agents of one department and a supervisor."""
    settings = Settings.from_env({
        "INTAKEBOT_DATA_DIR": str(tmp_path / "data"), "INTAKEBOT_SLA_CHECK_SECONDS": "3600",
        "WEBHOOK_SECRET": WEBHOOK_SECRET, "WEBHOOK_CALLBACK_URL": "http://127.0.0.1:9/cb",
        "WECHAT_TOKEN": WECHAT_TOKEN, "WECHAT_APP_ID": "wx0123456789abcdef",
        "WECHAT_APP_SECRET": "app-secret", "WECHAT_API_BASE": telegram_api.url,
        "TELEGRAM_BOT_TOKEN": TELEGRAM_TOKEN, "TELEGRAM_WEBHOOK_SECRET": TELEGRAM_SECRET,
        "TELEGRAM_API_BASE": telegram_api.url,
    })
    client = await aiohttp_client(create_app(settings, analyzer=analyzer, searcher=searcher,
                                             evidence_max_bytes=EVIDENCE_MAX))
    users = client.app[USERS]
    for name, role in (("alice", "agent"), ("bob", "agent"), ("sue", "supervisor")):
        await users.add(name, PASSWORD, role, department="quality" if role == "agent" else None)
    return client


async def token(client: Client, name: str) -> dict[str, str]:
    response = await client.post("/api/auth/login", json={"username": name,
                                                           "password": PASSWORD})
    assert response.status == 200, await response.text()
    return {"Authorization": "Bearer " + (await response.json())["token"]}


async def complaint(client: Client, text: str = COMPLAINT) -> tuple[str, str]:
    chat_id = "sec-" + uuid.uuid4().hex[:10]
    url = f"/api/webchat/{chat_id}/messages"
    first = await (await client.post(url, json={"text": text})).json()
    confirm = next(b for r in first["replies"] for b in r["buttons"])
    done = await (await client.post(url, json={"text": confirm})).json()
    assert done["ticket_id"], done
    return chat_id, str(done["ticket_id"])


def telegram_path() -> str:
    config = TelegramConfig(token=TELEGRAM_TOKEN, webhook_secret=TELEGRAM_SECRET)
    return config.webhook_path


async def session_revision(client: Client, key: str) -> int:
    sessions = client.app[DISPATCHER]._sessions
    session = await sessions.get(key)
    return -1 if session is None else session.revision


# ---- forged and replayed signatures ---------------------------------------------------------


async def test_webhook_refuses_forged_and_stale_signatures_and_handles_a_replay_once(
        client: Client) -> None:
    body = json.dumps({"conversation_id": "wh-1", "message_id": "m-1",
                       "text": "我的快递丢了，订单号 1234567890"}).encode()
    url = "/api/webhook/messages"
    now = time.time()
    forged = [
        {},  # unsigned
        {TIMESTAMP_HEADER: str(int(now)), SIGNATURE_HEADER: "sha256=" + "0" * 64},
        signed_headers("another-secret-of-16+", body, now),  # someone else's secret
        signed_headers(WEBHOOK_SECRET, body + b" ", now),  # signed a different body
        {TIMESTAMP_HEADER: str(int(now) + 1),  # the signature of another time
         SIGNATURE_HEADER: signature(WEBHOOK_SECRET, str(int(now)), body)},
        signed_headers(WEBHOOK_SECRET, body, now - 3600),  # captured an hour ago, replayed
        signed_headers(WEBHOOK_SECRET, body, now + 3600),  # from the future
        {TIMESTAMP_HEADER: "abc", SIGNATURE_HEADER: "sha256=zz"},
    ]
    for headers in forged:
        response = await client.post(url, data=body, headers=headers)
        assert response.status == 401, (headers, await response.text())
    assert await session_revision(client, "webhook:wh-1") == -1  # nothing reached the bot

    headers = signed_headers(WEBHOOK_SECRET, body)
    for _ in range(3):  # the same signed request, replayed within its validity
        response = await client.post(url, data=body, headers=headers)
        assert response.status == 200, await response.text()
    assert await session_revision(client, "webhook:wh-1") == 1  # handled once


async def test_wechat_refuses_forged_and_stale_signatures(client: Client) -> None:
    now = str(int(time.time()))
    good = {"timestamp": now, "nonce": "n1",
            "signature": wechat_signature(WECHAT_TOKEN, now, "n1")}
    ok = await client.get("/wechat", params={**good, "echostr": "hello"})
    assert ok.status == 200 and await ok.text() == "hello"
    stale = str(int(time.time()) - 3600)
    forged = [
        {"timestamp": now, "nonce": "n1", "signature": "0" * 40},
        {"timestamp": now, "nonce": "n2", "signature": good["signature"]},  # other nonce
        {"timestamp": stale, "nonce": "n1",
         "signature": wechat_signature(WECHAT_TOKEN, stale, "n1")},  # replayed later
        {"timestamp": now, "nonce": "n1"},
        {"timestamp": "x" * 20, "nonce": "n1", "signature": "0" * 40},
    ]
    xml = (b"<xml><ToUserName>gh_1</ToUserName><FromUserName>openid-1</FromUserName>"
           b"<CreateTime>1</CreateTime><MsgType>text</MsgType><Content>hi</Content>"
           b"<MsgId>1</MsgId></xml>")
    for query in forged:
        check = await client.get("/wechat", params={**query, "echostr": "hello"})
        assert check.status == 403, (query, await check.text())
        post = await client.post("/wechat", params=query, data=xml)
        assert post.status == 403, (query, await post.text())
    assert await session_revision(client, "wechat:openid-1") == -1


async def test_telegram_refuses_a_missing_or_wrong_secret_and_handles_a_replay_once(
        client: Client, telegram_api: FakeTelegram) -> None:
    path = telegram_path()
    update = {"update_id": 77, "message": {
        "message_id": 5, "date": int(time.time()), "chat": {"id": 4242, "type": "private"},
        "from": {"id": 4242, "is_bot": False, "first_name": "Li"},
        "text": "收到的杯子碎了，订单号 1212343456"}}
    missing = await client.post(path, json=update)
    assert missing.status == 401
    for wrong in ("wrong-secret", TELEGRAM_SECRET + "x", TELEGRAM_SECRET[:-1], ""):
        response = await client.post(path, json=update, headers={SECRET_HEADER: wrong})
        assert response.status in (401, 403), wrong
    assert await session_revision(client, "telegram:4242") == -1
    for _ in range(3):  # Telegram redelivers an update it thinks was lost
        response = await client.post(path, json=update, headers={SECRET_HEADER: TELEGRAM_SECRET})
        assert response.status == 200, await response.text()
    assert await session_revision(client, "telegram:4242") == 1


# ---- oversized bodies -----------------------------------------------------------------------


async def test_every_inbound_endpoint_answers_413_to_an_oversized_body(client: Client) -> None:
    from knowledge_base.api import KNOWLEDGE_BASE
    from knowledge_base.entries import Role as KbRole

    _, kb_token = await client.app[KNOWLEDGE_BASE].store.create_api_key(
        "editor", KbRole.KB_EDITOR, "test")
    staff = await token(client, "alice")
    _, ticket_id = await complaint(client)
    now = str(int(time.time()))
    wechat_query = {"timestamp": now, "nonce": "n",
                    "signature": wechat_signature(WECHAT_TOKEN, now, "n")}
    endpoints: list[tuple[str, dict[str, str], dict[str, str]]] = [
        ("/api/webchat/big-1/messages", {}, {}),
        ("/api/webhook/messages", {}, {}),
        ("/wechat", wechat_query, {}),
        (telegram_path(), {}, {SECRET_HEADER: TELEGRAM_SECRET}),
        ("/api/auth/login", {}, {}),
        (f"/api/tickets/{ticket_id}/notes", {}, staff),
        ("/api/kb/entries", {}, {"Authorization": f"Bearer {kb_token}"}),
    ]
    big = b"x" * (20 * 1024 * 1024)

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the limit while reading
        for _ in range(20):
            yield b"y" * (1024 * 1024)

    for path, query, headers in endpoints:
        declared = await client.post(path, params=query, data=io.BytesIO(big), headers=headers)
        assert declared.status == 413, (path, await declared.text())
        assert "error" in await declared.json()
        streamed = await client.post(path, params=query, data=chunks(), headers=headers)
        assert streamed.status == 413, (path, await streamed.text())

    # Without credentials the body is not even read: 401 first.
    anonymous = await client.post("/api/kb/entries", data=io.BytesIO(big))
    assert anonymous.status == 401
    # An attachment over the evidence limit inside a body of acceptable size.
    photo = base64.b64encode(b"\xff" * (EVIDENCE_MAX + 1)).decode()
    response = await client.post("/api/webchat/big-2/messages", json={
        "text": "照片", "attachments": [{"filename": "a.jpg", "data": photo}]})
    assert response.status == 413


# ---- path traversal in attachment names -----------------------------------------------------

TRAVERSALS = ["../../../../etc/passwd", "..\\..\\..\\windows\\win.ini", "/etc/shadow",
              "....//....//x.jpg", "%2e%2e%2fevil.jpg", ".htaccess", "a/../../b.png",
              "\x00../evil.png", "..", "C:\\evil.jpg"]


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


async def test_attachment_names_never_escape_the_evidence_directory(client: Client,
                                                                    tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    before = files_under(tmp_path) - files_under(data_dir / "evidence")
    for number, name in enumerate(TRAVERSALS):
        content = f"photo {number}".encode()
        for path, body, headers in _uploads(number, name, content):
            response = await client.post(path, data=body, headers=headers)
            assert response.status == 200, (path, name, await response.text())
            sha = hashlib.sha256(content).hexdigest()
            stored = client.app[EVIDENCE].path(sha)
            assert stored.exists() and stored.resolve().is_relative_to(
                (data_dir / "evidence").resolve())
            sidecar = json.loads(stored.with_name(sha + ".json").read_text())
            assert "/" not in sidecar["filename"] and "\\" not in sidecar["filename"]
            assert not sidecar["filename"].startswith(".") and "\x00" not in sidecar["filename"]
    # Nothing new outside the evidence directory except the product's own files.
    created = files_under(tmp_path) - files_under(data_dir / "evidence") - before
    assert all(p.resolve().is_relative_to(data_dir.resolve()) for p in created), created
    assert not (tmp_path / "etc").exists() and not Path("/etc/evil.png").exists()


def _uploads(number: int, name: str, content: bytes
             ) -> list[tuple[str, bytes, dict[str, str]]]:
    item = {"filename": name, "content_type": "image/png",
            "data": base64.b64encode(content).decode()}
    webchat = json.dumps({"text": "照片在这里", "message_id": f"up-{number}",
                          "attachments": [item]}).encode()
    webhook = json.dumps({"conversation_id": f"wh-up-{number}", "message_id": f"up-{number}",
                          "text": "photo", "attachments": [item]}).encode()
    return [(f"/api/webchat/up-{number}/messages", webchat,
             {"Content-Type": "application/json"}),
            ("/api/webhook/messages", webhook, signed_headers(WEBHOOK_SECRET, webhook))]


async def test_telegram_file_paths_never_escape_the_evidence_directory(
        client: Client, telegram_api: FakeTelegram, tmp_path: Path) -> None:
    evidence = (tmp_path / "data" / "evidence").resolve()
    # Telegram names the file (getFile's file_path); the product keeps only its extension.
    # Paths with ".." cannot be fetched at all (the URL is normalised), so the hostile part
    # sits after the last dot, where the extension is taken from.
    names = ["photos/a./etc/passwd", "photos/a.\\..\\..\\win.ini",
             "photos/a./abs/evil.png", "photos/.htaccess", "photos/a.<img src=x>"]
    for number, name in enumerate(names, start=1):
        content = f"telegram photo {number}".encode()
        file_id = f"file-{number}"
        telegram_api.files[file_id] = (name, content)
        update = {"update_id": 100 + number, "message": {
            "message_id": number, "date": int(time.time()),
            "chat": {"id": 500 + number, "type": "private"}, "caption": "坏了",
            "photo": [{"file_id": file_id, "file_unique_id": f"u{number}", "width": 10,
                       "height": 10, "file_size": len(content)}]}}
        response = await client.post(telegram_path(), json=update,
                                     headers={SECRET_HEADER: TELEGRAM_SECRET})
        assert response.status == 200, await response.text()
        stored = client.app[EVIDENCE].path(hashlib.sha256(content).hexdigest())
        assert stored.exists() and stored.resolve().is_relative_to(evidence)
        sidecar = json.loads(stored.with_name(stored.name + ".json").read_text())
        assert "/" not in sidecar["filename"] and not sidecar["filename"].startswith(".")


async def test_console_evidence_route_refuses_traversal(client: Client) -> None:
    _, ticket_id = await complaint(client)
    headers = await token(client, "sue")
    for sha in ("..%2F..%2F..%2Fetc%2Fpasswd", "....", "0" * 63 + "/", "%00", "a" * 64):
        response = await client.get(f"/api/tickets/{ticket_id}/evidence/{sha}", headers=headers)
        assert response.status in (400, 404), (sha, response.status)
        assert "root:" not in await response.text()


# ---- cross-site requests --------------------------------------------------------------------


async def test_console_api_has_no_cookie_auth_so_cross_site_forms_are_refused(
        client: Client) -> None:
    _, ticket_id = await complaint(client)
    login = await client.post("/api/auth/login", json={"username": "alice",
                                                       "password": PASSWORD})
    assert login.status == 200
    assert "Set-Cookie" not in login.headers  # the token is returned, never set as a cookie
    bearer = (await login.json())["token"]
    evil = {"Origin": "https://evil.example", "Referer": "https://evil.example/page",
            "Content-Type": "application/x-www-form-urlencoded"}
    # What a cross-site <form> can send: a form body and the browser's cookies, no header.
    for cookie in ("", f"token={bearer}", f"session={bearer}; Authorization=Bearer {bearer}"):
        headers = {**evil, **({"Cookie": cookie} if cookie else {})}
        for path in (f"/api/tickets/{ticket_id}/claim", f"/api/tickets/{ticket_id}/messages",
                     f"/api/tickets/{ticket_id}/close", "/api/auth/logout"):
            response = await client.post(path, data="text=pwned&confirm=true", headers=headers)
            assert response.status == 401, (path, response.status)
            assert response.headers.get("WWW-Authenticate") == "Bearer"
            assert "Access-Control-Allow-Origin" not in response.headers
    # A form-encoded login gets no token either (the body must be JSON).
    form_login = await client.post("/api/auth/login", headers=evil,
                                   data=f"username=alice&password={PASSWORD}")
    assert form_login.status == 400 and "Set-Cookie" not in form_login.headers
    # No CORS: a preflight from another origin is not granted.
    preflight = await client.options(f"/api/tickets/{ticket_id}/claim", headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization"})
    assert "Access-Control-Allow-Origin" not in preflight.headers
    # The ticket is untouched.
    view = await client.get(f"/api/tickets/{ticket_id}", headers=await token(client, "sue"))
    assert (await view.json())["assignee"] is None


# ---- SQL injection --------------------------------------------------------------------------

INJECTIONS = ["' OR 1=1--", "' OR '1'='1", "admin'--", "'; DROP TABLE tickets;--",
              "1; SELECT * FROM users", "\" OR \"\"=\"", "') OR ('a'='a", "%' OR 1=1 --",
              "alice' UNION SELECT password_hash FROM users--"]


async def test_sql_injection_in_login_and_filters_neither_fails_nor_leaks(
        client: Client) -> None:
    _, ticket_id = await complaint(client)
    for attempt in INJECTIONS:
        for body in ({"username": attempt, "password": attempt},
                     {"username": "alice", "password": attempt},
                     {"username": attempt, "password": PASSWORD}):
            response = await client.post("/api/auth/login", json=body)
            assert response.status == 401, (body, response.status)
            assert "token" not in await response.json()
    headers = await token(client, "sue")
    everything = await (await client.get("/api/tickets", headers=headers)).json()
    assert [t["id"] for t in everything["tickets"]] == [ticket_id]
    for attempt in INJECTIONS:
        for name in ("status", "priority", "category", "department", "assignee"):
            response = await client.get("/api/tickets", params={name: attempt}, headers=headers)
            assert response.status in (200, 400), (name, attempt, response.status)
            if response.status == 200:
                assert (await response.json())["tickets"] == [], (name, attempt)
        for path in (f"/api/tickets/{attempt}", f"/api/tickets/{ticket_id}{attempt}"):
            response = await client.get(path, headers=headers)
            assert response.status in (400, 404), (path, response.status)
        search = await client.get("/api/kb/search", params={"q": attempt})
        assert search.status < 500
    # The tables are all still there and the staff can still sign in.
    assert (await client.get("/api/tickets", headers=headers)).status == 200
    await token(client, "alice")


# ---- another agent's personal data ----------------------------------------------------------


async def test_an_agent_cannot_read_the_pii_of_a_ticket_another_agent_holds(
        client: Client) -> None:
    _, ticket_id = await complaint(client)
    url = f"/api/tickets/{ticket_id}"
    alice, bob, sue = [await token(client, n) for n in ("alice", "bob", "sue")]
    assert (await client.post(url + "/claim", headers=bob)).status == 200

    for path in (url, "/api/tickets", url + "/audit", url + "/canned"):
        response = await client.get(path, headers=alice)
        assert "13812345678" not in await response.text(), path
    assert (await client.post(url + "/reveal", headers=alice)).status == 403
    # Nor by taking it over, changing it or forging the body.
    taken = await client.post(url + "/claim", headers=alice)
    assert taken.status in (403, 409)
    patched = await client.patch(url, json={"assignee": "alice"}, headers=alice)
    assert patched.status in (400, 403, 409)
    assert "13812345678" not in await patched.text()

    revealed = await client.post(url + "/reveal", headers=bob)
    assert revealed.status == 200
    assert (await revealed.json())["form"]["phone"] == "13812345678"
    audit = await (await client.get(url + "/audit", headers=sue)).json()
    reveals = [(a["actor"], a["action"]) for a in audit["audit"] if "reveal" in a["action"]]
    assert reveals == [("bob", "reveal_pii")]
