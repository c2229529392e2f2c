"""The main topic of a multi-topic message, read span by span.

The labelling rule (../shared/eval/README.md) takes the topic the customer is most upset about,
and the first mentioned when several weigh the same. A bag of n-grams over the whole text weighs
every topic by how many words it takes, so a review that complains about a broken screen and
then praises the courier at length reads as logistics. Here each span (two neighbouring clauses)
is scored on its own and weighted by how much of a complaint it is, earlier spans a little more;
the result is blended with the whole-text view, which still sees what no single span says
(docs/nlp.md).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

from nlp.backends import Scores, TriageBackend
from nlp.category_view import category_scores

# Clause boundaries: sentence and clause punctuation (after NFKC, which also makes "…" "..."),
# full stops but not decimal points, tildes, line breaks, and spaces, which customers type
# instead of commas, except between two English words.
_HAN: Final = r"[\u3400-\u9fff]"
_BOUNDARY: Final = re.compile(
    r"(?:[。！？!?；;，,、\n~]|\.(?!\d)|(?<![a-z0-9])\s|\s(?![a-z0-9]))+")
_CONTENT: Final = re.compile(rf"{_HAN}|[a-z0-9]+")
MIN_CONTENT: Final = 2  # characters or Latin words a clause needs to be scored on its own
MAX_CLAUSES: Final = 12  # a long story's later spans weigh 0.7**11 < 0.02 anyway
TOPIC_TASKS: Final = ("category", "subcategory")


def clauses(text: str) -> list[str]:
    """The clauses of a normalised text that carry content, in order (at most MAX_CLAUSES)."""
    parts = [p.strip() for p in _BOUNDARY.split(text) if len(_CONTENT.findall(p)) >= MIN_CONTENT]
    return parts[:MAX_CLAUSES]


def spans(text: str) -> list[str]:
    """Each pair of adjacent clauses: a lone clause ("还没到", "差评") often needs its neighbour
    to say what it is about. One span or none: the whole text already is the view."""
    parts = clauses(text)
    return [",".join(parts[i:i + 2]) for i in range(len(parts) - 1)]


def complaint_weight(scores: Scores) -> float:
    """How much a span complains about some topic: P(complaint) x P(negative) x P(a category)."""
    emotion = scores.get("emotion", {})
    negative = 1.0 - emotion.get("neutral", 0.0) - emotion.get("satisfaction", 0.0)
    topical = 1.0 - scores.get("category", {}).get("none", 0.0)
    return scores.get("intent", {}).get("complaint", 0.0) * max(negative, 0.0) * topical


class MainTopicBackend(TriageBackend):
    """Wraps a backend: when its category is unsure, category and subcategory are blended with
    the complaint-weighted view of the text's spans."""

    name = "main-topic"

    def __init__(self, inner: TriageBackend, clause_scorer: TriageBackend | None = None,
                 weight: float = 0.4, decay: float = 0.7, gap: float = 0.4) -> None:
        self.inner = inner
        self.clause_scorer = clause_scorer or inner
        self.weight = weight  # the span view's share of the blended topic probabilities
        self.decay = decay  # each later span weighs this much of the one before
        self.gap = gap  # spans are read when the two best categories are closer than this

    @property
    def tasks(self) -> tuple[str, ...]:
        return self.inner.tasks

    def _score(self, texts: list[str]) -> list[Scores]:
        results = self.inner.score(texts)
        split = [spans(t) if self._unsure(s) else [] for t, s in zip(texts, results, strict=True)]
        flat = [c for parts in split for c in parts if len(parts) > 1]
        if not flat:
            return results
        per_clause = iter(self.clause_scorer.score(flat))
        for i, parts in enumerate(split):
            if len(parts) > 1:
                results[i] = self._blend(results[i], [next(per_clause) for _ in parts])
        return results

    def _unsure(self, scores: Scores) -> bool:
        if "category" not in scores:
            return False
        top = sorted(category_scores(scores["category"], scores.get("subcategory", {})).values(),
                     reverse=True)
        return top[0] - top[1] < self.gap

    def _blend(self, whole: Scores, parts: list[Scores]) -> Scores:
        weights = [complaint_weight(s) * self.decay ** k for k, s in enumerate(parts)]
        total = sum(weights)
        if total <= 0.0:
            return whole
        blended = dict(whole)
        for task in TOPIC_TASKS:
            if task not in whole:
                continue
            view = {label: sum(w * s[task].get(label, 0.0) for w, s in zip(weights, parts,
                                                                              strict=True)) / total
                    for label in whole[task]}
            blended[task] = {label: (1 - self.weight) * p + self.weight * view[label]
                             for label, p in whole[task].items()}
        return blended

    def save(self, directory: Path) -> None:
        self.inner.save(directory)
