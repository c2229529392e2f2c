"""FAQ entries as the rest of the product sees them: content, status, versions, audit records."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

from knowledge_base.errors import FieldTooLong, InvalidEntry
from nlp.labels import Lang
from nlp.normalize import to_traditional

MAX_ID = 64
MAX_QUESTION = 500
MAX_ANSWER = 5_000
MAX_PARAPHRASES = 50
MAX_CATEGORY = 64
MAX_TAGS = 20
MAX_TAG = 32

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


class Status(str, Enum):
    """Where an entry's working copy is in the editors' workflow."""

    DRAFT = "draft"
    IN_REVIEW = "in_review"
    PUBLISHED = "published"
    ARCHIVED = "archived"


class Role(str, Enum):
    """What an API key may do: editors write drafts, reviewers and admins publish."""

    KB_EDITOR = "kb_editor"
    REVIEWER = "reviewer"
    ADMIN = "admin"


class Action(str, Enum):
    """Everything that changes an entry; each one is written to the audit log."""

    CREATE = "create"
    EDIT = "edit"
    SUBMIT = "submit"
    APPROVE = "approve"
    REJECT = "reject"
    PUBLISH = "publish"
    ARCHIVE = "archive"
    ROLLBACK = "rollback"


@dataclass(frozen=True, slots=True)
class EntryContent:
    """What an editor writes: the question, the ways customers ask it, and the answers."""

    question: str
    answer: str
    paraphrases: tuple[str, ...] = ()
    answer_hant: str | None = None
    answer_en: str | None = None
    category: str | None = None
    tags: tuple[str, ...] = ()

    def answer_for(self, lang: Lang) -> str:
        """The answer in the customer's language: English when written, Traditional Chinese
        when written or else converted from the Simplified answer, otherwise zh-Hans."""
        if lang is Lang.EN and self.answer_en:
            return self.answer_en
        if lang is Lang.ZH_HANT:
            return self.answer_hant or to_traditional(self.answer)
        return self.answer

    def to_dict(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "paraphrases": list(self.paraphrases),
            "answer": self.answer,
            "answer_hant": self.answer_hant,
            "answer_en": self.answer_en,
            "category": self.category,
            "tags": list(self.tags),
        }


@dataclass(frozen=True, slots=True)
class Entry:
    """An entry's current state: its working copy and the version customers are served."""

    id: str
    content: EntryContent
    status: Status
    version: int
    published_version: int | None
    updated_by: str
    updated_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            **self.content.to_dict(),
            "status": self.status.value,
            "version": self.version,
            "published_version": self.published_version,
            "updated_by": self.updated_by,
            "updated_at": self.updated_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class EntryVersion:
    """One immutable snapshot of an entry's content; every edit adds one."""

    entry_id: str
    version: int
    content: EntryContent
    action: Action
    created_by: str
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.entry_id,
            "version": self.version,
            **self.content.to_dict(),
            "action": self.action.value,
            "created_by": self.created_by,
            "created_at": self.created_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class PublishedEntry:
    """The version of an entry that customers are served: what the search index holds."""

    id: str
    version: int
    content: EntryContent


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """Who did what to which entry, when, with a before/after summary."""

    id: int
    at: datetime
    actor: str
    action: str
    entry_id: str | None
    version: int | None
    before: str | None
    after: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at.isoformat(),
            "actor": self.actor,
            "action": self.action,
            "entry_id": self.entry_id,
            "version": self.version,
            "before": self.before,
            "after": self.after,
        }


@dataclass(frozen=True, slots=True)
class Gap:
    """A question customers asked that the knowledge base could not answer confidently."""

    key: str
    text: str
    count: int
    first_seen: datetime
    last_seen: datetime
    best_entry_id: str | None
    best_confidence: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "count": self.count,
            "first_seen": self.first_seen.isoformat(),
            "last_seen": self.last_seen.isoformat(),
            "best_entry_id": self.best_entry_id,
            "best_confidence": self.best_confidence,
        }


@dataclass(frozen=True, slots=True)
class ApiKeyInfo:
    """An API key as the store knows it (never the token itself)."""

    key_id: str
    name: str
    role: Role
    created_at: datetime


def validate_id(value: object) -> str:
    """An entry id: 1-64 letters, digits, '_', '-' or '.', starting with a letter or digit."""
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise InvalidEntry("id must be a string")
    text = str(value).strip()
    if not text:
        raise InvalidEntry("id is empty")
    if len(text) > MAX_ID:
        raise FieldTooLong(f"id is longer than {MAX_ID} characters")
    if not _ID.match(text):
        raise InvalidEntry(f"id {text!r} may hold only letters, digits, '_', '-' and '.'")
    return text


def _text(data: Mapping[str, Any], name: str, limit: int, *, required: bool) -> str | None:
    value = data.get(name)
    if value is None or (isinstance(value, str) and not value.strip() and not required):
        if required:
            raise InvalidEntry(f"{name} is missing")
        return None
    if not isinstance(value, str):
        raise InvalidEntry(f"{name} must be text")
    value = value.strip()
    if not value:
        raise InvalidEntry(f"{name} is empty")
    if len(value) > limit:
        raise FieldTooLong(f"{name} is longer than {limit} characters ({len(value)})")
    return value


def _text_list(
    data: Mapping[str, Any], name: str, count: int, limit: int
) -> tuple[str, ...]:
    value = data.get(name)
    if value is None:
        return ()
    if isinstance(value, str):
        # CSV cells and hand-written files give lists as "a|b|c".
        value = [part for part in value.split("|")]
    if not isinstance(value, list | tuple):
        raise InvalidEntry(f"{name} must be a list of texts")
    items: list[str] = []
    for item in value:
        if not isinstance(item, str):
            raise InvalidEntry(f"{name} must hold texts only")
        item = item.strip()
        if not item:
            continue
        if len(item) > limit:
            raise FieldTooLong(f"an item of {name} is longer than {limit} characters")
        if item not in items:
            items.append(item)
    if len(items) > count:
        raise FieldTooLong(f"{name} has more than {count} items")
    return tuple(items)


def content_from_mapping(data: Mapping[str, Any]) -> EntryContent:
    """Validate the editable fields of an entry given as a JSON/YAML/CSV object.

    Raises:
        InvalidEntry: a field is missing, empty or of the wrong type.
        FieldTooLong: a field is over its limit.
    """
    question = _text(data, "question", MAX_QUESTION, required=True)
    answer = _text(data, "answer", MAX_ANSWER, required=True)
    assert question is not None and answer is not None
    return EntryContent(
        question=question,
        answer=answer,
        paraphrases=_text_list(data, "paraphrases", MAX_PARAPHRASES, MAX_QUESTION),
        answer_hant=_text(data, "answer_hant", MAX_ANSWER, required=False),
        answer_en=_text(data, "answer_en", MAX_ANSWER, required=False),
        category=_text(data, "category", MAX_CATEGORY, required=False),
        tags=_text_list(data, "tags", MAX_TAGS, MAX_TAG),
    )


def merge_content(base: EntryContent, changes: Mapping[str, Any]) -> EntryContent:
    """The content of `base` with the fields present in `changes` replaced, validated again."""
    merged = base.to_dict()
    for name in merged:
        if name in changes:
            merged[name] = changes[name]
    unknown = set(changes) - set(merged) - {"id"}
    if unknown:
        raise InvalidEntry(f"unknown field(s): {', '.join(sorted(unknown))}")
    return content_from_mapping(merged)
