"""The intake conversation, scripted turn by turn with the real triage model and knowledge base.

The scripted conversations go through the dispatcher on both session stores (in-process and
the real Redis); the finer points talk to the engine directly. Assertions are on meaning: the
state, the form, the ticket draft, which reply template was used and the script of the replies.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest

from bot.engine import (
    CONFIRM,
    HANDBACK,
    NOTIFY,
    SURVEY,
    TAKEOVER,
    Engine,
    UnknownCommand,
    choose_lang,
    valid_order_id,
)
from bot.replies import default_replies
from bot.session import Ask, Question, Session, State
from channels.messages import Attachment, Author, OutgoingMessage
from handoff.intake import EvidenceRef, HandoffReason
from nlp.labels import Category, Demand, Lang, Priority
from nlp.normalize import detect_lang
from tests.bot.conftest import Chat, EngineChat, RecordingDesk

_HAN = re.compile(r"[\u4e00-\u9fff]")


def script_of(replies: list[OutgoingMessage]) -> Lang:
    """The script of the replies' Chinese text, or en when they have none."""
    text = "".join(r.text for r in replies)
    return detect_lang(text) if _HAN.search(text) else Lang.EN


def buttons(replies: list[OutgoingMessage]) -> tuple[str, ...]:
    return next((r.buttons for r in reversed(replies) if r.buttons), ())


# ---- scripted conversations, on both session stores --------------------------------------------


async def test_product_complaint_with_every_fact_in_the_first_message(
        chat: Chat, desk: RecordingDesk) -> None:
    replies = await chat.say("我买的蓝牙耳机用了两天就坏了，订单号4521987634123，"
                             "手机13812345678，我要退款")
    assert chat.keys == ["apology", "evidence_hint", "summary"]
    assert chat.state() is State.CONFIRMING
    assert buttons(replies) == ("确认", "修改")
    summary = replies[-1].text
    assert "4521987634123" in summary and "13812345678" in summary and "蓝牙耳机" in summary

    replies = await chat.say("确认")
    assert chat.keys == ["receipt"]
    assert chat.state() is State.REGISTERED
    [draft] = desk.drafts
    assert draft.reason is HandoffReason.NEEDS_INVESTIGATION
    assert (draft.order_id, draft.phone, draft.product, draft.demand) == (
        "4521987634123", "13812345678", "蓝牙耳机", "refund")
    assert draft.category == "product"
    assert draft.priority in ("medium", "high") and draft.sla_hours in (2, 4)
    assert "坏了" in draft.description
    assert [line.author for line in draft.transcript][:2] == ["customer", "system"]
    assert chat.session is not None and chat.session.ticket_number == "TS000001"
    assert "TS000001" in replies[0].text
    assert script_of(replies) is Lang.ZH_HANS


async def test_logistics_complaint_asked_one_by_one_with_a_correction(
        chat: Chat, desk: RecordingDesk) -> None:
    await chat.say("快递三天了还没到，一直显示运输中")
    assert chat.keys[:2] == ["apology", "ask_order_id"]
    assert chat.session is not None and chat.session.pending is Ask.ORDER_ID

    replies = await chat.say("4521987634123")
    assert chat.keys == ["order_id_noted", "ask_product"]
    assert "4521987634123" in replies[0].text  # confirmed back

    await chat.say("一箱苹果")
    assert chat.keys == ["ask_contact"]

    replies = await chat.say("13812345678")  # a bare mobile number answers "contact"
    assert chat.keys == ["ask_demand"]
    assert buttons(replies) == ("退款", "换货", "维修", "道歉", "赔偿", "其他")
    assert chat.session is not None and chat.session.form.phone == "13812345678"

    replies = await chat.say("订单号错了 应该是4521987634124")
    assert chat.keys == ["corrected", "ask_demand"]
    assert "4521987634124" in replies[0].text
    assert chat.session is not None and chat.session.form.order_id == "4521987634124"

    await chat.say("退款")
    assert chat.keys == ["summary"]
    await chat.say("确认")
    [draft] = desk.drafts
    assert draft.category == "logistics"
    assert draft.order_id == "4521987634124"
    assert draft.phone == "13812345678"
    assert draft.demand == "refund"
    assert draft.product is not None and "苹果" in draft.product
    assert draft.description.startswith("快递三天了还没到")
    assert "13812345678" not in draft.description  # answers are fields, not the story


