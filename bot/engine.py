"""The intake conversation: one message and the session in, the new session and the replies out.

The engine does no I/O of its own: it reads the triage (nlp, off the event loop), the knowledge
base and the ticket desk through the collaborators it is given, and returns the replies for the
dispatcher to send. What it may say is in bot/replies.yaml.

The conversation (DOMAIN.md steps 1-3): greet and apologise, let the customer tell the story,
ask for each missing fact one at a time (order number, product, contact, demand; photos are
optional and mentioned once), read back a summary, and on confirmation register the complaint
and send the receipt. Inquiries are answered from the knowledge base. A request for a person, an
urgent or very angry complaint, and a question the knowledge base cannot answer twice go to a
person at once; while a person has the conversation the engine only keeps the record.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

from bot.replies import Replies, default_replies
from bot.session import Ask, Assessment, Form, Line, Question, Session, State
from channels.messages import Author, IncomingMessage, OutgoingMessage
from handoff.errors import InvalidTicket, TicketNotFound
from handoff.intake import EvidenceRef, HandoffReason, TicketDesk, TicketDraft, TranscriptLine
from handoff.survey import ASPECTS, MAX_SUGGESTION, QUESTIONS, SCORES
from knowledge_base.retrieval import SearchHit, SearchResult
from nlp.labels import Category, Demand, Emotion, Intent, Lang, Priority
from nlp.normalize import clean, detect_lang, to_simplified, to_traditional
from nlp.triage import Context, Triage

# System messages (author=system) that other parts of the product send into a conversation.
TAKEOVER = "/takeover"  # an agent takes the conversation: the bot falls silent
HANDBACK = "/handback"  # the agent gives it back: the bot carries on, with what it knew
# After-care (handoff.aftercare), each with a JSON payload: ticket_id, number, lang, ...
NOTIFY = "/notify"  # tell the customer a stage change or a progress update ("event")
CONFIRM = "/confirm"  # ask whether the resolved problem is solved (yes / no)
SURVEY = "/survey"  # the satisfaction survey: questions with buttons, or a "link" to a form
NOTIFY_EVENTS = frozenset({"assigned", "investigating", "awaiting_approval", "reopened",
                           "closed", "update"})


class EngineError(Exception):
    """Base of the errors the engine raises on purpose."""


class UnknownCommand(EngineError):
    """A system message that is not one of the engine's commands."""


class Triager(Protocol):
    """What the engine needs of nlp: nlp.analyzer.Analyzer (CPU-bound; run in a thread)."""

    def analyze(self, text: str, context: Context | None = None) -> Triage: ...


class Answers(Protocol):
    """What the engine needs of the knowledge base: knowledge_base.service.KnowledgeBase."""

    async def search(self, text: str, *, top_k: int = 5) -> SearchResult: ...


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """How the conversation behaves; the wiring builds it from the settings."""

    service_hours: str = "09:00-21:00"  # when agents answer, shown on every receipt
    timezone: str = "Asia/Shanghai"  # of service hours, promised times and "昨天" in messages
    anger_threshold: float = 0.85  # emotion intensity from which anger alone hands off
    kb_top_k: int = 3
    max_kb_misses: int = 2  # unhelpful or unconfident answers before a person takes over


# The facts of the form, asked in this order; an urgent case asks only for the URGENT ones.
REQUIRED: tuple[Ask, ...] = (Ask.STORY, Ask.ORDER_ID, Ask.PRODUCT, Ask.CONTACT, Ask.DEMAND)
URGENT: tuple[Ask, ...] = (Ask.ORDER_ID, Ask.CONTACT)
# The form fields that answer each question.
_ANSWERS: dict[Ask, tuple[str, ...]] = {
    Ask.ORDER_ID: ("order_id",), Ask.PRODUCT: ("product",), Ask.CONTACT: ("phone", "email"),
    Ask.DEMAND: ("demand",),
}
_DEMAND_BUTTONS: tuple[Demand, ...] = (
    Demand.REFUND, Demand.EXCHANGE, Demand.REPAIR, Demand.APOLOGY, Demand.COMPENSATION,
    Demand.OTHER,
)
_HANDOFF_REPLY = {
    HandoffReason.REQUESTED_HUMAN: "handoff_human",
    HandoffReason.HIGH_PRIORITY: "handoff_urgent",
    HandoffReason.STRONG_ANGER: "handoff_urgent",
    HandoffReason.NO_KB_ANSWER: "handoff_no_answer",
    HandoffReason.NEEDS_INVESTIGATION: "receipt",
}
_SHORT_ANSWER = 4  # a survey answer this short that fits no option is a slip: ask again
_SCORE = re.compile(r"^([1-5])(?:分|星|points?|stars?)?$")
_SOLVED = re.compile(r"^(?:已解决|解决了|已经解决了?|好了|收到了|到账了|solved|itssolved|yesitis)$")
_UNSOLVED = re.compile(r"^(?:未解决|没有解决|还没解决|还没有解决|没收到|没到账|notsolved|notyet)$")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_SUMMARY_DESCRIPTION = 120

