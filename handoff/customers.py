"""A customer's personal data: finding it, exporting it and erasing it (DOMAIN.md, privacy).

A customer is named by a phone number, an e-mail address, a customer id or a conversation key
``channel:chat_id``. What is held about them: the tickets that carry that value, every other
ticket of the same conversations, and those conversations' outbox. The search goes one step and
no further (a phone shared by a family does not pull in the family's other chats).

Erasure anonymises rather than deletes, so statistics and the audit trail survive: personal
fields are emptied, the conversation id becomes a pseudonym (``erased-`` and 16 hex digits of a
hash of a random ticket id, so it is stable and says nothing), and every free text the customer
or staff wrote about them (description, transcript, outbox, notes, stages, investigation,
survey suggestion) is replaced by ``[erased]``. Evidence rows go, and their files too unless
another ticket still references them. Audit rows are kept as they are. A ticket on hold
(`handoff.retention.is_held`) blocks erasure unless overridden with a reason, and an open ticket
always does: it is still being handled.

The report neighbours (`handoff.tickets.relink`) are recomputed under the new keys, so the
customer key no longer copies the phone or id, and no other ticket keeps the erased tickets'
registration times as its customer's or order's neighbour.

Channel files in the data directory that carry the conversation are scrubbed too: the e-mail
thread map (``mail/threads``, ``mail/roots``) and the webhook's dead letters
(``webhook/dead_letters.jsonl``). Their layouts mirror `channels.mail.FileThreadStore` and
`channels.webhook.DeadLetters`, which handoff may not import; the tests hold the two together.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, or_, select, tuple_, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from handoff.errors import (
    InvalidTicket,
    InvalidTransition,
    TicketNotFound,
    TicketStoreUnavailable,
)
from handoff.evidence import EvidenceStore
from handoff.retention import MAX_REASON, delete_unreferenced_files, is_held
from handoff.survey import SurveyRow
from handoff.tickets import (
    CLOSED_STATUSES,
    CounterRow,
    EvidenceRow,
    OutboxRow,
    TicketRow,
    TicketStore,
    TranscriptRow,
    _aware,
    _ticket,
    _utc,
    conversation_key,
    relink,
)
from handoff.workflow import AuditRow, InvestigationRow, NoteRow, StageRow

ERASED = "[erased]"
PSEUDONYM_PREFIX = "erased-"
MAX_IDENT = 256
MAIL_CHANNEL = "email"  # channels.mail.CHANNEL
WEBHOOK_CHANNEL = "webhook"  # channels.webhook.CHANNEL

_PHONE = re.compile(r"\+?[0-9]{5,20}")
_SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,10}")
# Ticket fields that identify the customer: emptied by erasure.
PERSONAL_FIELDS = ("customer_name", "phone", "email", "customer_id", "member_level",
                   "order_id")
# Free text that may quote the customer: replaced by the marker when it holds anything.
TICKET_TEXTS = ("description", "demand_note", "solution_note", "malicious_reason")
STAGE_TEXTS = ("result", "feedback", "next_action")
INVESTIGATION_TEXTS = ("problem", "evidence", "proposal")


class CustomerNotFound(TicketNotFound):
    """Nothing is held about the customer named."""


class OnLegalHold(InvalidTransition):
    """Erasure would touch tickets on legal hold (or flagged malicious)."""


class OpenComplaint(InvalidTransition):
    """Erasure would touch a complaint that is still being handled."""


@dataclass(frozen=True, slots=True)
class Holdings:
    """Where a customer's data is: ticket ids and conversations (channel, chat id)."""

    ticket_ids: tuple[str, ...]
    conversations: tuple[tuple[str, str], ...]


def _phone_variants(ident: str) -> set[str]:
    compact = re.sub(r"[\s()\-]", "", ident)
    if not _PHONE.fullmatch(compact):
        return set()
    digits = compact.lstrip("+")
    local = digits[2:] if digits.startswith("86") and len(digits) == 13 else digits
    return {ident, compact, digits, local, "+86" + local, "86" + local}