async def test_inquiry_answered_from_the_knowledge_base(chat: Chat, desk: RecordingDesk) -> None:
    replies = await chat.say("怎么开发票？")
    assert chat.keys == ["faq_answer", "faq_helpful"]
    assert "发票" in replies[0].text
    assert buttons(replies) == ("是", "否")
    assert chat.state() is State.ANSWERED_FAQ

    await chat.say("是")
    assert chat.keys == ["faq_glad"]
    assert chat.state() is State.GREETING
    assert desk.drafts == []


async def test_an_unhelpful_answer_then_an_unanswerable_question_goes_to_a_person(
        chat: Chat, desk: RecordingDesk) -> None:
    await chat.say("怎么开发票？")
    await chat.say("否")
    assert chat.keys == ["faq_rephrase"]
    assert chat.state() is State.REPHRASING
    await chat.say("量子力学是什么")
    assert chat.keys == ["handoff_no_answer"]
    assert chat.state() is State.WITH_AGENT
    [draft] = desk.drafts
    assert draft.reason is HandoffReason.NO_KB_ANSWER
    assert "量子力学" in draft.description


async def test_a_request_for_a_person_at_the_first_turn(chat: Chat, desk: RecordingDesk) -> None:
    replies = await chat.say("转人工")
    assert chat.keys == ["handoff_human"]
    assert chat.state() is State.WITH_AGENT
    [draft] = desk.drafts
    assert draft.reason is HandoffReason.REQUESTED_HUMAN
    assert draft.description == "转人工"
    assert "TS000001" in replies[0].text

    assert await chat.say("在吗？") == []  # a person has it now: the bot keeps quiet
    assert desk.transcript(chat.conversation.chat_id)[-1].text == "在吗？"


async def test_a_cancellation(chat: Chat, desk: RecordingDesk) -> None:
    await chat.say("我要投诉")
    assert chat.keys == ["apology", "ask_story"]
    await chat.say("耳机坏了")
    assert chat.keys[0] == "ask_order_id"
    await chat.say("算了")
    assert chat.keys == ["cancelled"]
    assert chat.state() is State.CLOSED
    assert desk.drafts == []

    await chat.say("你好")  # a fresh start, nothing of the cancelled intake remains
    assert chat.keys == ["greeting"]
    assert chat.session is not None
    assert chat.session.story == () and chat.session.state is State.GREETING


async def test_a_traditional_chinese_conversation(chat: Chat, desk: RecordingDesk) -> None:
    replies = await chat.say("我買的藍牙耳機壞了，訂單號4521987634123")
    assert chat.session is not None and chat.session.lang is Lang.ZH_HANT
    assert script_of(replies) is Lang.ZH_HANT
    assert chat.keys[:3] == ["apology", "order_id_noted", "ask_contact"]

    replies = await chat.say("手機13812345678")
    assert chat.keys == ["ask_demand"]
    assert buttons(replies) == ("退款", "換貨", "維修", "道歉", "賠償", "其他")

    replies = await chat.say("換貨")
    assert chat.keys == ["summary"]
    assert script_of(replies) is Lang.ZH_HANT
    assert buttons(replies) == ("確認", "修改")

    replies = await chat.say("確認")
    assert chat.keys == ["receipt"]
    assert script_of(replies) is Lang.ZH_HANT
    [draft] = desk.drafts
    assert draft.lang == "zh-Hant"
    assert draft.product == "藍牙耳機"  # the customer's own script
    assert draft.demand == "exchange"


async def test_an_english_conversation(chat: Chat, desk: RecordingDesk) -> None:
    replies = await chat.say("My headphones stopped working after two days, "
                             "order 4521987634123, I want a refund")
    assert script_of(replies) is Lang.EN
    assert chat.keys[-2:] == ["ask_contact", "evidence_hint"]

    replies = await chat.say("john@example.com")
    assert chat.keys == ["summary"]
    assert buttons(replies) == ("Confirm", "Modify")
    assert chat.session is not None and chat.session.lang is Lang.EN  # an e-mail is no switch

    replies = await chat.say("Confirm")
    assert chat.keys == ["receipt"]
    assert script_of(replies) is Lang.EN
    assert "investigation" in replies[0].text
    [draft] = desk.drafts
    assert (draft.lang, draft.email, draft.demand) == ("en", "john@example.com", "refund")


