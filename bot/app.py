"""The aiohttp application: the one module that wires every part together.

Start-up (cleanup contexts, in order): the ticket database is migrated; the knowledge base is
opened (migrated, seeded on first run, indexed); the triage model is loaded once, in a thread;
the session, lock and de-duplication stores are opened (in-process, or Redis with REDIS_URL);
then the engine and the dispatcher are built; last, what start-up built is frozen out of the
garbage collector's full passes. Channels get the dispatcher as their OnMessage
callback, bound late so their routes can be added before start-up.

Errors: every package raises its own exception tree; `error_middleware` maps them to JSON
responses with a clear message and never lets bad input become a 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from bot.dispatcher import BatchOutput, Dispatcher
from bot.engine import Engine, EngineConfig, Triager
from bot.keys import DEFAULT_PREFIX, Keys
from bot.outbound import IdempotentOutput, RedisOutbound
from bot.redis_client import AnyRedis, connect
from bot.replay import ReplaySafeDesk
from bot.session import (
    Deduplicator,
    LockStore,
    LockTimeout,
    SessionError,
    SessionStore,
)
from bot.settings import Settings
from channels.base import ChannelAdapter, ChannelError, OnMessage, OutputChannel
from channels.mail import CHANNEL as MAIL_CHANNEL
from channels.messages import Author, ConversationRef, IncomingMessage, OutgoingMessage
from channels.webchat import CHANNEL as WEBCHAT_CHANNEL
from channels.webchat import WebChat, WebChatError
from channels.webhook import WebhookChannel
from channels.wechat import CHANNEL as WECHAT_CHANNEL
from handoff.aftercare import Aftercare, AftercarePolicy
from handoff.api import CANNED, CASEWORK, EVENTS, FILES, USERS, error_response, staff_endpoint
from handoff.api import page_routes as console_page_routes
from handoff.api import routes as console_routes
from handoff.errors import HandoffError, TicketStoreUnavailable
from handoff.evidence import EvidenceStore
from handoff.live import Events, InProcessEvents, RedisEvents
from handoff.privacy_api import routes as privacy_routes
from handoff.reports_api import routes as report_routes
from handoff.routing import Routing
from handoff.scheduler import Scheduler
from handoff.sla import Clock, SlaPolicy, system_clock
from handoff.survey_web import SurveyForm, SurveyLinks, load_secret
from handoff.tickets import TicketStore
from handoff.users import CASEWORK_ROLES, Role, User, UserStore
from handoff.wording import WordingGuard
from handoff.workflow import Casework
from knowledge_base.api import KNOWLEDGE_BASE
from knowledge_base.api import routes as kb_routes
from knowledge_base.errors import KnowledgeBaseError, StoreUnavailable

if TYPE_CHECKING:
    from bot.session import RedisDeduplicator
    from knowledge_base.retrieval import Searcher

log = logging.getLogger(__name__)

SETTINGS = web.AppKey("settings", Settings)
TICKETS = web.AppKey("tickets", TicketStore)
EVIDENCE = web.AppKey("evidence", EvidenceStore)
WEBCHAT = web.AppKey("webchat", WebChat)
DISPATCHER = web.AppKey("dispatcher", Dispatcher)
ANALYZER = web.AppKey("analyzer", Triager)  # nlp.analyzer.Analyzer
_OPTIONS = web.AppKey("options", dict)
CHANNELS = web.AppKey("channels", list)  # the ChannelAdapters mounted besides the web chat
AFTERCARE = web.AppKey("aftercare", Aftercare)  # progress updates, confirmation, survey jobs
OUTBOUND = web.AppKey("outbound", RedisOutbound)  # the durable reply queue, with REDIS_URL
# Never through the outbound queue: the web chat's outbox is durable itself, WeChat's passive
# reply is sent within the request, and a mail stays unread on the server until answered.
_INLINE_CHANNELS = frozenset({WEBCHAT_CHANNEL, WECHAT_CHANNEL, MAIL_CHANNEL})

ROUTING_FILE = "routing.yaml"  # in the data directory: the category -> department table
# The pub/sub channel of live console events, under the Redis key prefix (a channel, no TTL).
WORDING_FILE = "wording.yaml"  # in the data directory: the banned promises, one per list item


# ---- errors ---------------------------------------------------------------------------------

_RETRY = {"Retry-After": "5"}
# PostgreSQL connections of the ticket store per process, kept open and opened on demand: a
# message holds one at a time; several processes and the knowledge base share the server's 100.
PG_POOL_SIZE = 10
PG_POOL_OVERFLOW = 10


def _status(exc: Exception) -> tuple[int, str]:
    """The HTTP status and message of one of the product's errors."""
    match exc:
        case WebChatError():
            return exc.status, str(exc)
        case LockTimeout():
            return 503, "the conversation is busy; send the message again with the same message_id"
        case ChannelError():
            return 503, f"{exc}; send the message again with the same message_id"
        case StoreUnavailable() | SessionError():
            return 503, "a database the bot needs is unavailable; try again shortly"
        case KnowledgeBaseError():
            return 500, "the request could not be completed"
    return 500, "internal error"