# ---- what a customer's words mean here -------------------------------------------------------
# Whole-message patterns, matched on `_plain` text (Simplified, lower case, no punctuation or
# spaces), so "取消订单怎么操作" is a question, not a cancellation.
_CANCEL = re.compile(
    r"^(?:那|还是|我)?(?:算了|不用了?|取消|不要了|不投诉了|不弄了|不办了|不需要了)+"
    r"(?:吧|啦|了|呢|谢谢|投诉|不投诉了|不用了|不要了)*$"
    r"|^(?:cancel(?:it|this|that|please|thecomplaint)?|nevermind|forgetit|nevermindthen|stop)$"
)
_YES = re.compile(
    r"^(?:是|是的|有|有帮助|有用|帮到了|对|对的|好|好的|嗯|嗯嗯|可以|解决了|明白了|懂了|谢谢|确认|没问题"
    r"|正确|无误|yes|yep|yeah|y|ok|okay|sure|itdid|helpful|thanks|thankyou|confirm|correct)$"
)
_CONFIRM = re.compile(
    r"^(?:是|是的|对|对的|好|好的|确认|确定|没问题|正确|无误|可以|提交|yes|yep|ok|okay|sure|confirm"
    r"|correct|submit|right|thatsright)$"
)
_NO = re.compile(
    r"^(?:否|不是|没有|没|没用|没有用|没帮助|没有帮助|不行|不对|没解决|不明白|no|nope|n|notreally"
    r"|didnthelp|itdidnt|nothelpful|notatall)$"
)
_MODIFY = re.compile(r"修改|改一下|要改|有误|不对|错了|change|edit|modify|wrong|notright")
_DECLINE = re.compile(
    r"^(?:没有|没|无|不知道|不清楚|忘了|忘记了|不记得了?|找不到|不方便|不想说|不想给|不提供|不给|跳过|暂时没有"
    r"|none|no|n/?a|idontknow|dontknow|dunno|idonthaveit|donthaveit|idonthaveone|skip|rathernot)"
    r"(?:了|吧|啊|呢|哦)*$"
)
# "我要投诉" says a complaint is coming before saying what it is about.
_COMPLAIN = re.compile(r"投诉|投訴|\bcomplain", re.IGNORECASE)
_THANKS = re.compile(r"谢谢|多谢|感谢|thank|thx|\bty\b|3q", re.IGNORECASE)
# Marks a message that corrects what was said before, so its values replace the old ones.
_CORRECTION = re.compile(
    r"不对|不是|错了|应该是|更正|改成|改为|改一下|纠正|\bsorry\b|\bactually\b|\bcorrection\b"
    r"|should be|\binstead\b|\bwrong\b",
    re.IGNORECASE,
)
_LABELLED_PRODUCT = re.compile(
    r"(?:商品|产品|东西|宝贝|货品|\bproduct\b|\bitem\b)(?:名称|名字)?\s*"
    r"(?:应该是|是|为|叫|:|：|\bis\b|\bwas\b)\s*(?P<value>[^，。,.!！?？;；\n]{1,40})",
    re.IGNORECASE,
)
# Words that carry no part of the story ("我要投诉" alone does not say what happened).
_FILLER = re.compile(
    r"我要投诉|我想投诉|投诉一下|投诉|我要|我想|你们|你好|您好|请问|客服|麻烦|一下|在吗|在不在|谢谢"
    r"|\b(?:hello|hi|hey|i want to|i would like to|i'd like to|complain|complaint|make a|please"
    r"|file|a|an|the)\b",
    re.IGNORECASE,
)
_SLOT_NOISE = re.compile(r"\S+@\S+|https?://\S+|[A-Za-z]*[0-9][0-9A-Za-z-]*")
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN_WORD = re.compile(r"[A-Za-z]{2,}")
_PUNCT = re.compile(r"[\s\"'“”‘’。，,.!！?？~～、:：;；()（）\[\]【】…—\-]+")
_BARE_TOKEN = re.compile(r"^[#＃:：\s]*(?P<token>[A-Za-z0-9][A-Za-z0-9 \-]{0,60}?)[\s。.!！]*$")
_ORDER_SHAPE = re.compile(r"^[A-Za-z]{0,6}-?[A-Za-z0-9]{5,32}$")
_MOBILE = re.compile(r"^(?:\+?86-?)?1[3-9][0-9]{9}$")
_LANDLINE = re.compile(r"^0[0-9]{2,3}-?[0-9]{7,8}$")


def _plain(text: str) -> str:
    return _PUNCT.sub("", to_simplified(clean(text)).lower())


def valid_order_id(value: str) -> bool:
    """The shape of an order number: 8 to 32 letters and digits (an optional letter prefix and
    dash), at least 6 of them digits."""
    compact = value.replace("-", "")
    return (_ORDER_SHAPE.match(value) is not None and 8 <= len(compact) <= 32
            and sum(c.isdigit() for c in compact) >= 6)


def _bare_token(text: str) -> str | None:
    m = _BARE_TOKEN.match(clean(text))
    return m["token"].replace(" ", "") if m else None


def _meaningful(text: str) -> tuple[int, int]:
    """(Han characters, Latin words) of a text once slot values and filler words are gone."""
    rest = _FILLER.sub(" ", _SLOT_NOISE.sub(" ", clean(text)))
    return len(_HAN.findall(rest)), len(_LATIN_WORD.findall(rest))


def choose_lang(text: str, detected: Lang, current: Lang | None) -> Lang | None:
    """The reply language after this message: sticky, switched only by enough evidence.

    Order numbers, e-mails and phone numbers say nothing about the language, a short Chinese
    reply cannot tell Traditional from Simplified, and one Latin word ("ok") does not make a
    Chinese customer English.
    """
    rest = _SLOT_NOISE.sub(" ", clean(text))
    han = _HAN.findall(rest)
    latin = _LATIN_WORD.findall(rest)
    if han:
        script = detected if detected in (Lang.ZH_HANS, Lang.ZH_HANT) else detect_lang("".join(han))
        if script is Lang.ZH_HANS and current is Lang.ZH_HANT and len(han) < 8:
            return current
        return script
    if latin and (current is None or len(latin) >= 2):
        return Lang.EN
    return current


