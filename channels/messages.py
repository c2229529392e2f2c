"""The messages that flow one way: channel -> IncomingMessage -> engine -> OutgoingMessage."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum


class Author(str, Enum):
    CUSTOMER = "customer"
    AGENT = "agent"
    SYSTEM = "system"


@dataclass(frozen=True, slots=True)
class ConversationRef:
    """Which conversation: the channel's name and its own chat id."""

    channel: str
    chat_id: str

    @property
    def key(self) -> str:
        """One string id, used for locks, sessions and de-duplication."""
        return f"{self.channel}:{self.chat_id}"


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file the customer sent (evidence) or the bot sends, stored by SHA-256."""

    filename: str
    content_type: str
    sha256: str
    size: int


@dataclass(frozen=True, slots=True)
class IncomingMessage:
    """A message as a channel received it, normalised."""

    conversation: ConversationRef
    text: str
    message_id: str  # the channel's id; the same (channel, message_id) is handled once
    author: Author = Author.CUSTOMER
    attachments: tuple[Attachment, ...] = ()
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """A reply for a channel to send; buttons are native where the channel has them."""

    conversation: ConversationRef
    text: str
    buttons: tuple[str, ...] = ()
    attachments: tuple[Attachment, ...] = ()
    author: Author = Author.SYSTEM  # the bot speaks as system; agents' replies carry AGENT
