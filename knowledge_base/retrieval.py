"""Hybrid retrieval over the published entries: BM25 + dense embeddings, fused by reciprocal rank.

The searcher holds an immutable IndexSnapshot; rebuilding makes a new snapshot and swaps one
reference, so a search in flight finishes on the snapshot it started with and no lock is needed.
"""

from __future__ import annotations

import heapq
import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from knowledge_base.analysis import Analysed, Analyzer
from knowledge_base.confidence import Calibrator, Features
from knowledge_base.dense import Embedder
from knowledge_base.entries import PublishedEntry
from knowledge_base.lexical import LexicalIndex
from nlp.labels import Lang
from nlp.normalize import detect_lang

MAX_QUERY_CHARS = 2_000
QUERY_CACHE_SIZE = 2_048
STALE_VECTORS_KEPT = 10_000  # passage vectors of old texts kept (1.5 KiB each with E5)
# What of a question the model reads: a query embedding costs ~1.4 ms a token (E5, one core),
# and the topic of a chat message is nearly always within its first sentences.
MAX_DENSE_CHARS = 64
_DENSE_NOISE = re.compile(
    r"\[[^\[\]]{1,16}\]|https?://\S+|www\.\S+|\d{5,}|[\w.%+-]+@[\w.-]+\.[a-zA-Z]{2,}"
    r"|(?:咨询)?(?:订单编号|订单号|订单金额|下单时间|商品名称)\s*[:：]")


@dataclass(frozen=True, slots=True)
class RetrievalConfig:
    """Knobs of the ranking; the defaults are what docs/knowledge_base.md measured best."""

    answer_weight: float = 0.3
    rrf_k: int = 10
    lexical_weight: float = 1.0
    dense_weight: float = 1.0
    candidates: int = 50
    rerank: int = 20
    # Skip the query embedding when the lexical stage alone is this sure (the lexical model's
    # `decisive` probability, fitted with the calibration); False = always embed.
    gate: bool = True
    embed_answer_chars: int = 150  # embed the answer's first N characters too (0 = not)


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
class DenseGroup:
    """Embedded texts of one kind (questions, or answers), grouped by entry."""

    vectors: npt.NDArray[np.float32]  # one row per embedded text
    owner: npt.NDArray[np.int64]  # entry index of each row (rows of an entry are adjacent)
    starts: npt.NDArray[np.int64]  # first row of each entry that has any

    @classmethod
    def of(cls, vectors: list[npt.NDArray[np.float32]], owners: list[int]) -> DenseGroup | None:
        if not vectors:
            return None
        owner = np.asarray(owners, dtype=np.int64)
        return cls(np.stack(vectors).astype(np.float32), owner,
                   np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]]))

    def scores(self, query: npt.NDArray[np.float32], size: int) -> npt.NDArray[np.float32]:
        """Each entry's best cosine with `query` (-1 for entries without a text here)."""
        scores = np.full(size, -1.0, dtype=np.float32)
        # A segmented max (np.maximum.at is ~20x slower).
        scores[self.owner[self.starts]] = np.maximum.reduceat(self.vectors @ query, self.starts)
        return scores


@dataclass(frozen=True, slots=True)
class IndexSnapshot:
    """Everything a search needs, built once from the published entries and never changed."""

    entries: tuple[PublishedEntry, ...]
    lexical: LexicalIndex
    dense: DenseGroup | None = None  # questions and paraphrases
    dense_answers: DenseGroup | None = None  # answers (their first characters)
    built_at: float = field(default_factory=time.time)
    build_seconds: float = 0.0

    @property
    def size(self) -> int:
        return len(self.entries)

    @property
    def has_dense(self) -> bool:
        return self.dense is not None or self.dense_answers is not None


def entry_questions(entry: PublishedEntry) -> list[str]:
    return [entry.content.question, *entry.content.paraphrases]


def entry_answer_text(entry: PublishedEntry) -> str:
    content = entry.content
    return " ".join(t for t in (content.answer, content.answer_en) if t)


def entry_dense_texts(entry: PublishedEntry, config: RetrievalConfig
                      ) -> tuple[list[str], list[str]]:
    """(question texts, answer texts) an entry is embedded with."""
    answers = [a[:config.embed_answer_chars] for a in (entry.content.answer,
                                                        entry.content.answer_en)
               if a and config.embed_answer_chars > 0]
    return entry_questions(entry), answers