@web.middleware
async def error_middleware(request: web.Request,
                           handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                           ) -> web.StreamResponse:
    """Map the product's exception tree, and aiohttp's HTTP errors, to JSON responses."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
        return web.json_response({"error": exc.reason}, status=exc.status, headers=headers)
    except asyncio.CancelledError:
        raise
    except HandoffError as exc:
        # The handoff package owns the mapping of its errors, so a Forbidden or an
        # InvalidTransition raised by any route gets the status the ticket API documents.
        return error_response(exc)
    except Exception as exc:
        status, message = _status(exc)
        if status >= 500:
            log.error("%s %s failed: %s: %s", request.method, request.path,
                      type(exc).__name__, exc, exc_info=status == 500)
        return web.json_response({"error": message}, status=status,
                                 headers=_RETRY if status == 503 else None)


# ---- logs -----------------------------------------------------------------------------------


class MaskPii(logging.Filter):
    """Masks phone numbers, e-mails, ID and card numbers, names and addresses in log records."""

    def filter(self, record: logging.LogRecord) -> bool:
        from nlp.pii import mask_pii

        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            return True
        record.msg = mask_pii(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = mask_pii(logging.Formatter().formatException(record.exc_info))
        return True


def configure_logging(level: int = logging.INFO) -> None:
    """Log to stderr with personal data masked in every record (DOMAIN.md, privacy)."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(MaskPii())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


# ---- start-up and shut-down -----------------------------------------------------------------


async def tickets_ctx(app: web.Application) -> AsyncIterator[None]:
    """Bring the ticket tables up to date; close the connections at the end."""
    tickets = app[TICKETS]
    await tickets.migrate()
    yield
    await tickets.close()


async def knowledge_base_ctx(app: web.Application) -> AsyncIterator[None]:
    """Open the FAQ store (migrated, seeded when empty), its index and its reload listener."""
    from knowledge_base.service import KnowledgeBase, KnowledgeBaseConfig

    settings = app[SETTINGS]
    kb = await KnowledgeBase.open(KnowledgeBaseConfig(
        database_url=settings.database_url, redis_url=settings.redis_url,
        embedding_model=settings.kb_embedding_model, vector_cache_dir=settings.data_dir),
        searcher=app[_OPTIONS].get("searcher"))
    await kb.ensure_seed()
    app[KNOWLEDGE_BASE] = kb
    yield
    await kb.close()


async def analyzer_ctx(app: web.Application) -> AsyncIterator[None]:
    """Load the triage model once (training it on the very first run), off the event loop."""
    if ANALYZER not in app:
        from nlp.analyzer import Analyzer
        from nlp.models import ModelConfig, load_backend

        settings = app[SETTINGS]
        config = ModelConfig(
            data_dir=settings.data_dir, backend=settings.nlp_backend,
            model_path=Path(settings.nlp_model_path) if settings.nlp_model_path else None)
        log.info("loading the %s triage model", settings.nlp_backend)
        app[ANALYZER] = Analyzer(*await asyncio.to_thread(load_backend, config))
    yield


