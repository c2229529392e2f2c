"""What every channel adapter gets and gives: a callback in, an output channel out."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

from aiohttp import web

from channels.messages import IncomingMessage, OutgoingMessage

# Handed to each input channel by the wiring (bot/app.py). It records and handles the message
# (de-duplicated, one at a time per conversation), sends the replies through the output channel
# of the message's channel, and also returns them for channels that answer in-band (web chat's
# POST response, WeChat's passive reply).
OnMessage = Callable[[IncomingMessage], Awaitable[list[OutgoingMessage]]]


def env_flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    """A true/false setting (1/0, true/false, yes/no, on/off); `default` when unset.

    Raises:
        ValueError: anything else.
    """
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name} must be true or false")


class OutputChannel(Protocol):
    """Delivers messages to customers of one channel."""

    name: str

    async def send(self, message: OutgoingMessage) -> None:
        """Deliver one message; raise a ChannelError subclass when it cannot be delivered."""
        ...


class ChannelError(Exception):
    """A channel could not accept or deliver a message."""


async def read_body(request: web.Request, limit: int,
                    too_large: Callable[[str], Exception]) -> bytes:
    """The request body, refusing more than `limit` bytes before reading them all.

    Raises:
        whatever `too_large(message)` builds: each channel answers 413 its own way.
    """
    message = f"the request body is larger than {limit:,} bytes"
    if request.content_length is not None and request.content_length > limit:
        raise too_large(message)
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.read(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise too_large(message)
        chunks.append(chunk)
    return b"".join(chunks)


class Rejected(Exception):
    """An inbound request a channel refuses, with the HTTP status it answers."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class ChannelAdapter(Protocol):
    """A channel the app mounts: its inbound routes, its output, its background work.

    Built by the wiring with the OnMessage callback; the adapter never sees the engine.
    """

    name: str

    @property
    def output(self) -> OutputChannel:
        """Where replies to this channel's conversations go."""
        ...

    def routes(self) -> list[web.RouteDef]:
        """Inbound HTTP routes (webhooks); may be empty for polling channels."""
        ...

    async def start(self) -> None:
        """Start background work (polling, retries); called once the dispatcher exists."""
        ...

    async def close(self) -> None:
        """Stop background work and close clients."""
        ...
