"""analyze(): one customer message in, a Triage out."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from functools import lru_cache

from nlp import priority
from nlp.backends import Scores, TriageBackend
from nlp.category_view import category_scores
from nlp.cues import cues
from nlp.labels import SUBCATEGORIES, Category, Emotion, Intent
from nlp.models import ModelConfig, load_backend
from nlp.normalize import detect_lang, normalize
from nlp.slots import extract_slots
from nlp.triage import Context, Triage

_HAS_WORD = re.compile(r"[\w\u3400-\u9fff]")
# Asking for a person outright; the classifier handles the fuzzier ways of saying it.
_HUMAN = re.compile(
    r"转人工|人工客服|人工服务|找人工|要人工|真人客服|接人工"
    r"|human (?:please|agent)|real (?:person|human)"
    r"|talk to (?:a |an )?(?:human|person|agent|someone)|speak to (?:a |an )?(?:human|person|agent)"
)


class Analyzer:
    """Triage with a loaded backend; thread-safe (the backends are read-only after loading)."""

    def __init__(self, backend: TriageBackend, fallback: TriageBackend | None = None) -> None:
        self._backend = backend
        self._fallback = fallback

    def analyze(self, text: str, context: Context | None = None) -> Triage:
        return self.analyze_many([text], [context])[0]

    def analyze_many(
        self, texts: Sequence[str], contexts: Sequence[Context | None] | None = None
    ) -> list[Triage]:
        """Triage of each text, scoring them in one batch."""
        normalized = [normalize(t) for t in texts]
        scores = self._scores(normalized)
        ctxs = contexts or [None] * len(texts)
        return [
            self._triage(raw, norm, s, ctx)
            for raw, norm, s, ctx in zip(texts, normalized, scores, ctxs, strict=True)
        ]

    def _scores(self, texts: list[str]) -> list[Scores]:
        primary = self._backend.score(texts)
        if self._fallback is None:
            return primary
        missing = [t for t in self._fallback.tasks if t not in self._backend.tasks]
        if not missing:
            return primary
        extra = self._fallback.score(texts)
        return [{**e, **p} for p, e in zip(primary, extra, strict=True)]

    def _triage(self, raw: str, text: str, s: Scores, context: Context | None) -> Triage:
        intent = _intent(text, s["intent"])
        category, category_scores = _category(intent, s.get("category", {}),
                                              s.get("subcategory", {}))
        subcategory = _subcategory(category, s.get("subcategory", {}))
        emotion_probs = s["emotion"]
        emotion = Emotion.NEUTRAL
        if _HAS_WORD.search(text) or "!" in text:
            emotion = Emotion(max(emotion_probs, key=emotion_probs.__getitem__))
        level, reasons = priority.decide(text, intent, emotion, s.get("priority"), context)
        ref = None
        if context is not None and context.reference_time:
            ref = datetime.fromisoformat(context.reference_time)
        return Triage(
            intent=intent,
            category=category,
            category_scores=category_scores,
            subcategory=subcategory,
            emotion=emotion,
            emotion_intensity=_intensity(text, emotion, emotion_probs),
            priority=level,
            priority_reasons=reasons,
            slots=extract_slots(raw, ref),
            lang=detect_lang(raw),
            normalized_text=text,
        )


def _intent(text: str, probs: dict[str, float]) -> Intent:
    if not _HAS_WORD.search(text):
        return Intent.OTHER  # empty, punctuation or emoji only
    if _HUMAN.search(text):
        return Intent.REQUEST_HUMAN
    return Intent(max(probs, key=probs.__getitem__))


def _category(intent: Intent, probs: dict[str, float], sub_probs: dict[str, float]
              ) -> tuple[Category | None, dict[str, float]]:
    scores = category_scores(probs, sub_probs)
    if intent in (Intent.OTHER, Intent.REQUEST_HUMAN):
        return None, scores
    return Category(max(scores, key=scores.__getitem__)), scores


def _subcategory(category: Category | None, probs: dict[str, float]) -> str | None:
    if category is None:
        return None
    allowed = SUBCATEGORIES[category]
    return max(allowed, key=lambda s: probs.get(s, 0.0))


def _intensity(text: str, emotion: Emotion, probs: dict[str, float]) -> float:
    """How strongly the emotion shows: its probability, boosted by intensifiers and '!'."""
    if emotion is Emotion.NEUTRAL:
        return round(0.3 * (1.0 - probs.get("neutral", 1.0)), 4)
    c = cues()
    boost = 0.08 * min(c.intensifier.count(text), 3) + 0.05 * min(text.count("!"), 4)
    return round(min(1.0, probs.get(emotion.value, 0.0) * 0.8 + boost), 4)


@lru_cache(maxsize=1)
def default_analyzer() -> Analyzer:
    """The process-wide analyzer configured from the environment, loaded on first use."""
    return Analyzer(*load_backend(ModelConfig.from_env()))


def analyze(text: str, context: Context | None = None) -> Triage:
    """Triage one message with the default analyzer (see ModelConfig.from_env)."""
    return default_analyzer().analyze(text, context)
