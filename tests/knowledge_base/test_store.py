"""The SQL store on SQLite and PostgreSQL: workflow, versions, audit log, gaps, API keys."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from knowledge_base.entries import Action, Role, Status
from knowledge_base.errors import (
    DuplicateEntry,
    EntryNotFound,
    FieldTooLong,
    InvalidEntry,
    InvalidTransition,
    Unauthenticated,
)
from knowledge_base.store import KnowledgeStore
from tests.knowledge_base.conftest import content


async def test_create_get_list(store: KnowledgeStore) -> None:
    entry = await store.create("refund", content(paraphrases=["退钱"]), "ann")
    assert entry.status is Status.DRAFT
    assert entry.version == 1 and entry.published_version is None
    assert entry.content.paraphrases == ("退钱",)
    assert (await store.get("refund")).updated_by == "ann"
    assert [e.id for e in await store.list_entries()] == ["refund"]
    assert await store.count() == 1
    assert await store.published() == []


async def test_duplicate_and_unknown_ids(store: KnowledgeStore) -> None:
    await store.create("a", content(), "ann")
    with pytest.raises(DuplicateEntry):
        await store.create("a", content(), "ann")
    with pytest.raises(EntryNotFound):
        await store.get("nope")
    with pytest.raises(InvalidEntry):
        await store.create("bad id!", content(), "ann")
    generated = await store.create(None, content(), "ann")
    assert generated.id.startswith("kb-")


async def test_full_workflow_versions_and_audit(store: KnowledgeStore) -> None:
    await store.create("e", content(answer="旧答案"), "ed")
    await store.transition("e", Action.SUBMIT, "ed")
    rejected = await store.transition("e", Action.REJECT, "rev")
    assert rejected.status is Status.DRAFT
    await store.transition("e", Action.SUBMIT, "ed")
    published = await store.transition("e", Action.APPROVE, "rev")
    assert published.status is Status.PUBLISHED and published.published_version == 1

    # Editing a published entry makes a draft; the published version keeps being served.
    edited = await store.update("e", {"answer": "新答案"}, "ed")
    assert edited.status is Status.DRAFT and edited.version == 2
    assert edited.published_version == 1
    served = await store.published()
    assert [(p.id, p.version, p.content.answer) for p in served] == [("e", 1, "旧答案")]

    await store.transition("e", Action.PUBLISH, "rev")
    assert (await store.published())[0].content.answer == "新答案"

    # Rollback publishes a copy of version 1 as version 3.
    rolled = await store.rollback("e", 1, "rev")
    assert rolled.version == 3 and rolled.published_version == 3
    assert rolled.content.answer == "旧答案"
    versions = await store.versions("e")
    assert [(v.version, v.action) for v in versions] == [
        (1, Action.CREATE), (2, Action.EDIT), (3, Action.ROLLBACK)]

    archived = await store.transition("e", Action.ARCHIVE, "rev")
    assert archived.status is Status.ARCHIVED and await store.published() == []

    audit = await store.audit("e")
    actions = [r.action for r in reversed(audit)]
    assert actions == ["create", "submit", "reject", "submit", "approve", "edit", "publish",
                       "rollback", "archive"]
    edit = next(r for r in audit if r.action == "edit")
    assert edit.actor == "ed"
    assert json.loads(edit.before or "{}")["answer"] == "旧答案"
    assert json.loads(edit.after or "{}")["answer"] == "新答案"


async def test_bad_transitions_change_nothing(store: KnowledgeStore) -> None:
    await store.create("e", content(), "ed")
    with pytest.raises(InvalidTransition, match="cannot approve an entry that is draft"):
        await store.transition("e", Action.APPROVE, "rev")
    await store.transition("e", Action.PUBLISH, "rev")
    with pytest.raises(InvalidTransition):
        await store.transition("e", Action.SUBMIT, "ed")
    with pytest.raises(InvalidTransition):
        await store.transition("e", Action.EDIT, "ed")
    with pytest.raises(EntryNotFound):
        await store.rollback("e", 7, "rev")
    entry = await store.get("e")
    assert entry.status is Status.PUBLISHED and entry.version == 1
    assert [r.action for r in await store.audit("e")] == ["publish", "create"]


async def test_update_validation_and_stale_version(store: KnowledgeStore) -> None:
    await store.create("e", content(), "ed")
    with pytest.raises(FieldTooLong):
        await store.update("e", {"answer": "长" * 5001}, "ed")
    with pytest.raises(InvalidEntry):
        await store.update("e", {"question": "  "}, "ed")
    with pytest.raises(InvalidEntry, match="unknown field"):
        await store.update("e", {"qestion": "x"}, "ed")
    with pytest.raises(InvalidTransition, match="someone else"):
        await store.update("e", {"answer": "新"}, "ed", expected_version=5)
    assert (await store.get("e")).version == 1
    assert (await store.update("e", {"answer": "新"}, "ed", expected_version=1)).version == 2


async def test_import_is_all_or_nothing(store: KnowledgeStore) -> None:
    await store.create("published-one", content(), "ed")
    await store.transition("published-one", Action.PUBLISH, "rev")
    await store.transition("published-one", Action.ARCHIVE, "rev")
    items = [("new-one", content()), ("published-one", content(answer="改"))]
    with pytest.raises(DuplicateEntry):
        await store.import_entries([*items, ("new-one", content())], "ed", publish=True)
    assert await store.count() == 1
    outcome = await store.import_entries(items, "ed", publish=True)
    assert outcome.created == ("new-one",) and outcome.updated == ("published-one",)
    assert {p.id for p in await store.published()} == {"new-one", "published-one"}
    again = await store.import_entries(items, "ed", publish=True)
    assert again.unchanged == ("new-one", "published-one") and again.published == ()


async def test_import_rolls_back_on_a_failing_transition(store: KnowledgeStore) -> None:
    await store.create("in-review", content(), "ed")
    await store.transition("in-review", Action.SUBMIT, "ed")
    # Editing an entry under review is not allowed: the whole import is refused.
    with pytest.raises(InvalidTransition):
        await store.import_entries([("fresh", content()), ("in-review", content(answer="改"))],
                                   "ed")
    assert [e.id for e in await store.list_entries()] == ["in-review"]


async def test_gaps_are_counted_by_key(store: KnowledgeStore) -> None:
    await store.record_gap("k1", "怎么开发票", None, None)
    await store.record_gap("k1", "怎么开发票？", "invoice", 0.2)
    await store.record_gap("k2", "别的", None, None)
    gaps = await store.gaps()
    assert [(g.key, g.count) for g in gaps] == [("k1", 2), ("k2", 1)]
    assert gaps[0].best_entry_id == "invoice" and gaps[0].last_seen >= gaps[0].first_seen


async def test_concurrent_gap_upserts(store: KnowledgeStore) -> None:
    await asyncio.gather(*(store.record_gap("same", "同一个问题", None, None)
                           for _ in range(10)))
    assert [g.count for g in await store.gaps()] == [10]


async def test_api_keys(store: KnowledgeStore) -> None:
    info, token = await store.create_api_key("ann", Role.KB_EDITOR, "cli")
    assert (await store.authenticate(token)).role is Role.KB_EDITOR
    with pytest.raises(Unauthenticated):
        await store.authenticate(token + "x")
    with pytest.raises(Unauthenticated):
        await store.authenticate("garbage")
    assert [k.name for k in await store.api_keys()] == ["ann"]
    await store.revoke_api_key(info.key_id, "cli")
    with pytest.raises(Unauthenticated):
        await store.authenticate(token)
    with pytest.raises(EntryNotFound):
        await store.revoke_api_key(info.key_id, "cli")


async def test_reopening_keeps_data_and_migrations_are_idempotent(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'sub' / 'kb.db'}"
    first = await KnowledgeStore.open(url)
    await first.create("e", content(), "ed")
    await first.close()
    second = await KnowledgeStore.open(url)
    assert await second.count() == 1
    await second.migrate()
    await second.close()


@pytest.mark.postgres
async def test_postgres_version_table_is_separate(pg_schema: str) -> None:
    from tests.knowledge_base.conftest import POSTGRES_URL

    opened = await KnowledgeStore.open(
        POSTGRES_URL, connect_args={"server_settings": {"search_path": pg_schema}})
    await opened.close()
    import asyncpg  # type: ignore[import-untyped]

    from tests.knowledge_base.conftest import _asyncpg_dsn

    conn = await asyncpg.connect(_asyncpg_dsn(POSTGRES_URL))
    try:
        tables = {r["table_name"] for r in await conn.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = $1",
            pg_schema)}
    finally:
        await conn.close()
    assert "alembic_version_kb" in tables and "alembic_version" not in tables
    assert {"kb_entries", "kb_entry_versions", "kb_audit_log", "kb_gaps",
            "kb_api_keys"} <= tables
