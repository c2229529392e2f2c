"""Homophone typos of the synonym table's words (typos.py), repaired before the terms are made."""

from __future__ import annotations

from knowledge_base.analysis import Analyzer
from knowledge_base.typos import Homophones, reading


def test_reading_is_toneless_pinyin_syllable_by_syllable() -> None:
    assert reading("腿货") == reading("退货") == "tui huo"
    assert reading("西安") != reading("先")


def test_pinyin_typos_of_listed_words_become_their_canonical_form() -> None:
    analyzer = Analyzer()
    cases = {
        "我想腿货 不要了": "我想退货 取消",  # single characters (腿 / 货)
        "腿款多久到": "退款多久到",  # a word jieba's HMM guessed
        "发漂开错了": "发票开错了",
        "我的快底呢": "我的物流呢",  # a variant's typo (快递) becomes the canonical form
        "说超时会赔鸿包": "说超时会赔优惠券",  # merged with its neighbours (赔鸿包)
    }
    for typed, repaired in cases.items():
        assert analyzer.canonical(typed) == repaired
    assert "w:退货" in analyzer.analyse("腿货怎么弄").terms


def test_words_and_mere_sound_alikes_stay() -> None:
    analyzer = Analyzer()
    for text in ("能开发票吗", "客服不回消息", "抱枕拉链坏了", "退货", "物流到哪了", "㐀䶵𠀀"):
        assert analyzer.canonical(text) == Analyzer(typos=False).canonical(text)
    # 抱枕 reads like 保真 (正品) but shares no character with it.
    assert "正品" not in analyzer.canonical("抱枕拉链坏了")


def test_typos_can_be_left_alone() -> None:
    assert Analyzer(typos=False).canonical("发漂开错了") == "发漂开错了"


def test_two_canonical_forms_that_sound_alike_are_not_guessed_between() -> None:
    homophones = Homophones({"保修": "保修", "报修": "维修", "退货": "退货"},
                            lambda w: False, frozenset({"的"}))
    assert homophones.repair(["包", "修", "的", "腿", "货"]) == ["包", "修", "的", "退货"]
    # A filler word breaks a stretch: "腿的货" is no typo of 退货.
    assert homophones.repair(["腿", "的", "货"]) == ["腿", "的", "货"]
