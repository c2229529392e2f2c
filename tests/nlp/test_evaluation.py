from __future__ import annotations

from typing import Any

import pytest

from nlp.evaluation import evaluate, score_field


def test_scores_and_confusion() -> None:
    report = score_field("category", ["product", "product", "logistics", "none"],
                         ["product", "logistics", "logistics", "product"])
    assert report.accuracy == pytest.approx(0.5)
    assert report.per_class["product"][:3] == pytest.approx((0.5, 0.5, 0.5))
    assert report.per_class["logistics"][:3] == pytest.approx((0.5, 1.0, 2 / 3))
    assert report.macro_f1 == pytest.approx((0.5 + 2 / 3) / 2)  # over the gold classes only
    assert report.labels == ["product", "logistics", "none"]
    assert report.confusion == [[1, 1, 0], [0, 1, 0], [1, 0, 0]]
    assert "macro-F1" in report.render()


def test_fields_scored_only_where_present_and_request_human_is_other() -> None:
    rows: list[dict[str, Any]] = [{"text": "a", "intent": "other", "category": None},
                                  {"text": "b", "emotion": "anger"}]
    preds: list[dict[str, Any]] = [
        {"intent": "request_human", "category": None, "emotion": "anger"},
        {"intent": "complaint", "category": "product", "emotion": "neutral"}]
    reports = {r.field: r for r in evaluate(rows, preds)}
    assert reports["intent"].n == 1 and reports["intent"].accuracy == 1.0
    assert reports["category"].n == 1 and reports["category"].accuracy == 1.0
    assert reports["emotion"].n == 1 and reports["emotion"].accuracy == 0.0
    assert "priority" not in reports
