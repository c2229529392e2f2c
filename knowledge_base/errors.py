"""The knowledge base's one exception tree; boundaries (API, CLI) translate it for people."""

from __future__ import annotations

from dataclasses import dataclass


class KnowledgeBaseError(Exception):
    """Base of every error the knowledge base raises on purpose."""


class InvalidEntry(KnowledgeBaseError):
    """An entry's fields are missing, empty or malformed."""


class FieldTooLong(InvalidEntry):
    """A field is longer than the knowledge base accepts."""


class EntryNotFound(KnowledgeBaseError):
    """No entry (or no such version of it) has the id asked for."""


class DuplicateEntry(KnowledgeBaseError):
    """An entry with this id exists already."""


class InvalidTransition(KnowledgeBaseError):
    """The workflow does not allow this action in the entry's current status."""


@dataclass(frozen=True, slots=True)
class RowError:
    """One bad row of an import file: where it is and what is wrong with it."""

    line: int
    entry_id: str | None
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}" + (f" (id {self.entry_id})" if self.entry_id else "")
        return f"{where}: {self.message}"


class ImportRejected(KnowledgeBaseError):
    """An import file had bad rows; nothing of it was written."""

    def __init__(self, source: str, errors: list[RowError]) -> None:
        self.source = source
        self.errors = errors
        lines = "\n".join(f"  {e}" for e in errors)
        super().__init__(f"{source}: {len(errors)} bad row(s), nothing imported:\n{lines}")


class AuthError(KnowledgeBaseError):
    """Base of authentication and authorisation failures."""


class Unauthenticated(AuthError):
    """No API key, or one the store does not know."""


class Forbidden(AuthError):
    """The API key's role may not do this."""


class StoreUnavailable(KnowledgeBaseError):
    """The database could not be reached or migrated."""


class EmbeddingModelUnavailable(KnowledgeBaseError):
    """The sentence-embedding model directory is missing or cannot be loaded."""


class NotifierUnavailable(KnowledgeBaseError):
    """The channel that tells other processes to reload (Redis) could not be reached."""
