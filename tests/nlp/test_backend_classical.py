from __future__ import annotations

import json
from pathlib import Path

import pytest

from nlp import models
from nlp.backend_classical import COMPILED_BATCH, MODEL_FILE, ClassicalBackend, fit_heads
from nlp.backends import TASKS
from nlp.corpus import load
from nlp.models import ModelConfig, corpus_fingerprint, load_classical
from nlp.normalize import normalize


@pytest.fixture(scope="module")
def small_backend() -> ClassicalBackend:
    examples = load()
    return fit_heads(examples[::6])


def test_single_text_path_matches_sklearn(small_backend: ClassicalBackend) -> None:
    texts = [normalize(t) for t in ["屏幕碎了!!", "请问几天发货", "", "😡", "refund please",
                                    "退款" * 300, "a"]]
    # Padded past COMPILED_BATCH so that the batch is scored by sklearn itself.
    batch = small_backend.score([*texts, *["padding"] * COMPILED_BATCH])[:len(texts)]
    for text, expected in zip(texts, batch, strict=True):
        single = small_backend.score([text])[0]
        assert single.keys() == expected.keys() == set(TASKS)
        for task, probs in expected.items():
            assert single[task].keys() == probs.keys()
            for label, p in probs.items():
                assert single[task][label] == pytest.approx(p, abs=1e-5)


def test_save_and_load_round_trip(small_backend: ClassicalBackend, tmp_path: Path) -> None:
    small_backend.save(tmp_path)
    assert (tmp_path / MODEL_FILE).exists()
    loaded = ClassicalBackend.load(tmp_path)
    text = normalize("快递员态度很差")
    assert loaded.score([text]) == small_backend.score([text])


def test_model_is_cached_and_retrained_when_the_corpus_changes(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    lines = []
    for ex in load()[::10]:
        if ex.intent is None:
            continue
        lines.append(json.dumps({"text": ex.text, "intent": ex.intent, "category": ex.category,
                                 "subcategory": ex.subcategory, "emotion": ex.emotion,
                                 "priority": ex.priority, "lang": ex.lang}, ensure_ascii=False))
    (corpus / "intake_a.jsonl").write_text("\n".join(lines), encoding="utf-8")
    config = ModelConfig(data_dir=tmp_path / "data", corpus_dir=corpus)
    load_classical(config)
    first = models.classical_dir(config)
    assert (first / MODEL_FILE).exists()
    before = corpus_fingerprint(corpus)
    (corpus / "intake_a.jsonl").write_text("\n".join(lines[:-1]), encoding="utf-8")
    assert corpus_fingerprint(corpus) != before
    load_classical(config)
    assert (models.classical_dir(config) / MODEL_FILE).exists()
    assert models.classical_dir(config) != first


def test_unknown_backend_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown nlp backend"):
        models.load_backend(ModelConfig(data_dir=tmp_path, backend="gpt"))