def _check_ident(ident: str) -> str:
    ident = ident.strip()
    if not ident or len(ident) > MAX_IDENT:
        raise InvalidTicket(f"name the customer by phone, e-mail, customer id or "
                            f"channel:chat_id (1-{MAX_IDENT} characters)")
    return ident


async def _holdings(session: AsyncSession, ident: str) -> Holdings:
    ident = _check_ident(ident)
    matches = [TicketRow.customer_id == ident]
    phones = _phone_variants(ident)
    if phones:
        matches.append(TicketRow.phone.in_(sorted(phones)))
    if "@" in ident:
        matches.append(func.lower(TicketRow.email) == ident.lower())
    given: tuple[str, str] | None = None
    channel, colon, chat_id = ident.partition(":")
    if colon and channel and chat_id:
        given = (channel, chat_id)
        matches.append(tuple_(TicketRow.channel, TicketRow.chat_id) == given)
    found = (await session.execute(
        select(TicketRow.channel, TicketRow.chat_id).where(or_(*matches)).distinct())).all()
    conversations = {(c, i) for c, i in found}
    if given is not None and given not in conversations and (await session.execute(
            select(OutboxRow.id).where(OutboxRow.channel == given[0],
                                       OutboxRow.chat_id == given[1]).limit(1))).first():
        conversations.add(given)  # a chat that never became a ticket
    ordered = sorted(conversations)
    ids: list[str] = []
    if ordered:
        ids = list((await session.execute(
            select(TicketRow.id).where(tuple_(TicketRow.channel, TicketRow.chat_id).in_(ordered))
            .order_by(TicketRow.registered_at, TicketRow.number))).scalars())
    return Holdings(tuple(ids), tuple(ordered))


async def find(store: TicketStore, ident: str) -> Holdings:
    """Where the customer named by `ident` has data (possibly nowhere).

    Raises:
        InvalidTicket: `ident` is empty or too long.
    """
    sessions = async_sessionmaker(store.engine, expire_on_commit=False)
    try:
        async with sessions() as session:
            return await _holdings(session, ident)
    except SQLAlchemyError as exc:
        raise TicketStoreUnavailable(f"the ticket database failed: {exc}") from exc


# ---- export ---------------------------------------------------------------------------------


def _iso(value: datetime | None) -> str | None:
    return None if value is None else _aware(value).isoformat()


def _columns(row: Any, skip: Sequence[str] = ("id", "ticket_id")) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for column in row.__table__.columns:
        if column.key in skip:
            continue
        value = getattr(row, column.key)
        data[column.key] = _iso(value) if isinstance(value, datetime) else value
    return data


def _export_name(sha256: str, filename: str) -> str:
    suffix = Path(filename).suffix
    return sha256 + (suffix if _SUFFIX.fullmatch(suffix) else "")


async def export(store: TicketStore, evidence: EvidenceStore, ident: str, *, actor: str,
                 now: datetime, files_dir: Path | None = None) -> dict[str, Any]:
    """Everything held about the customer as one JSON-ready document (audited).

    With `files_dir`, the evidence files are copied there as ``<sha256><suffix>``; each
    evidence entry names its copy in ``file`` (None when the file is gone).

    Raises:
        CustomerNotFound: nothing is held about them.
        InvalidTicket: `ident` is empty or too long.
    """
    now = _utc(now)
    sessions = async_sessionmaker(store.engine, expire_on_commit=False)
    try:
        async with sessions() as session:
            held = await _holdings(session, ident)
            if not held.ticket_ids and not held.conversations:
                raise CustomerNotFound("nothing is held about this customer")
            tickets = [await _ticket_document(session, tid) for tid in held.ticket_ids]
            conversations = []
            for channel, chat_id in held.conversations:
                rows = (await session.execute(select(OutboxRow).where(
                    OutboxRow.channel == channel, OutboxRow.chat_id == chat_id)
                    .order_by(OutboxRow.seq))).scalars()
                conversations.append({
                    "channel": channel, "chat_id": chat_id,
                    "messages": [{"seq": r.seq, "author": r.author, "text": r.text,
                                  "buttons": list(r.buttons or ()), "sent_at": _iso(r.sent_at)}
                                 for r in rows]})
        if files_dir is not None:
            await asyncio.to_thread(files_dir.mkdir, parents=True, exist_ok=True)
            for ticket in tickets:
                for item in ticket["evidence"]:
                    item["file"] = await asyncio.to_thread(
                        _copy, evidence, item["sha256"], files_dir,
                        _export_name(item["sha256"], item["filename"]))
        async with sessions() as session, session.begin():
            session.add(AuditRow(
                ticket_id=None, actor=actor, action="customer_exported", at=now,
                detail={"tickets": [t["ticket"]["number"] for t in tickets],
                        "conversations": len(conversations),
                        "files": files_dir is not None}))
    except SQLAlchemyError as exc:
        raise TicketStoreUnavailable(f"the ticket database failed: {exc}") from exc
    return {"exported_at": now.isoformat(), "customer": ident.strip(), "tickets": tickets,
            "conversations": conversations}


