"""The editors' REST API: entries, workflow, versions, audit log, search and gaps.

`routes()` returns aiohttp route definitions for the wiring to mount (under /api/kb); the
KnowledgeBase they use is found in the application under KNOWLEDGE_BASE. Every request carries
`Authorization: Bearer <token>` of a key made by `intakebot kb apikey create`; the key's role
decides what it may do (workflow.check_role). Errors are JSON {"error": …} with 400/401/403/404/
409/413/503, never a 500 for bad input.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from sqlalchemy.exc import DBAPIError

from knowledge_base.entries import Action, ApiKeyInfo, Status, content_from_mapping
from knowledge_base.errors import (
    DuplicateEntry,
    EntryNotFound,
    FieldTooLong,
    Forbidden,
    ImportRejected,
    InvalidEntry,
    InvalidTransition,
    KnowledgeBaseError,
    StoreUnavailable,
    Unauthenticated,
)
from knowledge_base.service import KnowledgeBase
from knowledge_base.workflow import check_role

KNOWLEDGE_BASE = web.AppKey("knowledge_base", KnowledgeBase)
log = logging.getLogger(__name__)

MAX_BODY = 256 * 1024  # one entry is at most ~300 KB of text; anything larger is a mistake
KEY_CACHE_SECONDS = 60.0  # argon2 is slow on purpose: remember a verified token this long

_STATUS: list[tuple[type[KnowledgeBaseError], int]] = [
    (Unauthenticated, 401),
    (Forbidden, 403),
    (EntryNotFound, 404),
    (DuplicateEntry, 409),
    (InvalidTransition, 409),
    (FieldTooLong, 413),
    (InvalidEntry, 400),
    (ImportRejected, 400),
    (StoreUnavailable, 503),
    (KnowledgeBaseError, 400),
]

Handler = Callable[[web.Request, ApiKeyInfo], Awaitable[web.StreamResponse]]


class BadRequest(InvalidEntry):
    """A malformed request: bad JSON, a bad query parameter."""


class _KeyCache:
    def __init__(self) -> None:
        self._keys: dict[str, tuple[ApiKeyInfo, float]] = {}

    async def authenticate(self, kb: KnowledgeBase, header: str | None) -> ApiKeyInfo:
        if not header or not header.startswith("Bearer "):
            raise Unauthenticated("send Authorization: Bearer <API key>")
        token = header[len("Bearer "):].strip()
        fingerprint = hashlib.sha256(token.encode()).hexdigest()
        cached = self._keys.get(fingerprint)
        now = time.monotonic()
        if cached is not None and cached[1] > now:
            return cached[0]
        info = await kb.store.authenticate(token)
        if len(self._keys) > 1000:
            self._keys.clear()
        self._keys[fingerprint] = (info, now + KEY_CACHE_SECONDS)
        return info


def error_response(status: int, message: str, **extra: Any) -> web.Response:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return web.json_response({"error": message, **extra}, status=status, headers=headers)


def _endpoint(cache: _KeyCache, handler: Handler, action: Action | None
              ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            kb = request.app[KNOWLEDGE_BASE]
            key = await cache.authenticate(kb, request.headers.get("Authorization"))
            if action is not None:
                check_role(key.role, action)
            return await handler(request, key)
        except ImportRejected as exc:
            return error_response(400, str(exc).splitlines()[0],
                                  rows=[{"line": e.line, "id": e.entry_id, "message": e.message}
                                        for e in exc.errors])
        except KnowledgeBaseError as exc:
            status = next(code for kind, code in _STATUS if isinstance(exc, kind))
            return error_response(status, str(exc))
        except web.HTTPRequestEntityTooLarge:
            return error_response(413, f"request body larger than {MAX_BODY} bytes")
        except (DBAPIError, OSError) as exc:
            # The database went away mid-request: say so instead of a bare 500.
            log.error("knowledge base database error: %s", exc)
            return error_response(503, "the knowledge base database is unavailable")

    return wrapped


async def _json(request: web.Request) -> dict[str, Any]:
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise FieldTooLong(f"request body larger than {MAX_BODY} bytes")
    # content.read(n) returns what has arrived, not n bytes: read until the end.
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.read(64 * 1024):
        size += len(chunk)
        if size > MAX_BODY:
            raise FieldTooLong(f"request body larger than {MAX_BODY} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    try:
        data = json.loads(raw or b"{}")
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object")
    return data


def _int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be an integer") from None
    if not low <= value <= high:
        raise BadRequest(f"{name} must be between {low} and {high}")
    return value


def _actor(key: ApiKeyInfo) -> str:
    return f"api:{key.name}"


# ---- handlers ----------------------------------------------------------------------------


async def list_entries(request: web.Request, key: ApiKeyInfo) -> web.Response:
    raw = request.query.get("status")
    try:
        status = Status(raw) if raw else None
    except ValueError:
        raise BadRequest(f"unknown status {raw!r}") from None
    entries = await request.app[KNOWLEDGE_BASE].store.list_entries(
        status, limit=_int(request, "limit", 100, 1, 1000),
        offset=_int(request, "offset", 0, 0, 10**9))
    return web.json_response({"entries": [e.to_dict() for e in entries]})


async def get_entry(request: web.Request, key: ApiKeyInfo) -> web.Response:
    entry = await request.app[KNOWLEDGE_BASE].store.get(request.match_info["id"])
    return web.json_response(entry.to_dict())


async def create_entry(request: web.Request, key: ApiKeyInfo) -> web.Response:
    data = await _json(request)
    content = content_from_mapping(data)
    raw_id = data.get("id")
    if raw_id is not None and not isinstance(raw_id, str):
        raise BadRequest("id must be a string")
    entry = await request.app[KNOWLEDGE_BASE].create(raw_id, content, _actor(key))
    return web.json_response(entry.to_dict(), status=201)


async def update_entry(request: web.Request, key: ApiKeyInfo) -> web.Response:
    data = await _json(request)
    expected = data.pop("expected_version", None)
    if expected is not None and (not isinstance(expected, int) or isinstance(expected, bool)):
        raise BadRequest("expected_version must be an integer")
    if "id" in data and data["id"] != request.match_info["id"]:
        raise BadRequest("the id of an entry cannot be changed")
    data.pop("id", None)
    entry = await request.app[KNOWLEDGE_BASE].update(
        request.match_info["id"], data, _actor(key), expected_version=expected)
    return web.json_response(entry.to_dict())


def _transition(action: Action) -> Handler:
    async def handler(request: web.Request, key: ApiKeyInfo) -> web.Response:
        entry = await request.app[KNOWLEDGE_BASE].transition(
            request.match_info["id"], action, _actor(key))
        return web.json_response(entry.to_dict())

    return handler


async def rollback_entry(request: web.Request, key: ApiKeyInfo) -> web.Response:
    data = await _json(request)
    version = data.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise BadRequest("version must be a positive integer")
    entry = await request.app[KNOWLEDGE_BASE].rollback(request.match_info["id"], version,
                                                       _actor(key))
    return web.json_response(entry.to_dict())


async def list_versions(request: web.Request, key: ApiKeyInfo) -> web.Response:
    versions = await request.app[KNOWLEDGE_BASE].store.versions(request.match_info["id"])
    return web.json_response({"versions": [v.to_dict() for v in versions]})


async def list_audit(request: web.Request, key: ApiKeyInfo) -> web.Response:
    limit = _int(request, "limit", 100, 1, 1000)
    before = _int(request, "before", 0, 1, 2**62) if "before" in request.query else None
    records = await request.app[KNOWLEDGE_BASE].store.audit(
        request.query.get("entry_id") or None, limit=limit, before=before)
    # The cursor of the next (older) page: pass it back as ?before=; null on the last page.
    more = len(records) == limit and records[-1].id > 1
    return web.json_response({"audit": [r.to_dict() for r in records],
                              "next": records[-1].id if more else None})


async def search(request: web.Request, key: ApiKeyInfo) -> web.Response:
    text = request.query.get("q", "")
    if not text.strip():
        raise BadRequest("give the question as ?q=")
    if len(text) > 2000:
        raise FieldTooLong("q is longer than 2000 characters")
    result = await request.app[KNOWLEDGE_BASE].search(
        text, top_k=_int(request, "top_k", 5, 1, 50), record_gap=False)
    return web.json_response(result.to_dict())


async def list_gaps(request: web.Request, key: ApiKeyInfo) -> web.Response:
    found = await request.app[KNOWLEDGE_BASE].store.gaps(
        limit=_int(request, "limit", 100, 1, 1000))
    return web.json_response({"gaps": [g.to_dict() for g in found]})


def routes(prefix: str = "/api/kb") -> list[web.RouteDef]:
    """The API's routes under `prefix`; the app must hold the KnowledgeBase at KNOWLEDGE_BASE."""
    cache = _KeyCache()

    def ep(handler: Handler, action: Action | None = None
           ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        return _endpoint(cache, handler, action)

    entry = prefix + "/entries/{id}"
    return [
        web.get(prefix + "/entries", ep(list_entries)),
        web.post(prefix + "/entries", ep(create_entry, Action.CREATE)),
        web.get(entry, ep(get_entry)),
        web.patch(entry, ep(update_entry, Action.EDIT)),
        web.post(entry + "/submit", ep(_transition(Action.SUBMIT), Action.SUBMIT)),
        web.post(entry + "/approve", ep(_transition(Action.APPROVE), Action.APPROVE)),
        web.post(entry + "/reject", ep(_transition(Action.REJECT), Action.REJECT)),
        web.post(entry + "/publish", ep(_transition(Action.PUBLISH), Action.PUBLISH)),
        web.post(entry + "/archive", ep(_transition(Action.ARCHIVE), Action.ARCHIVE)),
        web.post(entry + "/rollback", ep(rollback_entry, Action.ROLLBACK)),
        web.get(entry + "/versions", ep(list_versions)),
        web.get(prefix + "/audit", ep(list_audit)),
        web.get(prefix + "/search", ep(search)),
        web.get(prefix + "/gaps", ep(list_gaps)),
    ]
