"""Text analysis: normalisation, noise, synonyms, terms."""

from __future__ import annotations

from knowledge_base.analysis import Analyzer, Synonyms


def test_traditional_and_colloquial_forms_meet_the_canonical_one() -> None:
    analyzer = Analyzer()
    assert analyzer.analyse("退錢要幾天").terms[:1] == analyzer.analyse("退款要几天").terms[:1]
    assert "w:退款" in analyzer.analyse("我想退钱").terms
    assert "w:物流" in analyzer.analyse("快递到哪了").terms


def test_placeholders_links_and_order_cards_are_dropped() -> None:
    analyzer = Analyzer()
    text = "咨询订单号:[订单x] 订单金额:[金额x] https://shop.example/x 1234567890 发票"
    assert analyzer.analyse(text).terms == ("w:发票", "b:发票")


def test_longest_variant_wins_and_canonical_forms_stay() -> None:
    synonyms = Synonyms({"优惠券": ["券", "优惠卷"], "人工": ["人工客服", "转人工"]})
    assert synonyms.apply("优惠券和券和优惠卷") == "优惠券和优惠券和优惠券"
    assert synonyms.apply("转人工客服") == "人工客服"


def test_bigrams_do_not_cross_breaks_or_filler_words() -> None:
    terms = Analyzer(Synonyms.empty()).analyse("发票 地址").terms
    assert "b:票地" not in terms and "b:发票" in terms and "b:地址" in terms


def test_english_plural_fold() -> None:
    assert "w:order" in Analyzer().analyse("my orders").terms
