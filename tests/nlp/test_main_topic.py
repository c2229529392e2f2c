"""The main topic read span by span: splitting, weighting, gating, and the real model's reading."""

from __future__ import annotations

from pathlib import Path

import pytest

from nlp.analyzer import Analyzer
from nlp.backends import Scores, TriageBackend
from nlp.category_view import category_scores
from nlp.labels import Category
from nlp.main_topic import MainTopicBackend, clauses, complaint_weight, spans
from nlp.models import ModelConfig, load_backend, load_classical
from nlp.normalize import normalize


class Scripted(TriageBackend):
    """Scores looked up by text (an unknown text fails the test), counting what it was asked."""

    name = "scripted"

    def __init__(self, scores: dict[str, Scores]) -> None:
        self.scores = scores
        self.asked: list[str] = []

    @property
    def tasks(self) -> tuple[str, ...]:
        return ("intent", "category", "subcategory", "emotion")

    def _score(self, texts: list[str]) -> list[Scores]:
        self.asked.extend(texts)
        return [self.scores[t] for t in texts]

    def save(self, directory: Path) -> None:
        raise NotImplementedError


def _scores(category: str, p: float, complaint: float, negative: float) -> Scores:
    rest = (1 - p) / 4
    cats = {c.value: (p if c.value == category else rest) for c in Category}
    return {"intent": {"complaint": complaint, "inquiry": 1 - complaint},
            "category": {**cats, "none": 0.0},
            "subcategory": {},
            "emotion": {"anger": negative, "neutral": 1 - negative}}


def test_clauses_split_on_punctuation_and_spaces_and_drop_empty_ones() -> None:
    text = normalize("杯子裂了！！漏水，，  快递很快。好 ~ 客服还行…")
    assert clauses(text) == ["杯子裂了", "漏水", "快递很快", "客服还行"]
    assert spans(text) == ["杯子裂了,漏水", "漏水,快递很快", "快递很快,客服还行"]
    assert spans("杯子裂了") == [] and spans("") == []
    assert clauses("the charger broke after a week. no reply, refund of 1.5 please") == [
        "the charger broke after a week", "no reply", "refund of 1.5 please"]
    assert len(clauses("，".join(["质量差"] * 100))) == 12  # a long story: the first clauses


def test_a_span_weighs_by_complaint_negativity_and_topic() -> None:
    angry = _scores("product", 0.8, complaint=0.9, negative=0.8)
    assert complaint_weight(angry) == pytest.approx(0.72)
    praise = _scores("logistics", 0.8, complaint=0.9, negative=0.0)
    assert complaint_weight(praise) == 0.0
    off_topic = dict(angry, category={**angry["category"], "none": 0.5})
    assert complaint_weight(off_topic) == pytest.approx(0.36)


def test_the_complained_about_topic_outweighs_a_longer_neutral_one() -> None:
    text = "杯子裂了,漏水严重,快递很快,送货上门"
    whole = _scores("logistics", 0.45, complaint=0.9, negative=0.6)
    inner = Scripted({
        text: whole,
        "杯子裂了,漏水严重": _scores("product", 0.9, complaint=0.95, negative=0.9),
        "漏水严重,快递很快": _scores("logistics", 0.9, complaint=0.2, negative=0.1),
        "快递很快,送货上门": _scores("logistics", 0.9, complaint=0.2, negative=0.1),
    })
    backend = MainTopicBackend(inner, weight=0.4, decay=0.7, gap=0.4)
    [result] = backend.score([text])
    weights = [0.95 * 0.9, 0.2 * 0.1 * 0.7, 0.2 * 0.1 * 0.49]
    spans_ = [inner.scores[s]["category"] for s in spans(text)]
    for label in whole["category"]:
        view = sum(w * s[label] for w, s in zip(weights, spans_, strict=True)) / sum(weights)
        assert result["category"][label] == pytest.approx(0.6 * whole["category"][label]
                                                          + 0.4 * view)
    blended = category_scores(result["category"], result["subcategory"])
    assert max(blended, key=blended.__getitem__) == "product"
    assert result["intent"] == whole["intent"] and result["emotion"] == whole["emotion"]


def test_sure_and_short_texts_are_not_reread() -> None:
    sure = "快递很慢,等了一周,还没到"
    short = "杯子裂了,快递很快"
    inner = Scripted({sure: _scores("logistics", 0.9, 0.9, 0.9),
                      short: _scores("logistics", 0.3, 0.9, 0.9)})
    backend = MainTopicBackend(inner)
    assert backend.score([sure, short]) == [inner.scores[sure], inner.scores[short]]
    assert inner.asked == [sure, short]  # no span was scored


def test_spans_are_scored_by_the_clause_scorer() -> None:
    text = "杯子裂了,漏水严重,快递很快"
    unsure = _scores("logistics", 0.3, 0.9, 0.9)
    outer = Scripted({text: unsure})
    clause_scorer = Scripted(dict.fromkeys(spans(text), unsure))
    MainTopicBackend(outer, clause_scorer).score([text])
    assert outer.asked == [text] and clause_scorer.asked == spans(text)


def test_the_real_model_reads_the_grievance_before_the_praise(model_config: ModelConfig) -> None:
    """A broken cup, then a longer word of praise for the delivery: the complaint is about the
    product, which the whole-text n-grams alone miss."""
    classical = load_classical(model_config)
    text = "杯子底部裂了一条缝，一直漏水，垃圾，物流挺快的，第二天就到了，快递员也很客气，送货上门"
    plain = Analyzer(classical).analyze(text)
    read = Analyzer(MainTopicBackend(classical)).analyze(text)
    assert read.category is Category.PRODUCT
    assert read.category_scores["product"] > plain.category_scores["product"]


def test_the_default_backend_reads_the_main_topic(model_config: ModelConfig) -> None:
    primary, fallback = load_backend(model_config)
    assert isinstance(primary, MainTopicBackend) and fallback is None
    assert primary.clause_scorer.name == "classical"
