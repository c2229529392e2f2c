"""BM25 over an entry's questions (question + paraphrases) and, at a lower weight, its answer."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

Scores = npt.NDArray[np.float32]


def _bm25(docs: Sequence[Sequence[str]]) -> object:
    import bm25s

    index = bm25s.BM25(k1=1.2, b=0.75)
    # An empty document would make bm25s drop the row; a placeholder keeps rows aligned.
    index.index([list(d) or ["\x00"] for d in docs], show_progress=False)
    return index


class LexicalIndex:
    """Per-entry BM25 scores of two fields, plus the term sets the ranking features need.

    Args:
        questions: for each entry, the term lists of its question and paraphrases.
        answers: for each entry, the term list of its answer(s).
        answer_weight: how much the answer counts next to the best question text.
    """

    def __init__(self, questions: Sequence[Sequence[Sequence[str]]],
                 answers: Sequence[Sequence[str]], *, answer_weight: float = 0.3,
                 types: Sequence[frozenset[str]] | None = None) -> None:
        self.n_entries = len(questions)
        self.answer_weight = answer_weight
        # The question types (analysis.question_types) each entry's questions ask.
        self.types: list[frozenset[str]] = (list(types) if types is not None
                                            else [frozenset()] * self.n_entries)
        docs: list[Sequence[str]] = []
        starts: list[int] = []
        for texts in questions:
            starts.append(len(docs))
            docs.extend(texts or [()])
        self._starts = np.asarray(starts, dtype=np.int64)
        self._q = _bm25(docs) if docs else None
        self._a = _bm25(answers) if answers else None
        df: Counter[str] = Counter()
        self.question_texts: list[tuple[frozenset[str], ...]] = []
        self.question_terms: list[frozenset[str]] = []
        self.answer_terms: list[frozenset[str]] = []
        for texts, answer in zip(questions, answers, strict=True):
            sets = tuple(frozenset(text) for text in texts)
            q_terms = frozenset().union(*sets) if sets else frozenset()
            self.question_texts.append(sets)
            self.question_terms.append(q_terms)
            self.answer_terms.append(frozenset(answer))
            df.update(q_terms | frozenset(answer))
        n = max(self.n_entries, 1)
        self._idf = {t: math.log(1 + (n - c + 0.5) / (c + 0.5)) for t, c in df.items()}
        self._unknown_idf = math.log(1 + (n + 0.5) / 0.5)
        # Each question text's total term weight, the denominator of its reverse coverage.
        self.question_text_weights: list[tuple[float, ...]] = [
            tuple(sum(self._idf[t] for t in text) for text in sets)
            for sets in self.question_texts]

    def idf(self, term: str) -> float:
        """Inverse entry frequency (over all fields); unknown terms get the highest value."""
        return self._idf.get(term, self._unknown_idf)

    def known(self, term: str) -> bool:
        return term in self._idf

    def field_scores(self, terms: Sequence[str]) -> tuple[Scores, Scores]:
        """BM25 per entry: (best question text, answer)."""
        zeros = np.zeros(self.n_entries, dtype=np.float32)
        if self._q is None or not terms:
            return zeros, zeros
        # A chat often repeats itself; a repeated term should not count twice.
        unique = list(dict.fromkeys(terms))
        doc_scores = np.asarray(self._q.get_scores(unique), dtype=np.float32)  # type: ignore[attr-defined]
        question = np.maximum.reduceat(doc_scores, self._starts).astype(np.float32)
        answer = (np.asarray(self._a.get_scores(unique), dtype=np.float32)  # type: ignore[attr-defined]
                  if self._a is not None else zeros)
        return question, answer

    def scores(self, terms: Sequence[str]) -> Scores:
        """One BM25 score per entry: best question text + answer_weight x answer."""
        question, answer = self.field_scores(terms)
        return (question + self.answer_weight * answer).astype(np.float32)