def _copy(evidence: EvidenceStore, sha256: str, directory: Path, name: str) -> str | None:
    source = evidence.path(sha256)
    if not source.is_file():
        return None
    shutil.copyfile(source, directory / name)
    return name


async def _ticket_document(session: AsyncSession, ticket_id: str) -> dict[str, Any]:
    row = await session.get(TicketRow, ticket_id)
    if row is None:
        raise TicketNotFound(f"no ticket {ticket_id!r}")

    async def rows(table: type[Any], order: Any) -> list[dict[str, Any]]:
        found = (await session.execute(
            select(table).where(table.ticket_id == ticket_id).order_by(order))).scalars()
        return [_columns(r) for r in found]

    investigation = await session.get(InvestigationRow, ticket_id)
    survey = await session.get(SurveyRow, ticket_id)
    return {
        "ticket": _ticket(row).to_dict(),
        "transcript": await rows(TranscriptRow, TranscriptRow.id),
        "evidence": await rows(EvidenceRow, EvidenceRow.id),
        "stages": await rows(StageRow, StageRow.id),
        "notes": await rows(NoteRow, NoteRow.id),
        "investigation": None if investigation is None else _columns(investigation),
        "survey": None if survey is None else _columns(survey),
    }


# ---- erasure --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ErasureReport:
    """What an erasure changed; empty when nothing was (left) to erase."""

    numbers: tuple[str, ...]
    counts: dict[str, int]
    files: tuple[str, ...]  # SHA-256 of the evidence files deleted
    overridden: tuple[str, ...]  # tickets on hold erased with --override-hold

    def to_dict(self) -> dict[str, Any]:
        return {"tickets": list(self.numbers), "counts": dict(self.counts),
                "evidence_files": list(self.files), "overridden": list(self.overridden)}


def pseudonym(seed: str) -> str:
    """The conversation id an erased conversation gets (stable for the same seed)."""
    return PSEUDONYM_PREFIX + hashlib.sha256(seed.encode()).hexdigest()[:16]