async def dispatcher_ctx(app: web.Application) -> AsyncIterator[None]:
    """Open the conversation state stores and build the engine and the dispatcher."""
    settings = app[SETTINGS]
    sessions: SessionStore
    locks: LockStore
    dedup: Deduplicator
    redis: AnyRedis | None = None
    redis_dedup: RedisDeduplicator | None = None
    if settings.redis_url:
        from bot.session import RedisDeduplicator, RedisLockStore, RedisSessionStore

        redis = connect(settings.redis_url, cluster=settings.redis_cluster)
        keys = _keys(app)
        sessions = RedisSessionStore(redis, keys=keys)
        locks = RedisLockStore(redis, keys=keys)
        dedup = redis_dedup = RedisDeduplicator(redis, keys=keys)
    else:
        from bot.session import InMemoryDeduplicator, InMemoryLockStore, InMemorySessionStore

        sessions, locks, dedup = (InMemorySessionStore(), InMemoryLockStore(),
                                  InMemoryDeduplicator())
    # A message handled again after a crash adds its transcript lines once (bot/replay.py).
    desk = ReplaySafeDesk(app[TICKETS], _routing(settings), events=app[EVENTS],
                           due=app[CASEWORK].sla.due, aftercare=app[AFTERCARE])
    engine = Engine(app[ANALYZER], app[KNOWLEDGE_BASE], desk, config=EngineConfig())
    webchat = app[WEBCHAT]
    adapters: list[ChannelAdapter] = app[CHANNELS]
    outputs = {name: guarded(output, app[CASEWORK]) for name, output in
               {WEBCHAT_CHANNEL: webchat.output, **{a.name: a.output for a in adapters}}.items()}
    outbound: RedisOutbound | None = None
    queued: set[str] = set()
    if redis is not None and redis_dedup is not None:
        # Replies to the other channels go through the durable outbound stream.
        queued = {a.name for a in adapters} - _INLINE_CHANNELS
        outbound = RedisOutbound(redis, redis_dedup, outputs, keys=_keys(app))
        app[OUTBOUND] = outbound
    app[DISPATCHER] = Dispatcher(engine, sessions, locks, dedup, outputs, commit=redis_dedup,
                                 queued=queued)
    for adapter in adapters:
        await adapter.start()
    if outbound is not None:
        await outbound.start()
    try:
        yield
    finally:
        if outbound is not None:
            await outbound.close()
        for adapter in adapters:
            await adapter.close()
        await webchat.close()
        if redis is not None:
            await redis.aclose()


async def frozen_heap_ctx(_app: web.Application) -> AsyncIterator[None]:
    """Keep what start-up built (models, dictionaries, indexes: about 600,000 objects) out of
    the garbage collector's full passes.

    Otherwise each full pass walks all of them on the event loop: about 260 ms of CPU, and over
    a second of wall time on a busy machine, for every request waiting meanwhile. Frozen objects
    are still freed by reference counting; only cycles among them are never collected.
    """
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


async def events_ctx(app: web.Application) -> AsyncIterator[None]:
    """Start listening to console events on Redis when several processes share them."""
    events = app[EVENTS]
    if not isinstance(events, RedisEvents):
        yield
        return
    await events.start()
    try:
        yield
    finally:
        await events.close()
        await events.redis.aclose()


@contextlib.asynccontextmanager
async def _every(seconds: float, name: str, step: Callable[[], Awaitable[object]]
                 ) -> AsyncIterator[None]:
    """Run `step` every `seconds` in the background while the block runs; a database outage
    is logged and retried at the next round (the work itself lives in the database)."""

    async def loop() -> None:
        while True:
            try:
                await step()
            except TicketStoreUnavailable as exc:
                log.error("%s failed, retrying in %.0f s: %s", name, seconds, exc)
            await asyncio.sleep(seconds)

    task = asyncio.create_task(loop(), name=name)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def sla_ctx(app: web.Application) -> AsyncIterator[None]:
    """Check open tickets for SLA breaches periodically (due times live in the database)."""
    async with _every(app[SETTINGS].sla_check_seconds, "sla-check", app[CASEWORK].check_sla):
        yield


async def aftercare_ctx(app: web.Application) -> AsyncIterator[None]:
    """Plan and run the after-care jobs periodically (they live in the database, so every
    server process may run this loop: each job still runs once)."""
    async with _every(app[SETTINGS].scheduler_seconds, "aftercare", app[AFTERCARE].tick):
        yield


