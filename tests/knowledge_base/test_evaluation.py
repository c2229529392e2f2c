"""Evaluation metrics and the calibration data."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

from knowledge_base.confidence import (
    N_FEATURES,
    N_TERMS,
    Calibrator,
    Features,
    Sample,
    fit,
    top1_right,
)
from knowledge_base.entries import PublishedEntry
from knowledge_base.errors import ImportRejected
from knowledge_base.evaluation import (
    Query,
    calibration_samples,
    chat_variant,
    evaluate,
    read_out_of_scope,
    read_queries,
)
from knowledge_base.retrieval import Searcher, SearchHit, SearchResult
from tests.knowledge_base.conftest import content


def _result(text: str, ids: list[str], confident: bool) -> SearchResult:
    hits = tuple(SearchHit(i, 1, 1.0, "q", "a", PublishedEntry(i, 1, content()))
                 for i in ids)
    return SearchResult(text, hits, 0.9 if confident else 0.1, confident)


def test_metrics() -> None:
    queries = [Query("a", "x"), Query("b", "y"), Query("c", None), Query("d", None)]
    results = [_result("a", ["x", "y"], True), _result("b", ["x", "z", "y"], False),
               _result("c", ["x"], True), _result("d", ["x"], False)]
    report = evaluate(results, queries)
    assert report.hit_at_1 == 0.5 and report.hit_at_3 == 1.0
    assert report.mrr == pytest.approx((1 + 1 / 3) / 2)
    assert report.confident_precision == 0.5  # one of two confident answers is right
    assert report.no_answer_precision == 0.5  # of two declines, one was unanswerable
    assert report.no_answer_recall == 0.5


def test_read_queries_reports_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    path.write_text('{"text": "a", "faq_id": "x"}\n{"faq_id": "x"}\n{"text": "b", '
                    '"faq_id": null}\n', encoding="utf-8")
    with pytest.raises(ImportRejected) as caught:
        read_queries(path)
    assert [e.line for e in caught.value.errors] == [2]


def test_out_of_scope_file_is_large_and_distinct() -> None:
    texts = read_out_of_scope()
    assert len(texts) >= 200 and len(set(texts)) == len(texts)


def test_chat_variant_keeps_the_question() -> None:
    assert "退款" in chat_variant("退款多久到账", 5)


def test_calibration_fits_and_separates(lexical_searcher: Searcher,
                                        seed_entries: list[PublishedEntry]) -> None:
    samples = calibration_samples(lexical_searcher, seed_entries[:20],
                                  ["讲个笑话", "今天天气怎么样", "帮我订机票"], folds=2,
                                  chat_style=False)
    calibrator, report = fit(samples, precision_target=0.7)
    assert 0 < calibrator.threshold < 1 and 0 < int(str(report["questions"])) <= len(samples)
    assert len(calibrator.weights) == N_TERMS and len(calibrator.scale) == N_FEATURES


def test_labelled_customer_messages_join_the_calibration(lexical_searcher: Searcher,
                                                        seed_entries: list[PublishedEntry]
                                                        ) -> None:
    seed = seed_entries[:20]
    plain = calibration_samples(lexical_searcher, seed, ["讲个笑话"], folds=2, chat_style=False)
    target = next(e for e in seed if e.id == "cancel-order")
    customer = [Query("你好 我刚才下的单 拍错颜色了 不想要了 怎么取消啊", target.id),
                Query("你们家的猫粮是哪个牌子的", None)]
    samples = calibration_samples(lexical_searcher, seed, ["讲个笑话"], folds=2,
                                  chat_style=True, customer=customer)
    # asked against the curated and the bare FAQ, once each, never wrapped in chat noise
    assert len(samples) == 2 * len(plain) + 2 * len(customer)
    added = samples[-4:]
    for sample, query in zip(added, customer * 2, strict=True):
        if query.faq_id is None:
            assert sample.right is None
        else:
            assert sample.right is not None  # the entry is among the candidates, marked right


def _features(**values: float) -> Features:
    return Features(**{name: values.get(name, 0.0) for name in Features.names()})


def test_a_linear_calibration_file_of_an_earlier_version_asks_for_a_refit(tmp_path: Path
                                                                          ) -> None:
    path = tmp_path / "linear.json"
    path.write_text(json.dumps({"features": Features.names(), "weights": [0.1] * N_FEATURES,
                                "bias": -1.0, "threshold": 0.6}), encoding="utf-8")
    with pytest.raises(ValueError, match=r"earlier version.*kb calibrate"):
        Calibrator.load(path)


def test_a_linear_prior_scores_its_raw_features() -> None:
    # uninformed(): weights on three features in [0, 1], no standardisation, no products.
    prior = Calibrator.uninformed()
    assert len(prior.weights) == N_TERMS and not any(prior.weights[N_FEATURES:])
    f = _features(coverage_question=0.5, reverse_coverage=1.0, relative_lexical=0.8)
    z = -5.0 + 3.0 * 0.5 + 3.0 * 1.0 + 2.0 * 0.8
    assert prior.probabilities([f])[0] == pytest.approx(1 / (1 + math.exp(-z)))


def _pair(first: str, second: str) -> tuple[int, int, int]:
    """The two features' indexes and their product's index among the weights."""
    names = Features.names()
    a, b = sorted((names.index(first), names.index(second)))
    return a, b, N_FEATURES + sum(N_FEATURES - k for k in range(a)) + (b - a)  # triu order


def test_pairwise_terms_score_a_product_of_standardised_features() -> None:
    a, b, pair = _pair("dense", "coverage_question")
    weights = [0.0] * N_TERMS
    weights[pair] = 2.0
    mean = [0.0] * N_FEATURES
    scale = [1.0] * N_FEATURES
    mean[a], scale[a] = 0.5, 0.25
    calibrator = Calibrator(tuple(weights), 0.0, mean=tuple(mean), scale=tuple(scale))
    f = _features(dense=0.9, coverage_question=0.7)
    za = (f.vector()[a] - 0.5) / 0.25
    expected = 1 / (1 + math.exp(-2.0 * za * f.vector()[b]))
    assert calibrator.probabilities([f])[0] == pytest.approx(expected)
    assert calibrator.probabilities([f, f]) == pytest.approx([expected, expected])


def test_the_fit_learns_when_one_signal_matters_only_with_another() -> None:
    # The right candidate has a high cosine *and* words in common, or neither: a relation no
    # single weight per feature can express (the product can).
    rng = random.Random(7)
    samples = []
    for _ in range(400):
        candidates = [_features(dense=rng.random(), coverage_question=rng.random(),
                                length=rng.random()) for _ in range(4)]
        agreement = [(c.dense - 0.5) * (c.coverage_question - 0.5) for c in candidates]
        samples.append(Sample(tuple(candidates), agreement.index(max(agreement))))
    calibrator, report = fit(samples, precision_target=0.5, c=10.0)
    assert float(str(report["top1_right"])) > 0.8
    # It got there through the product: the heaviest weight of all is that pair's.
    product = _pair("dense", "coverage_question")[2]
    assert max(range(N_TERMS), key=lambda k: abs(calibrator.weights[k])) == product


def test_top1_right_counts_answerable_questions_only() -> None:
    # The uninformed prior ranks by coverage: the covered candidate wins.
    calibrator = Calibrator.uninformed()
    strong, weak = _features(coverage_question=1.0), _features(coverage_question=0.0)
    samples = [Sample((strong, weak), 0), Sample((strong, weak), 1), Sample((weak, strong), 1),
               Sample((strong,), None), Sample((), 0)]
    # of the four answerable ones, two are ranked right (and one has no candidate at all)
    assert top1_right(calibrator, samples) == 0.5
    assert top1_right(calibrator, [Sample((strong,), None)]) == 0.0


def test_shipped_calibration_loads() -> None:
    calibrator = Calibrator.load()
    assert 0 < calibrator.threshold < 1
