"""GET /api/reports and /console/reports on the real application."""

from __future__ import annotations

import base64
import csv
import io

from handoff.api import CASEWORK
from handoff.reports import china_today
from tests.handoff.conftest import Desk
from tests.handoff.test_reports import seed

PNG = b"\x89PNG\r\n\x1a\n"
WEEK_QUERY = "/api/reports?period=week&from=2026-11-04"


async def staff(desk: Desk) -> None:
    await desk.add_user("ann", "agent")
    await desk.add_user("sue", "supervisor")
    await desk.add_user("adam", "admin")
    await desk.add_user("ed", "kb_editor")


async def test_only_supervisors_and_admins_see_reports(desk: Desk) -> None:
    await staff(desk)
    response = await desk.client.get(WEEK_QUERY)
    assert response.status == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    for user in ("ann", "ed"):
        assert "may not" in (await desk.call("GET", WEEK_QUERY, user, status=403))["error"]
    await seed(desk.app[CASEWORK].store.engine)
    for user in ("sue", "adam"):
        data = await desk.call("GET", WEEK_QUERY, user)
        assert data["period"]["start"] == "2026-11-02"
        assert data["current"]["tickets"] == 6 and data["previous"]["tickets"] == 1
        assert "charts" not in data


async def test_formats(desk: Desk) -> None:
    await staff(desk)
    await seed(desk.app[CASEWORK].store.engine)
    response = await desk.client.get(WEEK_QUERY + "&format=png", headers=desk.auth("sue"))
    assert response.status == 200 and response.content_type == "image/png"
    overview = await response.read()
    assert overview.startswith(PNG)
    response = await desk.client.get(WEEK_QUERY + "&format=png&chart=merchant",
                                     headers=desk.auth("sue"))
    single = await response.read()
    assert single.startswith(PNG) and len(single) < len(overview)
    response = await desk.client.get(WEEK_QUERY + "&format=csv", headers=desk.auth("sue"))
    assert response.status == 200 and response.content_type == "text/csv"
    rows = list(csv.DictReader(io.StringIO(await response.text())))
    assert {r["key"]: r["current"] for r in rows if r["section"] == "figure"}["tickets"] == "6"
    data = await desk.call("GET", WEEK_QUERY + "&charts=1", "sue")
    assert set(data["charts"]) >= {"category", "product", "satisfaction", "rates"}
    assert base64.b64decode(data["charts"]["category"]).startswith(PNG)


async def test_bad_parameters_are_400(desk: Desk) -> None:
    await staff(desk)
    for query, message in [("period=year", "week or month"),
                           ("from=2026-02-30", "ISO date"),
                           ("to=2026-11-01", "to needs from"),
                           ("from=2026-11-05&to=2026-11-01", "before it starts"),
                           ("format=xml", "format"),
                           ("format=json&chart=category", "chart"),
                           ("format=png&chart=nope", "chart")]:
        data = await desk.call("GET", "/api/reports?" + query, "sue", status=400)
        assert message in data["error"], (query, data)


async def test_a_complaint_from_the_chat_shows_in_this_weeks_report(desk: Desk) -> None:
    await staff(desk)
    await desk.complaint()
    today = china_today(desk.clock.now).isoformat()
    data = await desk.call("GET", f"/api/reports?period=week&from={today}", "adam")
    assert data["current"]["tickets"] == 1
    assert [c["key"] for c in data["volume"]["channel"]] == ["webchat"]


async def test_the_page(desk: Desk) -> None:
    response = await desk.client.get("/console/reports")
    assert response.status == 200
    assert "data:" in response.headers["Content-Security-Policy"]
    page = await response.text()
    assert "/console/static/reports.js" in page
    script = await desk.client.get("/console/static/reports.js")
    assert script.status == 200 and "/api/reports" in await script.text()
