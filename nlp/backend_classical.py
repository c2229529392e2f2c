"""The default backend: shared sparse features and one linear ensemble head per task.

Trained in seconds on the project's corpus (data/nlu/), so it is trained on first use and cached.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import joblib
import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import SGDClassifier
from sklearn.naive_bayes import MultinomialNB
from sklearn.pipeline import FeatureUnion

from nlp.backends import TASKS, Progress, Scores, TriageBackend
from nlp.corpus import Example, for_task
from nlp.features import build_vectorizer
from nlp.normalize import normalize

MODEL_FILE = "classical.joblib"
# Up to this many texts are scored one by one on the compiled path; sklearn's batch path pays
# off only for larger batches (measured: 3 texts 1.7 ms vs 44 ms, 64 texts about even).
COMPILED_BATCH = 64
FORMAT_VERSION = 2

# Regularisation, chosen by cross-validation on the corpus (`intakebot nlp train`).
_ALPHA = 2e-5
_NB_ALPHA = 0.1
# Share of the logistic model in the ensemble; the rest is naive Bayes, whose different bias
# (counts, not margins) transfers better from our written corpus to real customer text.
_LOGISTIC_WEIGHT = 0.5


class EnsembleHead(BaseEstimator, ClassifierMixin):  # type: ignore[misc]
    """Averaged probabilities of logistic regression (averaged SGD) and multinomial naive Bayes.

    Both are linear in the features, which keeps single-text scoring a few dot products.
    """

    def __init__(self, logistic_weight: float = _LOGISTIC_WEIGHT) -> None:
        self.logistic_weight = logistic_weight

    def fit(self, x: Any, y: Any) -> EnsembleHead:
        self.logistic_ = SGDClassifier(loss="log_loss", alpha=_ALPHA, max_iter=40, tol=None,
                                       average=True, class_weight="balanced",
                                       random_state=0).fit(x, y)
        self.bayes_ = MultinomialNB(alpha=_NB_ALPHA).fit(x, y)
        self.classes_ = self.logistic_.classes_
        return self

    def predict_proba(self, x: Any) -> np.ndarray:
        w = self.logistic_weight
        return np.asarray(w * self.logistic_.predict_proba(x)
                          + (1 - w) * self.bayes_.predict_proba(x))

    def predict(self, x: Any) -> np.ndarray:
        return np.asarray(self.classes_[self.predict_proba(x).argmax(axis=1)])


def make_head(task: str) -> EnsembleHead:
    return EnsembleHead()


class _CompiledScorer:
    """The fitted features and heads as plain lookups, for one text at a time.

    sklearn's per-call overhead (input validation, sparse matrix assembly) is ~3 ms for five heads,
    far above the work itself; this computes the same numbers (tests compare them) in well under
    1 ms using the vectorizers' own analyzers and the heads' own weights.
    """

    def __init__(self, vectorizer: FeatureUnion, heads: dict[str, EnsembleHead]) -> None:
        self._tfidf: list[tuple[Any, dict[str, int], np.ndarray, int]] = []
        offset = 0
        for _, part in vectorizer.transformer_list:
            if isinstance(part, TfidfVectorizer):
                self._tfidf.append((part.build_analyzer(), part.vocabulary_,
                                    part.idf_.astype(np.float32), offset))
                offset += len(part.vocabulary_)
            else:
                self._dense = (part, offset)
        # Every head's logistic and naive-Bayes weights side by side in one matrix, so a text
        # costs one gather of its feature rows and one product, not two per head.
        blocks: list[np.ndarray] = []
        biases: list[np.ndarray] = []
        self._heads: list[tuple[str, list[str], float, slice, slice]] = []
        start = 0
        for task, head in heads.items():
            for weights, bias in ((head.logistic_.coef_, head.logistic_.intercept_),
                                  (head.bayes_.feature_log_prob_, head.bayes_.class_log_prior_)):
                blocks.append(weights.T)
                biases.append(bias)
            logistic = slice(start, start + blocks[-2].shape[1])
            bayes = slice(logistic.stop, logistic.stop + blocks[-1].shape[1])
            start = bayes.stop
            self._heads.append((task, [str(c) for c in head.classes_], head.logistic_weight,
                                logistic, bayes))
        self._weights = np.ascontiguousarray(np.hstack(blocks), dtype=np.float32)
        self._bias = np.concatenate(biases).astype(np.float32)

    def score(self, text: str) -> Scores:
        index: list[int] = []
        values: list[float] = []
        for analyze, vocabulary, idf, offset in self._tfidf:
            counts: dict[int, int] = {}
            for gram in analyze(text):
                j = vocabulary.get(gram)
                if j is not None:
                    counts[j] = counts.get(j, 0) + 1
            if not counts:
                continue
            cols = np.fromiter(counts, dtype=np.intp, count=len(counts))
            tf = np.fromiter(counts.values(), dtype=np.float32, count=len(counts))
            weights = (1.0 + np.log(tf)) * idf[cols]  # sublinear tf, as fitted
            weights /= np.linalg.norm(weights)
            index.extend((cols + offset).tolist())
            values.extend(weights.tolist())
        cue_part, cue_offset = self._dense
        dense = np.asarray(cue_part.row(text))
        nz = np.flatnonzero(dense)
        index.extend((nz + cue_offset).tolist())
        values.extend(dense[nz].tolist())
        cols = np.asarray(index, dtype=np.intp)
        vals = np.asarray(values, dtype=np.float32)
        out = vals @ self._weights[cols] + self._bias
        result: Scores = {}
        for task, labels, w, logistic_cols, bayes_cols in self._heads:
            z = out[logistic_cols]
            p = 1.0 / (1.0 + np.exp(-np.clip(z, -30.0, 30.0)))
            # Binary heads keep one weight row, P(second class); multi-class heads are
            # one-vs-rest, normalised as sklearn's predict_proba does.
            logistic = np.array([1.0 - p[0], p[0]]) if len(labels) == 2 else p / p.sum()
            joint = out[bayes_cols]
            bayes = np.exp(joint - joint.max())
            probs = w * logistic + (1 - w) * bayes / bayes.sum()
            result[task] = dict(zip(labels, probs.tolist(), strict=True))
        return result


class ClassicalBackend(TriageBackend):
    """Character n-gram + jieba word TF-IDF + cue counts, logistic regression per task."""

    name = "classical"

    def __init__(self, vectorizer: FeatureUnion, heads: dict[str, EnsembleHead]) -> None:
        self._vectorizer = vectorizer
        self._heads = heads
        self._compiled = _CompiledScorer(vectorizer, heads)

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(t for t in TASKS if t in self._heads)

    def _score(self, texts: list[str]) -> list[Scores]:
        if len(texts) <= COMPILED_BATCH:
            return [self._compiled.score(t) for t in texts]
        features = self._vectorizer.transform(texts)
        per_task = {
            task: (head.classes_, head.predict_proba(features))
            for task, head in self._heads.items()
        }
        results: list[Scores] = []
        for i in range(len(texts)):
            results.append({
                task: dict(zip(map(str, labels), map(float, probs[i]), strict=True))
                for task, (labels, probs) in per_task.items()
            })
        return results

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / (MODEL_FILE + ".tmp")
        joblib.dump({"version": FORMAT_VERSION, "vectorizer": self._vectorizer,
                     "heads": self._heads}, tmp, compress=3)
        tmp.replace(directory / MODEL_FILE)  # readers never see half a file

    @classmethod
    def load(cls, directory: Path) -> ClassicalBackend:
        data: dict[str, Any] = joblib.load(directory / MODEL_FILE)
        if data.get("version") != FORMAT_VERSION:
            raise ValueError(f"{directory / MODEL_FILE} has an unknown format; retrain it")
        return cls(data["vectorizer"], data["heads"])


def fit_heads(
    examples: list[Example], tasks: tuple[str, ...] = TASKS, progress: Progress | None = None
) -> ClassicalBackend:
    """Fit the shared features on every text once, then one head per task on its rows."""
    row = {ex.text: i for i, ex in enumerate(examples)}
    total = len(tasks) + 1
    if progress:
        progress("features", 0, total)
    vectorizer = build_vectorizer()
    features = vectorizer.fit_transform([normalize(ex.text) for ex in examples]).tocsr()
    heads: dict[str, EnsembleHead] = {}
    for n, task in enumerate(tasks, 1):
        if progress:
            progress(task, n, total)
        raw, labels = for_task(examples, task)
        heads[task] = make_head(task).fit(features[[row[t] for t in raw]], np.asarray(labels))
    if progress:
        progress("done", total, total)
    return ClassicalBackend(vectorizer, heads)
