"""Every Redis key the bot writes, and how long each one lives: the one place key names are made.

All keys share one prefix (`intakebot:` by default; tests use a unique one each and delete what
they wrote), every key has a TTL, and nothing ever lists keys (no KEYS, no SCAN): a key is always
built from the conversation or message it belongs to.

Redis Cluster: a Lua script or MULTI may only touch keys of one hash slot. The dispatcher's
commit writes a conversation's session, the message's record and an entry on the outbound
stream in one script, so the stream cannot be global: conversations are spread over `SHARDS`
shards, each with its own outbound stream, and every key of a conversation carries its shard's
hash tag (``intakebot:{s3.12}:session:webchat:…``), the tag its stream carries too. The tags are
chosen so their slots are evenly spread over the 16,384 (one per 1/SHARDS of the slot range),
so any cluster whose nodes hold equal slot ranges gets an equal share of the shards. A prefix
that holds a ``{…}`` itself puts every key in one slot: still correct, just not spread.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from datetime import timedelta
from functools import cache

DEFAULT_PREFIX = "intakebot:"

# How long an idle conversation is remembered (the intake may pause over a weekend).
SESSION_TTL = timedelta(days=7)
# How long a delivered message id is remembered: channels retry for minutes, not days.
DEDUP_TTL = timedelta(days=1)
# A conversation lock expires on its own after this lease, so a crashed process blocks nobody.
LOCK_LEASE = timedelta(seconds=60)
# How many outbound streams (and hash tags) the conversations are spread over. Changing it moves
# conversations to other shards: their sessions would be lost, so it is a constant.
SHARDS = 16
_SLOTS = 16_384


@cache
def shard_tags() -> tuple[str, ...]:
    """The hash tag of each shard: the first ``s{shard}.{n}`` whose slot lies in the shard's
    1/SHARDS of the slot range (found once; the same in every process and version)."""
    from redis.crc import key_slot

    width = _SLOTS // SHARDS
    tags: list[str] = []
    for shard in range(SHARDS):
        n = 0
        while key_slot(f"s{shard}.{n}".encode()) // width != shard:
            n += 1
        tags.append(f"s{shard}.{n}")
    return tuple(tags)


def shard_of(conversation: str) -> int:
    """The shard of a conversation (ConversationRef.key): a stable hash, not Python's hash()."""
    return zlib.crc32(conversation.encode()) % SHARDS


def conversation_of(message: str) -> str:
    """The conversation part of a de-duplication key (`bot.session.dedup_key` escapes the ``:``
    of message ids, so the last ``:`` separates the two)."""
    return message.rsplit(":", 1)[0]


@dataclass(frozen=True, slots=True)
class Keys:
    """Builds the bot's Redis keys under one prefix."""

    prefix: str = DEFAULT_PREFIX

    def _conversation(self, conversation: str) -> str:
        """The start of every key of a conversation: the prefix and its shard's hash tag."""
        return self._shard(shard_of(conversation))

    def _shard(self, shard: int) -> str:
        return f"{self.prefix}{{{shard_tags()[shard]}}}:"

    def session(self, conversation: str) -> str:
        """The session of a conversation (ConversationRef.key)."""
        return f"{self._conversation(conversation)}session:{conversation}"

    def lock(self, conversation: str) -> str:
        """The lock that lets one message of a conversation be handled at a time."""
        return f"{self._conversation(conversation)}lock:{conversation}"

    def dedup(self, message: str) -> str:
        """The record of a handled message (`bot.session.dedup_key`: conversation + message)."""
        return f"{self._conversation(conversation_of(message))}dedup:{message}"

    def seen(self, message: str) -> str:
        """When a message was first received, so handling it again gives the same lines."""
        return f"{self._conversation(conversation_of(message))}seen:{message}"

    def outbound(self, shard: int) -> str:
        """The stream of a shard's handled messages whose replies the senders deliver
        (bot.outbound); acknowledged entries are deleted and the stream is capped, so it needs
        no TTL."""
        return f"{self._shard(shard)}outbound"

    def outbound_of(self, conversation: str) -> str:
        """The outbound stream a conversation's entries go on."""
        return self.outbound(shard_of(conversation))

    @property
    def outbound_streams(self) -> tuple[str, ...]:
        """Every shard's outbound stream, by shard."""
        return tuple(self.outbound(shard) for shard in range(SHARDS))

    @property
    def outbound_dead(self) -> str:
        """The stream of replies that failed for good (capped, for staff to follow up)."""
        return f"{self.prefix}outbound:dead"

    def outbound_attempts(self, shard: int, entry: str) -> str:
        """How often an outbound entry was tried (a counter with the record's TTL); in the
        shard's slot, as it is deleted in one MULTI with the entry's acknowledgement."""
        return f"{self._shard(shard)}outbound:attempts:{entry}"

    def wechat_answer(self, conversation: str, msg_id: str) -> str:
        """The passive reply WeChat got for a MsgId, for its retries to any process."""
        return f"{self._conversation(conversation)}wechat:answer:{conversation}:{msg_id}"

    def wechat_choices(self, conversation: str) -> str:
        """The buttons last shown as numbered lines in a WeChat conversation."""
        return f"{self._conversation(conversation)}wechat:choices:{conversation}"

    @property
    def console_events(self) -> str:
        """The pub/sub channel every agent console of every process listens on."""
        return f"{self.prefix}console:events"