async def test_an_angry_urgent_complaint_is_handed_over_quickly(
        chat: Chat, desk: RecordingDesk) -> None:
    await chat.say("你们这是什么垃圾东西！！气死我了，孩子吃了拉肚子住院了")
    assert chat.keys == ["apology_urgent", "ask_order_id"]
    await chat.say("没有")
    assert chat.keys == ["ask_contact"]
    await chat.say("13812345678")
    assert chat.keys == ["handoff_urgent"]
    assert chat.state() is State.WITH_AGENT
    [draft] = desk.drafts
    assert draft.reason is HandoffReason.HIGH_PRIORITY
    assert draft.priority == "high" and draft.sla_hours == 2
    assert "safety" in draft.priority_reasons
    assert draft.emotion == "anger"
    assert draft.phone == "13812345678" and draft.order_id is None
    # never asked for the product or the demand
    assert chat.session is not None
    assert chat.session.asked == {Ask.ORDER_ID, Ask.CONTACT}


async def test_an_agent_takes_over_and_hands_back(chat: Chat, desk: RecordingDesk) -> None:
    await chat.say("转人工")
    assert await chat.say("你好，有人吗") == []
    replies = await chat.say("您好，我是客服小王，请问订单号是多少？", author=Author.AGENT)
    assert [(r.author, r.text) for r in replies] == [
        (Author.AGENT, "您好，我是客服小王，请问订单号是多少？")]
    assert chat.state() is State.WITH_AGENT
    assert await chat.say("4521987634123") == []

    lines = [(line.author, line.text) for line in desk.transcript(chat.conversation.chat_id)]
    assert ("customer", "你好，有人吗") in lines
    assert ("agent", "您好，我是客服小王，请问订单号是多少？") in lines
    assert lines[-1] == ("customer", "4521987634123")

    await chat.say(HANDBACK, author=Author.SYSTEM)
    assert chat.keys == ["handback"]
    assert chat.state() is State.REGISTERED  # the ticket exists: later lines are added to it
    await chat.say("谢谢")
    assert chat.keys == ["thanks"]


async def test_photos_after_registration_reach_the_ticket(chat: Chat, desk: RecordingDesk
                                                          ) -> None:
    await chat.say("转人工")
    photo = Attachment("broken.jpg", "image/jpeg", "ab" * 32, 2048)
    assert await chat.say("", attachments=[photo]) == []  # an agent owns it: the bot is silent
    [ticket_id] = desk.evidence
    assert desk.evidence[ticket_id] == [EvidenceRef("broken.jpg", "image/jpeg", "ab" * 32, 2048)]


async def test_takeover_in_the_middle_of_an_intake_keeps_the_facts(chat: Chat) -> None:
    await chat.say("快递三天了还没到，一直显示运输中")
    await chat.say("4521987634123")
    assert await chat.say(TAKEOVER, author=Author.SYSTEM) == []
    assert chat.state() is State.WITH_AGENT
    assert await chat.say("人呢") == []
    await chat.say(HANDBACK, author=Author.SYSTEM)
    assert chat.keys == ["handback", "ask_product"]  # carries on where it was
    assert chat.session is not None and chat.session.form.order_id == "4521987634123"
    assert chat.state() is State.COLLECTING


# ---- finer points, talking to the engine directly ----------------------------------------------


async def test_a_bare_mobile_number_answers_the_question_asked(talk: EngineChat) -> None:
    await talk.say("快递三天了还没到，一直显示运输中")
    await talk.say("13812345678")  # asked for the order number: that is what it is
    assert talk.session is not None
    assert talk.session.form.order_id == "13812345678" and talk.session.form.phone is None
    await talk.say("一箱苹果")
    assert talk.session.pending is Ask.CONTACT
    await talk.say("13912345678")  # asked for a contact: a phone
    assert talk.session.form.phone == "13912345678"
    assert talk.session.form.order_id == "13812345678"