def dense_text(text: str) -> str:
    """What the embedding model reads of a customer's message: no placeholders, order cards,
    links or long numbers (tokens that cost time and say nothing about the topic), and at most
    MAX_DENSE_CHARS characters."""
    cleaned = " ".join(_DENSE_NOISE.sub(" ", text).split())
    return (cleaned or text.strip())[:MAX_DENSE_CHARS]


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
    is updated in place: this build's texts are added, stale ones dropped once they pile up.
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
    groups: list[DenseGroup | None] = [None, None]
    if embedder is not None and config.dense_weight > 0:
        kinds: list[tuple[list[str], list[int]]] = [([], []), ([], [])]
        for i, entry in enumerate(entries):
            for kind, texts in enumerate(entry_dense_texts(entry, config)):
                for text in dict.fromkeys(texts):
                    # A model's vectors for a language it does not serve are noise.
                    if embedder.serves(detect_lang(text)):
                        kinds[kind][0].append(text)
                        kinds[kind][1].append(i)
        cache = vectors if vectors is not None else {}
        everything = [t for texts, _ in kinds for t in texts]
        missing = list(dict.fromkeys(t for t in everything if t not in cache))
        if missing:
            cache.update(zip(missing, embedder.encode(missing), strict=True))
        groups = [DenseGroup.of([cache[t] for t in texts], owners) for texts, owners in kinds]
        if vectors is not None and len(vectors) > STALE_VECTORS_KEPT + 2 * len(everything):
            # Drop the texts of edited and archived entries only once they pile up: a build of
            # a store still empty (its seed being imported) must not throw away the vectors
            # the next build needs.
            keep = set(everything)
            for stale in [t for t in vectors if t not in keep]:
                del vectors[stale]
    return IndexSnapshot(entries=tuple(entries), lexical=lexical, dense=groups[0],
                         dense_answers=groups[1],
                         build_seconds=time.perf_counter() - started)


def _ranks(scores: npt.NDArray[np.float32], limit: int) -> list[int]:
    """The best `limit` positive scores' indices, ties in index order."""
    positive = np.flatnonzero(scores > 0)
    if positive.size > limit > 0:
        # Sorting only what can make the cut (all ties at the cut included) keeps the order a
        # full sort gives, for a fraction of its cost at 5,000 entries.
        cut = np.partition(scores[positive], positive.size - limit)[positive.size - limit]
        positive = positive[scores[positive] >= cut]
    if positive.size == 0:
        return []
    order = positive[np.argsort(-scores[positive], kind="stable")]
    return [int(i) for i in order[:limit]]


@dataclass(frozen=True, slots=True)
class _LexicalStage:
    """The lexical half of a search, shared by the lexical-only and the hybrid ranking."""

    analysed: Analysed
    terms: list[str]
    asking: frozenset[str]  # the terms of the clauses that ask (Analyzer.asking_terms)
    q_scores: npt.NDArray[np.float32]
    a_scores: npt.NDArray[np.float32]
    scores: npt.NDArray[np.float32]
    rank: list[int]


@dataclass(frozen=True, slots=True)
class _DenseScores:
    """Cosines of every entry: best question text, answer, and the best of both."""

    questions: npt.NDArray[np.float32]
    answers: npt.NDArray[np.float32]
    best: npt.NDArray[np.float32]