def _aftercare(settings: Settings, tickets: TicketStore, casework: Casework,
               clock: Clock) -> tuple[Aftercare, SurveyForm]:
    from datetime import timedelta

    from channels.mail import CHANNEL as MAIL_CHANNEL

    start, end = settings.survey_window_hours
    links = SurveyLinks(load_secret(settings.data_dir, settings.secret),
                        settings.public_url or f"http://{settings.host}:{settings.port}",
                        clock=clock)
    policy = AftercarePolicy(
        update_every=timedelta(days=settings.update_days),
        survey_window=(timedelta(hours=start), timedelta(hours=end)),
        quiet_hours=settings.quiet_hours, timezone=settings.timezone,
        link_channels=frozenset({MAIL_CHANNEL}))
    aftercare = Aftercare(tickets, casework, Scheduler(tickets, clock=clock), policy=policy,
                          survey_link=links.url)
    return aftercare, SurveyForm(links, aftercare)


class GuardedOutput:
    """An output channel whose bot messages pass the wording guard (agents' were checked)."""

    def __init__(self, output: OutputChannel, casework: Casework) -> None:
        self._output = output
        self._casework = casework
        self.name = output.name
        # What the outbound senders ask: may a reply in doubt be sent again by its key?
        self.idempotent = isinstance(output, IdempotentOutput)

    async def send(self, message: OutgoingMessage) -> None:
        if message.author is not Author.AGENT:
            conversation = message.conversation
            await self._casework.check_bot_message(conversation.channel, conversation.chat_id,
                                                   message.text)
        await self._output.send(message)

    async def send_once(self, message: OutgoingMessage, key: str) -> None:
        """Send by key (stored or sent once) when the channel's output takes a key."""
        if message.author is not Author.AGENT:
            conversation = message.conversation
            await self._casework.check_bot_message(conversation.channel, conversation.chat_id,
                                                   message.text)
        if isinstance(self._output, IdempotentOutput):
            await self._output.send_once(message, key)
        else:
            await self._output.send(message)


class GuardedBatchOutput(GuardedOutput):
    """A guarded output whose channel stores a turn's replies in one step (the web chat)."""

    def __init__(self, output: BatchOutput, casework: Casework) -> None:
        super().__init__(output, casework)
        self._batch = output

    async def send_batch_once(self, messages: Sequence[OutgoingMessage],
                              keys: Sequence[str]) -> None:
        for message in messages:
            if message.author is not Author.AGENT:
                conversation = message.conversation
                await self._casework.check_bot_message(conversation.channel,
                                                       conversation.chat_id, message.text)
        await self._batch.send_batch_once(messages, keys)


def guarded(output: OutputChannel, casework: Casework) -> GuardedOutput:
    """The output behind the wording guard, taking batches when the channel does."""
    if isinstance(output, BatchOutput):
        return GuardedBatchOutput(output, casework)
    return GuardedOutput(output, casework)


class KnowledgeBaseReplies:
    """`handoff.api.CannedReplies` from the published FAQ answers (no gap is recorded)."""

    def __init__(self, app: web.Application) -> None:
        self._app = app

    async def suggest(self, text: str, *, limit: int = 5) -> list[dict[str, str]]:
        result = await self._app[KNOWLEDGE_BASE].search(text, top_k=limit, record_gap=False)
        return [{"question": hit.question, "answer": hit.answer} for hit in result.hits]


class DispatcherRelay:
    """`handoff.workflow.Relay` on the dispatcher: staff messages take the customers' path."""

    def __init__(self, app: web.Application) -> None:
        self._app = app

    async def agent_message(self, channel: str, chat_id: str, text: str, *,
                            message_id: str) -> None:
        await self._send(channel, chat_id, text, message_id, Author.AGENT)

    async def command(self, channel: str, chat_id: str, command: str, *,
                      message_id: str) -> None:
        await self._send(channel, chat_id, command, message_id, Author.SYSTEM)

    async def _send(self, channel: str, chat_id: str, text: str, message_id: str,
                    author: Author) -> None:
        await self._app[DISPATCHER](IncomingMessage(
            ConversationRef(channel, chat_id), text, message_id, author=author))


def _keys(app: web.Application) -> Keys:
    """The Redis keys: the prefix create_app was given, else INTAKEBOT_REDIS_PREFIX."""
    prefix = app[_OPTIONS].get("redis_prefix") or app[SETTINGS].redis_prefix
    return Keys(prefix) if prefix else Keys()