@dataclass(slots=True)
class _Turn:
    """What the engine says while handling one message (local to one `handle` call)."""

    message: IncomingMessage
    incoming: Line | None = None  # the customer's or agent's line, as the transcript keeps it
    replies: list[tuple[OutgoingMessage, Line | None]] = field(default_factory=list)
    registered_at: int | None = None  # how many replies were said before a ticket existed
    forgot_ticket: bool = False  # the session let go of its closed ticket during this turn

    def add(self, reply: OutgoingMessage, line: Line | None) -> None:
        self.replies.append((reply, line))

    @property
    def lines(self) -> list[Line]:
        return [line for _, line in self.replies if line is not None]


class Engine:
    """The intake conversation as a function of (message, session)."""

    def __init__(self, triager: Triager, answers: Answers, desk: TicketDesk, *,
                 replies: Replies | None = None, config: EngineConfig | None = None) -> None:
        self._triager = triager
        self._answers = answers
        self._desk = desk
        self._replies = replies or default_replies()
        self._config = config or EngineConfig()
        self._zone = ZoneInfo(self._config.timezone)

    async def handle(self, message: IncomingMessage, session: Session | None
                     ) -> tuple[Session, list[OutgoingMessage]]:
        """Handle one message of the conversation.

        Args:
            message: what arrived (customer, agent or system).
            session: the conversation's session, None for a new conversation.

        Returns:
            The session to store, and the replies to send, in order.
        """
        s = session or Session.new(message.conversation, message.received_at)
        if message.author is Author.CUSTOMER:
            s = await self._forget_closed(s)
        had_ticket = s.ticket_id is not None
        turn = _Turn(message)
        if message.author is Author.AGENT:
            s = self._agent(s, turn)
        elif message.author is Author.SYSTEM:
            s = await self._system(s, turn)
        else:
            s = await self._customer(s, turn)
        s = s.with_lines(*turn.lines)
        await self._sync_ticket(s, turn, had_ticket and not turn.forgot_ticket)
        s = replace(s, revision=s.revision + 1, updated_at=message.received_at)
        return s, [reply for reply, _ in turn.replies]

    # ---- authors -------------------------------------------------------------------------

    def _agent(self, s: Session, turn: _Turn) -> Session:
        m = turn.message
        turn.incoming = Line(Author.AGENT, m.text, m.received_at)
        s = s.with_lines(turn.incoming)
        if s.state is not State.WITH_AGENT:
            s = replace(s, state=State.WITH_AGENT, pending=None)
        turn.add(OutgoingMessage(m.conversation, m.text, attachments=m.attachments,
                                 author=Author.AGENT), None)
        return s

    async def _system(self, s: Session, turn: _Turn) -> Session:
        command = turn.message.text.strip()
        name, _, payload = command.partition(" ")
        if name in (NOTIFY, CONFIRM, SURVEY):
            return self._aftercare(s, turn, name, payload)
        if command == TAKEOVER:
            return replace(s, state=State.WITH_AGENT, pending=None)
        if command != HANDBACK:
            raise UnknownCommand(f"unknown system message {command!r}; "
                                 f"expected {TAKEOVER!r} or {HANDBACK!r}")
        if s.state is not State.WITH_AGENT:
            return s  # handed back already: a repeated command changes nothing
        self._say(s, turn, "handback")
        if s.ticket_id is not None:
            return replace(s, state=State.REGISTERED)
        if s.story or s.form != Form():
            return await self._advance(replace(s, state=State.COLLECTING), turn)
        return replace(s, state=State.GREETING)

    async def _customer(self, s: Session, turn: _Turn) -> Session:
        m = turn.message
        if s.state is State.CLOSED:
            s = s.restarted()
        turn.incoming = Line(Author.CUSTOMER, m.text, m.received_at)
        s = s.with_lines(turn.incoming)
        if m.attachments:
            s = replace(s, evidence=(*s.evidence, *(
                EvidenceRef(a.filename, a.content_type, a.sha256, a.size) for a in m.attachments)))
        text = clean(m.text)
        if s.question is not None and text:
            # The bot's own question: answered even while an agent has the conversation.
            answered = await self._answer(s, s.question, text, turn)
            if answered is not None:
                return answered
            s = await self._forget_closed(replace(s, question=None))
            turn.forgot_ticket = s.ticket_id is None
        if s.state is State.WITH_AGENT:
            return s  # the agent reads it in the ticket; the bot does not talk over them
        if m.attachments:
            self._say(s, turn, "evidence_received", count=len(m.attachments))
        if not text:
            if not m.attachments:
                self._say(s, turn, "empty")
            elif s.state is State.COLLECTING:
                return await self._advance(s, turn)
            elif s.state is State.CONFIRMING:
                self._say(s, turn, "confirm_prompt", buttons=self._confirm_buttons(s))
            return s
        triage = await asyncio.to_thread(self._triager.analyze, text, self._context(s, m))
        s = replace(s, lang=self._lang(text, triage, s.lang))
        if _CANCEL.match(_plain(text)):
            return self._cancel(s, turn)
        if triage.intent is Intent.REQUEST_HUMAN:
            s, _ = self._absorb(s, text, triage)
            s = self._assess(s, triage, None)
            return await self._handoff(s, HandoffReason.REQUESTED_HUMAN, turn)
        if s.state is State.REGISTERED:
            return await self._registered(s, text, triage, turn)
        if s.state is State.CONFIRMING:
            return await self._confirming(s, text, triage, turn)
        if s.state is State.COLLECTING:
            return await self._collecting(s, text, triage, turn)
        if s.state is State.ANSWERED_FAQ:
            plain = _plain(text)
            if self._replies.label_matches(text, "button.yes") or _YES.match(plain):
                self._say(s, turn, "faq_glad")
                return replace(s, state=State.GREETING, kb_misses=0)
            if self._replies.label_matches(text, "button.no") or _NO.match(plain):
                return await self._kb_miss(s, turn)
        return await self._open(s, text, triage, turn)

    # ---- states --------------------------------------------------------------------------

    async def _open(self, s: Session, text: str, triage: Triage, turn: _Turn) -> Session:
        """Nothing under way (greeting, after an answer, after asking to rephrase)."""
        if triage.intent is Intent.COMPLAINT or _COMPLAIN.search(text):
            return await self._start_complaint(s, text, triage, turn)
        thanks = triage.intent is Intent.OTHER and _THANKS.search(text) is not None
        if triage.intent is Intent.INQUIRY or (s.state is State.REPHRASING and not thanks):
            return await self._inquiry(s, text, turn)
        s, _ = self._absorb(s, text, triage)  # an order number said in passing is kept
        self._say(s, turn, "thanks" if thanks else "greeting")
        return s

    async def _start_complaint(self, s: Session, text: str, triage: Triage, turn: _Turn
                               ) -> Session:
        s = replace(s, state=State.COLLECTING, kb_misses=0, pending=None)
        s, notes = self._absorb(s, text, triage)
        if self._is_story(text, triage, s.pending):
            s = s.with_story(turn.message.text.strip())
        s = self._assess(s, triage, None)
        self._say(s, turn, "apology_urgent" if self._urgent(s) else "apology")
        return await self._after_answer(s, notes, turn)

    async def _collecting(self, s: Session, text: str, triage: Triage, turn: _Turn) -> Session:
        was_urgent = self._urgent(s)
        pending = s.pending
        slots = triage.slots
        if (triage.intent is Intent.INQUIRY and not (slots.order_id or slots.phone or slots.email)
                and not _CORRECTION.search(text) and not self._is_button(text)):
            result = await self._answers.search(text, top_k=self._config.kb_top_k)
            if result.confident and result.best is not None:
                self._say_answer(s, result.best, turn)  # a side question; then carry on
                return self._ask(s, pending, turn) if pending else await self._advance(s, turn)
        s, notes = self._absorb(s, text, triage, pending=pending)
        if self._is_story(text, triage, pending, notes):
            s = s.with_story(turn.message.text.strip())
            s = self._assess(s, triage, await self._story_triage(s, turn.message))
        else:
            s = self._assess(s, triage, None, classify=False)  # a bare answer says no category
        if self._urgent(s) and not was_urgent:
            self._say(s, turn, "apology_urgent")
        return await self._after_answer(s, notes, turn)

    async def _confirming(self, s: Session, text: str, triage: Triage, turn: _Turn) -> Session:
        plain = _plain(text)
        if self._replies.label_matches(text, "button.confirm") or _CONFIRM.match(plain):
            return await self._handoff(s, HandoffReason.NEEDS_INVESTIGATION, turn)
        s, notes = self._absorb(s, text, triage, correcting=True)
        if notes.changed or notes.invalid is not None:
            return await self._after_answer(s, notes, turn)
        if self._replies.label_matches(text, "button.modify") or _MODIFY.search(plain):
            self._say(s, turn, "ask_what_to_change")
            return replace(s, state=State.COLLECTING, pending=None)
        if self._is_story(text, triage, None):
            s = s.with_story(turn.message.text.strip())
            s = self._assess(s, triage, await self._story_triage(s, turn.message))
            return await self._advance(s, turn)
        self._say(s, turn, "confirm_prompt", buttons=self._confirm_buttons(s))
        return s

    async def _registered(self, s: Session, text: str, triage: Triage, turn: _Turn) -> Session:
        """The complaint is a ticket: answer questions, add everything else to the ticket."""
        if triage.intent is Intent.INQUIRY:
            result = await self._answers.search(text, top_k=self._config.kb_top_k)
            if result.confident and result.best is not None:
                self._say_answer(s, result.best, turn)
                return s
        if triage.intent is Intent.OTHER and _THANKS.search(text):
            self._say(s, turn, "thanks")
            return s
        self._say(s, turn, "supplement_ack", number=s.ticket_number or "")
        return s

    async def _inquiry(self, s: Session, text: str, turn: _Turn) -> Session:
        s = s.with_story(turn.message.text.strip())
        result = await self._answers.search(text, top_k=self._config.kb_top_k)
        if not result.confident or result.best is None:
            return await self._kb_miss(s, turn)
        self._say_answer(s, result.best, turn)
        yes, no = self._label(s, "button.yes"), self._label(s, "button.no")
        self._say(s, turn, "faq_helpful", buttons=(yes, no))
        return replace(s, state=State.ANSWERED_FAQ)

    async def _kb_miss(self, s: Session, turn: _Turn) -> Session:
        s = replace(s, kb_misses=s.kb_misses + 1)
        if s.kb_misses >= self._config.max_kb_misses:
            return await self._handoff(s, HandoffReason.NO_KB_ANSWER, turn)
        self._say(s, turn, "faq_rephrase")
        return replace(s, state=State.REPHRASING)

    def _cancel(self, s: Session, turn: _Turn) -> Session:
        if s.state is State.REGISTERED:
            # The ticket exists; withdrawing it is the handler's decision, not the bot's.
            self._say(s, turn, "cancel_registered", number=s.ticket_number or "")
            return s
        self._say(s, turn, "cancelled")
        return replace(s, state=State.CLOSED, pending=None)

    # ---- the form ------------------------------------------------------------------------

    def _absorb(self, s: Session, text: str, triage: Triage, *, pending: Ask | None = None,
                correcting: bool = False) -> tuple[Session, _Notes]:
        """Take every fact the message states; a bare reply answers the pending question."""
        slots = triage.slots
        correcting = correcting or _CORRECTION.search(text) is not None
        notes = _Notes()
        order_id, phone, email = slots.order_id, slots.phone, slots.email
        product = slots.product
        if product and re.search(re.escape(product) + r"\s*(?:号码?)?[:：]?\s*\+?[0-9]{7}", text):
            product = None  # "手机13812345678": the word labels the number, it is no product
        demand, demand_note = slots.demand, None
        labelled = _LABELLED_PRODUCT.search(clean(text))
        if labelled:
            product, correcting_product = labelled["value"].strip(), True
        else:
            correcting_product = correcting
        token = _bare_token(text)
        if token is not None and not any(c.isdigit() for c in token):
            token = None  # "ok", "none": words, not numbers
        # A message that states or corrects another fact is no free-text answer to the question.
        stated = bool(order_id or phone or email or labelled or correcting)
        plain = _plain(text)
        if pending is Ask.ORDER_ID and token is not None and order_id is None:
            # A bare number answers the question asked, even one shaped like a mobile number.
            order_id, notes.consumed = token, True
            if phone is not None and phone.replace("-", "") in token:
                phone = None
        elif pending is Ask.CONTACT and token is not None and phone is None and email is None:
            digits = token.replace("-", "")
            if _MOBILE.match(digits) or _LANDLINE.match(token):
                phone, notes.consumed = token, True
            if order_id is not None and order_id.replace("-", "") in digits:
                order_id = None  # a number given for the contact is not an order number
        elif pending is Ask.DEMAND and demand is None:
            for d in _DEMAND_BUTTONS:
                if self._replies.label_matches(text, f"demand.{d.value}"):
                    demand, notes.consumed = d, True
                    break
            else:
                if not (stated or _DECLINE.match(plain) or triage.intent is Intent.INQUIRY):
                    demand, demand_note, notes.consumed = Demand.OTHER, text, True
        elif (pending is Ask.PRODUCT and product is None and len(text) <= 40 and not stated
              and triage.intent is not Intent.INQUIRY and not _DECLINE.match(plain)
              and token is None):
            product, notes.consumed, correcting_product = text.strip(" 。.!！"), True, True
        form = s.form
        if order_id is not None:
            if not valid_order_id(order_id):
                notes.invalid = order_id
            elif order_id != form.order_id:
                notes.changed.append(("order_id", order_id, form.order_id is not None))
                form = replace(form, order_id=order_id)
        if phone is not None and phone != form.phone:
            notes.changed.append(("phone", phone, form.phone is not None))
            form = replace(form, phone=phone)
        if email is not None and email != form.email:
            notes.changed.append(("email", email, form.email is not None))
            form = replace(form, email=email)
        if product and product != form.product and (form.product is None or correcting_product):
            notes.changed.append(("product", product, form.product is not None))
            form = replace(form, product=product)
        if demand is not None and demand != form.demand and (
                form.demand is None or correcting or pending is Ask.DEMAND):
            notes.changed.append(("demand", demand.value, form.demand is not None))
            form = replace(form, demand=demand, demand_note=demand_note)
        form = replace(
            form,
            amount=form.amount if form.amount is not None or slots.amount is None
            else slots.amount.value,
            currency=form.currency if form.amount is not None or slots.amount is None
            else slots.amount.currency,
            incident_time=form.incident_time or slots.incident_time,
            customer_name=form.customer_name or slots.customer_name,
        )
        declined = s.declined
        if pending is not None and not form.has(pending) and _DECLINE.match(plain):
            declined, notes.declined = declined | {pending}, True
        if pending is Ask.CONTACT and (form.phone or form.email):
            declined = declined - {Ask.CONTACT}
        answers = _ANSWERS.get(pending, ()) if pending else ()
        notes.consumed = notes.consumed or any(name in answers for name, _, _ in notes.changed)
        return replace(s, form=form, declined=declined), notes

    def _is_story(self, text: str, triage: Triage, pending: Ask | None,
                  notes: _Notes | None = None) -> bool:
        """Whether the message tells (more of) what happened, beyond answering a question."""
        plain = _plain(text)
        if _CANCEL.match(plain) or _DECLINE.match(plain):
            return False
        for _, value, _ in notes.changed if notes else ():
            text = text.replace(value, " ")
        han, latin = _meaningful(text)
        if pending is Ask.STORY:
            return han >= 2 or latin >= 2
        if triage.intent not in (Intent.COMPLAINT, Intent.INQUIRY):
            return False
        if notes is not None and notes.consumed:  # an answer, and more than the answer?
            return han >= 5 or latin >= 4
        return han >= 3 or latin >= 2

    def _assess(self, s: Session, turn: Triage, story: Triage | None, *,
                classify: bool = True) -> Session:
        """Fold the triage of this message (and of the whole story) into the assessment."""
        prev = s.assessment
        base = story or turn
        category: Category | None = None
        subcategory: str | None = None
        if (classify and base.intent in (Intent.COMPLAINT, Intent.INQUIRY)
                and base.category is not None):
            category, subcategory = base.category, base.subcategory
        elif prev is not None:
            category, subcategory = prev.category, prev.subcategory
        levels = [turn.priority, *(t.priority for t in (story,) if t is not None)]
        if prev is not None:
            levels.append(prev.priority)
        priority = max(levels, key=lambda p: p.rank)
        reasons = list(prev.reasons) if prev else []
        for t in (turn, story):
            if t is not None:
                reasons += [r for r in t.priority_reasons if r not in reasons]
        emotion, intensity = (prev.emotion, prev.emotion_intensity) if prev else (
            Emotion.NEUTRAL, 0.0)
        if turn.emotion is not Emotion.NEUTRAL and (
                emotion is Emotion.NEUTRAL or turn.emotion_intensity >= intensity):
            emotion, intensity = turn.emotion, turn.emotion_intensity
        return replace(s, assessment=Assessment(
            category=category, subcategory=subcategory, priority=priority,
            reasons=tuple(reasons), emotion=emotion, emotion_intensity=intensity))

    async def _story_triage(self, s: Session, m: IncomingMessage) -> Triage | None:
        if len(s.story) < 2:
            return None
        return await asyncio.to_thread(self._triager.analyze, s.description, self._context(s, m))

    def _urgent(self, s: Session) -> bool:
        a = s.assessment
        return a is not None and (a.priority is Priority.HIGH or (
            a.emotion is Emotion.ANGER and a.emotion_intensity >= self._config.anger_threshold))

    def _missing(self, s: Session) -> Ask | None:
        if self._urgent(s):
            for ask in URGENT:
                if not s.form.has(ask) and ask not in s.declined and ask not in s.asked:
                    return ask
            return None
        for ask in REQUIRED:
            known = bool(s.story) if ask is Ask.STORY else s.form.has(ask)
            if not known and ask not in s.declined:
                return ask
        return None

    async def _after_answer(self, s: Session, notes: _Notes, turn: _Turn) -> Session:
        """Confirm back what the message changed, then take the next step."""
        summary_next = notes.invalid is None and self._missing(s) is None and not self._urgent(s)
        for name, value, corrected in notes.changed:
            if corrected:
                shown = self._label(s, f"demand.{value}") if name == "demand" else value
                self._say(s, turn, "corrected", field=self._label(s, f"field.{name}"),
                          value=shown)
            elif name == "order_id" and not summary_next:
                self._say(s, turn, "order_id_noted", order_id=value)
        if notes.invalid is not None:
            self._say(s, turn, "order_id_invalid", value=notes.invalid)
            return replace(s, pending=Ask.ORDER_ID, asked=s.asked | {Ask.ORDER_ID})
        return await self._advance(s, turn)

    async def _advance(self, s: Session, turn: _Turn) -> Session:
        """Ask the next missing fact, hand an urgent case over, or read back the summary."""
        ask = self._missing(s)
        if ask is not None:
            return self._ask(s, ask, turn)
        if self._urgent(s):
            a = s.assessment
            reason = (HandoffReason.HIGH_PRIORITY if a is not None and a.priority is Priority.HIGH
                      else HandoffReason.STRONG_ANGER)
            return await self._handoff(s, reason, turn)
        if not s.evidence_hinted and not s.evidence:
            self._say(s, turn, "evidence_hint")
            s = replace(s, evidence_hinted=True)
        self._say(s, turn, "summary", buttons=self._confirm_buttons(s), **self._summary(s))
        return replace(s, state=State.CONFIRMING, pending=None)

    def _ask(self, s: Session, ask: Ask, turn: _Turn) -> Session:
        buttons: tuple[str, ...] = ()
        if ask is Ask.DEMAND:
            buttons = tuple(self._label(s, f"demand.{d.value}") for d in _DEMAND_BUTTONS)
        self._say(s, turn, f"ask_{ask.value}", buttons=buttons)
        hint = not (s.evidence_hinted or s.evidence or self._urgent(s))
        if ask is not Ask.STORY and hint:
            self._say(s, turn, "evidence_hint")
            s = replace(s, evidence_hinted=True)
        return replace(s, state=State.COLLECTING, pending=ask, asked=s.asked | {ask})

    def _summary(self, s: Session) -> dict[str, str]:
        f = s.form
        none = self._label(s, "not_given")
        category = s.assessment.category.value if s.assessment and s.assessment.category else None
        description = s.description.replace("\n", " ")
        if len(description) > _SUMMARY_DESCRIPTION:
            description = description[:_SUMMARY_DESCRIPTION] + "…"
        contact = " / ".join(c for c in (f.phone, f.email) if c)
        return {
            "category": self._label(s, f"category.{category or 'unknown'}"),
            "order_id": f.order_id or none,
            "product": f.product or none,
            "contact": contact or none,
            "demand": (self._label(s, f"demand.{f.demand.value}") if f.demand else none)
            + (f"（{f.demand_note}）" if f.demand_note else ""),
            "description": description or none,
        }

    # ---- handing over ----------------------------------------------------------------------

    async def _handoff(self, s: Session, reason: HandoffReason, turn: _Turn) -> Session:
        """Register the ticket with what is known, tell the customer, and move on."""
        receipt = await self._desk.register(self._draft(s, reason, turn))
        turn.registered_at = len(turn.replies)
        s = replace(
            s, ticket_id=receipt.ticket_id, ticket_number=receipt.number,
            handoff_reason=reason, pending=None,
            state=State.REGISTERED if reason is HandoffReason.NEEDS_INVESTIGATION
            else State.WITH_AGENT,
        )
        text = self._render(s, _HANDOFF_REPLY[reason], number=receipt.number,
                            due=self._due(s, receipt.sla_due),
                            service_hours=self._service_hours(s))
        if receipt.handler:
            text += "\n" + self._render(s, "receipt_handler", handler=receipt.handler)
        self._add(turn, _HANDOFF_REPLY[reason], text)
        return s

    def _draft(self, s: Session, reason: HandoffReason, turn: _Turn) -> TicketDraft:
        a = s.assessment
        f = s.form
        priority = a.priority if a else Priority.LOW
        customer_lines = [line.text for line in s.transcript if line.author is Author.CUSTOMER]
        lines = (*s.transcript, *turn.lines)
        return TicketDraft(
            channel=s.channel, chat_id=s.chat_id, lang=(s.lang or Lang.ZH_HANS).value,
            description=s.description or "\n".join(customer_lines[-5:]),
            category=a.category.value if a and a.category else None,
            subcategory=a.subcategory if a else None,
            priority=priority.value, priority_reasons=a.reasons if a else (),
            sla_hours=priority.sla_hours, emotion=(a.emotion if a else Emotion.NEUTRAL).value,
            reason=reason, customer_name=f.customer_name, phone=f.phone, email=f.email,
            order_id=f.order_id, product=f.product, incident_time=f.incident_time,
            demand=f.demand.value if f.demand else None, demand_note=f.demand_note,
            amount=f.amount, currency=f.currency, evidence=s.evidence,
            transcript=tuple(_transcript_line(line) for line in lines),
        )

    async def _sync_ticket(self, s: Session, turn: _Turn, had_ticket: bool) -> None:
        """Add this turn's lines to the conversation's ticket, once there is one."""
        if had_ticket:
            if turn.incoming is not None:
                # Photos sent after registration are evidence of the same ticket.
                files = tuple(EvidenceRef(a.filename, a.content_type, a.sha256, a.size)
                              for a in turn.message.attachments)
                await self._desk.append(s.channel, s.chat_id, _transcript_line(turn.incoming),
                                        files)
            lines = list(turn.lines)
        elif turn.registered_at is not None:
            lines = [line for _, line in turn.replies[turn.registered_at:] if line is not None]
        else:
            return
        for line in lines:
            await self._desk.append(s.channel, s.chat_id, _transcript_line(line))

    # ---- after-care ------------------------------------------------------------------------

    async def _forget_closed(self, s: Session) -> Session:
        """A closed ticket takes no more lines: the customer's next message starts afresh."""
        if (s.ticket_id is None or s.question is not None
                or s.state not in (State.REGISTERED, State.WITH_AGENT)):
            return s
        if await self._desk.ticket_open(s.ticket_id):
            return s
        return s.restarted()

    def _aftercare(self, s: Session, turn: _Turn, name: str, text: str) -> Session:
        """Say what an after-care command asks for, and remember a question."""
        try:
            payload = json.loads(text)
        except ValueError as exc:
            raise UnknownCommand(f"{name} needs a JSON payload: {exc}") from exc
        if not isinstance(payload, dict) or not all(
                isinstance(payload.get(k), str) and payload[k] for k in ("ticket_id", "number")):
            raise UnknownCommand(f"{name} needs ticket_id and number")
        if s.lang is None and payload.get("lang") in {lang.value for lang in Lang}:
            s = replace(s, lang=Lang(payload["lang"]))  # the session expired: the ticket knows
        number = payload["number"]
        if name == NOTIFY:
            event = payload.get("event")
            if event not in NOTIFY_EVENTS:
                raise UnknownCommand(f"{NOTIFY}: unknown event {event!r}")
            status = str(payload.get("status") or "new")
            stage = self._label(s, f"stage.{status}") if f"stage.{status}" in \
                self._replies.labels else status
            self._say(s, turn, f"notify_{event}", number=number, stage=stage)
            return s
        question = Question(name[1:], payload["ticket_id"], number)
        if name == CONFIRM:
            self._say(s, turn, "confirm_solved", number=number, buttons=self._yes_no(s))
            return replace(s, question=question)
        link = payload.get("link")
        if isinstance(link, str) and link:
            self._say(s, turn, "survey_link", number=number, link=link)
            return s
        self._say(s, turn, "survey_intro", number=number)
        return self._ask_survey(s, replace(question, step=QUESTIONS[0]), turn)

    def _ask_survey(self, s: Session, question: Question, turn: _Turn) -> Session:
        step = question.step
        stop = self._label(s, "button.survey_stop")
        if step in SCORES:
            buttons: tuple[str, ...] = (*(str(n) for n in range(1, 6)), stop)
        elif step == "suggestion":
            buttons = (self._label(s, "button.skip"),)
        else:
            buttons = (*(self._label(s, f"aspect.{a}") for a in ASPECTS), stop)
        self._say(s, turn, f"survey_{step}", buttons=buttons)
        return replace(s, question=question)

    async def _answer(self, s: Session, question: Question, text: str, turn: _Turn
                      ) -> Session | None:
        """The customer's answer to the bot's question; None when the message is not one."""
        plain = _plain(text)
        number = question.number
        if question.kind == "confirm":
            yes = self._replies.label_matches(text, "button.yes") or bool(
                _YES.match(plain) or _SOLVED.match(plain))
            no = self._replies.label_matches(text, "button.no") or bool(
                _NO.match(plain) or _UNSOLVED.match(plain))
            if yes == no:  # neither (or both): the text goes to the ticket, the question stays
                self._say(s, turn, "confirm_again", number=number, buttons=self._yes_no(s))
                return s
            s = replace(s, question=None)
            if not await self._desk.answer_confirmation(question.ticket_id, yes):
                self._say(s, turn, "confirm_outdated", number=number)
                return s
            if yes:
                self._say(s, turn, "confirm_closed", number=number)
                return s.restarted()
            self._say(s, turn, "confirm_reopened", number=number)
            return replace(s, state=State.REGISTERED, ticket_id=question.ticket_id,
                           ticket_number=number)
        if self._replies.label_matches(text, "button.survey_stop"):
            self._say(s, turn, "survey_stopped")
            return replace(s, question=None)
        step = question.step
        value: int | str | None
        if step == "suggestion":
            skip = self._replies.label_matches(text, "button.skip")
            value = None if skip else turn.message.text.strip()[:MAX_SUGGESTION]
        elif step in SCORES:
            match = _SCORE.match(plain)
            value = int(match[1]) if match else None
        else:
            value = next((a for a in ASPECTS if self._replies.label_matches(text, f"aspect.{a}")),
                         None)
        if value is None and step != "suggestion":
            if len(plain) > _SHORT_ANSWER:
                return None  # something else entirely: the survey ends, the message is handled
            self._say(s, turn, "survey_invalid")
            return self._ask_survey(s, question, turn)
        try:
            second = await self._desk.answer_survey(question.ticket_id, {step: value})
        except (InvalidTicket, TicketNotFound):
            self._say(s, turn, "survey_stopped")
            return replace(s, question=None)
        if second:
            self._say(s, turn, "survey_second_handling", number=number)
        following = QUESTIONS.index(step) + 1
        if following == len(QUESTIONS):
            self._say(s, turn, "survey_thanks")
            return replace(s, question=None)
        return self._ask_survey(s, replace(question, step=QUESTIONS[following]), turn)

    def _yes_no(self, s: Session) -> tuple[str, str]:
        return self._label(s, "button.yes"), self._label(s, "button.no")

    # ---- saying things ---------------------------------------------------------------------

    def _is_button(self, text: str) -> bool:
        return any(self._replies.label_matches(text, key) for key in
                   (*self._replies.label_keys("button."), *self._replies.label_keys("demand.")))

    def _lang(self, text: str, triage: Triage, current: Lang | None) -> Lang | None:
        if self._is_button(text):
            return current  # a tapped button says nothing about the language
        return choose_lang(text, triage.lang, current)

    def _context(self, s: Session, m: IncomingMessage) -> Context:
        local = m.received_at.astimezone(self._zone).replace(tzinfo=None, microsecond=0)
        return Context(previous_turns=s.story[-3:], reference_time=local.isoformat())

    def _render(self, s: Session, key: str, **fields: object) -> str:
        return self._replies.render(key, s.lang or Lang.ZH_HANS, **fields)

    def _label(self, s: Session, key: str) -> str:
        return self._replies.label(key, s.lang or Lang.ZH_HANS)

    def _say(self, s: Session, turn: _Turn, key: str, *, buttons: Sequence[str] = (),
             **fields: object) -> None:
        self._add(turn, key, self._render(s, key, **fields), buttons)

    @staticmethod
    def _add(turn: _Turn, key: str, text: str, buttons: Sequence[str] = ()) -> None:
        m = turn.message
        turn.add(OutgoingMessage(m.conversation, text, buttons=tuple(buttons)),
                 Line(Author.SYSTEM, text, m.received_at, key))

    def _say_answer(self, s: Session, hit: SearchHit, turn: _Turn) -> None:
        content = hit.entry.content
        lang = s.lang or Lang.ZH_HANS
        if lang is Lang.EN and not content.answer_en:
            self._say(s, turn, "faq_answer_untranslated", answer=content.answer)
        elif lang is Lang.EN:
            self._say(s, turn, "faq_answer", answer=content.answer_en)
        elif lang is Lang.ZH_HANT:
            self._say(s, turn, "faq_answer",
                      answer=content.answer_hant or to_traditional(content.answer))
        else:
            self._say(s, turn, "faq_answer", answer=content.answer)

    def _confirm_buttons(self, s: Session) -> tuple[str, str]:
        return self._label(s, "button.confirm"), self._label(s, "button.modify")

    def _due(self, s: Session, due: datetime) -> str:
        if due.tzinfo is None:
            due = due.replace(tzinfo=UTC)
        local = due.astimezone(self._zone)
        offset = local.utcoffset() or timedelta(0)
        hours, rest = divmod(int(offset.total_seconds()) // 60, 60)
        tz = f"UTC{'+' if hours >= 0 else '-'}{abs(hours)}" + (f":{rest:02d}" if rest else "")
        return self._label(s, "format.due").format(
            year=local.year, month=local.month, day=local.day, hour=local.hour,
            minute=local.minute, month_name=_MONTHS[local.month - 1], tz=tz)

    def _service_hours(self, s: Session) -> str:
        return self._label(s, "format.service_hours").format(hours=self._config.service_hours)


@dataclass(slots=True)
class _Notes:
    """What absorbing one message changed, for the confirmations the engine says back."""

    changed: list[tuple[str, str, bool]] = field(default_factory=list)  # (field, value, corrected)
    invalid: str | None = None  # an order number of the wrong shape
    declined: bool = False
    consumed: bool = False  # the message was a bare answer to the pending question


def _transcript_line(line: Line) -> TranscriptLine:
    return TranscriptLine(author=line.author.value, text=line.text, at=line.at)
