"""The agent console's REST API, its WebSocket and the /console page.

`routes()` returns aiohttp route definitions for the wiring to mount; the handlers find the
`Casework`, the `UserStore`, the `Events` and the `EvidenceStore` in the application under the
keys below. Every call but login carries ``Authorization: Bearer TOKEN`` (the WebSocket, which
browsers cannot give headers, sends the token as its first message). Errors are JSON
``{"error": …}``: 400 bad input, 401 unauthenticated, 403 forbidden, 404 unknown ticket, 409 an
invalid transition (with the reason), 413 a file too large, 422 a banned promise (with the
phrases), 503 a database down; `error_response` is the one mapping, which the app's error
middleware uses for handoff errors from any route. The OpenAPI document of all of it is
`handoff.openapi.DOCUMENT`, served at /api/openapi.json.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

from aiohttp import WSMsgType, web

from handoff.errors import (
    EvidenceNotFound,
    EvidenceTooLarge,
    Forbidden,
    HandoffError,
    InvalidTicket,
    InvalidTransition,
    TicketNotFound,
    TicketStoreUnavailable,
    Unauthenticated,
    UserExists,
    WordingViolation,
)
from handoff.evidence import EvidenceStore
from handoff.live import Events
from handoff.openapi import DOCUMENT
from handoff.survey import Survey, Surveys
from handoff.tickets import Ticket
from handoff.users import Role, User, UserStore
from handoff.workflow import Casework, parse_amount


class CannedReplies(Protocol):
    """Suggested answers for the agent (the wiring serves them from the knowledge base)."""

    async def suggest(self, text: str, *, limit: int = 5) -> list[dict[str, str]]:
        """Up to `limit` ``{"question", "answer"}`` pairs that fit `text`, best first."""
        ...


CASEWORK = web.AppKey("casework", Casework)
CANNED = web.AppKey[CannedReplies]("canned_replies")
USERS = web.AppKey("users", UserStore)
EVENTS = web.AppKey[Events]("events")
FILES = web.AppKey("console_files", EvidenceStore)

STATIC_DIR = Path(__file__).with_name("static")
MAX_BODY = 64 * 1024
log = logging.getLogger(__name__)

# The one mapping of the handoff error tree to HTTP. The staff routes answer with it, and the
# app's error middleware uses it for a handoff error raised by any other route (web chat,
# channels, knowledge base), so an error gets the same status wherever it is raised. The first
# matching class wins; anything else (RoutingError, EvidenceError) is a 500.
_STATUS: tuple[tuple[type[HandoffError], int], ...] = (
    (Unauthenticated, 401),
    (Forbidden, 403),
    (TicketNotFound, 404),
    (EvidenceNotFound, 404),
    (InvalidTransition, 409),
    (UserExists, 409),
    (EvidenceTooLarge, 413),
    (WordingViolation, 422),
    (InvalidTicket, 400),
    (TicketStoreUnavailable, 503),
)

Handler = Callable[[web.Request, User], Awaitable[web.StreamResponse]]


def error_status(exc: HandoffError) -> int:
    """The HTTP status that answers a handoff error."""
    return next((status for kind, status in _STATUS if isinstance(exc, kind)), 500)


def error_response(exc: HandoffError) -> web.Response:
    """The JSON answer to a handoff error: ``{"error": reason}`` (and the banned phrases).

    A database outage (503) says to retry and a bug (500) says nothing of internals; both are
    logged with the details.
    """
    status = error_status(exc)
    body: dict[str, Any] = {"error": str(exc)}
    headers: dict[str, str] = {}
    if isinstance(exc, WordingViolation):
        body["phrases"] = list(exc.phrases)
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    elif status == 503:
        log.error("answering 503: %s", exc)
        body["error"] = "the ticket database is unavailable; try again shortly"
        headers["Retry-After"] = "5"
    elif status == 500:
        log.error("answering 500: %s: %s", type(exc).__name__, exc, exc_info=exc)
        body["error"] = "the request could not be completed"
    return web.json_response(body, status=status, headers=headers or None)


def _bearer(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("send Authorization: Bearer TOKEN (POST /api/auth/login)")
    return token.strip()


def staff_endpoint(handler: Handler, roles: frozenset[Role] | None = None
                   ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """A handler for signed-in staff (of `roles`, when given), with errors as JSON responses.

    The wiring uses it for staff pages that live outside handoff (e.g. channel dead letters).
    """

    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            user = await request.app[USERS].authenticate(_bearer(request))
            if roles is not None and user.role not in roles:
                raise Forbidden(f"{user.role.value} may not see this")
            return await handler(request, user)
        except HandoffError as exc:
            return error_response(exc)

    return wrapped


def _too_large(size: int) -> web.HTTPRequestEntityTooLarge:
    return web.HTTPRequestEntityTooLarge(max_size=MAX_BODY, actual_size=size)


async def _body(request: web.Request) -> dict[str, Any]:
    """The JSON object in the body; 413 over MAX_BODY (checked while reading, not after)."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise _too_large(request.content_length)
    # content.read(n) returns what has arrived, not n bytes: read until the end.
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.read(64 * 1024):
        size += len(chunk)
        if size > MAX_BODY:
            raise _too_large(size)
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidTicket(f"the body is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidTicket("the body must be a JSON object")
    return data


def _ticket_id(request: web.Request) -> str:
    return request.match_info["id"]


def summary(ticket: Ticket) -> dict[str, Any]:
    """A ticket in the queue: the fields the console lists and sorts by (no personal data)."""
    data = ticket.to_dict()
    return {name: data[name] for name in (
        "id", "number", "status", "priority", "category", "subcategory", "department",
        "assignee", "sla_due", "emotion", "breaches", "malicious", "approval", "channel",
        "registered_at", "updated_at", "merchant_due", "solution", "solution_amount",
        "reopen_count", "second_handling", "legal_hold")}


# ---- handlers -------------------------------------------------------------------------------


async def login(request: web.Request) -> web.Response:
    try:
        data = await _body(request)
        username, password = data.get("username"), data.get("password")
        if not isinstance(username, str) or not isinstance(password, str):
            raise InvalidTicket('send {"username": …, "password": …}')
        token, user = await request.app[USERS].login(username, password)
    except HandoffError as exc:
        return error_response(exc)
    return web.json_response({"token": token, "user": user.to_dict()})


async def logout(request: web.Request, _user: User) -> web.Response:
    await request.app[USERS].logout(_bearer(request))
    return web.json_response({"ok": True})


async def me(_request: web.Request, user: User) -> web.Response:
    return web.json_response(user.to_dict())


async def list_tickets(request: web.Request, user: User) -> web.Response:
    query = request.query
    unknown = set(query) - {"status", "priority", "category", "department", "assignee",
                            "include_closed"}
    if unknown:
        raise InvalidTicket(f"unknown filters: {', '.join(sorted(unknown))}")
    tickets = await request.app[CASEWORK].queue(
        user, status=query.get("status"), priority=query.get("priority"),
        category=query.get("category"), department=query.get("department"),
        assignee=query.get("assignee"),
        include_closed=query.get("include_closed") in ("1", "true"))
    return web.json_response({"tickets": [summary(t) for t in tickets]})


async def ticket_view(casework: Casework, ticket_id: str, user: User, *,
                      reveal: bool = False) -> dict[str, Any]:
    """The ticket as the console shows it (`Casework.view`) with its satisfaction survey:
    None before the invitation went out, else `survey_view`."""
    view = await casework.view(ticket_id, user, reveal=reveal)
    found = await Surveys(casework.store).get(view["id"])
    view["survey"] = None if found is None else survey_view(found, masked=view["masked"])
    return view


def survey_view(survey: Survey, *, masked: bool) -> dict[str, Any]:
    """When the survey was sent and answered, the four scores, the two aspects, the
    suggestion (personal data masked like the transcript) and whether it started second
    handling."""
    from nlp.pii import mask_pii

    data = survey.to_dict()
    del data["ticket_id"]
    if masked and survey.suggestion:
        data["suggestion"] = mask_pii(survey.suggestion)
    return data


async def get_ticket(request: web.Request, user: User) -> web.Response:
    return web.json_response(await ticket_view(request.app[CASEWORK], _ticket_id(request), user))


async def reveal(request: web.Request, user: User) -> web.Response:
    return web.json_response(
        await ticket_view(request.app[CASEWORK], _ticket_id(request), user, reveal=True))


# Form fields that decide which customer and which order a ticket counts for in the reports.
_CHAIN_FIELDS = frozenset({"customer_id", "phone", "email", "order_id"})


async def patch_ticket(request: web.Request, user: User) -> web.Response:
    casework = request.app[CASEWORK]
    changes = await _body(request)
    before = (await casework.store.get(_ticket_id(request))
              if _CHAIN_FIELDS & set(changes) else None)
    ticket = await casework.update(_ticket_id(request), user, changes)
    if before is not None:
        # The report neighbours follow the edit (handoff.tickets.relink). Casework commits the
        # edit on its own, so this runs just after it; relinking is idempotent.
        await casework.store.relink([ticket.id], orders=[before.order_id])
    return web.json_response(await ticket_view(casework, ticket.id, user))


def _action(run: Callable[[Casework, str, User, dict[str, Any]], Awaitable[Ticket]]) -> Handler:
    async def handler(request: web.Request, user: User) -> web.Response:
        casework = request.app[CASEWORK]
        ticket = await run(casework, _ticket_id(request), user, await _body(request))
        return web.json_response(await ticket_view(casework, ticket.id, user))

    return handler


def _opt(data: dict[str, Any], name: str) -> str | None:
    value = data.get(name)
    if value is not None and not isinstance(value, str):
        raise InvalidTicket(f"{name} must be a string")
    return value


def _req(data: dict[str, Any], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value.strip():
        raise InvalidTicket(f"{name} is required")
    return value


async def _claim(c: Casework, tid: str, u: User, _d: dict[str, Any]) -> Ticket:
    return await c.claim(tid, u)


async def _release(c: Casework, tid: str, u: User, d: dict[str, Any]) -> Ticket:
    return await c.release(tid, u, note=_opt(d, "note"))


async def _message(c: Casework, tid: str, u: User, d: dict[str, Any]) -> Ticket:
    confirm = d.get("confirm", False)
    if not isinstance(confirm, bool):
        raise InvalidTicket("confirm is true or false")
    return await c.message(tid, u, _req(d, "text"), confirm=confirm)


async def _resolve(c: Casework, tid: str, u: User, d: dict[str, Any]) -> Ticket:
    return await c.resolve(tid, u, solution=_req(d, "solution"),
                           amount=parse_amount(d.get("amount")), note=_opt(d, "note"))


async def _approve(c: Casework, tid: str, u: User, d: dict[str, Any]) -> Ticket:
    return await c.decide(tid, u, approve=True, note=_opt(d, "note"))


async def _reject(c: Casework, tid: str, u: User, d: dict[str, Any]) -> Ticket:
    return await c.decide(tid, u, approve=False, note=_opt(d, "note"))


async def _close(c: Casework, tid: str, u: User, d: dict[str, Any]) -> Ticket:
    return await c.close(tid, u, feedback=_opt(d, "feedback"), note=_opt(d, "note"))


async def _reopen(c: Casework, tid: str, u: User, d: dict[str, Any]) -> Ticket:
    return await c.reopen(tid, u, reason=_opt(d, "reason"))


async def _flag(c: Casework, tid: str, u: User, d: dict[str, Any]) -> Ticket:
    return await c.flag_malicious(tid, u, _req(d, "reason"))


async def _merchant(c: Casework, tid: str, u: User, d: dict[str, Any]) -> Ticket:
    return await c.copy_merchant(tid, u, _req(d, "merchant"))


async def _merchant_answer(c: Casework, tid: str, u: User, d: dict[str, Any]) -> Ticket:
    return await c.merchant_answered(tid, u, _req(d, "text"))


async def add_note(request: web.Request, user: User) -> web.Response:
    casework = request.app[CASEWORK]
    await casework.note(_ticket_id(request), user, _req(await _body(request), "text"))
    return web.json_response(await ticket_view(casework, _ticket_id(request), user), status=201)


async def put_investigation(request: web.Request, user: User) -> web.Response:
    record = await request.app[CASEWORK].investigate(_ticket_id(request), user,
                                                     await _body(request))
    return web.json_response(record)


async def audit(request: web.Request, user: User) -> web.Response:
    return web.json_response(
        {"audit": await request.app[CASEWORK].audit_log(_ticket_id(request), user)})


async def canned(request: web.Request, user: User) -> web.Response:
    """Canned replies for the ticket: for `q` when given, else for the customer's story."""
    view = await request.app[CASEWORK].view(_ticket_id(request), user)
    text = request.query.get("q") or view["form"]["description"] or ""
    if len(text) > 500:
        text = text[:500]
    replies = await request.app[CANNED].suggest(text) if text.strip() else []
    return web.json_response({"replies": replies})


async def evidence_file(request: web.Request, user: User) -> web.StreamResponse:
    casework = request.app[CASEWORK]
    view = await casework.view(_ticket_id(request), user)
    sha = request.match_info["sha256"]
    found = next((e for e in view["evidence"] if e["sha256"] == sha), None)
    if found is None:
        raise EvidenceNotFound(f"ticket {view['number']} has no evidence {sha}")
    data = await request.app[FILES].read(sha)
    return web.Response(body=data, content_type=found["content_type"],
                        headers={"Content-Disposition": "inline",
                                 "X-Content-Type-Options": "nosniff",
                                 "Content-Security-Policy": "default-src 'none'"})


async def websocket(request: web.Request) -> web.WebSocketResponse:
    """Live events; the first message must be ``{"token": …}``."""
    ws = web.WebSocketResponse(heartbeat=30)
    await ws.prepare(request)
    try:
        first = await ws.receive(timeout=10)
        token = json.loads(first.data).get("token") if first.type is WSMsgType.TEXT else None
        if not isinstance(token, str):
            raise Unauthenticated("send {\"token\": …} first")
        user = await request.app[USERS].authenticate(token)
    except (HandoffError, ValueError, AttributeError, TimeoutError) as exc:
        await ws.send_json({"type": "error", "error": str(exc) or "unauthenticated"})
        await ws.close(code=4401)
        return ws
    await ws.send_json({"type": "hello", "user": user.to_dict()})
    async with request.app[EVENTS].subscribe() as queue:
        reader = asyncio.ensure_future(ws.receive())
        try:
            while not ws.closed:
                getter = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait({reader, getter},
                                             return_when=asyncio.FIRST_COMPLETED)
                if getter in done:
                    await ws.send_json(getter.result())
                else:
                    getter.cancel()
                if reader in done:
                    message = reader.result()
                    if message.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED,
                                        WSMsgType.ERROR):
                        break
                    reader = asyncio.ensure_future(ws.receive())
        finally:
            reader.cancel()
    await ws.close()
    return ws


async def openapi(_request: web.Request) -> web.Response:
    return web.json_response(DOCUMENT)


def routes(prefix: str = "/api") -> list[web.RouteDef]:
    """The console API's routes; the app must hold CASEWORK, USERS, EVENTS and FILES."""
    ticket = prefix + "/tickets/{id}"
    ep = staff_endpoint
    return [
        web.get(prefix + "/openapi.json", openapi, allow_head=False),
        web.post(prefix + "/auth/login", login),
        web.post(prefix + "/auth/logout", ep(logout)),
        web.get(prefix + "/auth/me", ep(me), allow_head=False),
        web.get(prefix + "/tickets", ep(list_tickets), allow_head=False),
        web.get(ticket, ep(get_ticket), allow_head=False),
        web.patch(ticket, ep(patch_ticket)),
        web.post(ticket + "/claim", ep(_action(_claim))),
        web.post(ticket + "/release", ep(_action(_release))),
        web.post(ticket + "/messages", ep(_action(_message))),
        web.post(ticket + "/notes", ep(add_note)),
        web.post(ticket + "/resolve", ep(_action(_resolve))),
        web.post(ticket + "/approve", ep(_action(_approve))),
        web.post(ticket + "/reject", ep(_action(_reject))),
        web.post(ticket + "/close", ep(_action(_close))),
        web.post(ticket + "/reopen", ep(_action(_reopen))),
        web.post(ticket + "/reveal", ep(reveal)),
        web.put(ticket + "/investigation", ep(put_investigation)),
        web.post(ticket + "/flag", ep(_action(_flag))),
        web.post(ticket + "/merchant", ep(_action(_merchant))),
        web.post(ticket + "/merchant/answer", ep(_action(_merchant_answer))),
        web.get(ticket + "/audit", ep(audit), allow_head=False),
        web.get(ticket + "/canned", ep(canned), allow_head=False),
        web.get(ticket + "/evidence/{sha256}", ep(evidence_file), allow_head=False),
        web.get(prefix + "/console/ws", websocket, allow_head=False),
    ]


_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob:; "
        "connect-src 'self' ws: wss:; frame-ancestors 'none'")


def page_routes(path: str = "/console") -> list[web.AbstractRouteDef]:
    """The console page and its static files (plain HTML and JavaScript, no build step)."""

    async def page(_request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC_DIR / "console.html",
                                headers={"Content-Security-Policy": _CSP,
                                         "X-Content-Type-Options": "nosniff"})

    return [web.get(path, page), web.static(path + "/static", STATIC_DIR)]