async def test_an_order_number_of_the_wrong_shape_is_asked_again(talk: EngineChat) -> None:
    await talk.say("快递三天了还没到，一直显示运输中")
    replies = await talk.say("123")
    assert talk.keys == ["order_id_invalid"]
    assert "123" in replies[0].text
    assert talk.session is not None
    assert talk.session.form.order_id is None and talk.session.pending is Ask.ORDER_ID
    await talk.say("没有")  # the customer does not have one: not asked again
    assert talk.keys == ["ask_product"]
    assert Ask.ORDER_ID in talk.session.declined


async def test_answers_in_any_order_and_several_at_once(talk: EngineChat) -> None:
    await talk.say("我要投诉，东西坏了")
    assert talk.session is not None and talk.session.pending is Ask.ORDER_ID
    await talk.say("手机13812345678，订单号A20241105888，想换货")
    assert talk.session.form.phone == "13812345678"
    assert talk.session.form.order_id == "A20241105888"
    assert talk.session.form.demand is Demand.EXCHANGE
    assert talk.keys[-1] == "ask_product"  # the one fact still missing


async def test_modify_after_the_summary(talk: EngineChat, desk: RecordingDesk) -> None:
    await talk.say("我买的蓝牙耳机用了两天就坏了，订单号4521987634123，手机13812345678，我要退款")
    await talk.say("修改")
    assert talk.keys == ["ask_what_to_change"]
    assert talk.state() is State.COLLECTING
    await talk.say("不对，商品是降噪耳机")
    assert talk.keys == ["corrected", "summary"]
    assert talk.session is not None and talk.session.form.product == "降噪耳机"
    await talk.say("订单号是4521987634124")  # a correction right at the summary
    assert talk.keys == ["corrected", "summary"]
    await talk.say("确认")
    assert desk.drafts[-1].order_id == "4521987634124"
    assert desk.drafts[-1].product == "降噪耳机"


async def test_demand_other_in_free_words(talk: EngineChat) -> None:
    await talk.say("快递三天了还没到，一直显示运输中，订单号4521987634123，买的是一箱苹果")
    await talk.say("13812345678")
    assert talk.session is not None and talk.session.pending is Ask.DEMAND
    await talk.say("尽快给我送到就行")
    assert talk.session.form.demand is Demand.OTHER
    assert talk.session.form.demand_note == "尽快给我送到就行"
    assert talk.keys == ["summary"]


async def test_a_later_english_turn_switches_the_language(talk: EngineChat) -> None:
    replies = await talk.say("快递一直没到")
    assert script_of(replies) is Lang.ZH_HANS
    replies = await talk.say("Sorry, can we talk in English? The parcel is a week late")
    assert talk.session is not None and talk.session.lang is Lang.EN
    assert script_of(replies) is Lang.EN
    replies = await talk.say("4521987634123")  # digits do not switch back
    assert script_of(replies) is Lang.EN


def test_the_reply_language_is_sticky_on_weak_evidence() -> None:
    assert choose_lang("4521987634123", Lang.ZH_HANS, Lang.EN) is Lang.EN
    assert choose_lang("ok", Lang.EN, Lang.ZH_HANS) is Lang.ZH_HANS
    assert choose_lang("hello there", Lang.EN, Lang.ZH_HANS) is Lang.EN
    assert choose_lang("是", Lang.ZH_HANS, Lang.ZH_HANT) is Lang.ZH_HANT
    assert choose_lang("我的訂單還沒到", Lang.ZH_HANT, Lang.ZH_HANS) is Lang.ZH_HANT
    assert choose_lang("zhang@qq.com", Lang.EN, Lang.ZH_HANS) is Lang.ZH_HANS
    assert choose_lang("hi", Lang.EN, None) is Lang.EN


def test_order_number_shapes() -> None:
    for good in ("4521987634123", "A20241105888", "JD-20241105888", "202411058881234567"):
        assert valid_order_id(good), good
    for bad in ("123", "abcdefghij", "12345", "A-B-C"):
        assert not valid_order_id(bad), bad


