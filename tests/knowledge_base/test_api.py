"""The editors' REST API over a real aiohttp server: roles, workflow, errors as JSON."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from knowledge_base.api import KNOWLEDGE_BASE, MAX_BODY, routes
from knowledge_base.entries import Role
from knowledge_base.notify import InMemoryHub, InMemoryNotifier
from knowledge_base.service import KnowledgeBase, KnowledgeBaseConfig

Client = TestClient[Any, Any]
AiohttpClient = Callable[[web.Application], Awaitable[Client]]


@pytest.fixture
async def kb(sqlite_url: str) -> AsyncIterator[KnowledgeBase]:
    opened = await KnowledgeBase.open(KnowledgeBaseConfig(database_url=sqlite_url, dense=False),
                                      notifier=InMemoryNotifier(InMemoryHub()))
    yield opened
    await opened.close()


@pytest.fixture
async def client(kb: KnowledgeBase, aiohttp_client: AiohttpClient) -> Client:
    app = web.Application()
    app[KNOWLEDGE_BASE] = kb
    app.add_routes(routes("/api/kb"))
    return await aiohttp_client(app)


@pytest.fixture
async def tokens(kb: KnowledgeBase) -> dict[Role, dict[str, str]]:
    headers = {}
    for role in Role:
        _, token = await kb.store.create_api_key(role.value, role, "test")
        headers[role] = {"Authorization": f"Bearer {token}"}
    return headers


async def test_authentication_required(client: Client) -> None:
    response = await client.get("/api/kb/entries")
    assert response.status == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert "error" in await response.json()
    response = await client.get("/api/kb/entries", headers={"Authorization": "Bearer kb_x.y"})
    assert response.status == 401


async def test_editor_drafts_reviewer_publishes(client: Client,
                                                tokens: dict[Role, dict[str, str]]) -> None:
    editor, reviewer = tokens[Role.KB_EDITOR], tokens[Role.REVIEWER]
    body = {"id": "gift-card", "question": "礼品卡怎么用？", "answer": "结算时选择礼品卡。",
            "paraphrases": ["购物卡能用吗"]}
    response = await client.post("/api/kb/entries", json=body, headers=editor)
    assert response.status == 201
    assert (await response.json())["status"] == "draft"

    response = await client.post("/api/kb/entries/gift-card/publish", headers=editor)
    assert response.status == 403
    assert (await client.post("/api/kb/entries/gift-card/submit", headers=editor)).status == 200
    response = await client.post("/api/kb/entries/gift-card/approve", headers=reviewer)
    data = await response.json()
    assert response.status == 200 and data["status"] == "published"

    found = await (await client.get("/api/kb/search", params={"q": "礼品卡怎么用"},
                                    headers=editor)).json()
    assert found["results"][0]["id"] == "gift-card" and found["confident"] in (True, False)

    response = await client.patch("/api/kb/entries/gift-card",
                                  json={"answer": "新答案", "expected_version": 1},
                                  headers=editor)
    assert response.status == 200 and (await response.json())["version"] == 2
    response = await client.patch("/api/kb/entries/gift-card",
                                  json={"answer": "又改", "expected_version": 1}, headers=editor)
    assert response.status == 409

    response = await client.post("/api/kb/entries/gift-card/rollback", json={"version": 1},
                                 headers=reviewer)
    assert response.status == 200 and (await response.json())["version"] == 3
    versions = (await (await client.get("/api/kb/entries/gift-card/versions",
                                        headers=editor)).json())["versions"]
    assert [v["action"] for v in versions] == ["create", "edit", "rollback"]
    audit = (await (await client.get("/api/kb/audit", params={"entry_id": "gift-card"},
                                     headers=reviewer)).json())["audit"]
    assert audit[0]["action"] == "rollback" and audit[0]["actor"] == "api:reviewer"
    # Paging with the cursor walks the same records, newest first, none twice or missed.
    paged: list[int] = []
    params: dict[str, str | int] = {"entry_id": "gift-card", "limit": 2}
    for _ in range(10):  # bounded: a cursor that does not move must fail, not hang
        page = await (await client.get("/api/kb/audit", params=params, headers=editor)).json()
        paged += [r["id"] for r in page["audit"]]
        if page["next"] is None:
            break
        params["before"] = page["next"]
    assert paged == [r["id"] for r in audit] and len(paged) >= 5
    response = await client.get("/api/kb/audit", params={"before": "x"}, headers=editor)
    assert response.status == 400 and "before" in (await response.json())["error"]
    listed = (await (await client.get("/api/kb/entries", params={"status": "published"},
                                      headers=editor)).json())["entries"]
    assert [e["id"] for e in listed] == ["gift-card"]


async def test_errors_are_json_with_the_right_status(client: Client,
                                                     tokens: dict[Role, dict[str, str]]) -> None:
    admin = tokens[Role.ADMIN]
    ok = {"id": "a", "question": "问题", "answer": "答案"}
    assert (await client.post("/api/kb/entries", json=ok, headers=admin)).status == 201
    cases: list[tuple[str, str, Any, int]] = [
        ("post", "/api/kb/entries", ok, 409),  # duplicate id
        ("post", "/api/kb/entries", {"question": "q"}, 400),  # no answer
        ("post", "/api/kb/entries", {"question": "q", "answer": "长" * 5001}, 413),
        ("post", "/api/kb/entries", ["not", "an", "object"], 400),
        ("post", "/api/kb/entries", {"id": 5, "question": "q", "answer": "a"}, 400),
        ("get", "/api/kb/entries/nope", None, 404),
        ("post", "/api/kb/entries/nope/publish", None, 404),
        ("post", "/api/kb/entries/a/approve", None, 409),  # a draft is not in review
        ("post", "/api/kb/entries/a/rollback", {"version": "x"}, 400),
        ("post", "/api/kb/entries/a/rollback", {"version": 9}, 404),
        ("patch", "/api/kb/entries/a", {"id": "b"}, 400),
        ("patch", "/api/kb/entries/a", {"status": "published"}, 400),
        ("get", "/api/kb/entries?status=bogus", None, 400),
        ("get", "/api/kb/entries?limit=0", None, 400),
        ("get", "/api/kb/search", None, 400),
        ("get", "/api/kb/gaps?limit=abc", None, 400),
    ]
    for method, path, body, status in cases:
        response = await client.request(method, path, json=body, headers=admin)
        assert response.status == status, (method, path, await response.text())
        assert "error" in await response.json()

    bad_json = await client.post("/api/kb/entries", data=b"{nope",
                                 headers={**admin, "Content-Type": "application/json"})
    assert bad_json.status == 400
    huge = await client.post("/api/kb/entries", data=b"x" * (MAX_BODY + 10), headers=admin)
    assert huge.status == 413
    assert (await client.get("/api/kb/entries/a", headers=admin)).status == 200


async def test_gaps_endpoint(client: Client, kb: KnowledgeBase,
                             tokens: dict[Role, dict[str, str]]) -> None:
    await kb.store.record_gap("k", "怎么买彩票", None, None)
    data = await (await client.get("/api/kb/gaps", headers=tokens[Role.KB_EDITOR])).json()
    assert data["gaps"][0]["text"] == "怎么买彩票" and data["gaps"][0]["count"] == 1
