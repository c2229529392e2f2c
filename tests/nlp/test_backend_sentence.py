"""The sentence-transformers backend, trained for real on the corpus's English examples."""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
from sentence_transformers import SentenceTransformer
from sklearn.model_selection import train_test_split

from nlp import corpus
from nlp.backend_sentence import (
    SentenceBackend,
    SentenceModelError,
    default_model_path,
    load_encoder,
    train_sentence,
)
from nlp.backends import Scores
from nlp.normalize import normalize

# Embedding time grows with the corpus; a bounded stratified sample keeps the test near 10 s.
MAX_EXAMPLES = 600
TASKS = ("intent", "category")
ROUND_TRIP = 16  # texts re-scored after a reload; scoring is what costs time here


@dataclass(frozen=True, slots=True)
class Trained:
    backend: SentenceBackend
    out_dir: Path
    train: list[corpus.Example]
    test: list[corpus.Example]
    test_texts: list[str]
    test_scores: list[Scores]
    progress: list[tuple[str, int, int]]


@pytest.fixture(scope="module")
def encoder(offline: None) -> SentenceTransformer:
    """The packaged all-MiniLM-L6-v2, loaded once for the module (it takes seconds)."""
    return load_encoder(device="cpu")


def _english() -> list[corpus.Example]:
    english = [ex for ex in corpus.load() if ex.lang == "en" and ex.intent is not None]
    if len(english) <= MAX_EXAMPLES:
        return english
    keep, _ = train_test_split(
        english, train_size=MAX_EXAMPLES, random_state=0, stratify=[ex.intent for ex in english]
    )
    return list(keep)


@pytest.fixture(scope="module")
def trained(encoder: SentenceTransformer, tmp_path_factory: pytest.TempPathFactory) -> Trained:
    english = _english()
    train, test = train_test_split(
        english, test_size=0.2, random_state=0, stratify=[ex.label("category") for ex in english]
    )
    out_dir = tmp_path_factory.mktemp("sentence")
    calls: list[tuple[str, int, int]] = []
    backend = train_sentence(
        train, None, out_dir, tasks=TASKS, encoder=encoder,
        progress=lambda stage, done, total: calls.append((stage, done, total)),
    )
    texts = [normalize(ex.text) for ex in test]
    return Trained(backend, out_dir, train, test, texts, backend.score(texts), calls)


def _accuracy_and_majority(trained: Trained, task: str) -> tuple[float, float]:
    gold = [ex.label(task) for ex in trained.test]
    predicted = [max(s[task], key=s[task].__getitem__) for s in trained.test_scores]
    majority, _ = Counter(ex.label(task) for ex in trained.train).most_common(1)[0]
    accuracy = sum(p == g for p, g in zip(predicted, gold, strict=True)) / len(gold)
    return accuracy, sum(g == majority for g in gold) / len(gold)


def test_there_is_enough_english_to_measure(trained: Trained) -> None:
    assert len(trained.test) >= 40


# Measured on the 520 English examples of the corpus as it stood (4 random 80/20 splits): intent
# 0.87-0.91 against a majority rate of 0.57-0.71 (complaints dominate), category ("none"
# included, 6 classes) 0.77-0.84 against 0.27. The corpus is still growing, so the bars leave
# room while still failing a head that learnt nothing.
def test_intent_head_beats_the_majority_class_on_held_out_examples(trained: Trained) -> None:
    accuracy, majority = _accuracy_and_majority(trained, "intent")
    assert accuracy >= 0.75
    assert accuracy >= majority + 0.1


def test_category_head_beats_the_majority_class_on_held_out_examples(trained: Trained) -> None:
    accuracy, majority = _accuracy_and_majority(trained, "category")
    assert accuracy >= 0.6
    assert accuracy >= majority + 0.3


def test_scores_are_distributions_over_the_trained_labels(trained: Trained) -> None:
    assert trained.backend.tasks == TASKS
    for task in TASKS:
        labels = {ex.label(task) for ex in trained.train}
        assert set(trained.backend.labels(task)) == labels
        for s in trained.test_scores:
            assert set(s[task]) == labels
            assert all(0.0 <= p <= 1.0 for p in s[task].values())
            assert math.isclose(sum(s[task].values()), 1.0, abs_tol=1e-6)


def test_training_reports_embedding_then_each_head(trained: Trained) -> None:
    embed = [c for c in trained.progress if c[0] == "embed"]
    assert embed[-1][1] == embed[-1][2] > 0
    heads = [c for c in trained.progress if c[0] != "embed"]
    assert heads == [("intent", 1, 2), ("category", 2, 2)]


def test_manifest_names_the_packaged_model_and_the_labels(trained: Trained) -> None:
    manifest = json.loads((trained.out_dir / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["backend"] == "sentence-transformers"
    assert manifest["model_path"] is None  # the packaged model, wherever it is installed
    assert manifest["dimension"] == 384
    assert manifest["labels"] == {task: list(trained.backend.labels(task)) for task in TASKS}
    assert sorted(p.name for p in trained.out_dir.iterdir()) == [
        "category.joblib", "intent.joblib", "manifest.json"
    ]


def test_loading_with_the_shared_encoder_gives_identical_scores(
    trained: Trained, encoder: SentenceTransformer
) -> None:
    texts = trained.test_texts[:ROUND_TRIP]
    again = SentenceBackend.load(trained.out_dir, encoder=encoder)
    assert again.score(texts) == trained.backend.score(texts)


def test_loading_finds_the_model_from_the_manifest(trained: Trained) -> None:
    texts = trained.test_texts[:ROUND_TRIP]
    again = SentenceBackend.load(trained.out_dir)
    assert again.encoder is not trained.backend.encoder
    assert again.score(texts) == trained.backend.score(texts)


def test_save_round_trips(trained: Trained, encoder: SentenceTransformer, tmp_path: Path) -> None:
    texts = trained.test_texts[:ROUND_TRIP]
    trained.backend.save(tmp_path)
    again = SentenceBackend.load(tmp_path, encoder=encoder)
    assert again.score(texts) == trained.backend.score(texts)


def test_an_explicit_model_path_is_recorded(
    encoder: SentenceTransformer, tmp_path: Path
) -> None:
    train_sentence(
        _english()[:60], default_model_path(), tmp_path, tasks=("intent",), encoder=encoder
    )
    manifest = json.loads((tmp_path / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["model_path"] == str(default_model_path().resolve())


def test_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(SentenceModelError, match=str(missing)):
        SentenceBackend.load(missing)


def test_heads_for_another_embedding_size_are_refused(
    trained: Trained, encoder: SentenceTransformer, tmp_path: Path
) -> None:
    trained.backend.save(tmp_path)
    manifest_path = tmp_path / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    manifest["dimension"] = 768
    manifest_path.write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(SentenceModelError, match="768-dimensional"):
        SentenceBackend.load(tmp_path, encoder=encoder)


def test_a_missing_model_is_a_clear_error(offline: None, tmp_path: Path) -> None:
    with pytest.raises(SentenceModelError, match=str(tmp_path / "model")):
        load_encoder(tmp_path / "model")


def test_a_task_with_one_label_cannot_be_trained(
    encoder: SentenceTransformer, tmp_path: Path
) -> None:
    complaints = [ex for ex in _english() if ex.intent == "complaint"][:10]
    with pytest.raises(ValueError, match="fewer than two labels"):
        train_sentence(complaints, None, tmp_path, tasks=("intent",), encoder=encoder)
