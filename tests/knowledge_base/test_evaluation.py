"""Evaluation metrics and the calibration data."""

from __future__ import annotations

from pathlib import Path

import pytest

from knowledge_base.confidence import Calibrator, Features, fit
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
    assert len(calibrator.weights) == len(Features.names())


def test_shipped_calibration_loads() -> None:
    calibrator = Calibrator.load()
    assert 0 < calibrator.threshold < 1
