"""Retrieval over the seed FAQ: Chinese, Traditional, English, out of scope, atomic swaps."""

from __future__ import annotations

import pytest

from knowledge_base.entries import PublishedEntry
from knowledge_base.retrieval import Searcher
from tests.knowledge_base.conftest import content


@pytest.mark.parametrize(("text", "expected"), [
    ("退款几天能到账", "refund-timeline"),
    ("钱啥时候退回来", "refund-timeline"),
    ("我的快递到哪了", "track-parcel"),
    ("地址填错了能改吗", "change-address"),
    ("怎么开发票", "invoice-request"),
    ("收到的东西摔坏了", "damaged-item"),
    ("转人工", "contact-human"),
    ("价保一般保几天", "price-protection"),
])
def test_chinese_questions(lexical_searcher: Searcher, e5_searcher: Searcher, text: str,
                           expected: str) -> None:
    result = lexical_searcher.search(text)
    assert result.best is not None and result.best.id == expected
    # The shipped configuration answers them confidently.
    result = e5_searcher.search(text)
    assert result.best is not None and result.best.id == expected
    assert result.confident


@pytest.mark.parametrize(("text", "expected"), [
    ("退款多久能到賬", "refund-timeline"),
    ("我的快遞到哪了", "track-parcel"),
    ("發票怎麼開", "invoice-request"),
])
def test_traditional_questions(lexical_searcher: Searcher, text: str, expected: str) -> None:
    result = lexical_searcher.search(text)
    assert result.best is not None and result.best.id == expected


@pytest.mark.parametrize("text", ["今天天气怎么样", "这款手机支持5G吗", "讲个笑话吧",
                                  "帮我订一张去北京的机票"])
def test_out_of_scope_is_not_confident(lexical_searcher: Searcher, text: str) -> None:
    assert not lexical_searcher.search(text).confident


def test_empty_and_huge_queries(lexical_searcher: Searcher) -> None:
    assert lexical_searcher.search("").hits == ()
    assert not lexical_searcher.search("   ").confident
    result = lexical_searcher.search("退款" * 10_000)
    assert len(result.text) == 2000


def test_threshold_is_configurable(lexical_searcher: Searcher) -> None:
    from knowledge_base.service import make_searcher

    strict = make_searcher(dense=False, threshold=0.999)
    strict.install(lexical_searcher.snapshot)
    result = strict.search("退款几天能到账")
    assert result.best is not None and result.best.id == "refund-timeline"
    assert not result.confident


def test_install_swaps_the_snapshot_atomically(lexical_searcher: Searcher) -> None:
    from knowledge_base.service import make_searcher

    searcher = make_searcher(dense=False)
    old = searcher.build([PublishedEntry("a", 1, content("怎么开发票？", "在结算页选择。"))])
    new = searcher.build([PublishedEntry("b", 1, content("怎么退货？", "申请售后。"))])
    searcher.install(old)
    stale = searcher.search("怎么退货").best
    assert stale is None or stale.id == "a"
    searcher.install(new)
    best = searcher.search("怎么退货").best
    assert best is not None and best.id == "b"
    # A search that started on the old snapshot finishes on it.
    hit = searcher.search_in(old, "开发票").best
    assert hit is not None and hit.id == "a"


@pytest.mark.parametrize(("text", "expected"), [
    ("how long until I get my refund", "refund-timeline"),
    ("where is my package", "track-parcel"),
    ("my order arrived broken", "damaged-item"),
    ("can I pay when the courier arrives", "cash-on-delivery"),
])
def test_english_questions_with_the_dense_model(hybrid_searcher: Searcher, text: str,
                                                expected: str) -> None:
    result = hybrid_searcher.search(text)
    assert result.best is not None and result.best.id == expected


def test_dense_is_left_out_for_chinese_with_the_english_model(hybrid_searcher: Searcher) -> None:
    result = hybrid_searcher.search("退款几天能到账")
    assert result.features is not None and result.features.dense_on == 0.0
    english = hybrid_searcher.search("refund please")
    assert english.features is not None and english.features.dense_on == 1.0


@pytest.mark.parametrize("seed", range(5))
def test_ranks_order_as_a_full_sort_does_ties_included(seed: int) -> None:
    """The first stage sorts only the scores that can make the cut; the order must not change."""
    import numpy as np

    from knowledge_base.retrieval import _ranks

    rng = np.random.default_rng(seed)
    # few distinct values, so that ties straddle the cut; zeros and negatives never rank
    scores = rng.integers(-2, 6, size=400).astype(np.float32)
    positive = np.flatnonzero(scores > 0)
    full = [int(i) for i in positive[np.argsort(-scores[positive], kind="stable")]]
    for limit in (1, 30, 100, len(positive), 1000):
        assert _ranks(scores, limit) == full[:limit]
    assert _ranks(np.zeros(10, dtype=np.float32), 5) == []


@pytest.mark.parametrize("text", ["退款几天能到账", "快递怎么还没到", "my parcel is late"])
def test_each_cosine_is_set_against_its_strongest_rival(
        e5_searcher: Searcher, seed_entries: list[PublishedEntry], text: str) -> None:
    """relative_dense: the top cosine's margin over the runner-up, the others' gap to the top."""
    # Other tests may have installed their own snapshot in the shared searcher.
    candidates = e5_searcher.candidates(e5_searcher.build(seed_entries), text)
    best = [max(f.dense, f.dense_answer) for _, f in candidates]
    assert len(best) >= 3 and all(f.dense_on == 1.0 for _, f in candidates)
    for k, (_, features) in enumerate(candidates):
        rival = max(b for j, b in enumerate(best) if j != k)
        assert features.relative_dense == pytest.approx(best[k] - rival, abs=1e-6)
    assert sum(f.relative_dense > 0 for _, f in candidates) == 1  # only the top has a margin
