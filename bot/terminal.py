"""`intakebot chat`: the same engine and dispatcher, talking to one customer in the terminal.

Replies are printed with their buttons as numbered options; typing a number taps that button.
Input is read in a thread so the event loop (knowledge-base warm-up, the ticket database) keeps
running while the prompt waits.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path

from bot.dispatcher import Dispatcher
from bot.engine import Engine, EngineConfig
from bot.session import InMemoryDeduplicator, InMemoryLockStore, InMemorySessionStore
from bot.settings import Settings
from channels.messages import Author, ConversationRef, IncomingMessage, OutgoingMessage

CHANNEL = "terminal"
QUIT = frozenset({"/quit", "/exit", "/q"})


@dataclass(slots=True)
class TerminalChannel:
    """The output channel of the terminal: prints each reply, buttons as numbered options."""

    write: Callable[[str], None] = print
    name: str = CHANNEL
    buttons: tuple[str, ...] = field(default=())  # of the last reply that had any

    async def send(self, message: OutgoingMessage) -> None:
        who = "agent" if message.author is Author.AGENT else "bot"
        self.write(f"{who}> {message.text}")
        if message.buttons:
            self.buttons = message.buttons
            for number, label in enumerate(message.buttons, start=1):
                self.write(f"  [{number}] {label}")

    def resolve(self, line: str) -> str:
        """The text a typed line stands for: a number picks a button of the last reply."""
        stripped = line.strip()
        if stripped.isdigit() and 1 <= int(stripped) <= len(self.buttons):
            return self.buttons[int(stripped) - 1]
        return line


async def converse(dispatcher: Dispatcher, channel: TerminalChannel,
                   read_line: Callable[[str], str] = input, *, chat_id: str | None = None) -> None:
    """Read lines until end of input or /quit and hand each one to the dispatcher."""
    conversation = ConversationRef(CHANNEL, chat_id or uuid.uuid4().hex[:12])
    for number in itertools.count(1):
        try:
            line = await asyncio.to_thread(read_line, "you> ")
        except EOFError:
            return
        if line.strip() in QUIT:
            return
        text = channel.resolve(line)
        channel.buttons = ()
        await dispatcher(IncomingMessage(conversation, text, message_id=str(number)))


async def run(settings: Settings, *, read_line: Callable[[str], str] = input,
              write: Callable[[str], None] = print) -> None:
    """Chat in the terminal on the embedded defaults: the trained triage model, the knowledge
    base and the ticket database of the data directory, sessions in this process."""
    from handoff.desk import SqlTicketDesk
    from handoff.sla import SlaPolicy
    from handoff.tickets import TicketStore
    from knowledge_base.service import KnowledgeBase, KnowledgeBaseConfig
    from nlp.analyzer import Analyzer
    from nlp.models import ModelConfig, load_backend

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    write("Loading the triage model and the knowledge base…")
    model = ModelConfig(data_dir=settings.data_dir, backend=settings.nlp_backend,
                        model_path=Path(settings.nlp_model_path) if settings.nlp_model_path
                        else None)
    analyzer = Analyzer(*await asyncio.to_thread(load_backend, model))
    async with AsyncExitStack() as stack:
        kb = await KnowledgeBase.open(KnowledgeBaseConfig(
            database_url=settings.database_url, redis_url=None,
            embedding_model=settings.kb_embedding_model, vector_cache_dir=settings.data_dir))
        stack.push_async_callback(kb.close)
        await kb.ensure_seed()
        tickets = await TicketStore.open(settings.database_url)
        stack.push_async_callback(tickets.close)
        channel = TerminalChannel(write)
        due = SlaPolicy(business_hours=settings.business_hours).due
        engine = Engine(analyzer, kb, SqlTicketDesk(tickets, due=due), config=EngineConfig())
        dispatcher = Dispatcher(engine, InMemorySessionStore(), InMemoryLockStore(),
                                InMemoryDeduplicator(), {CHANNEL: channel})
        write("Type your message (a number taps a button; /quit or Ctrl-D to leave).")
        await converse(dispatcher, channel, read_line)