async def test_greetings_and_thanks_get_a_short_polite_reply(talk: EngineChat) -> None:
    await talk.say("你好")
    assert talk.keys == ["greeting"]
    await talk.say("谢谢")
    assert talk.keys == ["thanks"]
    await talk.say("ok")  # one Latin word does not make a Chinese customer English
    assert talk.session is not None and talk.session.lang is Lang.ZH_HANS
    await talk.say("Hello, good morning")
    assert talk.keys == ["greeting"]
    assert talk.lang() is Lang.EN


async def test_evidence_photos_are_kept_and_mentioned_once(
        talk: EngineChat, desk: RecordingDesk) -> None:
    await talk.say("快递三天了还没到，一直显示运输中")
    assert talk.keys.count("evidence_hint") == 1
    photo = Attachment("box.jpg", "image/jpeg", "ab" * 32, 2048)
    await talk.say("", attachments=[photo])
    assert talk.keys == ["evidence_received", "ask_order_id"]
    await talk.say("4521987634123")
    assert "evidence_hint" not in talk.keys
    await talk.say("转人工")
    assert desk.drafts[-1].evidence[0].sha256 == "ab" * 32


async def test_a_question_during_the_intake_is_answered_and_the_intake_goes_on(
        talk: EngineChat) -> None:
    await talk.say("快递三天了还没到，一直显示运输中")
    await talk.say("怎么开发票？")
    assert talk.keys[0] == "faq_answer"
    assert talk.keys[-1] == "ask_order_id"
    assert talk.state() is State.COLLECTING


async def test_strong_anger_alone_hands_over(talk: EngineChat, desk: RecordingDesk) -> None:
    await talk.say("你们到底能不能处理，太过分了，我很生气，订单4521987634123")
    assert talk.keys == ["apology_urgent", "order_id_noted", "ask_contact"]
    await talk.say("不想说")
    assert talk.keys == ["handoff_urgent"]
    [draft] = desk.drafts
    assert draft.reason is HandoffReason.STRONG_ANGER
    assert draft.order_id == "4521987634123" and draft.phone is None


async def test_lines_after_registration_are_added_to_the_ticket(
        talk: EngineChat, desk: RecordingDesk) -> None:
    await talk.say("我买的蓝牙耳机用了两天就坏了，订单号4521987634123，手机13812345678，我要退款")
    await talk.say("确认")
    receipt_line = desk.transcript(talk.conversation.chat_id)[-1]
    assert receipt_line.author == "system" and "TS000001" in receipt_line.text
    await talk.say("另外充电盒也有裂痕")
    assert talk.keys == ["supplement_ack"]
    texts = [line.text for line in desk.transcript(talk.conversation.chat_id)]
    assert texts[-2] == "另外充电盒也有裂痕"
    await talk.say("算了")  # withdrawing is the handler's call; it is written on the ticket
    assert talk.keys == ["cancel_registered"]
    assert talk.state() is State.REGISTERED


async def test_the_receipt_names_the_handler_and_the_promised_time(
        analyzer: object, kb: object, desk: RecordingDesk) -> None:
    desk.handler = "客服 007"
    talk = EngineChat(Engine(analyzer, kb, desk))  # type: ignore[arg-type]
    await talk.say("我买的蓝牙耳机用了两天就坏了，订单号4521987634123，手机13812345678，我要退款",
                   at=datetime(2026, 11, 23, 1, 0, tzinfo=UTC))
    replies = await talk.say("确认", at=datetime(2026, 11, 23, 1, 1, tzinfo=UTC))
    text = replies[0].text
    assert "客服 007" in text
    assert "UTC+8" in text and "每天 09:00-21:00" in text
    assert re.search(r"\d+月\d+日 \d\d:\d\d", text)


async def test_the_session_survives_json(talk: EngineChat) -> None:
    await talk.say("我買的藍牙耳機壞了，訂單號4521987634123")
    await talk.say("", attachments=[Attachment("a.png", "image/png", "cd" * 32, 10)])
    assert talk.session is not None
    assert Session.loads(talk.session.dumps()) == talk.session


async def test_system_messages_other_than_the_commands_are_refused(talk: EngineChat) -> None:
    with pytest.raises(UnknownCommand):
        await talk.say("/reboot", author=Author.SYSTEM)


async def test_a_handback_without_a_takeover_changes_nothing(talk: EngineChat) -> None:
    await talk.say("你好")
    replies = await talk.say(HANDBACK, author=Author.SYSTEM)
    assert replies == [] and talk.state() is State.GREETING


