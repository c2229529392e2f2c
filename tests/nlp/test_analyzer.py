"""The triage end to end on the default backend: behaviour a complaint desk relies on."""

from __future__ import annotations

import json

import pytest

from nlp.analyzer import Analyzer
from nlp.labels import Category, Emotion, Intent, Lang, Priority
from nlp.triage import Context

CASES = [
    ("收到的手机屏幕是碎的，开不了机，气死我了！", Intent.COMPLAINT, Category.PRODUCT),
    ("快递一个星期了还没到，物流信息一直不更新", Intent.COMPLAINT, Category.LOGISTICS),
    ("客服态度太差了，问了三遍都不理人", Intent.COMPLAINT, Category.SERVICE),
    ("申请退款五天了还没到账，商家一直拒绝", Intent.COMPLAINT, Category.AFTER_SALES),
    ("买到假货了，专柜验过不是正品", Intent.COMPLAINT, Category.COMPLIANCE),
    ("请问怎么开发票", Intent.INQUIRY, Category.AFTER_SALES),
    ("我的包裹现在到哪了？", Intent.INQUIRY, Category.LOGISTICS),
    ("The package never arrived and tracking hasn't moved in a week", Intent.COMPLAINT,
     Category.LOGISTICS),
    ("收到的衣服有色差，和圖片不一樣，退貨還要自己出運費", Intent.COMPLAINT, None),
]


@pytest.mark.parametrize(("text", "intent", "category"), CASES)
def test_clear_cases(analyzer: Analyzer, text: str, intent: Intent, category: Category | None
                     ) -> None:
    triage = analyzer.analyze(text)
    assert triage.intent is intent
    if category is not None:
        assert triage.category is category
    assert triage.category is not None
    assert triage.subcategory is not None
    assert abs(sum(triage.category_scores.values()) - 1.0) < 1e-6


@pytest.mark.parametrize("text", ["你好", "谢谢", "好的", "转人工", "human please"])
def test_no_category_without_a_topic(analyzer: Analyzer, text: str) -> None:
    triage = analyzer.analyze(text)
    assert triage.intent in (Intent.OTHER, Intent.REQUEST_HUMAN)
    assert triage.category is None and triage.subcategory is None
    assert triage.priority is Priority.LOW


@pytest.mark.parametrize("text", ["转人工", "我要人工客服", "human please",
                                  "let me talk to a human"])
def test_request_human(analyzer: Analyzer, text: str) -> None:
    assert analyzer.analyze(text).intent is Intent.REQUEST_HUMAN


def test_safety_is_high_with_two_hour_sla(analyzer: Analyzer) -> None:
    triage = analyzer.analyze("孩子吃了你们的饼干上吐下泻，现在在医院")
    assert triage.priority is Priority.HIGH
    assert triage.sla_hours == 2
    assert "safety" in triage.priority_reasons


def test_media_threat_and_group_are_high(analyzer: Analyzer) -> None:
    assert "media_or_regulator" in analyzer.analyze("再不处理我就打12315投诉").priority_reasons
    group = analyzer.analyze("我们群里好多人都买到了这批漏液的充电宝")
    assert group.priority is Priority.HIGH and "group" in group.priority_reasons


def test_inquiry_is_low(analyzer: Analyzer) -> None:
    triage = analyzer.analyze("请问七天无理由退货的运费谁出？")
    assert triage.priority is Priority.LOW and triage.sla_hours == 24


def test_repeat_contact_raises_priority(analyzer: Analyzer) -> None:
    text = "衣服有点起球"
    first = analyzer.analyze(text)
    again = analyzer.analyze(text, Context(repeat_contacts=2))
    assert again.priority.rank == min(first.priority.rank + 1, 2)
    assert "repeat_contact" in again.priority_reasons


def test_anger_and_intensity(analyzer: Analyzer) -> None:
    angry = analyzer.analyze("什么垃圾东西！！！用了一天就坏，骗子商家，气死我了！！")
    calm = analyzer.analyze("请问这个耳机有白色的吗")
    assert angry.emotion is Emotion.ANGER
    assert "angry" in angry.priority_reasons
    assert angry.emotion_intensity > 0.5 > calm.emotion_intensity
    assert calm.emotion is Emotion.NEUTRAL


def test_language_detected_and_kept(analyzer: Analyzer) -> None:
    assert analyzer.analyze("我買的耳機壞了，要退貨").lang is Lang.ZH_HANT
    assert analyzer.analyze("my headphones broke after one day").lang is Lang.EN
    assert analyzer.analyze("我买的耳机坏了").lang is Lang.ZH_HANS


def test_traditional_is_triaged_like_simplified(analyzer: Analyzer) -> None:
    hant = analyzer.analyze("物流太慢了，等了十天還沒到貨")
    hans = analyzer.analyze("物流太慢了，等了十天还没到货")
    assert (hant.intent, hant.category, hant.emotion) == (hans.intent, hans.category, hans.emotion)


@pytest.mark.parametrize("text", ["", "   ", "😡😡😡", "\x00\x07\x1b", "？？？", "a" * 100_000,
                                  "退款" * 50_000, "我的订单 order 123 😡 退貨 refund!!"])
def test_bad_input_gives_a_valid_result(analyzer: Analyzer, text: str) -> None:
    triage = analyzer.analyze(text)
    data = triage.to_json()
    json.dumps(data)
    assert set(data) >= {"intent", "category", "category_scores", "subcategory", "emotion",
                         "emotion_intensity", "priority", "sla_hours", "priority_reasons",
                         "slots", "lang"}
    assert 0.0 <= triage.emotion_intensity <= 1.0


def test_empty_text_is_other(analyzer: Analyzer) -> None:
    triage = analyzer.analyze("")
    assert triage.intent is Intent.OTHER and triage.category is None


def test_slots_reach_the_triage(analyzer: Analyzer) -> None:
    triage = analyzer.analyze(
        "订单号 4521987634123 的耳机坏了，我要退款，电话13812345678",
        Context(reference_time="2026-11-23T10:00:00"),
    )
    slots = triage.to_json()["slots"]
    assert slots["order_id"] == "4521987634123"
    assert slots["phone"] == "13812345678"
    assert slots["demand"] == "refund"


def test_batch_equals_single(analyzer: Analyzer) -> None:
    texts = [t for t, _, _ in CASES]
    batch = analyzer.analyze_many(texts)
    for text, triage in zip(texts, batch, strict=True):
        single = analyzer.analyze(text)
        assert single.intent is triage.intent and single.category is triage.category
        for label, p in single.category_scores.items():
            assert abs(p - triage.category_scores[label]) < 1e-5
