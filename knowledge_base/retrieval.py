"""Hybrid retrieval over the published entries: BM25 + dense embeddings, fused by reciprocal rank.

The searcher holds an immutable IndexSnapshot; rebuilding makes a new snapshot and swaps one
reference, so a search in flight finishes on the snapshot it started with and no lock is needed.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from knowledge_base.analysis import Analyzer
from knowledge_base.confidence import Calibrator, Features
from knowledge_base.dense import Embedder
from knowledge_base.entries import PublishedEntry
from knowledge_base.lexical import LexicalIndex
from nlp.labels import Lang
from nlp.normalize import detect_lang

MAX_QUERY_CHARS = 2_000
QUERY_CACHE_SIZE = 2_048


@dataclass(frozen=True, slots=True)
class RetrievalConfig:
    """Knobs of the ranking; the defaults are what docs/knowledge_base.md measured best."""

    answer_weight: float = 0.3
    rrf_k: int = 10
    lexical_weight: float = 1.0
    dense_weight: float = 1.0
    candidates: int = 50
    rerank: int = 20


@dataclass(frozen=True, slots=True)
class SearchHit:
    """One ranked entry."""

    id: str
    version: int
    score: float
    question: str
    answer: str
    entry: PublishedEntry

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "score": round(self.score, 4), "question": self.question,
                "answer": self.answer}


@dataclass(frozen=True, slots=True)
class SearchResult:
    """The ranked entries, and whether the top one is a confident answer."""

    text: str
    hits: tuple[SearchHit, ...]
    confidence: float
    confident: bool
    features: Features | None = None

    @property
    def best(self) -> SearchHit | None:
        return self.hits[0] if self.hits else None

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "results": [h.to_dict() for h in self.hits],
                "confident": self.confident, "confidence": round(self.confidence, 4)}


@dataclass(frozen=True, slots=True)
class IndexSnapshot:
    """Everything a search needs, built once from the published entries and never changed."""

    entries: tuple[PublishedEntry, ...]
    lexical: LexicalIndex
    dense: npt.NDArray[np.float32] | None  # one row per embedded text
    dense_owner: npt.NDArray[np.int64]  # entry index of each embedded text (grouped by entry)
    dense_starts: npt.NDArray[np.int64]  # first text of each entry that has any
    built_at: float = field(default_factory=time.time)
    build_seconds: float = 0.0

    @property
    def size(self) -> int:
        return len(self.entries)


def entry_questions(entry: PublishedEntry) -> list[str]:
    return [entry.content.question, *entry.content.paraphrases]


def entry_answer_text(entry: PublishedEntry) -> str:
    content = entry.content
    return " ".join(t for t in (content.answer, content.answer_en) if t)


def build_snapshot(
    entries: Sequence[PublishedEntry],
    analyzer: Analyzer,
    embedder: Embedder | None,
    config: RetrievalConfig,
    *,
    progress: Callable[[int], None] | None = None,
    vectors: dict[str, npt.NDArray[np.float32]] | None = None,
) -> IndexSnapshot:
    """Analyse and embed the entries (`progress(n)` is called as entries are analysed).

    `vectors` caches embeddings by text across builds: a publish re-embeds only new texts. It
    is updated in place to hold exactly the texts of this build.
    """
    started = time.perf_counter()
    questions: list[list[list[str]]] = []
    answers: list[list[str]] = []
    types: list[frozenset[str]] = []
    for entry in entries:
        analysed = [analyzer.analyse(q) for q in entry_questions(entry)]
        questions.append([list(a.terms) for a in analysed])
        # An entry answers every kind of thing its question and paraphrases ask.
        types.append(frozenset().union(*(a.types for a in analysed)))
        answers.append(list(analyzer.analyse(entry_answer_text(entry)).terms))
        if progress is not None:
            progress(1)
    lexical = LexicalIndex(questions, answers, answer_weight=config.answer_weight, types=types)
    dense = None
    owners: list[int] = []
    if embedder is not None and config.dense_weight > 0:
        texts: list[str] = []
        for i, entry in enumerate(entries):
            candidates = [*entry_questions(entry)]
            if entry.content.answer_en:
                candidates.append(entry.content.answer_en)
            for text in candidates:
                # A model's vectors for a language it does not serve are noise: leave them out.
                if embedder.serves(detect_lang(text)):
                    texts.append(text)
                    owners.append(i)
        cache = vectors if vectors is not None else {}
        missing = list(dict.fromkeys(t for t in texts if t not in cache))
        if missing:
            cache.update(zip(missing, embedder.encode(missing), strict=True))
        if texts:
            dense = np.stack([cache[t] for t in texts]).astype(np.float32)
        if vectors is not None:
            keep = set(texts)
            for stale in [t for t in vectors if t not in keep]:
                del vectors[stale]
    owner_array = np.asarray(owners, dtype=np.int64)
    return IndexSnapshot(
        entries=tuple(entries), lexical=lexical, dense=dense,
        dense_owner=owner_array,
        dense_starts=np.flatnonzero(np.r_[True, owner_array[1:] != owner_array[:-1]])
        if owner_array.size else owner_array,
        build_seconds=time.perf_counter() - started,
    )


def _ranks(scores: npt.NDArray[np.float32], limit: int) -> list[int]:
    positive = np.flatnonzero(scores > 0)
    if positive.size == 0:
        return []
    order = positive[np.argsort(-scores[positive], kind="stable")]
    return [int(i) for i in order[:limit]]


class Searcher:
    """Answers questions from the current snapshot; `install` swaps in a new one atomically."""

    def __init__(self, analyzer: Analyzer, embedder: Embedder | None,
                 calibrator: Calibrator, config: RetrievalConfig | None = None) -> None:
        self.analyzer = analyzer
        self.embedder = embedder
        self.calibrator = calibrator
        self.config = config or RetrievalConfig()
        self._vectors: dict[str, npt.NDArray[np.float32]] = {}
        self._vectors_lock = threading.Lock()  # builds may run in several threads at once
        self._query_cache: dict[str, npt.NDArray[np.float32]] = {}
        self._query_lock = threading.Lock()
        self._snapshot = build_snapshot((), analyzer, None, self.config)

    @property
    def snapshot(self) -> IndexSnapshot:
        return self._snapshot

    def build(self, entries: Sequence[PublishedEntry], *,
              progress: Callable[[int], None] | None = None, dense: bool = True
              ) -> IndexSnapshot:
        """A new snapshot of `entries` (not installed); dense=False skips the embeddings."""
        if not dense or self.embedder is None:
            return build_snapshot(entries, self.analyzer, None, self.config, progress=progress)
        with self._vectors_lock:
            return build_snapshot(entries, self.analyzer, self.embedder, self.config,
                                  progress=progress, vectors=self._vectors)

    def install(self, snapshot: IndexSnapshot) -> None:
        self._snapshot = snapshot  # one reference assignment: atomic for readers

    def rebuild(self, entries: Sequence[PublishedEntry]) -> IndexSnapshot:
        snapshot = self.build(entries)
        self.install(snapshot)
        return snapshot

    def _query_vector(self, text: str) -> npt.NDArray[np.float32]:
        # Customers ask the same short things over and over ("转人工", "where is my parcel"):
        # remembering recent query vectors saves the model call, the dearest step of a search.
        with self._query_lock:
            vector = self._query_cache.get(text)
        if vector is None:
            assert self.embedder is not None
            vector = self.embedder.encode([text])[0]
            with self._query_lock:
                if len(self._query_cache) >= QUERY_CACHE_SIZE:
                    self._query_cache.pop(next(iter(self._query_cache)))
                self._query_cache[text] = vector
        return vector

    def search(self, text: str, *, top_k: int = 5) -> SearchResult:
        """Rank the published entries for a customer's question."""
        return self.search_in(self._snapshot, text, top_k=top_k)

    def search_in(self, snapshot: IndexSnapshot, text: str, *, top_k: int = 5) -> SearchResult:
        """Rank the entries of `snapshot`: fused first stage, then the calibrated reranker."""
        candidates = self.candidates(snapshot, text)
        if not candidates:
            return SearchResult(text[:MAX_QUERY_CHARS], (), 0.0, False)
        scored = sorted(
            ((self.calibrator.probability(f), order, i, f)
             for order, (i, f) in enumerate(candidates)),
            key=lambda item: (-item[0], item[1]),
        )
        hits = tuple(
            SearchHit(id=snapshot.entries[i].id, version=snapshot.entries[i].version,
                      score=p, question=snapshot.entries[i].content.question,
                      answer=snapshot.entries[i].content.answer, entry=snapshot.entries[i])
            for p, _, i, _ in scored[:top_k]
        )
        confidence = scored[0][0]
        return SearchResult(text[:MAX_QUERY_CHARS], hits, confidence,
                            confidence >= self.calibrator.threshold, scored[0][3])

    def candidates(self, snapshot: IndexSnapshot, text: str) -> list[tuple[int, Features]]:
        """The first stage: entries fused from BM25 and dense ranks, with their features."""
        text = text[:MAX_QUERY_CHARS]
        if snapshot.size == 0 or not text.strip():
            return []
        config = self.config
        analysed = self.analyzer.analyse(text)
        terms = list(dict.fromkeys(analysed.terms))
        lexical = snapshot.lexical
        q_scores, a_scores = lexical.field_scores(terms)
        lex_scores = q_scores + lexical.answer_weight * a_scores
        lex_rank = _ranks(lex_scores, config.candidates)

        lang = detect_lang(text)
        dense_on = (self.embedder is not None and snapshot.dense is not None
                    and config.dense_weight > 0 and self.embedder.serves(lang))
        dense_scores = np.full(snapshot.size, -1.0, dtype=np.float32)
        dense_rank: list[int] = []
        if dense_on:
            assert self.embedder is not None and snapshot.dense is not None
            query = self._query_vector(text)
            # Texts are grouped by entry: a segmented max (np.maximum.at is ~20x slower).
            starts = snapshot.dense_starts
            dense_scores[snapshot.dense_owner[starts]] = np.maximum.reduceat(
                snapshot.dense @ query, starts)
            dense_rank = _ranks(dense_scores + 1.0, config.candidates)  # cosine -1..1 -> 0..2

        fused: dict[int, float] = {}
        for rank, i in enumerate(lex_rank):
            fused[i] = fused.get(i, 0.0) + config.lexical_weight / (config.rrf_k + rank + 1)
        for rank, i in enumerate(dense_rank):
            fused[i] = fused.get(i, 0.0) + config.dense_weight / (config.rrf_k + rank + 1)
        order = sorted(fused, key=lambda i: (-fused[i], -float(lex_scores[i])))
        order = order[:config.rerank]
        if not order:
            return []

        idf = {t: lexical.idf(t) for t in terms}
        total = sum(idf.values()) or 1.0
        known = sum(w for t, w in idf.items() if lexical.known(t)) / total
        length = math.log1p(len(terms))
        lex_best = max(float(lex_scores[i]) for i in order) or 1.0
        dense_best = max(float(dense_scores[i]) for i in order) if dense_on else 0.0
        lex_position = {i: r for r, i in enumerate(lex_rank)}
        query_terms = set(terms)
        result: list[tuple[int, Features]] = []
        for i in order:
            reverse = 0.0
            for text_terms in lexical.question_texts[i]:
                weight = sum(lexical.idf(t) for t in text_terms)
                if weight > 0:
                    hit = sum(lexical.idf(t) for t in text_terms if t in query_terms)
                    reverse = max(reverse, hit / weight)
            result.append((i, Features(
                question_bm25=float(q_scores[i]) / total,
                answer_bm25=float(a_scores[i]) / total,
                coverage_question=sum(w for t, w in idf.items()
                                      if t in lexical.question_terms[i]) / total,
                coverage_answer=sum(w for t, w in idf.items()
                                    if t in lexical.answer_terms[i]) / total,
                reverse_coverage=reverse,
                relative_lexical=float(lex_scores[i]) / lex_best,
                lexical_rank=1.0 / (1 + lex_position.get(i, config.candidates)),
                dense=float(dense_scores[i]) if dense_on else 0.0,
                relative_dense=float(dense_scores[i]) - dense_best if dense_on else 0.0,
                dense_on=1.0 if dense_on else 0.0,
                known=known,
                length=length,
                same_type=1.0 if analysed.types & lexical.types[i] else 0.0,
                other_type=1.0 if analysed.types and lexical.types[i]
                and not analysed.types & lexical.types[i] else 0.0,
            )))
        return result

    def search_many(self, texts: Iterable[str], *, top_k: int = 5) -> list[SearchResult]:
        snapshot = self._snapshot
        return [self.search_in(snapshot, t, top_k=top_k) for t in texts]


def reply_language(lang: Lang) -> str:
    """Which answer variant suits a customer writing in `lang`."""
    return {Lang.EN: "en", Lang.ZH_HANT: "zh-Hant"}.get(lang, "zh-Hans")
