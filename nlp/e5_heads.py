"""Linear heads over E5 sentence vectors: category, subcategory and emotion.

The classical model reads surface n-grams; E5 reads meaning, so it recognises paraphrases our
written corpus never spelled out. Each head is a multinomial logistic regression on the 384-d
vector, stored as plain weights (JSON, ~0.2 MB) so that loading needs neither sklearn nor pickle.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from nlp.backends import Scores
from nlp.corpus import Example, for_task
from nlp.e5_cache import CACHE_NAME, VectorCache
from nlp.normalize import normalize

# The tasks E5 helps with (docs/nlp.md); intent and priority stay classical.
E5_TASKS = ("category", "subcategory", "emotion")
FORMAT_VERSION = 1
# Inverse regularisation of the logistic heads, chosen on corpus cross-validation.
_C = 4.0

Array = npt.NDArray[np.float32]


def corpus_fingerprint(examples: Sequence[Example]) -> str:
    """Identifies the training labels, so stale heads can be told apart from current ones."""
    h = hashlib.sha256(f"{CACHE_NAME}/{FORMAT_VERSION}/{_C}".encode())
    for ex in examples:
        h.update(json.dumps([ex.text, ex.category, ex.subcategory, ex.emotion],
                            ensure_ascii=False).encode())
    return h.hexdigest()[:16]


class E5Heads:
    """Per task: labels, weights (labels x 384) and biases; softmax probabilities."""

    def __init__(self, heads: dict[str, tuple[list[str], Array, Array]], fingerprint: str) -> None:
        self.heads = heads
        self.fingerprint = fingerprint

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(self.heads)

    def score(self, vectors: Array) -> list[Scores]:
        results: list[Scores] = [{} for _ in range(len(vectors))]
        for task, (labels, weights, bias) in self.heads.items():
            z = vectors @ weights.T + bias
            p = np.exp(z - z.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            for result, row in zip(results, p.tolist(), strict=True):
                result[task] = dict(zip(labels, row, strict=True))
        return results

    def to_json(self) -> dict[str, Any]:
        return {"version": FORMAT_VERSION, "encoder": CACHE_NAME, "fingerprint": self.fingerprint,
                "heads": {task: {"labels": labels,
                                 "weights": np.round(w, 5).tolist(),
                                 "bias": np.round(b, 5).tolist()}
                          for task, (labels, w, b) in self.heads.items()}}

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_json(), separators=(",", ":")), encoding="utf-8")
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> E5Heads:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("version") != FORMAT_VERSION or data.get("encoder") != CACHE_NAME:
            raise ValueError(f"{path} was written for another encoder or format; retrain it")
        heads = {task: (list(h["labels"]), np.asarray(h["weights"], dtype=np.float32),
                        np.asarray(h["bias"], dtype=np.float32))
                 for task, h in data["heads"].items()}
        return cls(heads, str(data["fingerprint"]))


def fit_e5_heads(examples: list[Example], cache: VectorCache,
                 progress: Callable[[int, int], None] | None = None) -> E5Heads:
    """Embed the corpus (cached) and fit one logistic head per E5 task."""
    from sklearn.linear_model import LogisticRegression

    texts = [normalize(ex.text) for ex in examples]
    vectors = cache.vectors(texts, progress)
    row = {ex.text: i for i, ex in enumerate(examples)}
    heads: dict[str, tuple[list[str], Array, Array]] = {}
    for task in E5_TASKS:
        raw, labels = for_task(examples, task)
        model = LogisticRegression(C=_C, max_iter=3000, class_weight="balanced")
        model.fit(vectors[[row[t] for t in raw]], np.asarray(labels))
        heads[task] = ([str(c) for c in model.classes_],
                       model.coef_.astype(np.float32), model.intercept_.astype(np.float32))
    return E5Heads(heads, corpus_fingerprint(examples))
