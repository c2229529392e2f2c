"""Reranking and confidence: the probability that a candidate entry answers the question.

For each candidate of the first-stage ranking (BM25 + dense, fused), features say how much of
the question the entry covers and how much of the entry's question the customer's words cover,
how strong its BM25 and dense scores are next to the other candidates', and how much of the
question the knowledge base knows at all. A logistic regression over the standardised features
and their pairwise products turns them into a probability (the products let the model weigh one
signal by another: a high cosine means more when the words agree too); candidates are reordered
by it and the top one's probability is the answer's confidence.

It is fitted on data the project makes itself (evaluation.calibration_samples): the seed FAQ's
paraphrases asked with their own paraphrases held out, asked against the bare questions (as an
imported FAQ without paraphrases), and out-of-scope questions nothing answers. Never on the
public evaluation files.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt

CALIBRATION_FILE = Path(__file__).with_name("calibration.json")  # the default model (E5)
LEXICAL_CALIBRATION_FILE = Path(__file__).with_name("calibration-lexical.json")
MINILM_CALIBRATION_FILE = Path(__file__).with_name("calibration-minilm.json")
DEFAULT_THRESHOLD = 0.5
NEVER = 1.01  # a probability no candidate reaches
# Inverse regularisation strength of the fit: the seed's grouped cross-validation was flat over
# 0.03-0.3 with pairwise terms (docs/knowledge_base.md); the middle of that range.
FIT_C = 0.1
Z_CLIP = 3.0


@dataclass(frozen=True, slots=True)
class Features:
    """What the model sees of one (question, candidate entry) pair."""

    question_bm25: float  # best question-text BM25 / summed IDF of the query terms
    answer_bm25: float  # answer BM25 / summed IDF of the query terms
    coverage_question: float  # IDF share of query terms found in the entry's questions
    coverage_answer: float  # IDF share of query terms found in its answer
    coverage_asking: float  # IDF share of the asking clauses' terms found in its questions
    reverse_coverage: float  # best IDF share of one question text's terms found in the query
    relative_lexical: float  # fused lexical score / the best candidate's
    lexical_rank: float  # 1 / (1 + rank by lexical score)
    dense: float  # best cosine of its question texts (0 when dense is off for this query)
    dense_answer: float  # cosine of its answer (0 when off or answers are not embedded)
    relative_dense: float  # best of both cosines - the best other candidate's (0 when off)
    dense_rank: float  # 1 / (1 + rank by the best cosine) (0 when off)
    dense_on: float
    known: float  # IDF share of query terms the knowledge base has at all
    length: float  # log(1 + number of query terms)
    same_type: float  # the question and the entry ask the same kind of thing (time, place…)
    other_type: float  # both ask a known kind, and the kinds differ

    def vector(self) -> list[float]:
        return [float(getattr(self, f.name)) for f in fields(self)]

    @staticmethod
    def names() -> list[str]:
        return [f.name for f in fields(Features)]


def expand(z: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Rows of standardised features -> [features, their pairwise products (i <= j)].

    Values are clipped to +-Z_CLIP first: a feature that is nearly constant in the fitting data
    (a cosine that only English questions have) would otherwise reach z = 9 on a new question,
    and its square would swamp everything else.
    """
    z = np.clip(z, -Z_CLIP, Z_CLIP)
    i, j = np.triu_indices(z.shape[1])
    return np.hstack([z, z[:, i] * z[:, j]])


N_FEATURES = len(fields(Features))
N_TERMS = N_FEATURES + N_FEATURES * (N_FEATURES + 1) // 2


@dataclass(frozen=True, slots=True)
class Calibrator:
    """p = sigmoid(w . [z, z_i z_j] + b), z the standardised features; and the answer threshold.

    `weights` has N_TERMS values: the features' first, then their products'.
    """

    weights: tuple[float, ...]
    bias: float
    threshold: float = DEFAULT_THRESHOLD
    # The probability above which the top candidate is as good as settled (lexical model: the
    # dense half is skipped); NEVER when not fitted.
    decisive: float = NEVER
    mean: tuple[float, ...] = (0.0,) * N_FEATURES  # standardisation of the features
    scale: tuple[float, ...] = (1.0,) * N_FEATURES

    def __post_init__(self) -> None:
        if (len(self.weights), len(self.mean), len(self.scale)) != (
                N_TERMS, N_FEATURES, N_FEATURES):
            raise ValueError("calibration sizes do not match the features")

    def probabilities(self, candidates: Sequence[Features]) -> list[float]:
        """Each candidate's probability of being the right answer (one numpy pass)."""
        if not candidates:
            return []
        x = np.asarray([f.vector() for f in candidates], dtype=np.float64)
        z = expand((x - np.asarray(self.mean)) / np.asarray(self.scale))
        logits = np.clip(z @ np.asarray(self.weights) + self.bias, -40.0, 40.0)
        return [float(p) for p in 1.0 / (1.0 + np.exp(-logits))]

    def with_threshold(self, threshold: float) -> Calibrator:
        return replace(self, threshold=threshold)

    @classmethod
    def load(cls, path: Path = CALIBRATION_FILE) -> Calibrator:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("features") != Features.names():
            raise ValueError(f"{path}: fitted for other features; run `intakebot kb calibrate`")
        if "mean" not in data or len(data["weights"]) != N_TERMS:
            # A linear fit of an earlier version: its raw features were never standardised or
            # clipped, so it cannot be scored the way this model is.
            raise ValueError(f"{path}: a linear fit of an earlier version; run "
                             "`intakebot kb calibrate`")
        return cls(tuple(float(w) for w in data["weights"]), float(data["bias"]),
                   float(data.get("threshold", DEFAULT_THRESHOLD)),
                   float(data.get("decisive", NEVER)),
                   tuple(float(m) for m in data["mean"]),
                   tuple(float(s) for s in data["scale"]))

    def save(self, path: Path, report: dict[str, object] | None = None) -> None:
        data = {"features": Features.names(), **asdict(self), "report": report or {}}
        path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    @classmethod
    def uninformed(cls) -> Calibrator:
        """A rough prior for when no calibration file exists: coverage decides."""
        names = Features.names()
        weights = [0.0] * N_TERMS  # linear: no weight on the products
        weights[names.index("coverage_question")] = 3.0
        weights[names.index("reverse_coverage")] = 3.0
        weights[names.index("relative_lexical")] = 2.0
        return cls(tuple(weights), -5.0)


