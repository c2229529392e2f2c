"""What every channel adapter gets and gives: a callback in, an output channel out."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from channels.messages import IncomingMessage, OutgoingMessage

# Handed to each input channel by the wiring (bot/app.py). It records and handles the message
# (de-duplicated, one at a time per conversation), sends the replies through the output channel
# of the message's channel, and also returns them for channels that answer in-band (web chat's
# POST response, WeChat's passive reply).
OnMessage = Callable[[IncomingMessage], Awaitable[list[OutgoingMessage]]]


class OutputChannel(Protocol):
    """Delivers messages to customers of one channel."""

    name: str

    async def send(self, message: OutgoingMessage) -> None:
        """Deliver one message; raise a ChannelError subclass when it cannot be delivered."""
        ...


class ChannelError(Exception):
    """A channel could not accept or deliver a message."""