async def test_the_assessment_follows_the_story_not_the_answers(talk: EngineChat) -> None:
    await talk.say("我买的蓝牙耳机用了两天就坏了")
    assert talk.session is not None and talk.session.assessment is not None
    category = talk.session.assessment.category
    await talk.say("4521987634123")
    await talk.say("换货")  # a bare answer classified on its own would be after-sales
    assert talk.session.assessment is not None
    assert talk.session.assessment.category is category is Category.PRODUCT
    assert talk.session.assessment.priority in (Priority.MEDIUM, Priority.HIGH)


def test_every_reply_key_the_engine_uses_exists() -> None:
    source = (__import__("pathlib").Path(__file__).parents[2] / "bot" / "engine.py").read_text()
    used = set(re.findall(r'_say\(s, turn, "([a-z_]+)"', source))
    used |= {f"ask_{a.value}" for a in Ask}
    assert used <= set(default_replies().templates)


# ---- after-care: notices, the closing confirmation, the survey, closed tickets ---------------


def aftercare(name: str, ticket_id: str, number: str = "TS000001", **extra: object) -> str:
    return f"{name} " + json.dumps({"ticket_id": ticket_id, "number": number, **extra})


async def registered(chat: Chat | EngineChat, desk: RecordingDesk) -> str:
    """A customer asks for a person: the ticket exists and the session is WITH_AGENT."""
    await chat.say("转人工")
    assert chat.state() is State.WITH_AGENT
    [ticket_id] = desk.tickets.values()
    return ticket_id


async def test_stage_notices_and_updates_in_the_customers_language(
        talk: EngineChat, desk: RecordingDesk) -> None:
    await talk.say("I want to speak to a human agent please")
    assert talk.lang() is Lang.EN
    ticket_id = desk.tickets[("test", talk.conversation.chat_id)]
    replies = await talk.say(aftercare(NOTIFY, ticket_id, event="investigating"),
                             author=Author.SYSTEM)
    assert talk.keys == ["notify_investigating"] and "TS000001" in replies[0].text
    assert script_of(replies) is Lang.EN
    assert talk.state() is State.WITH_AGENT  # a notice changes nothing else
    replies = await talk.say(aftercare(NOTIFY, ticket_id, event="update", status="investigating"),
                             author=Author.SYSTEM)
    assert talk.keys == ["notify_update"] and "investigation" in replies[0].text
    # A session that expired: the ticket's language is used.
    fresh = EngineChat(talk.engine)
    replies = await fresh.say(aftercare(NOTIFY, "t-9", event="assigned", lang="zh-Hant"),
                              author=Author.SYSTEM)
    assert fresh.keys == ["notify_assigned"] and script_of(replies) is Lang.ZH_HANT
    for bad in (f"{NOTIFY} not json", aftercare(NOTIFY, ticket_id, event="exploded"),
                f"{CONFIRM} " + json.dumps({"number": "TS1"})):
        with pytest.raises(UnknownCommand):
            await talk.say(bad, author=Author.SYSTEM)


async def test_confirmation_yes_closes_and_the_next_message_starts_afresh(
        chat: Chat, desk: RecordingDesk) -> None:
    ticket_id = await registered(chat, desk)
    desk.resolved.add(ticket_id)
    replies = await chat.say(aftercare(CONFIRM, ticket_id), author=Author.SYSTEM)
    assert chat.keys == ["confirm_solved"] and replies[0].buttons == ("是", "否")
    assert chat.state() is State.WITH_AGENT  # the question is the bot's, the agent stays
    await chat.say("我还想问一下")  # not an answer: kept on the ticket, asked again
    assert chat.keys == ["confirm_again"] and desk.confirmations == []
    assert [line.text for line in desk.transcript(chat.conversation.chat_id)][-2] == "我还想问一下"
    await chat.say("是")
    assert chat.keys == ["confirm_closed"] and desk.confirmations == [(ticket_id, True)]
    assert chat.state() is State.GREETING and chat.session is not None
    assert chat.session.ticket_id is None and chat.session.question is None


