"""Homophone typos of the synonym table's words (typos.py), repaired before the terms are made."""

from __future__ import annotations

from knowledge_base.analysis import Analyzer
from knowledge_base.typos import Homophones, reading


def test_reading_is_toneless_pinyin_syllable_by_syllable() -> None:
    assert reading("腿货") == reading("退货") == "tui huo"
    assert reading("西安") != reading("先")


def test_pinyin_typos_of_listed_words_give_the_terms_of_the_word() -> None:
    analyzer = Analyzer()
    cases = {
        "我想腿货 不要了": "我想退货 不要了",  # single characters (腿 / 货)
        "腿款多久到": "退款多久到",  # a word jieba's HMM guessed
        "发漂开错了": "发票开错了",
        "我的快底呢": "我的快递呢",  # a variant's typo: 快递, whose canonical form is 物流
        "说超时会赔鸿包": "说超时会赔红包",  # merged with its neighbour (赔鸿包)
    }
    for typed, meant in cases.items():
        assert analyzer.analyse(typed).terms == analyzer.analyse(meant).terms, typed
    assert {"w:退货", "b:退货"} <= set(analyzer.analyse("腿货怎么弄").terms)
    # The text itself is left as typed (what the dense model and the gap list see).
    assert analyzer.canonical("发漂开错了") == "发漂开错了"


def test_words_and_mere_sound_alikes_stay() -> None:
    analyzer, unrepaired = Analyzer(), Analyzer(typos=False)
    for text in ("能开发票吗", "客服不回消息", "抱枕拉链坏了", "退货", "物流到哪了", "㐀䶵𠀀"):
        assert analyzer.analyse(text).terms == unrepaired.analyse(text).terms
    # 抱枕 reads like 保真 (正品) but shares no character with it.
    assert "w:正品" not in analyzer.analyse("抱枕拉链坏了").terms


def test_typos_can_be_left_alone() -> None:
    assert "w:发票" not in Analyzer(typos=False).analyse("发漂开错了").terms


def test_two_canonical_forms_that_sound_alike_are_not_guessed_between() -> None:
    homophones = Homophones({"保修": "保修", "报修": "维修", "退货": "退货"},
                            lambda w: False, frozenset({"的"}))
    assert homophones.repair(["包", "修", "的", "腿", "货"]) == ["包", "修", "的", "退货"]
    # A filler word breaks a stretch: "腿的货" is no typo of 退货.
    assert homophones.repair(["腿", "的", "货"]) == ["腿", "的", "货"]