@dataclass(frozen=True, slots=True)
class Sample:
    """One asked question: its candidates' features and which candidate (if any) is right."""

    candidates: tuple[Features, ...]
    right: int | None


def _tops(calibrator: Calibrator, samples: Sequence[Sample]) -> list[tuple[float, bool]]:
    """(the top candidate's probability, whether it is right) of each sample with candidates."""
    tops: list[tuple[float, bool]] = []
    for s in samples:
        if not s.candidates:
            continue
        probs = calibrator.probabilities(s.candidates)
        best = max(range(len(probs)), key=probs.__getitem__)
        tops.append((probs[best], s.right == best))
    return tops


def top1_right(calibrator: Calibrator, samples: Sequence[Sample]) -> float:
    """The share of answerable samples whose reranked top candidate is the right one."""
    answerable = [s for s in samples if s.right is not None]
    if not answerable:
        return 0.0
    return sum(right for _, right in _tops(calibrator, answerable)) / len(answerable)


def fit(samples: Sequence[Sample], *, precision_target: float = 0.85, c: float = FIT_C,
        decisive_precision: float | None = None) -> tuple[Calibrator, dict[str, object]]:
    """Fit the pair model and pick the lowest threshold whose answers reach `precision_target`.

    Precision is that of the answers given: among the questions whose reranked top candidate
    scores at or above the threshold, the share where that candidate is right. With
    `decisive_precision`, `decisive` is the lowest probability reaching that precision.
    """
    from sklearn.linear_model import LogisticRegression

    x = np.asarray([f.vector() for s in samples for f in s.candidates], dtype=np.float64)
    y = np.asarray([1 if s.right == i else 0 for s in samples for i in range(len(s.candidates))])
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-9] = 1.0  # a feature constant in the data (dense_on of one model)
    model = LogisticRegression(C=c, max_iter=20_000)
    model.fit(expand((x - mean) / scale), y)
    calibrator = Calibrator(tuple(float(w) for w in model.coef_[0]), float(model.intercept_[0]),
                            mean=tuple(float(m) for m in mean),
                            scale=tuple(float(v) for v in scale))
    tops = _tops(calibrator, samples)
    p = np.asarray([t[0] for t in tops])
    ok = np.asarray([t[1] for t in tops])

    def lowest(target: float, default: float) -> float:
        for candidate in np.arange(0.05, 0.995, 0.01):
            chosen = p >= candidate
            if chosen.sum() >= 10 and ok[chosen].mean() >= target:
                return float(round(candidate, 2))
        return default

    threshold = lowest(precision_target, 0.5)
    decisive = NEVER if decisive_precision is None else lowest(decisive_precision, NEVER)
    calibrator = replace(calibrator, threshold=threshold, decisive=decisive)
    chosen = p >= threshold
    answerable = np.asarray([s.right is not None for s in samples if s.candidates])
    report: dict[str, object] = {
        "questions": len(tops),
        "pairs": len(y),
        "top1_right": round(float(ok.mean()), 3),
        "answerable_top1_right": round(float(ok[answerable].mean()), 3),
        "threshold_precision": round(float(ok[chosen].mean()) if chosen.sum() else 0.0, 3),
        "threshold_answered": round(float((chosen & ok)[answerable].mean()), 3),
        "out_of_scope_declined": round(float((~chosen)[~answerable].mean()), 3)
        if (~answerable).any() else None,
        "precision_target": precision_target,
    }
    if decisive_precision is not None:
        report["decisive_precision"] = decisive_precision
        report["decisive_share"] = round(float((p >= decisive).mean()), 3)
    return calibrator, report
