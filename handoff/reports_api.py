"""GET /api/reports for supervisors and admins, and the /console/reports page.

``GET /api/reports?period=week|month&from=DATE&to=DATE&format=json|csv|png``:

- json: `Report.to_dict()`; with ``charts=1`` also ``"charts": {name: base64 PNG}``, so the page
  gets figures and charts in one round trip;
- csv: the figures as CSV;
- png: every chart in one image, or only ``chart=NAME`` (one of `handoff.charts.CHARTS`).

Bad parameters are 400 with the reason; agents and editors get 403, anyone without a token 401.
The figures come from the ticket database of the app's `Casework` and the unanswered questions
from the knowledge base the wiring put under `knowledge_base.api.KNOWLEDGE_BASE` (none if it
has not started).
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any

from aiohttp import web

from handoff.api import CASEWORK, STATIC_DIR, staff_endpoint
from handoff.reports import (
    GAP_SCAN,
    TEXT_FORMATS,
    InvalidReport,
    Report,
    build_report,
    choose_period,
    render_text,
)
from handoff.users import Role, User
from knowledge_base.api import KNOWLEDGE_BASE

REPORT_ROLES = frozenset({Role.SUPERVISOR, Role.ADMIN})
FORMATS = ("json", "csv", "png")
_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
        "connect-src 'self'; frame-ancestors 'none'")


async def _report(request: web.Request) -> Report:
    query = request.query
    period = choose_period(query.get("period", "week"), query.get("from") or None,
                           query.get("to") or None)
    kb = request.app.get(KNOWLEDGE_BASE)
    gaps = await kb.store.gaps(limit=GAP_SCAN) if kb is not None else []
    return await build_report(request.app[CASEWORK].store.engine, period, unanswered=gaps)


def _json_with_charts(report: Report) -> dict[str, Any]:
    from handoff.charts import charts

    data = report.to_dict()
    data["charts"] = {name: base64.b64encode(png).decode()
                      for name, png in charts(report).items()}
    return data


async def get_report(request: web.Request, _user: User) -> web.StreamResponse:
    from handoff.charts import CHARTS, chart, overview

    fmt = request.query.get("format", "json")
    name = request.query.get("chart")
    try:
        if fmt not in FORMATS:
            raise InvalidReport(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
        if name is not None and (fmt != "png" or name not in CHARTS):
            raise InvalidReport(f"chart goes with format=png and is one of {', '.join(CHARTS)}")
        report = await _report(request)
    except InvalidReport as exc:
        return web.json_response({"error": str(exc)}, status=400)
    filename = f"report-{report.period.start}-{report.period.end}"
    if fmt == "png":
        # Drawing is CPU work: off the event loop.
        png = await (asyncio.to_thread(chart, report, name) if name
                     else asyncio.to_thread(overview, report))
        return web.Response(body=png, content_type="image/png")
    if fmt == "csv":
        return web.Response(text=render_text(report, "csv"), content_type=TEXT_FORMATS["csv"],
                            charset="utf-8", headers={
                                "Content-Disposition": f'attachment; filename="{filename}.csv"'})
    if request.query.get("charts") in ("1", "true"):
        return web.json_response(await asyncio.to_thread(_json_with_charts, report))
    return web.json_response(report.to_dict())


async def page(_request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "reports.html",
                            headers={"Content-Security-Policy": _CSP,
                                     "X-Content-Type-Options": "nosniff"})


def routes(prefix: str = "/api", page_path: str = "/console/reports") -> list[web.RouteDef]:
    """The report API under `prefix` and its console page at `page_path`.

    The page's script and styles are served with the console's static files (/console/static).
    """
    return [
        web.get(prefix + "/reports", staff_endpoint(get_report, REPORT_ROLES), allow_head=False),
        web.get(page_path, page, allow_head=False),
    ]
