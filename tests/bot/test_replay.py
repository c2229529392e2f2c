"""ReplaySafeDesk: a message handled again after a crash adds its ticket lines once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.replay import ReplaySafeDesk
from handoff.intake import EvidenceRef, HandoffReason, TicketDraft, TranscriptLine
from handoff.routing import Routing
from handoff.tickets import TicketStore

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[TicketStore]:
    opened = await TicketStore.open(f"sqlite+aiosqlite:///{tmp_path / 'tickets.db'}")
    yield opened
    await opened.close()


def draft() -> TicketDraft:
    return TicketDraft(
        channel="webchat", chat_id="c1", lang="zh-Hans", description="快递一直没到",
        category="logistics", subcategory=None, priority="medium", priority_reasons=(),
        sla_hours=4, emotion="anxiety", reason=HandoffReason.NEEDS_INVESTIGATION,
        transcript=(TranscriptLine("customer", "快递一直没到", NOW),))


async def test_a_line_appended_again_is_kept_once(store: TicketStore) -> None:
    desk = ReplaySafeDesk(store, Routing(), lambda: NOW)
    receipt = await desk.register(draft())
    line = TranscriptLine("customer", "还没到", NOW + timedelta(minutes=1))
    photo = EvidenceRef("a.jpg", "image/jpeg", "ab" * 32, 10)
    await desk.append("webchat", "c1", line)
    await desk.append("webchat", "c1", line, (photo,))  # the re-run: same time, same text
    # the same text at another time is another message ("好的" twice is two lines)
    await desk.append("webchat", "c1", TranscriptLine("customer", "还没到",
                                                      NOW + timedelta(minutes=2)))
    texts = [(t.text, t.at) for t in await store.transcript(receipt.ticket_id)]
    assert texts == [("快递一直没到", NOW), ("还没到", NOW + timedelta(minutes=1)),
                     ("还没到", NOW + timedelta(minutes=2))]
    assert [e.sha256 for e in await store.evidence(receipt.ticket_id)] == ["ab" * 32]


async def test_without_an_open_ticket_nothing_is_added(store: TicketStore) -> None:
    desk = ReplaySafeDesk(store, Routing(), lambda: NOW)
    await desk.append("webchat", "none", TranscriptLine("customer", "hi", NOW))
    assert await store.open_ticket_id("webchat", "none") is None