async def test_confirmation_no_reopens_and_the_bot_keeps_the_record(
        talk: EngineChat, desk: RecordingDesk) -> None:
    ticket_id = await registered(talk, desk)
    desk.resolved.add(ticket_id)
    await talk.say(aftercare(CONFIRM, ticket_id), author=Author.SYSTEM)
    await talk.say("没有解决")
    assert talk.keys == ["confirm_reopened"] and desk.confirmations == [(ticket_id, False)]
    assert talk.state() is State.REGISTERED
    # Staff had acted meanwhile: the answer changes nothing and the customer is told.
    await talk.say(aftercare(CONFIRM, ticket_id), author=Author.SYSTEM)
    await talk.say("否")
    assert talk.keys == ["confirm_outdated"] and len(desk.confirmations) == 1


async def test_a_message_after_staff_closed_the_ticket_starts_a_new_intake(
        chat: Chat, desk: RecordingDesk) -> None:
    ticket_id = await registered(chat, desk)
    await chat.say(HANDBACK, author=Author.SYSTEM)
    assert chat.state() is State.REGISTERED
    desk.close(ticket_id)
    await chat.say("我要投诉，快递三天了还没到")
    assert "supplement_ack" not in chat.keys and chat.state() is State.COLLECTING
    assert chat.session is not None and chat.session.ticket_id is None


async def test_the_survey_with_buttons_partial_answers_and_second_handling(
        talk: EngineChat, desk: RecordingDesk) -> None:
    ticket_id = await registered(talk, desk)
    desk.close(ticket_id)
    replies = await talk.say(aftercare(SURVEY, ticket_id), author=Author.SYSTEM)
    assert talk.keys == ["survey_intro", "survey_timeliness"]
    assert replies[-1].buttons == ("1", "2", "3", "4", "5", "结束问卷")
    await talk.say("4")
    assert talk.keys == ["survey_effectiveness"]
    await talk.say("9")  # a slip: asked again
    assert talk.keys == ["survey_invalid", "survey_effectiveness"]
    await talk.say("3分")
    await talk.say("5")
    assert talk.keys == ["survey_overall"]
    await talk.say("2")
    assert talk.keys == ["survey_second_handling", "survey_best_aspect"]
    replies = await talk.say("服务态度")
    assert talk.keys == ["survey_improve_aspect"] and "沟通清晰" in replies[-1].buttons
    await talk.say("响应速度")
    assert talk.keys == ["survey_suggestion"]
    await talk.say("希望退款再快一点")
    assert talk.keys == ["survey_thanks"]
    assert desk.surveys[ticket_id] == {
        "timeliness": 4, "effectiveness": 3, "attitude": 5, "overall": 2,
        "best_aspect": "attitude", "improve_aspect": "speed", "suggestion": "希望退款再快一点"}
    assert talk.session is not None and talk.session.question is None


async def test_the_survey_can_be_stopped_and_a_new_story_ends_it(
        talk: EngineChat, desk: RecordingDesk) -> None:
    ticket_id = await registered(talk, desk)
    desk.close(ticket_id)
    await talk.say(aftercare(SURVEY, ticket_id), author=Author.SYSTEM)
    await talk.say("5")
    await talk.say("结束问卷")
    assert talk.keys == ["survey_stopped"] and desk.surveys[ticket_id] == {"timeliness": 5}
    await talk.say(aftercare(SURVEY, ticket_id), author=Author.SYSTEM)
    await talk.say("我要投诉，买的手机屏幕有坏点，订单号4521987634123")
    assert "survey_effectiveness" not in talk.keys and talk.state() is State.COLLECTING
    # An e-mail customer gets the link instead of questions.
    replies = await talk.say(aftercare(SURVEY, ticket_id, link="https://x.test/survey/abc"),
                             author=Author.SYSTEM)
    assert talk.keys == ["survey_link"] and "https://x.test/survey/abc" in replies[0].text
    assert talk.session is not None and talk.session.question is None


def test_a_session_keeps_its_question_through_json() -> None:
    session = Session(key="test:a", channel="test", chat_id="a",
                      updated_at=datetime(2026, 11, 23, tzinfo=UTC),
                      question=Question("survey", "t-1", "TS1", "overall"))
    assert Session.loads(session.dumps()) == session