def ticket_store(url: str) -> TicketStore:
    """The ticket store on `url`; on PostgreSQL with the pool the web chat's load needs.

    SQLAlchemy's default pool (5 connections, 10 more opened and closed again on demand) kept
    opening connections under bursts, and its pre-ping costs three round trips per checkout on
    asyncpg (BEGIN, an empty query, ROLLBACK), about 15 per web chat message. Without it a
    connection a database restart broke fails once: SQLAlchemy then replaces every pooled
    connection, and the request answers 503 for the client to resend (docs/engine.md).
    """
    if make_url(url).get_backend_name() != "postgresql":
        return TicketStore.connect(url)
    return TicketStore(create_async_engine(url, pool_size=PG_POOL_SIZE,
                                           max_overflow=PG_POOL_OVERFLOW, pool_pre_ping=False))


def _routing(settings: Settings) -> Routing:
    return Routing.load(settings.data_dir / ROUTING_FILE)


def _too_long_reply() -> Callable[[str, int], str] | None:
    """The engine's "message too long" template, if its reply file has one."""
    from bot.replies import default_replies

    replies = default_replies()
    if "too_long" not in replies.templates:
        return None

    def reply(text: str, limit: int) -> str:
        from nlp.normalize import detect_lang

        return replies.render("too_long", detect_lang(text[:500]), limit=limit,
                              max_chars=limit, chars=limit)

    return reply


# ---- the application ------------------------------------------------------------------------


async def healthz(request: web.Request) -> web.Response:
    """200 when the ticket database answers, 503 when it does not."""
    try:
        await request.app[TICKETS].ping()
    except TicketStoreUnavailable as exc:
        log.warning("health check: %s", exc)
        return web.json_response({"status": "unavailable", "error": "database"}, status=503)
    return web.json_response({"status": "ok"})


def create_app(
    settings: Settings,
    *,
    analyzer: Triager | None = None,
    searcher: Searcher | None = None,
    redis_prefix: str | None = None,
    evidence_max_bytes: int | None = None,
    channels: Callable[[OnMessage], list[ChannelAdapter]] | None = None,
    clock: Clock | None = None,
) -> web.Application:
    """The whole product as one aiohttp application.

    Args:
        settings: from `Settings.from_env()`.
        analyzer: an already loaded triage analyzer (tests); loaded at start-up when None.
        searcher: an already built knowledge-base searcher (tests); the configured one if None.
        redis_prefix: the prefix of every Redis key (tests use a unique one per run).
        evidence_max_bytes: the largest evidence file accepted (default 10 MB).
        channels: builds the extra channel adapters (Telegram, WeChat, webhook, e-mail) from
            the OnMessage callback; default: those configured in settings.
        clock: the time SLA and casework use (tests pass a `handoff.sla.ManualClock`).
    """
    app = web.Application(client_max_size=2 * 1024 * 1024, middlewares=[error_middleware])
    app[SETTINGS] = settings
    app[_OPTIONS] = {"searcher": searcher, "redis_prefix": redis_prefix}
    if analyzer is not None:
        app[ANALYZER] = analyzer

    tickets = ticket_store(settings.database_url)
    evidence = (EvidenceStore(settings.data_dir / "evidence") if evidence_max_bytes is None
                else EvidenceStore(settings.data_dir / "evidence", max_bytes=evidence_max_bytes))
    app[TICKETS] = tickets
    app[EVIDENCE] = evidence

    async def on_message(message: IncomingMessage) -> list[OutgoingMessage]:
        # Bound late: the dispatcher exists once start-up has loaded the models.
        return await app[DISPATCHER](message)

    too_long = _too_long_reply()
    options: dict[str, Any] = {"too_long": too_long} if too_long is not None else {}
    # A body holds one full-size photo in base64, or several smaller ones, and the text.
    max_body = evidence.max_bytes * 4 // 3 + 1024 * 1024
    webchat = WebChat(on_message, tickets.outbox, files=evidence, tickets=tickets,
                      max_body=max_body, **options)
    app[WEBCHAT] = webchat

    events: Events = InProcessEvents()
    if settings.redis_url:
        from redis.asyncio import Redis

        # Several server processes: every console hears every event through Redis pub/sub.
        keys = _keys(app)
        events = RedisEvents(Redis.from_url(settings.redis_url), keys.console_events)
    app[EVENTS] = events
    app[USERS] = UserStore(tickets.engine)
    app[FILES] = evidence
    app[CANNED] = KnowledgeBaseReplies(app)
    app[CASEWORK] = Casework(
        tickets, DispatcherRelay(app), events,
        guard=WordingGuard.load(settings.data_dir / WORDING_FILE),
        sla=SlaPolicy(resolution_hours=settings.resolution_hours,
                      business_hours=settings.business_hours),
        approval_threshold=settings.approval_threshold,
        first_response_hours=settings.first_response_hours, routing=_routing(settings),
        clock=clock or system_clock)
    app[AFTERCARE], survey_form = _aftercare(settings, tickets, app[CASEWORK],
                                             clock or system_clock)

    app.cleanup_ctx.extend([tickets_ctx, events_ctx, knowledge_base_ctx, analyzer_ctx,
                            dispatcher_ctx, sla_ctx, aftercare_ctx, frozen_heap_ctx])
    app.add_routes(survey_form.routes("/survey"))
    app.router.add_get("/healthz", healthz)
    app.add_routes(webchat.routes("/api/webchat"))
    app.add_routes(webchat.page_routes("/chat"))
    app.add_routes(kb_routes("/api/kb"))
    app.add_routes(console_routes("/api"))
    app.add_routes(privacy_routes("/api"))
    app.add_routes(console_page_routes("/console"))
    app.add_routes(report_routes("/api", "/console/reports"))
    app.router.add_get("/api/channels/dead-letters",
                       staff_endpoint(dead_letters, CASEWORK_ROLES | {Role.ADMIN}))
    adapters = (channels or configured_channels(settings, evidence))(on_message)
    app[CHANNELS] = adapters
    for adapter in adapters:
        app.add_routes(adapter.routes())
    return app


