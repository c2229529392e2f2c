"""Privacy routes of the staff API: legal hold on a ticket (supervisors and admins).

``POST {prefix}/tickets/{id}/legal-hold`` with ``{"hold": true|false, "reason": "…"}`` sets or
releases the hold and answers ``{"id", "number", "legal_hold", "held"}`` (``held`` also counts
a malicious flag). Each call adds an audit row. Errors as the console API: 400 bad body,
401 no token, 403 an agent or editor, 404 unknown ticket. The handlers use the `Casework` under
`handoff.api.CASEWORK` for its ticket store and clock, so the wiring only mounts `routes`.
"""

from __future__ import annotations

from aiohttp import web

from handoff.api import CASEWORK, _body, staff_endpoint
from handoff.errors import InvalidTicket
from handoff.retention import is_held, set_legal_hold
from handoff.users import APPROVER_ROLES, User


async def legal_hold(request: web.Request, user: User) -> web.Response:
    data = await _body(request)
    hold = data.get("hold")
    if not isinstance(hold, bool):
        raise InvalidTicket('"hold" must be true or false')
    casework = request.app[CASEWORK]
    ticket = await set_legal_hold(casework.store, request.match_info["id"], hold=hold,
                                  actor=user.username, reason=data.get("reason"),
                                  now=casework.clock())
    return web.json_response({"id": ticket.id, "number": ticket.number,
                              "legal_hold": ticket.legal_hold, "held": is_held(ticket)})


def routes(prefix: str = "/api") -> list[web.RouteDef]:
    """The privacy routes; the app must hold CASEWORK and USERS (as for `handoff.api.routes`)."""
    return [web.post(prefix + "/tickets/{id}/legal-hold",
                     staff_endpoint(legal_hold, APPROVER_ROLES))]
