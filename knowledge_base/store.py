"""The SQL store of the knowledge base: entries, versions, audit log, gaps and API keys.

One implementation serves SQLite (aiosqlite, the default file under the data directory) and
PostgreSQL (asyncpg): SQLAlchemy's dialects cover the difference, and the few statements that
differ (upserts, locks) are chosen by dialect here. Opening a store brings its schema to the newest
Alembic revision, so a fresh database and an old one both work without a separate step.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import event, func, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from knowledge_base.entries import (
    Action,
    ApiKeyInfo,
    AuditRecord,
    Entry,
    EntryContent,
    EntryVersion,
    Gap,
    PublishedEntry,
    Role,
    Status,
    merge_content,
    validate_id,
)
from knowledge_base.errors import (
    DuplicateEntry,
    EntryNotFound,
    InvalidEntry,
    InvalidTransition,
    StoreUnavailable,
    Unauthenticated,
)
from knowledge_base.tables import ApiKeyRow, AuditRow, EntryRow, GapRow, VersionRow
from knowledge_base.workflow import next_status

MIGRATIONS = Path(__file__).with_name("migrations")
_MIGRATION_LOCK = 0x6B62_0001  # PostgreSQL advisory lock id: one migrating process at a time
_TOKEN_PREFIX = "kb_"


def utcnow() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything we store is UTC.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _content(row: VersionRow) -> EntryContent:
    return EntryContent(
        question=row.question,
        answer=row.answer,
        paraphrases=tuple(row.paraphrases or ()),
        answer_hant=row.answer_hant,
        answer_en=row.answer_en,
        category=row.category,
        tags=tuple(row.tags or ()),
    )


def _version_row(
    entry_id: str, version: int, content: EntryContent, action: Action, actor: str, at: datetime
) -> VersionRow:
    return VersionRow(
        entry_id=entry_id,
        version=version,
        question=content.question,
        answer=content.answer,
        paraphrases=list(content.paraphrases),
        answer_hant=content.answer_hant,
        answer_en=content.answer_en,
        category=content.category,
        tags=list(content.tags),
        action=action.value,
        created_by=actor,
        created_at=at,
    )


def _clip(value: object, limit: int = 300) -> object:
    if isinstance(value, str) and len(value) > limit:
        return value[:limit] + "…"
    return value


def _summary(fields: Mapping[str, object]) -> str:
    return json.dumps({k: _clip(v) for k, v in fields.items()}, ensure_ascii=False)


def content_diff(old: EntryContent, new: EntryContent
                 ) -> tuple[dict[str, object], dict[str, object]]:
    """The fields that differ between two contents, as (before, after)."""
    a, b = old.to_dict(), new.to_dict()
    changed = [k for k in a if a[k] != b[k]]
    return {k: a[k] for k in changed}, {k: b[k] for k in changed}


@dataclass(frozen=True, slots=True)
class ImportOutcome:
    """What an import did: ids created, updated (new version) and left as they were."""

    created: tuple[str, ...]
    updated: tuple[str, ...]
    unchanged: tuple[str, ...]
    published: tuple[str, ...]


class KnowledgeStore:
    """Entries, their history and their audit log in an SQL database (async SQLAlchemy)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    @classmethod
    async def open(
        cls, url: str, *, migrate: bool = True, connect_args: Mapping[str, Any] | None = None
    ) -> KnowledgeStore:
        """Connect to `url` (an async driver URL) and bring the schema to the newest revision.

        Raises:
            StoreUnavailable: the database cannot be reached or migrated.
        """
        parsed = make_url(url)
        args = dict(connect_args or {})
        if parsed.get_backend_name() == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            args.setdefault("timeout", 30)
        engine = create_async_engine(url, connect_args=args, pool_pre_ping=True)
        if parsed.get_backend_name() == "sqlite":
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        store = cls(engine)
        if migrate:
            try:
                await store.migrate()
            except (OSError, OperationalError) as exc:
                await engine.dispose()
                raise StoreUnavailable(
                    f"cannot open the knowledge base at {parsed!r}: {exc}") from exc
            except BaseException:
                await engine.dispose()
                raise
        return store

    async def migrate(self, revision: str = "head") -> None:
        """Run the Alembic migrations up to `revision` on this store's database."""
        async with self._engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                await conn.execute(text(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})"))
            await conn.run_sync(_upgrade, revision)

    async def close(self) -> None:
        await self._engine.dispose()

    @property
    def dialect(self) -> str:
        return self._engine.dialect.name

    # ---- reading -------------------------------------------------------------------------

    async def count(self, status: Status | None = None) -> int:
        """How many entries there are (in `status`, if given)."""
        query = select(func.count()).select_from(EntryRow)
        if status is not None:
            query = query.where(EntryRow.status == status.value)
        async with self._sessions() as session:
            return int((await session.execute(query)).scalar_one())

    async def get(self, entry_id: str) -> Entry:
        """The entry's current state and working copy.

        Raises:
            EntryNotFound: no entry has this id.
        """
        async with self._sessions() as session:
            row = await self._entry_row(session, entry_id)
            return await self._entry(session, row)

    async def list_entries(
        self, status: Status | None = None, *, limit: int | None = None, offset: int = 0
    ) -> list[Entry]:
        """Entries ordered by id, their working copies included."""
        query = select(EntryRow, VersionRow).join(
            VersionRow,
            (VersionRow.entry_id == EntryRow.id) & (VersionRow.version == EntryRow.version),
        )
        if status is not None:
            query = query.where(EntryRow.status == status.value)
        query = query.order_by(EntryRow.id).offset(offset)
        if limit is not None:
            query = query.limit(limit)
        async with self._sessions() as session:
            rows = (await session.execute(query)).all()
        return [_to_entry(entry, version) for entry, version in rows]

    async def published(self) -> list[PublishedEntry]:
        """The versions customers are served: what the search index is built from."""
        query = (
            select(VersionRow)
            .join(
                EntryRow,
                (VersionRow.entry_id == EntryRow.id)
                & (VersionRow.version == EntryRow.published_version),
            )
            .order_by(VersionRow.entry_id)
        )
        async with self._sessions() as session:
            rows = (await session.execute(query)).scalars().all()
        return [PublishedEntry(r.entry_id, r.version, _content(r)) for r in rows]

    async def versions(self, entry_id: str) -> list[EntryVersion]:
        """Every version of an entry, oldest first.

        Raises:
            EntryNotFound: no entry has this id.
        """
        async with self._sessions() as session:
            await self._entry_row(session, entry_id)
            rows = (
                await session.execute(
                    select(VersionRow)
                    .where(VersionRow.entry_id == entry_id)
                    .order_by(VersionRow.version)
                )
            ).scalars()
            return [_to_version(r) for r in rows]

    async def version(self, entry_id: str, version: int) -> EntryVersion:
        """One version of an entry.

        Raises:
            EntryNotFound: no such entry or version.
        """
        async with self._sessions() as session:
            row = await session.get(VersionRow, (entry_id, version))
            if row is None:
                raise EntryNotFound(f"entry {entry_id!r} has no version {version}")
            return _to_version(row)

    async def audit(self, entry_id: str | None = None, *, limit: int = 100,
                    before: int | None = None) -> list[AuditRecord]:
        """The newest audit records first (of one entry, if given); `before` an id pages on
        (records keep their ids, so a page never repeats or skips one as new records arrive)."""
        query = select(AuditRow).order_by(AuditRow.id.desc()).limit(limit)
        if entry_id is not None:
            query = query.where(AuditRow.entry_id == entry_id)
        if before is not None:
            query = query.where(AuditRow.id < before)
        async with self._sessions() as session:
            rows = (await session.execute(query)).scalars()
            return [
                AuditRecord(
                    id=r.id, at=_aware(r.at), actor=r.actor, action=r.action,
                    entry_id=r.entry_id, version=r.version, before=r.before, after=r.after,
                )
                for r in rows
            ]

    # ---- writing entries -----------------------------------------------------------------

    async def create(
        self, entry_id: str | None, content: EntryContent, actor: str, *, publish: bool = False
    ) -> Entry:
        """Add a new entry as a draft (published at once if `publish`).

        Raises:
            DuplicateEntry: the id is taken.
            InvalidEntry: the id is malformed.
        """
        entry_id = validate_id(entry_id) if entry_id is not None else _new_id()
        async with self._sessions() as session, session.begin():
            if await session.get(EntryRow, entry_id) is not None:
                raise DuplicateEntry(f"an entry with id {entry_id!r} exists already")
            self._add_new(session, entry_id, content, actor, publish=publish)
            try:
                await session.flush()
            except IntegrityError as exc:
                raise DuplicateEntry(f"an entry with id {entry_id!r} exists already") from exc
        return await self.get(entry_id)

    async def import_entries(
        self, items: Sequence[tuple[str, EntryContent]], actor: str, *, publish: bool = False
    ) -> ImportOutcome:
        """Create or update many entries in one transaction: all of them or none.

        Entries whose id exists get a new version when their content differs. With `publish`,
        every imported entry is published (unchanged published ones are left as they are).

        Raises:
            DuplicateEntry: an id appears twice in `items`.
            InvalidTransition: an existing entry cannot be edited or published as asked.
        """
        seen: set[str] = set()
        for entry_id, _ in items:
            if entry_id in seen:
                raise DuplicateEntry(f"id {entry_id!r} appears more than once")
            seen.add(entry_id)
        created: list[str] = []
        updated: list[str] = []
        unchanged: list[str] = []
        published: list[str] = []
        async with self._sessions() as session, session.begin():
            existing = {
                row.id: row
                for row in (
                    await session.execute(select(EntryRow).where(EntryRow.id.in_(seen)))
                ).scalars()
            } if seen else {}
            for entry_id, content in items:
                row = existing.get(entry_id)
                if row is None:
                    self._add_new(session, entry_id, content, actor, publish=publish)
                    created.append(entry_id)
                    if publish:
                        published.append(entry_id)
                    continue
                current = await session.get(VersionRow, (entry_id, row.version))
                assert current is not None
                if _content(current) == content:
                    unchanged.append(entry_id)
                    if publish and row.published_version != row.version:
                        await self._apply(session, row, Action.PUBLISH, actor)
                        published.append(entry_id)
                    continue
                await self._edit(session, row, content, actor)
                updated.append(entry_id)
                if publish:
                    await self._apply(session, row, Action.PUBLISH, actor)
                    published.append(entry_id)
            self._audit(
                session, actor, "import", None, None, None,
                _summary({"created": len(created), "updated": len(updated),
                          "unchanged": len(unchanged), "published": len(published)}),
            )
        return ImportOutcome(tuple(created), tuple(updated), tuple(unchanged), tuple(published))

    async def update(
        self,
        entry_id: str,
        changes: Mapping[str, Any],
        actor: str,
        *,
        expected_version: int | None = None,
    ) -> Entry:
        """Edit an entry's working copy: a new version, status draft.

        A published entry keeps being served in its published version until the new one is
        published. `expected_version` guards against overwriting someone else's edit.

        Raises:
            EntryNotFound, InvalidEntry, FieldTooLong, InvalidTransition.
        """
        async with self._sessions() as session, session.begin():
            row = await self._entry_row(session, entry_id, lock=True)
            if expected_version is not None and expected_version != row.version:
                raise InvalidTransition(
                    f"entry {entry_id!r} is at version {row.version}, not {expected_version}: "
                    "someone else edited it; reload and try again"
                )
            current = await session.get(VersionRow, (entry_id, row.version))
            assert current is not None
            content = merge_content(_content(current), changes)
            if content == _content(current):
                raise InvalidEntry("the changes leave the entry as it is")
            await self._edit(session, row, content, actor)
        return await self.get(entry_id)

    async def transition(self, entry_id: str, action: Action, actor: str) -> Entry:
        """Submit, approve, reject, publish or archive an entry.

        Raises:
            EntryNotFound: no entry has this id.
            InvalidTransition: the workflow does not allow it in the entry's status.
        """
        if action in (Action.CREATE, Action.EDIT, Action.ROLLBACK):
            raise InvalidTransition(f"{action.value} is not a status change")
        async with self._sessions() as session, session.begin():
            row = await self._entry_row(session, entry_id, lock=True)
            await self._apply(session, row, action, actor)
        return await self.get(entry_id)

    async def rollback(self, entry_id: str, version: int, actor: str) -> Entry:
        """Publish a copy of an earlier version as the newest version.

        Raises:
            EntryNotFound: no such entry or version.
        """
        async with self._sessions() as session, session.begin():
            row = await self._entry_row(session, entry_id, lock=True)
            old = await session.get(VersionRow, (entry_id, version))
            if old is None:
                raise EntryNotFound(f"entry {entry_id!r} has no version {version}")
            before = {"status": row.status, "version": row.version,
                      "published_version": row.published_version}
            now = utcnow()
            row.version += 1
            session.add(_version_row(entry_id, row.version, _content(old), Action.ROLLBACK,
                                     actor, now))
            row.status = next_status(Status(row.status), Action.ROLLBACK).value
            row.published_version = row.version
            row.updated_by, row.updated_at = actor, now
            self._audit(session, actor, Action.ROLLBACK.value, entry_id, row.version,
                        _summary(before),
                        _summary({"status": row.status, "version": row.version,
                                  "copy_of": version}))
        return await self.get(entry_id)

    # ---- gaps ------------------------------------------------------------------------------

    async def record_gap(
        self, key: str, text_: str, best_entry_id: str | None, best_confidence: float | None
    ) -> None:
        """Count one more ask of an unanswered question (upsert on its normalised key)."""
        now = utcnow()
        values = {
            "key": key[:255], "text": text_, "count": 1, "first_seen": now, "last_seen": now,
            "best_entry_id": best_entry_id, "best_confidence": best_confidence,
        }
        insert = pg_insert if self.dialect == "postgresql" else sqlite_insert
        stmt = insert(GapRow).values(**values)
        stmt = stmt.on_conflict_do_update(
            index_elements=[GapRow.key],
            set_={
                "count": GapRow.count + 1,
                "last_seen": stmt.excluded.last_seen,
                "text": stmt.excluded.text,
                "best_entry_id": stmt.excluded.best_entry_id,
                "best_confidence": stmt.excluded.best_confidence,
            },
        )
        async with self._sessions() as session, session.begin():
            await session.execute(stmt)

    async def gaps(self, *, limit: int = 100) -> list[Gap]:
        """Unanswered questions, most asked first."""
        query = select(GapRow).order_by(GapRow.count.desc(), GapRow.last_seen.desc()).limit(limit)
        async with self._sessions() as session:
            rows = (await session.execute(query)).scalars()
            return [
                Gap(key=r.key, text=r.text, count=r.count, first_seen=_aware(r.first_seen),
                    last_seen=_aware(r.last_seen), best_entry_id=r.best_entry_id,
                    best_confidence=r.best_confidence)
                for r in rows
            ]

    # ---- API keys ------------------------------------------------------------------------

    async def create_api_key(self, name: str, role: Role, actor: str) -> tuple[ApiKeyInfo, str]:
        """A new API key; returns its description and the token, which is never stored."""
        from argon2 import PasswordHasher

        name = name.strip()
        if not name or len(name) > 128:
            raise InvalidEntry("an API key needs a name of 1-128 characters")
        key_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        now = utcnow()
        async with self._sessions() as session, session.begin():
            session.add(ApiKeyRow(key_id=key_id, name=name, role=role.value,
                                  secret_hash=PasswordHasher().hash(secret), created_at=now,
                                  revoked_at=None))
            self._audit(session, actor, "apikey_create", None, None, None,
                        _summary({"key_id": key_id, "name": name, "role": role.value}))
        return ApiKeyInfo(key_id, name, role, now), f"{_TOKEN_PREFIX}{key_id}.{secret}"

    async def revoke_api_key(self, key_id: str, actor: str) -> None:
        """Stop accepting a key.

        Raises:
            EntryNotFound: no such key.
        """
        async with self._sessions() as session, session.begin():
            result = await session.execute(
                update(ApiKeyRow).where(ApiKeyRow.key_id == key_id, ApiKeyRow.revoked_at.is_(None))
                .values(revoked_at=utcnow())
            )
            if getattr(result, "rowcount", 0) == 0:
                raise EntryNotFound(f"no active API key {key_id!r}")
            self._audit(session, actor, "apikey_revoke", None, None, None,
                        _summary({"key_id": key_id}))

    async def api_keys(self) -> list[ApiKeyInfo]:
        async with self._sessions() as session:
            rows = (await session.execute(
                select(ApiKeyRow).where(ApiKeyRow.revoked_at.is_(None)).order_by(ApiKeyRow.name)
            )).scalars()
            return [ApiKeyInfo(r.key_id, r.name, Role(r.role), _aware(r.created_at)) for r in rows]

    async def authenticate(self, token: str) -> ApiKeyInfo:
        """The key a bearer token belongs to.

        Raises:
            Unauthenticated: malformed, unknown, revoked or wrong token.
        """
        from argon2 import PasswordHasher
        from argon2.exceptions import InvalidHashError, VerificationError

        if not token.startswith(_TOKEN_PREFIX) or "." not in token or len(token) > 200:
            raise Unauthenticated("malformed API key")
        key_id, secret = token[len(_TOKEN_PREFIX):].split(".", 1)
        async with self._sessions() as session:
            row = await session.get(ApiKeyRow, key_id)
        if row is None or row.revoked_at is not None:
            raise Unauthenticated("unknown or revoked API key")
        try:
            PasswordHasher().verify(row.secret_hash, secret)
        except (VerificationError, InvalidHashError) as exc:
            raise Unauthenticated("wrong API key") from exc
        return ApiKeyInfo(row.key_id, row.name, Role(row.role), _aware(row.created_at))

    # ---- internals ---------------------------------------------------------------------

    async def _entry_row(self, session: AsyncSession, entry_id: str, *, lock: bool = False
                         ) -> EntryRow:
        query = select(EntryRow).where(EntryRow.id == entry_id)
        if lock and self.dialect == "postgresql":
            query = query.with_for_update()
        row = (await session.execute(query)).scalar_one_or_none()
        if row is None:
            raise EntryNotFound(f"no entry with id {entry_id!r}")
        return row

    async def _entry(self, session: AsyncSession, row: EntryRow) -> Entry:
        version = await session.get(VersionRow, (row.id, row.version))
        assert version is not None
        return _to_entry(row, version)

    def _add_new(self, session: AsyncSession, entry_id: str, content: EntryContent, actor: str,
                 *, publish: bool) -> None:
        now = utcnow()
        status = Status.PUBLISHED if publish else Status.DRAFT
        session.add(EntryRow(id=entry_id, status=status.value, version=1,
                             published_version=1 if publish else None,
                             updated_by=actor, updated_at=now, created_at=now))
        session.add(_version_row(entry_id, 1, content, Action.CREATE, actor, now))
        self._audit(session, actor, Action.CREATE.value, entry_id, 1, None,
                    _summary({"status": Status.DRAFT.value, **content.to_dict()}))
        if publish:
            self._audit(session, actor, Action.PUBLISH.value, entry_id, 1,
                        _summary({"status": Status.DRAFT.value}),
                        _summary({"status": Status.PUBLISHED.value, "published_version": 1}))

    async def _edit(self, session: AsyncSession, row: EntryRow, content: EntryContent,
                    actor: str) -> None:
        status = next_status(Status(row.status), Action.EDIT)
        current = await session.get(VersionRow, (row.id, row.version))
        assert current is not None
        before, after = content_diff(_content(current), content)
        now = utcnow()
        before["status"], after["status"] = row.status, status.value
        row.version += 1
        row.status = status.value
        row.updated_by, row.updated_at = actor, now
        session.add(_version_row(row.id, row.version, content, Action.EDIT, actor, now))
        self._audit(session, actor, Action.EDIT.value, row.id, row.version,
                    _summary(before), _summary(after))

    async def _apply(self, session: AsyncSession, row: EntryRow, action: Action, actor: str
                     ) -> None:
        status = next_status(Status(row.status), action)
        before = {"status": row.status, "published_version": row.published_version}
        if status is Status.PUBLISHED:
            row.published_version = row.version
        elif status is Status.ARCHIVED:
            row.published_version = None
        row.status = status.value
        row.updated_by, row.updated_at = actor, utcnow()
        self._audit(session, actor, action.value, row.id, row.version, _summary(before),
                    _summary({"status": row.status, "published_version": row.published_version}))

    @staticmethod
    def _audit(session: AsyncSession, actor: str, action: str, entry_id: str | None,
               version: int | None, before: str | None, after: str | None) -> None:
        session.add(AuditRow(at=utcnow(), actor=actor, action=action, entry_id=entry_id,
                             version=version, before=before, after=after))


def _to_entry(row: EntryRow, version: VersionRow) -> Entry:
    return Entry(
        id=row.id,
        content=_content(version),
        status=Status(row.status),
        version=row.version,
        published_version=row.published_version,
        updated_by=row.updated_by,
        updated_at=_aware(row.updated_at),
    )


def _to_version(row: VersionRow) -> EntryVersion:
    return EntryVersion(
        entry_id=row.entry_id, version=row.version, content=_content(row),
        action=Action(row.action), created_by=row.created_by, created_at=_aware(row.created_at),
    )


def _new_id() -> str:
    return "kb-" + secrets.token_hex(5)


def _sqlite_pragmas(dbapi_connection: Any, _record: object) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    # WAL lets the CLI read while `intakebot serve` writes to the same file.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()


def _upgrade(connection: Connection, revision: str) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    # Alembic announces every plugin and step at INFO; a start-up should not read like a log dump.
    alembic_log = logging.getLogger("alembic")
    level = alembic_log.level
    alembic_log.setLevel(max(level, logging.WARNING))
    try:
        command.upgrade(config, revision)
    finally:
        alembic_log.setLevel(level)

