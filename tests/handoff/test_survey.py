"""The survey table and its answer rules (template 3), and the signed links of the web form."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from handoff.errors import InvalidTicket, TicketNotFound
from handoff.intake import HandoffReason, TicketDraft
from handoff.sla import ManualClock
from handoff.survey import Surveys, validate_answers
from handoff.survey_web import InvalidLink, SurveyLinks, load_secret
from handoff.tickets import TicketStore
from tests.handoff.conftest import MakeDesk
from tests.handoff.test_aftercare import register
from tests.handoff.test_workflow import NOW


def test_answers_are_validated_with_a_clear_reason() -> None:
    assert validate_answers({"overall": "4", "best_aspect": "speed", "suggestion": "  ok "}) == {
        "overall": 4, "best_aspect": "speed", "suggestion": "ok"}
    assert validate_answers({"suggestion": ""}) == {"suggestion": None}
    for bad, reason in (({"overall": 6}, "1 to 5"), ({"overall": True}, "1 to 5"),
                        ({"attitude": "x"}, "1 to 5"), ({"best_aspect": "price"}, "one of"),
                        ({"mood": 3}, "unknown"), ({"suggestion": "x" * 2001}, "longer"),
                        ({"suggestion": 5}, "text")):
        with pytest.raises(InvalidTicket, match=reason):
            validate_answers(bad)


async def test_one_survey_per_ticket_with_partial_answers(store: TicketStore) -> None:
    clock = ManualClock(NOW)
    ticket_id = await register(store, clock)
    surveys = Surveys(store)
    with pytest.raises(TicketNotFound):
        await surveys.record(ticket_id, {"overall": 5}, NOW)
    assert await surveys.start(ticket_id, "chat", NOW)
    assert not await surveys.start(ticket_id, "web", NOW)
    await surveys.record(ticket_id, {"timeliness": 4}, NOW)
    later = NOW + timedelta(minutes=1)
    survey = await surveys.record(ticket_id, {"overall": 5}, later)
    assert (survey.method, survey.timeliness, survey.overall, survey.answered_at) == (
        "chat", 4, 5, later)
    with pytest.raises(InvalidTicket):
        await surveys.record(ticket_id, {"overall": 0}, later)
    assert (await surveys.get(ticket_id)).overall == 5  # type: ignore[union-attr]
    assert await surveys.claim_second_handling(ticket_id)
    assert not await surveys.claim_second_handling(ticket_id)
    assert survey.to_dict()["answered_at"] == later.isoformat()


def test_links_are_signed_and_expire(tmp_path: Path) -> None:
    clock = ManualClock(NOW)
    secret = load_secret(tmp_path, None)
    assert load_secret(tmp_path, None) == secret and len(secret) >= 32  # created once, kept
    assert (tmp_path / "secret").stat().st_mode & 0o077 == 0
    assert load_secret(tmp_path, "configured") == b"configured"
    links = SurveyLinks(secret, "https://x.test/", clock=clock)
    token = links.token("ticket-1")
    assert links.url("ticket-1").startswith("https://x.test/survey/")
    assert links.verify(token) == "ticket-1"
    other = SurveyLinks(b"another secret", "https://x.test", clock=clock)
    for forged in (other.token("ticket-1"), token + "x", "abc", token.replace(".", "")):
        with pytest.raises(InvalidLink) as caught:
            links.verify(forged)
        assert caught.value.status == 403
    clock.advance(timedelta(days=14, seconds=1))
    with pytest.raises(InvalidLink) as expired:
        links.verify(token)
    assert expired.value.status == 410


@pytest.mark.parametrize(("lang", "heading", "legend", "thanks", "absent"), [
    ("zh-Hans", "投诉 {number} 满意度回访", "总体满意度", "感谢您的评价！", "Overall"),
    ("zh-Hant", "投訴 {number} 滿意度回訪", "總體滿意度", "感謝您的評價！", "总体"),
    ("en", "Satisfaction survey: complaint {number}", "Overall", "Thank you for your feedback!",
     "满意"),
    ("mixed", "投诉 {number} 满意度回访 · Satisfaction survey", "总体满意度 Overall",
     "感谢您的评价！ Thank you for your feedback!", "滿意"),
])
async def test_the_web_form_speaks_the_customers_language(
        make_desk: MakeDesk, lang: str, heading: str, legend: str, thanks: str,
        absent: str) -> None:
    """The language the ticket recorded picks the form's words (mixed: both, side by side)."""
    from bot.app import AFTERCARE, TICKETS

    desk = await make_desk(INTAKEBOT_PUBLIC_URL="https://help.example")
    ticket = (await desk.app[TICKETS].register(
        TicketDraft(channel="email", chat_id="mail-" + lang, lang=lang, description="…",
                    category="product", subcategory=None, priority="low",
                    priority_reasons=(), sla_hours=24, emotion="neutral",
                    reason=HandoffReason.NEEDS_INVESTIGATION),
        department="quality", receiver="bot", now=desk.clock())).ticket
    aftercare = desk.app[AFTERCARE]
    await aftercare.surveys.start(ticket.id, "web", desk.clock())
    assert aftercare.survey_link is not None
    path = urlsplit(aftercare.survey_link(ticket.id)).path

    page = await desk.client.get(path)
    text = await page.text()
    assert page.status == 200
    assert f'<html lang="{"zh-Hans" if lang == "mixed" else lang}">' in text
    assert f"<h1>{heading.format(number=ticket.number)}</h1>" in text
    assert f"<legend>{legend}</legend>" in text and absent not in text

    missing = await desk.client.post(path, data={"timeliness": "5"})
    assert missing.status == 400 and legend in await missing.text()  # names the question
    done = await desk.client.post(path, data={
        "timeliness": "4", "effectiveness": "4", "attitude": "5", "overall": "4"})
    assert done.status == 200 and thanks in await done.text()
    again = await desk.client.get(path)
    assert again.status == 409 and absent not in await again.text()
