"""Every Redis key the bot writes, and how long each one lives: the one place key names are made.

All keys share one prefix (`intakebot:` by default; tests use a unique one each and delete what
they wrote), every key has a TTL, and nothing ever lists keys (no KEYS, no SCAN): a key is always
built from the conversation or message it belongs to.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

DEFAULT_PREFIX = "intakebot:"

# How long an idle conversation is remembered (the intake may pause over a weekend).
SESSION_TTL = timedelta(days=7)
# How long a delivered message id is remembered: channels retry for minutes, not days.
DEDUP_TTL = timedelta(days=1)
# A conversation lock expires on its own after this lease, so a crashed process blocks nobody.
LOCK_LEASE = timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class Keys:
    """Builds the bot's Redis keys under one prefix."""

    prefix: str = DEFAULT_PREFIX

    def session(self, conversation: str) -> str:
        """The session of a conversation (ConversationRef.key)."""
        return f"{self.prefix}session:{conversation}"

    def lock(self, conversation: str) -> str:
        """The lock that lets one message of a conversation be handled at a time."""
        return f"{self.prefix}lock:{conversation}"

    def dedup(self, message: str) -> str:
        """The record of a handled message (conversation key + the channel's message id)."""
        return f"{self.prefix}dedup:{message}"

    def seen(self, message: str) -> str:
        """When a message was first received, so handling it again gives the same lines."""
        return f"{self.prefix}seen:{message}"

    @property
    def outbound(self) -> str:
        """The stream of handled messages whose replies the senders deliver (bot.outbound);
        acknowledged entries are deleted and the stream is capped, so it needs no TTL."""
        return f"{self.prefix}outbound"

    @property
    def outbound_dead(self) -> str:
        """The stream of replies that failed for good (capped, for staff to follow up)."""
        return f"{self.prefix}outbound:dead"

    def outbound_attempts(self, entry: str) -> str:
        """How often an outbound entry was tried (a counter with the record's TTL)."""
        return f"{self.prefix}outbound:attempts:{entry}"

    @property
    def console_events(self) -> str:
        """The pub/sub channel every agent console of every process listens on."""
        return f"{self.prefix}console:events"
