"""Feature extraction of the classical backend: character n-grams, jieba words, cue counts."""

from __future__ import annotations

import math
import re
from functools import lru_cache
from typing import Any

import numpy as np
from scipy import sparse
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import FeatureUnion

from nlp.cues import cues

_PUNCT_OR_SPACE = re.compile(r"^[\s\W_]+$")


@lru_cache(maxsize=1)
def _jieba() -> Any:
    import logging

    import jieba

    jieba.setLogLevel(logging.WARNING)  # its start-up chatter is not ours to print
    jieba.initialize()
    return jieba


def words(text: str) -> list[str]:
    """jieba words of a normalised text, punctuation and spaces dropped."""
    return [w for w in _jieba().lcut(text) if not _PUNCT_OR_SPACE.match(w)]


class CueCounts(BaseEstimator, TransformerMixin):  # type: ignore[misc]
    """Dense features from the cue lexicon: counts per emotion and priority cue, punctuation."""

    def fit(self, texts: list[str], y: object = None) -> CueCounts:
        return self

    def transform(self, texts: list[str]) -> sparse.csr_matrix:
        return sparse.csr_matrix(np.asarray([self.row(t) for t in texts], dtype=np.float64))

    @staticmethod
    def row(text: str) -> list[float]:
        """The features of one text (the single-text scorer calls this directly)."""
        c = cues()
        sets = [*c.emotion.values(), c.negation, c.intensifier, c.request_human,
                *c.priority.values()]
        return [math.log1p(s.count(text)) for s in sets] + [
            math.log1p(text.count("!")),
            math.log1p(text.count("?")),
            math.log1p(text.count("...") + text.count("。。")),
            math.log1p(len(text)) / 6.0,
        ]


def build_vectorizer() -> FeatureUnion:
    """The feature union every classical head shares (fitted once on all training texts)."""
    return FeatureUnion([
        ("chars", TfidfVectorizer(analyzer="char", ngram_range=(1, 3), min_df=2,
                                  sublinear_tf=True, max_features=120_000)),
        ("words", TfidfVectorizer(tokenizer=words, token_pattern=None, lowercase=False,
                                  ngram_range=(1, 2), min_df=2, sublinear_tf=True,
                                  max_features=80_000)),
        ("cues", CueCounts()),
    ])