async def erase(store: TicketStore, evidence: EvidenceStore, ident: str, *, actor: str,
                now: datetime, override_hold: bool = False, reason: str | None = None,
                data_dir: Path | None = None) -> ErasureReport:
    """Anonymise everything held about the customer (see the module docstring); idempotent.

    Runs in one transaction with one ``customer_erased`` audit row (plus one
    ``erase_hold_override`` per held ticket when overridden). Channel files under `data_dir`
    are scrubbed just before it commits, evidence files deleted after. A customer nothing is
    held about gives an empty report: erasing twice is the same as erasing once.

    Raises:
        OnLegalHold: a ticket is held and `override_hold` is not set.
        OpenComplaint: a ticket is not closed yet.
        InvalidTicket: `ident` is malformed, or an override has no reason.
    """
    now = _utc(now)
    why = (reason or "").strip()
    if override_hold and not why:
        raise InvalidTicket("overriding a legal hold needs a reason")
    if len(why) > MAX_REASON:
        raise InvalidTicket(f"the reason is longer than {MAX_REASON} characters")
    sessions = async_sessionmaker(store.engine, expire_on_commit=False)
    try:
        async with sessions() as session, session.begin():
            held = await _holdings(session, ident)
            if not held.ticket_ids and not held.conversations:
                return ErasureReport((), {}, (), ())
            rows = list((await session.execute(
                select(TicketRow).where(TicketRow.id.in_(held.ticket_ids))
                .order_by(TicketRow.registered_at, TicketRow.number)
                .with_for_update())).scalars())
            still_open = [r.number for r in rows if r.status not in CLOSED_STATUSES]
            if still_open:
                raise OpenComplaint(f"complaints {', '.join(still_open)} are still open; "
                                    "close them before erasing the customer")
            on_hold = tuple(r.number for r in rows if is_held(r))
            if on_hold and not override_hold:
                raise OnLegalHold(f"complaints {', '.join(on_hold)} are on legal hold; "
                                  "erase with --override-hold --reason to go ahead")
            names = _pseudonyms(rows, held.conversations)
            counts, shas = await _anonymise(session, rows, held, names, now)
            if data_dir is not None:
                # Before the commit: if the files cannot be scrubbed, nothing is erased and the
                # same command can be run again (afterwards the ID would find nothing).
                counts.update(await asyncio.to_thread(
                    scrub_channel_files, data_dir, held.conversations))
            for row in rows:
                if row.number in on_hold:
                    session.add(AuditRow(ticket_id=row.id, actor=actor,
                                         action="erase_hold_override",
                                         detail={"reason": why}, at=now))
            session.add(AuditRow(
                ticket_id=None, actor=actor, action="customer_erased", at=now,
                detail={"tickets": [r.number for r in rows], "counts": counts,
                        "override_hold": bool(on_hold), "reason": why or None}))
        async with sessions() as session:
            shared = set((await session.execute(select(EvidenceRow.sha256).where(
                EvidenceRow.sha256.in_(sorted(shas))).distinct())).scalars()) if shas else set()
    except SQLAlchemyError as exc:
        raise TicketStoreUnavailable(f"the ticket database failed: {exc}") from exc
    files = delete_unreferenced_files(evidence, shas - shared)
    return ErasureReport(tuple(r.number for r in rows), counts, tuple(files), on_hold)


def _pseudonyms(rows: Sequence[TicketRow], conversations: Sequence[tuple[str, str]]
                ) -> dict[tuple[str, str], str]:
    first: dict[tuple[str, str], str] = {}
    for row in rows:
        key = (row.channel, row.chat_id)
        first[key] = min(first.get(key, row.id), row.id)
    return {key: pseudonym(first.get(key) or str(uuid.uuid4())) for key in conversations}