class Searcher:
    """Answers questions from the current snapshot; `install` swaps in a new one atomically.

    Two calibrated models score the candidates: `calibrator` when the dense half took part,
    `lexical_calibrator` when it did not (no model, a language the model does not serve, or a
    lexical stage already decisive, when the query embedding, the dearest step, is skipped).
    """

    def __init__(self, analyzer: Analyzer, embedder: Embedder | None,
                 calibrator: Calibrator, config: RetrievalConfig | None = None, *,
                 lexical_calibrator: Calibrator | None = None) -> None:
        self.analyzer = analyzer
        self.embedder = embedder
        self.calibrator = calibrator
        self.lexical_calibrator = lexical_calibrator or calibrator
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

    def save_vectors(self, path: Path) -> int:
        """Write the cached passage vectors (by text) to `path` (.npz); returns how many.

        Embedding thousands of entries takes minutes with E5 on one core: a process that
        starts again with the same model loads them instead (`load_vectors`).
        """
        with self._vectors_lock:
            texts = list(self._vectors)
            matrix = (np.stack([self._vectors[t] for t in texts]) if texts
                      else np.zeros((0, 0), dtype=np.float32))
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, texts=np.asarray(texts, dtype=np.str_), vectors=matrix)
        tmp.replace(path)
        return len(texts)

    def load_vectors(self, path: Path) -> int:
        """Add the vectors `save_vectors` wrote (same model!) to the cache; 0 if no file."""
        if not path.exists():
            return 0
        with np.load(path, allow_pickle=False) as data:
            texts = [str(t) for t in data["texts"]]
            matrix = np.asarray(data["vectors"], dtype=np.float32)
        with self._vectors_lock:
            self._vectors.update(zip(texts, matrix, strict=True))
        return len(texts)

    def rebuild(self, entries: Sequence[PublishedEntry]) -> IndexSnapshot:
        snapshot = self.build(entries)
        self.install(snapshot)
        return snapshot

    def _query_vector(self, text: str) -> npt.NDArray[np.float32]:
        # Customers ask the same short things over and over ("转人工", "where is my parcel"):
        # remembering recent query vectors saves the model call, the dearest step of a search.
        key = dense_text(text)
        with self._query_lock:
            vector = self._query_cache.get(key)
        if vector is None:
            assert self.embedder is not None
            vector = self.embedder.encode_queries([key])[0]
            with self._query_lock:
                if len(self._query_cache) >= QUERY_CACHE_SIZE:
                    self._query_cache.pop(next(iter(self._query_cache)))
                self._query_cache[key] = vector
        return vector

    def clear_query_cache(self) -> None:
        """Forget the recent query vectors (benchmarks measure the model call)."""
        with self._query_lock:
            self._query_cache.clear()

    def search(self, text: str, *, top_k: int = 5) -> SearchResult:
        """Rank the published entries for a customer's question."""
        return self.search_in(self._snapshot, text, top_k=top_k)

    def dense_serves(self, snapshot: IndexSnapshot, text: str) -> bool:
        """Whether the dense half can take part for `text` on `snapshot`."""
        return (self.embedder is not None and snapshot.has_dense
                and self.config.dense_weight > 0 and self.embedder.serves(detect_lang(text)))

    def search_in(self, snapshot: IndexSnapshot, text: str, *, top_k: int = 5) -> SearchResult:
        """Rank the entries of `snapshot`: fused first stage, then the calibrated reranker."""
        text = text[:MAX_QUERY_CHARS]
        if snapshot.size == 0 or not text.strip():
            return SearchResult(text, (), 0.0, False)
        stage = self._lexical_stage(snapshot, text)
        calibrator = self.lexical_calibrator
        dense = self.dense_serves(snapshot, text)
        # The lexical model's ranking is needed when dense cannot run, or to see whether it
        # settles the question (a fit whose `decisive` is NEVER settles nothing).
        gate = self.config.gate and calibrator.decisive <= 1.0
        scored = (self._score(self._features(snapshot, stage, None), calibrator)
                  if not dense or gate else [])
        if dense and not (gate and scored and scored[0][0] >= calibrator.decisive):
            calibrator = self.calibrator
            scored = self._score(self._features(
                snapshot, stage, self._dense_scores(snapshot, text)), calibrator)
        if not scored:
            return SearchResult(text, (), 0.0, False)
        hits = tuple(
            SearchHit(id=snapshot.entries[i].id, version=snapshot.entries[i].version,
                      score=p, question=snapshot.entries[i].content.question,
                      answer=snapshot.entries[i].content.answer, entry=snapshot.entries[i])
            for p, _, i, _ in scored[:top_k]
        )
        confidence = scored[0][0]
        return SearchResult(text, hits, confidence, confidence >= calibrator.threshold,
                            scored[0][3])

    @staticmethod
    def _score(candidates: list[tuple[int, Features]], calibrator: Calibrator
               ) -> list[tuple[float, int, int, Features]]:
        probabilities = calibrator.probabilities([f for _, f in candidates])
        return sorted(
            ((p, order, i, f)
             for order, ((i, f), p) in enumerate(zip(candidates, probabilities, strict=True))),
            key=lambda item: (-item[0], item[1]),
        )

    def candidates(self, snapshot: IndexSnapshot, text: str, *, dense: bool = True
                   ) -> list[tuple[int, Features]]:
        """The first stage: entries fused from BM25 and (when `dense` and the model serves the
        question's language) dense ranks, with their features."""
        text = text[:MAX_QUERY_CHARS]
        if snapshot.size == 0 or not text.strip():
            return []
        stage = self._lexical_stage(snapshot, text)
        scores = (self._dense_scores(snapshot, text)
                  if dense and self.dense_serves(snapshot, text) else None)
        return self._features(snapshot, stage, scores)

    def _lexical_stage(self, snapshot: IndexSnapshot, text: str) -> _LexicalStage:
        analysed = self.analyzer.analyse(text)
        terms = list(dict.fromkeys(analysed.terms))
        lexical = snapshot.lexical
        q_scores, a_scores = lexical.field_scores(terms)
        scores = q_scores + lexical.answer_weight * a_scores
        return _LexicalStage(analysed, terms, self.analyzer.asking_terms(analysed),
                             q_scores, a_scores, scores,
                             _ranks(scores, self.config.candidates))

    def _dense_scores(self, snapshot: IndexSnapshot, text: str) -> _DenseScores:
        query = self._query_vector(text)
        absent = np.zeros(snapshot.size, dtype=np.float32)
        questions = (snapshot.dense.scores(query, snapshot.size)
                     if snapshot.dense is not None else absent)
        answers = (snapshot.dense_answers.scores(query, snapshot.size)
                   if snapshot.dense_answers is not None else absent)
        return _DenseScores(questions, answers, np.maximum(questions, answers))

    def _features(self, snapshot: IndexSnapshot, stage: _LexicalStage,
                  dense: _DenseScores | None) -> list[tuple[int, Features]]:
        config = self.config
        lexical = snapshot.lexical
        lex_scores, lex_rank, terms = stage.scores, stage.rank, stage.terms
        dense_rank = ([] if dense is None
                      else _ranks(dense.best + 1.0, config.candidates))  # -1..1 -> 0..2
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
        # Each candidate's cosine is set against its strongest rival's: for the best candidate
        # that is the runner-up, so a clear winner stands out from a near tie (grouped CV on
        # the calibration data: top-1 +0.8 points over the gap to the best alone).
        top_two = (heapq.nlargest(2, (float(dense.best[i]) for i in order))
                   if dense is not None else [0.0])
        first, second = top_two[0], top_two[-1]
        lex_position = {i: r for r, i in enumerate(lex_rank)}
        dense_position = {i: r for r, i in enumerate(dense_rank)}
        query_terms = set(terms)
        asking = stage.asking
        asking_total = sum(idf.get(t, 0.0) for t in asking) or 1.0
        types = stage.analysed.types
        result: list[tuple[int, Features]] = []
        for i in order:
            reverse = 0.0
            for text_terms, weight in zip(lexical.question_texts[i],
                                          lexical.question_text_weights[i], strict=True):
                if weight > 0:
                    hit = sum(lexical.idf(t) for t in text_terms & query_terms)
                    reverse = max(reverse, hit / weight)
            result.append((i, Features(
                question_bm25=float(stage.q_scores[i]) / total,
                answer_bm25=float(stage.a_scores[i]) / total,
                coverage_question=sum(w for t, w in idf.items()
                                      if t in lexical.question_terms[i]) / total,
                coverage_answer=sum(w for t, w in idf.items()
                                    if t in lexical.answer_terms[i]) / total,
                coverage_asking=sum(idf.get(t, 0.0) for t in asking
                                    if t in lexical.question_terms[i]) / asking_total,
                reverse_coverage=reverse,
                relative_lexical=float(lex_scores[i]) / lex_best,
                lexical_rank=1.0 / (1 + lex_position.get(i, config.candidates)),
                dense=float(dense.questions[i]) if dense is not None else 0.0,
                dense_answer=float(dense.answers[i]) if dense is not None else 0.0,
                relative_dense=(float(dense.best[i]) - (second if dense.best[i] >= first
                                                        else first)
                                if dense is not None else 0.0),
                dense_rank=(1.0 / (1 + dense_position.get(i, config.candidates))
                            if dense is not None else 0.0),
                dense_on=1.0 if dense is not None else 0.0,
                known=known,
                length=length,
                same_type=1.0 if types & lexical.types[i] else 0.0,
                other_type=1.0 if types and lexical.types[i]
                and not types & lexical.types[i] else 0.0,
            )))
        return result

    def search_many(self, texts: Iterable[str], *, top_k: int = 5) -> list[SearchResult]:
        snapshot = self._snapshot
        return [self.search_in(snapshot, t, top_k=top_k) for t in texts]


def reply_language(lang: Lang) -> str:
    """Which answer variant suits a customer writing in `lang`."""
    return {Lang.EN: "en", Lang.ZH_HANT: "zh-Hant"}.get(lang, "zh-Hans")
