"""The OpenAPI 3.1 document of the console API (handoff.api), kept beside its routes.

A test checks that every route `handoff.api.routes()` mounts is described here.
"""

from __future__ import annotations

from typing import Any

_ERROR = {"$ref": "#/components/schemas/Error"}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def _responses(ok: dict[str, Any], *codes: int) -> dict[str, Any]:
    reasons = {400: "bad input", 401: "unauthenticated", 403: "forbidden",
               404: "no such ticket", 409: "invalid transition (the reason in error)",
               422: "banned promise in the text (phrases listed); send again with confirm",
               503: "database unavailable"}
    out: dict[str, Any] = {"200": {"description": "OK", **_json(ok)}}
    for code in (401, 403, *codes):
        out[str(code)] = {"description": reasons[code], **_json(_ERROR)}
    return out


_TICKET = {"$ref": "#/components/schemas/Ticket"}
_ID = [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}]
_SECURE: list[dict[str, list[str]]] = [{"bearer": []}]


def _action(summary: str, body: dict[str, Any] | None = None, *codes: int) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary, "parameters": _ID, "security": _SECURE,
        "responses": _responses(_TICKET, 400, 404, 409, *codes)}
    if body is not None:
        operation["requestBody"] = {"required": False, **_json(body)}
    return {"post": operation}


def _obj(**props: Any) -> dict[str, Any]:
    return {"type": "object", "properties": props}


_STR = {"type": "string"}

DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "intakebot agent console API", "version": "1.0.0",
             "description": "Tickets, claims, live chat, approvals and SLA for complaint "
                            "handling. Log in, then send Authorization: Bearer TOKEN."},
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "Error": {"type": "object", "required": ["error"],
                      "properties": {"error": _STR, "phrases": {"type": "array",
                                                                "items": _STR}}},
            "User": _obj(id=_STR, username=_STR, role={"enum": ["agent", "supervisor",
                                                                 "kb_editor", "admin"]},
                         department={"type": ["string", "null"]}),
            "Stage": _obj(stage=_STR, owner=_STR, planned_at=_STR, actual_at=_STR,
                          result=_STR, feedback=_STR, next_action=_STR, actor=_STR,
                          updated_at=_STR),
            "Ticket": {
                "type": "object",
                "required": ["id", "number", "status", "priority", "category", "department",
                             "assignee", "sla_due", "form", "history"],
                "properties": {
                    "id": _STR, "number": _STR,
                    "status": {"enum": ["new", "assigned", "investigating",
                                        "awaiting_approval", "resolved", "closed",
                                        "reopened"]},
                    "priority": {"enum": ["high", "medium", "low"]},
                    "category": {"type": ["string", "null"]}, "department": _STR,
                    "assignee": {"type": ["string", "null"]}, "sla_due": _STR,
                    "resolution_due": _STR, "breaches": {"type": "array", "items": _STR},
                    "solution": {"type": ["string", "null"]},
                    "solution_amount": {"type": ["string", "null"]},
                    "approval": {"type": ["string", "null"]},
                    "merchant": {"type": ["string", "null"]},
                    "merchant_due": {"type": ["string", "null"]},
                    "merchant_answered_at": {"type": ["string", "null"]},
                    "confirmation": {"enum": ["asked", "confirmed", "denied", None]},
                    "reopen_count": {"type": "integer"},
                    "second_handling": {"type": "boolean"},
                    "legal_hold": {"type": "boolean"},
                    "masked": {"type": "boolean"},
                    "form": {"type": "object", "description": "template-1 fields"},
                    "history": {"type": "array",
                                "items": {"$ref": "#/components/schemas/Stage"}},
                    "notes": {"type": "array"}, "transcript": {"type": "array"},
                    "evidence": {"type": "array"}, "investigation": {"type": ["object", "null"]},
                    "survey": {"oneOf": [{"$ref": "#/components/schemas/Survey"},
                                         {"type": "null"}],
                               "description": "null until the invitation went out"},
                },
            },
            "Survey": {
                "type": "object",
                "description": "The satisfaction survey (DOMAIN.md template 3); scores, "
                               "aspects and suggestion are null until answered. The "
                               "suggestion is masked like the transcript.",
                "properties": {
                    "method": {"enum": ["chat", "web"]},
                    "sent_at": {"type": ["string", "null"], "format": "date-time"},
                    "answered_at": {"type": ["string", "null"], "format": "date-time"},
                    **{name: {"type": ["integer", "null"], "minimum": 1, "maximum": 5}
                       for name in ("timeliness", "effectiveness", "attitude", "overall")},
                    "best_aspect": {"type": ["string", "null"]},
                    "improve_aspect": {"type": ["string", "null"]},
                    "suggestion": {"type": ["string", "null"]},
                    "second_handling": {"type": "boolean",
                                        "description": "the answers started second handling"},
                },
            },
        },
    },
    "paths": {
        "/api/openapi.json": {"get": {"summary": "This document",
                                      "responses": {"200": {"description": "OK"}}}},
        "/api/auth/login": {"post": {
            "summary": "Log in",
            "requestBody": {"required": True, **_json(_obj(username=_STR, password=_STR))},
            "responses": {"200": {"description": "a bearer token",
                                  **_json(_obj(token=_STR,
                                               user={"$ref": "#/components/schemas/User"}))},
                          "400": {"description": "bad input", **_json(_ERROR)},
                          "401": {"description": "wrong name or password", **_json(_ERROR)}}}},
        "/api/auth/logout": {"post": {"summary": "Revoke this token", "security": _SECURE,
                                      "responses": _responses(_obj(ok={"type": "boolean"}))}},
        "/api/auth/me": {"get": {"summary": "Who this token belongs to", "security": _SECURE,
                                 "responses": _responses(
                                     {"$ref": "#/components/schemas/User"})}},
        "/api/tickets": {"get": {
            "summary": "The queue, by priority then first-response due time",
            "security": _SECURE,
            "parameters": [{"name": n, "in": "query", "required": False, "schema": _STR}
                           for n in ("status", "priority", "category", "department",
                                     "assignee", "include_closed")],
            "responses": _responses(_obj(tickets={"type": "array"}), 400)}},
        "/api/tickets/{id}": {
            "get": {"summary": "One ticket (personal data masked)", "parameters": _ID,
                    "security": _SECURE, "responses": _responses(_TICKET, 404)},
            "patch": {"summary": "Edit the form, the priority, next action; status "
                                 "'investigating'",
                      "parameters": _ID, "security": _SECURE,
                      "requestBody": {"required": True, **_json({"type": "object"})},
                      "responses": _responses(_TICKET, 400, 404, 409)},
        },
        "/api/tickets/{id}/claim": _action("Claim: exactly one of simultaneous claims wins"),
        "/api/tickets/{id}/release": _action("Back to the queue; the bot takes the chat back",
                                             _obj(note=_STR)),
        "/api/tickets/{id}/messages": _action(
            "Send a message to the customer on their channel",
            {**_obj(text=_STR, confirm={"type": "boolean"}), "required": ["text"]}, 422),
        "/api/tickets/{id}/notes": {"post": {
            "summary": "Add an internal note", "parameters": _ID, "security": _SECURE,
            "requestBody": {"required": True, **_json(_obj(text=_STR))},
            "responses": {**_responses(_TICKET, 400, 404),
                          "201": {"description": "added", **_json(_TICKET)}}}},
        "/api/tickets/{id}/resolve": _action(
            "Record the solution; above the threshold it awaits approval",
            {**_obj(solution={"enum": ["apology", "explanation", "resend", "return_refund",
                                       "partial_refund", "refund", "exchange", "repair",
                                       "coupon", "extended_warranty", "public_apology",
                                       "compromise", "referral"]},
                    amount={"type": ["number", "string", "null"], "description": "CNY"},
                    note=_STR), "required": ["solution"]}),
        "/api/tickets/{id}/approve": _action("Supervisor: approve the solution",
                                             _obj(note=_STR)),
        "/api/tickets/{id}/reject": _action("Supervisor: reject the solution",
                                            _obj(note=_STR)),
        "/api/tickets/{id}/close": _action("Close a resolved ticket",
                                           _obj(feedback=_STR, note=_STR)),
        "/api/tickets/{id}/reopen": _action("Reopen a resolved or closed ticket",
                                            _obj(reason=_STR)),
        "/api/tickets/{id}/reveal": _action("The ticket unmasked (handler only; audited)"),
        "/api/tickets/{id}/investigation": {"put": {
            "summary": "Write the investigation record", "parameters": _ID,
            "security": _SECURE,
            "requestBody": {"required": True, **_json(_obj(
                problem=_STR, evidence=_STR, proposal=_STR, complex={"type": "boolean"},
                customer_told={"type": "boolean"},
                responsible={"enum": ["customer", "merchant", "logistics", "platform",
                                      "third_party"]}))},
            "responses": _responses({"type": "object"}, 400, 404, 409)}},
        "/api/tickets/{id}/flag": _action("Flag as suspected malicious (legal review)",
                                          {**_obj(reason=_STR), "required": ["reason"]}),
        "/api/tickets/{id}/legal-hold": {"post": {  # handoff.privacy_api (docs/privacy.md)
            "summary": "Set or lift legal hold (supervisors and admins; audited)",
            "parameters": _ID, "security": _SECURE,
            "requestBody": {"required": True, **_json({
                **_obj(hold={"type": "boolean"}, reason=_STR), "required": ["hold", "reason"]})},
            "responses": _responses(_obj(id=_STR, number=_STR, legal_hold={"type": "boolean"},
                                         held={"type": "boolean"}), 400, 404)}},
        "/api/tickets/{id}/merchant": _action("Copy to the merchant team (24 h to answer)",
                                              {**_obj(merchant=_STR),
                                               "required": ["merchant"]}),
        "/api/tickets/{id}/merchant/answer": _action("Record the merchant's answer",
                                                     {**_obj(text=_STR),
                                                      "required": ["text"]}),
        "/api/tickets/{id}/audit": {"get": {
            "summary": "Audit trail (supervisor, admin)", "parameters": _ID,
            "security": _SECURE, "responses": _responses(_obj(audit={"type": "array"}), 404)}},
        "/api/tickets/{id}/canned": {"get": {
            "summary": "Canned replies from the knowledge base (for q, else the story)",
            "parameters": [*_ID, {"name": "q", "in": "query", "required": False,
                                  "schema": _STR}],
            "security": _SECURE,
            "responses": _responses(_obj(replies={"type": "array", "items": _obj(
                question=_STR, answer=_STR)}), 404)}},
        "/api/tickets/{id}/evidence/{sha256}": {"get": {
            "summary": "An evidence file of the ticket",
            "parameters": [*_ID, {"name": "sha256", "in": "path", "required": True,
                                  "schema": _STR}],
            "security": _SECURE,
            "responses": {**_responses({"type": "string"}, 404),
                          "200": {"description": "the file"}}}},
        "/api/channels/dead-letters": {"get": {
            "summary": "Replies no channel could deliver (agents, supervisors, admins)",
            "security": _SECURE,
            "responses": _responses(_obj(dead_letters={"type": "array"}))}},
        "/api/console/ws": {"get": {
            "summary": "WebSocket of live ticket events; send {\"token\": …} first",
            "responses": {"101": {"description": "switching protocols"}}}},
    },
}