async def _anonymise(session: AsyncSession, rows: Sequence[TicketRow], held: Holdings,
                     names: dict[tuple[str, str], str], now: datetime
                     ) -> tuple[dict[str, int], set[str]]:
    ids = [r.id for r in rows]
    orders = [r.order_id for r in rows]
    counts: dict[str, int] = {"tickets": len(rows)}
    for row in rows:
        for name in PERSONAL_FIELDS:
            setattr(row, name, None)
        for name in TICKET_TEXTS:
            if getattr(row, name):
                setattr(row, name, ERASED)
        row.chat_id = names[(row.channel, row.chat_id)]
        row.open_key = None
        row.erased_at = now
        row.updated_at = now
    # The customer key copies the phone or id: it becomes the pseudonymous conversation, and the
    # erased tickets leave their customer's and their orders' chains (reports count them apart).
    await session.flush()
    await session.run_sync(relink, ids, orders=orders)

    async def blank(table: type[Any], values: dict[str, Any]) -> int:
        if not ids:
            return 0
        result = await session.execute(
            update(table).where(table.ticket_id.in_(ids)).values(**values))
        return int(getattr(result, "rowcount", 0) or 0)

    counts[TranscriptRow.__tablename__] = await blank(TranscriptRow, {"text": ERASED})
    counts[NoteRow.__tablename__] = await blank(NoteRow, {"text": ERASED})
    counts[SurveyRow.__tablename__] = await blank(SurveyRow, {"suggestion": None})
    for table, texts in ((StageRow, STAGE_TEXTS), (InvestigationRow, INVESTIGATION_TEXTS)):
        counts[table.__tablename__] = 0
        for name in texts:
            column = getattr(table, name)
            counts[table.__tablename__] += int(getattr(await session.execute(
                update(table).where(table.ticket_id.in_(ids), column.is_not(None))
                .values({name: ERASED})), "rowcount", 0) or 0) if ids else 0
    shas: set[str] = set()
    if ids:
        shas = set((await session.execute(
            select(EvidenceRow.sha256).where(EvidenceRow.ticket_id.in_(ids)))).scalars())
        result = await session.execute(delete(EvidenceRow).where(EvidenceRow.ticket_id.in_(ids)))
        counts[EvidenceRow.__tablename__] = int(getattr(result, "rowcount", 0) or 0)
    counts[OutboxRow.__tablename__] = 0
    for (channel, chat_id), name in names.items():
        result = await session.execute(
            update(OutboxRow).where(OutboxRow.channel == channel, OutboxRow.chat_id == chat_id)
            .values(chat_id=name, text=ERASED, buttons=[], dedup_key=None))
        counts[OutboxRow.__tablename__] += int(getattr(result, "rowcount", 0) or 0)
        # The outbox numbering goes on under the new name, so seq never restarts.
        await session.execute(
            update(CounterRow).where(
                CounterRow.name == f"outbox:{conversation_key(channel, chat_id)}")
            .values(name=f"outbox:{conversation_key(channel, name)}"))
    return counts, shas


# ---- channel files in the data directory -----------------------------------------------------


def _digest_path(root: Path, kind: str, message_id: str) -> Path:
    digest = hashlib.sha256(message_id.encode()).hexdigest()
    return root / kind / digest[:2] / f"{digest}.json"


def scrub_channel_files(data_dir: Path, conversations: Sequence[tuple[str, str]]
                        ) -> dict[str, int]:
    """Remove the conversations from the e-mail thread map and the webhook dead letters.

    Returns how many thread files and dead letters went.
    """
    mail = data_dir / "mail"
    threads = 0
    for channel, root_id in conversations:
        if channel != MAIL_CHANNEL:
            continue
        path = _digest_path(mail, "threads", root_id)
        try:
            data = json.loads(path.read_text("utf-8"))
        except FileNotFoundError:
            continue
        except ValueError:
            data = {}
        for message_id in data.get("references", []) if isinstance(data, dict) else []:
            ref = _digest_path(mail, "roots", str(message_id))
            try:
                if ref.read_text("utf-8") == root_id:
                    ref.unlink()
            except FileNotFoundError:
                pass
        path.unlink(missing_ok=True)
        threads += 1
    hooked = {chat_id for channel, chat_id in conversations if channel == WEBHOOK_CHANNEL}
    letters = _drop_dead_letters(data_dir / "webhook" / "dead_letters.jsonl", hooked)
    return {"mail_threads": threads, "webhook_dead_letters": letters}


def _drop_dead_letters(path: Path, chat_ids: set[str], attempts: int = 5) -> int:
    if not chat_ids:
        return 0
    for _attempt in range(attempts):
        try:
            before = path.stat()
            text = path.read_text("utf-8")
        except FileNotFoundError:
            return 0
        kept, dropped = [], 0
        for line in text.splitlines():
            try:
                entry = json.loads(line)
                conversation = entry["delivery"]["conversation_id"]
            except (ValueError, KeyError, TypeError):
                kept.append(line)  # not ours to judge: keep what cannot be read
                continue
            if conversation in chat_ids:
                dropped += 1
            else:
                kept.append(line)
        if not dropped:
            return 0
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write("".join(line + "\n" for line in kept))
            handle.flush()
            os.fsync(handle.fileno())
        # The webhook appends under its own lock; if it appended meanwhile, read again.
        after = path.stat()
        if (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns):
            os.replace(tmp, path)
            return dropped
        os.unlink(tmp)
    raise OSError(f"{path} kept changing while it was being scrubbed; try again")
