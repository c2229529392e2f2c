"""Text analysis: normalisation, noise, synonyms, terms."""

from __future__ import annotations

from knowledge_base.analysis import Analyzer, Synonyms


def test_traditional_and_colloquial_forms_meet_the_canonical_one() -> None:
    analyzer = Analyzer()
    assert analyzer.analyse("退錢要幾天").terms[:1] == analyzer.analyse("退款要几天").terms[:1]
    assert "w:退款" in analyzer.analyse("我想退钱").terms
    assert "w:物流" in analyzer.analyse("快递到哪了").terms
    # "我的件 / 这个件" is a parcel; "这件衣服" counts a piece of clothing.
    assert "w:物流" in analyzer.analyse("这个件到哪了").terms
    assert "w:物流" not in analyzer.analyse("这件衣服到哪了").terms


def test_placeholders_links_and_order_cards_are_dropped() -> None:
    analyzer = Analyzer()
    text = "咨询订单号:[订单x] 订单金额:[金额x] https://shop.example/x 1234567890 发票"
    assert analyzer.analyse(text).terms == ("w:发票", "b:发票")


def test_longest_variant_wins_and_canonical_forms_stay() -> None:
    synonyms = Synonyms({"优惠券": ["券", "优惠卷"], "人工": ["人工客服", "转人工"]})
    assert synonyms.apply("优惠券和券和优惠卷") == "优惠券和优惠券和优惠券"
    assert synonyms.apply("转人工客服") == "人工客服"


def test_canonical_forms_stay_whole_words_between_their_neighbours() -> None:
    # "差价" becomes "价保" next to another "价保": jieba alone read the run as 价 / 保价 / 保会.
    terms = Analyzer().analyse("价保差价会退到哪里").terms
    assert [t for t in terms if t.startswith("w:")][:2] == ["w:价保", "w:价保"]
    assert "w:保会" not in terms and "w:保价" not in terms


def test_bigrams_do_not_cross_breaks_or_filler_words() -> None:
    terms = Analyzer(Synonyms.empty()).analyse("发票 地址").terms
    assert "b:票地" not in terms and "b:发票" in terms and "b:地址" in terms


def test_english_plural_fold() -> None:
    assert "w:order" in Analyzer().analyse("my orders").terms


def test_asking_terms_are_those_of_the_clauses_that_ask() -> None:
    analyzer = Analyzer()

    def asking(text: str) -> set[str]:
        return {t for t in analyzer.asking_terms(analyzer.analyse(text)) if t.startswith("w:")}

    # A story, then the question: only the question's words.
    story = asking("我昨天买的空调 外机有点响 安装费多少钱")
    assert "w:安装费" in story or "w:安装" in story
    assert not story & {"w:空调", "w:外机"}
    english = asking("my parcel was damaged, can I get a refund?")
    assert "w:refund" in english and "w:parcel" not in english
    # "?" ends a clause even without a space after it.
    assert "w:发票" in asking("订单已经收到了。发票呢?谢谢")
    assert "w:收到" not in asking("订单已经收到了。发票呢?谢谢")
    # One clause, or no clause that asks: every term counts.
    for text in ("退款多久到账", "我买的空调 坏了"):
        analysed = analyzer.analyse(text)
        assert analyzer.asking_terms(analysed) == frozenset(analysed.terms)
    # A question with no topic of its own asks about the clause before it, and only that one.
    assert asking("屏幕碎了 物流太慢 怎么办") == {"w:物流", "w:太慢"}
    assert asking("这个商品 订单页不能选专票 是什么问题") >= {"w:专用发票"}
    assert "w:商品" not in asking("这个商品 订单页不能选专票 是什么问题")
    assert asking("只用了一次 可以退吗") == {"w:只用", "w:一次", "w:退"}
    # "can" asks; "cancel" does not.
    assert "w:order" not in asking("cancel my order. where is the refund")
