"""The handoff package's one exception tree; boundaries (HTTP, CLI) translate it for people."""

from __future__ import annotations


class HandoffError(Exception):
    """Base of every error the handoff package raises on purpose."""


class TicketStoreUnavailable(HandoffError):
    """The ticket database could not be reached or migrated."""


class TicketNotFound(HandoffError):
    """No ticket has the id or complaint number asked for."""


class InvalidTicket(HandoffError):
    """A registration form or an update is malformed (a bad value, a field too long)."""


class RoutingError(HandoffError):
    """The category-to-department table is malformed."""


class EvidenceError(HandoffError):
    """An evidence file could not be accepted or stored."""


class EvidenceTooLarge(EvidenceError):
    """An evidence file is larger than the store accepts."""

    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(
            f"the file is {size:,} bytes; files of at most {limit:,} bytes "
            f"({limit / 1024 / 1024:.0f} MB) are accepted"
        )


class EvidenceNotFound(EvidenceError):
    """No stored evidence file has the SHA-256 asked for."""


class InvalidTransition(HandoffError):
    """A ticket cannot move that way from where it is (already claimed, not yet resolved, …)."""


class Forbidden(HandoffError):
    """The staff member's role or assignment does not allow this."""


class Unauthenticated(HandoffError):
    """No valid credentials: an unknown user, a wrong password, an expired or unknown token."""


class UserExists(HandoffError):
    """A staff user with that name exists already."""


class WordingViolation(HandoffError):
    """A message contains banned promises; the sender must rephrase or confirm."""

    def __init__(self, phrases: tuple[str, ...]) -> None:
        self.phrases = phrases
        super().__init__("the message promises what the SOP does not allow: "
                         + "、".join(phrases)
                         + "; rephrase it, or send it again with confirm=true")
