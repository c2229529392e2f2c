"""The knowledge base as the bot uses it: seeding, hot reload across instances, gaps."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from knowledge_base.entries import Action
from knowledge_base.notify import InMemoryHub, InMemoryNotifier
from knowledge_base.service import KnowledgeBase, KnowledgeBaseConfig
from tests.knowledge_base.conftest import content


def _config(url: str, **overrides: object) -> KnowledgeBaseConfig:
    return KnowledgeBaseConfig(database_url=url, dense=False, **overrides)  # type: ignore[arg-type]


@pytest.fixture
async def kb(sqlite_url: str) -> AsyncIterator[KnowledgeBase]:
    opened = await KnowledgeBase.open(_config(sqlite_url), notifier=InMemoryNotifier(InMemoryHub()))
    yield opened
    await opened.close()


async def test_seed_is_imported_once_when_empty(kb: KnowledgeBase) -> None:
    assert await kb.ensure_seed() >= 60
    assert await kb.ensure_seed() == 0
    result = await kb.search("退款多久到账", record_gap=False)
    assert result.best is not None and result.best.id == "refund-timeline"


async def test_publish_reaches_another_process_in_memory(sqlite_url: str) -> None:
    hub = InMemoryHub()
    writer = await KnowledgeBase.open(_config(sqlite_url), notifier=InMemoryNotifier(hub))
    reader = await KnowledgeBase.open(_config(sqlite_url), notifier=InMemoryNotifier(hub))
    try:
        await writer.create("gift-card", content("礼品卡怎么用？", "结算时选择礼品卡抵扣。"), "ed")
        assert (await reader.search("礼品卡怎么用", record_gap=False)).best is None
        await writer.transition("gift-card", Action.PUBLISH, "rev")
        hit = (await reader.search("礼品卡怎么用", record_gap=False)).best
        assert hit is not None and hit.id == "gift-card"

        # An edit is a draft: the published answer keeps being served until it is published.
        await writer.update("gift-card", {"answer": "新的说明。"}, "ed")
        hit = (await reader.search("礼品卡怎么用", record_gap=False)).best
        assert hit is not None and hit.answer == "结算时选择礼品卡抵扣。"

        await writer.transition("gift-card", Action.ARCHIVE, "rev")
        assert (await reader.search("礼品卡怎么用", record_gap=False)).best is None
    finally:
        await writer.close()
        await reader.close()


@pytest.mark.redis
async def test_publish_reaches_another_process_through_redis(sqlite_url: str) -> None:
    import uuid

    from knowledge_base.notify import RedisNotifier

    url = "redis://127.0.0.1:6379/0"
    channel = f"intakebot:test:{uuid.uuid4().hex}"
    writer = await KnowledgeBase.open(_config(sqlite_url),
                                      notifier=RedisNotifier(url, channel=channel))
    reader = await KnowledgeBase.open(_config(sqlite_url),
                                      notifier=RedisNotifier(url, channel=channel))
    try:
        await writer.create("gift-card", content("礼品卡怎么用？", "结算时选择礼品卡抵扣。"), "ed",
                            publish=True)
        for _ in range(100):
            best = (await reader.search("礼品卡怎么用", record_gap=False)).best
            if best is not None:
                break
            await asyncio.sleep(0.05)
        assert best is not None and best.id == "gift-card"
    finally:
        await writer.close()
        await reader.close()


async def test_unanswered_questions_are_recorded_masked_and_counted(kb: KnowledgeBase) -> None:
    pytest.importorskip("nlp.pii", exc_type=ImportError)
    await kb.ensure_seed()
    phone = "13812345678"
    for text in (f"帮我用{phone}订一张去上海的机票", f"帮我用{phone}订一张去上海的机票？"):
        result = await kb.search(text)
        assert not result.confident
    gaps = await kb.store.gaps()
    assert len(gaps) == 1 and gaps[0].count == 2
    assert phone not in gaps[0].text
    assert (await kb.search("退款多久到账")).confident
    assert len(await kb.store.gaps()) == 1


async def test_no_gap_for_confident_answers_or_when_disabled(sqlite_url: str) -> None:
    opened = await KnowledgeBase.open(_config(sqlite_url, record_gaps=False),
                                      notifier=InMemoryNotifier(InMemoryHub()))
    try:
        await opened.ensure_seed()
        await opened.search("讲个笑话吧")
        assert await opened.store.gaps() == []
    finally:
        await opened.close()


async def test_seed_file_missing_imports_nothing(kb: KnowledgeBase, tmp_path: Path) -> None:
    assert await kb.ensure_seed(tmp_path / "none.yaml") == 0


async def test_dense_vectors_persist_across_restarts(sqlite_url: str, tmp_path: Path) -> None:
    config = KnowledgeBaseConfig(database_url=sqlite_url, embedding_model="e5",
                                 vector_cache_dir=tmp_path / "vectors", record_gaps=False)
    first = await KnowledgeBase.open(config, notifier=InMemoryNotifier(InMemoryHub()))
    try:
        await first.create("refund", content("退款多久能到账？", "原路退回，1-7 个工作日。"),
                           "t", publish=True)
        await first.ready()
        result = await first.search("钱啥时候退回来")
        assert result.features is not None and result.features.dense_on == 1.0
    finally:
        await first.close()
    saved = tmp_path / "vectors" / "kb-vectors-e5.npz"
    assert saved.exists()
    second = await KnowledgeBase.open(config, notifier=InMemoryNotifier(InMemoryHub()))
    try:
        await second.ready()
        snapshot = second.searcher.snapshot
        assert snapshot.dense is not None
        with np.load(saved) as data:
            stored = dict(zip(data["texts"], data["vectors"], strict=True))
        assert set(stored) == {"退款多久能到账？", "原路退回，1-7 个工作日。"}
        assert np.array_equal(snapshot.dense.vectors[0], stored["退款多久能到账？"])
    finally:
        await second.close()