async def dead_letters(request: web.Request, _user: User) -> web.Response:
    """Replies no channel could deliver, for agents and admins to follow up by hand."""
    entries = []
    for adapter in request.app[CHANNELS]:
        if isinstance(adapter, WebhookChannel):
            entries += [{"channel": adapter.name, **e} for e in await adapter.dead_letters.list()]
    if OUTBOUND in request.app:
        entries += [{"channel": "outbound", **e}
                    for e in await request.app[OUTBOUND].dead_letters()]
    return web.json_response({"dead_letters": entries})


def configured_channels(settings: Settings, evidence: EvidenceStore
                        ) -> Callable[[OnMessage], list[ChannelAdapter]]:
    """The channel adapters the settings enable; only the web chat runs by default."""
    from channels.mail import FileThreadStore, Mail
    from channels.telegram import TelegramChannel
    from channels.wechat import WeChat
    from channels.wechat_state import RedisWeChatState

    def build(on_message: OnMessage) -> list[ChannelAdapter]:
        adapters: list[ChannelAdapter] = []
        if settings.telegram is not None:
            adapters.append(TelegramChannel(settings.telegram, on_message, files=evidence))
        if settings.webhook is not None:
            adapters.append(WebhookChannel(settings.webhook, on_message, files=evidence,
                                           data_dir=settings.data_dir,
                                           queued=settings.redis_url is None))
        if settings.wechat is not None:
            # With Redis, WeChat's retries and numbered answers may reach any process.
            state = (RedisWeChatState(connect(settings.redis_url,
                                              cluster=settings.redis_cluster),
                                      Keys(settings.redis_prefix or DEFAULT_PREFIX))
                     if settings.redis_url else None)
            adapters.append(WeChat(settings.wechat, on_message, files=evidence, state=state))
        if settings.mail is not None:
            adapters.append(Mail(settings.mail, on_message, files=evidence,
                                 threads=FileThreadStore(settings.data_dir / "mail")))
        return adapters

    return build


def run(settings: Settings, *, host: str, port: int) -> None:
    """Serve the application until interrupted."""
    configure_logging()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    web.run_app(create_app(settings), host=host, port=port, access_log=log,
                print=lambda text: log.info("%s", text))
