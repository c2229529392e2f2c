"""The project's own labelled corpus (data/nlu/): loading and validation."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from nlp.labels import SUBCATEGORIES, Category, Emotion, Intent, Lang, Priority

DEFAULT_CORPUS_DIR = Path(__file__).resolve().parent.parent / "data" / "nlu"


class CorpusError(ValueError):
    """A corpus line is malformed or carries a label outside the vocabulary."""


@dataclass(frozen=True, slots=True)
class Example:
    """One labelled text; tasks a file does not label are None (emotion-only files)."""

    text: str
    emotion: str
    lang: str
    intent: str | None = None
    category: str | None = None
    subcategory: str | None = None
    priority: str | None = None

    def label(self, task: str) -> str | None:
        """The label for a task; category None of a labelled intake line reads as "none"."""
        value: str | None = getattr(self, task)
        if task in ("category", "subcategory") and self.intent is not None and value is None:
            return "none"
        return value


def _check(value: object, allowed: set[str], field: str, where: str) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise CorpusError(f"{where}: {field}={value!r} is not one of {sorted(allowed)}")
    return value


def _parse(obj: dict[str, object], where: str, emotion_only: bool) -> Example:
    text = obj.get("text")
    if not isinstance(text, str) or not text.strip():
        raise CorpusError(f"{where}: text must be a non-empty string")
    emotion = _check(obj.get("emotion"), {e.value for e in Emotion}, "emotion", where)
    lang = _check(obj.get("lang"), {x.value for x in Lang}, "lang", where)
    if emotion_only:
        return Example(text=text, emotion=emotion, lang=lang)
    intent = _check(obj.get("intent"), {i.value for i in Intent}, "intent", where)
    priority = _check(obj.get("priority"), {p.value for p in Priority}, "priority", where)
    category = obj.get("category")
    subcategory = obj.get("subcategory")
    if intent in (Intent.OTHER.value, Intent.REQUEST_HUMAN.value):
        if category is not None or subcategory is not None:
            raise CorpusError(f"{where}: intent {intent} takes no category")
        return Example(text, emotion, lang, intent, None, None, priority)
    cat = Category(_check(category, {c.value for c in Category}, "category", where))
    sub = _check(subcategory, set(SUBCATEGORIES[cat]), "subcategory", where)
    return Example(text, emotion, lang, intent, cat.value, sub, priority)


def read_file(path: Path) -> Iterator[Example]:
    """Examples of one file; emotion_*.jsonl files carry only emotion and lang."""
    emotion_only = path.name.startswith("emotion_")
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{path.name}:{n}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise CorpusError(f"{where}: invalid JSON ({exc.msg})") from exc
            if not isinstance(obj, dict):
                raise CorpusError(f"{where}: expected a JSON object")
            yield _parse(obj, where, emotion_only)


def load(directory: Path = DEFAULT_CORPUS_DIR) -> list[Example]:
    """Every example of the corpus, de-duplicated by text (first occurrence wins)."""
    files = sorted(directory.glob("intake_*.jsonl")) + sorted(directory.glob("emotion_*.jsonl"))
    if not files:
        raise CorpusError(f"no intake_*.jsonl or emotion_*.jsonl files in {directory}")
    seen: set[str] = set()
    examples = []
    for path in files:
        for ex in read_file(path):
            if ex.text not in seen:
                seen.add(ex.text)
                examples.append(ex)
    return examples


def for_task(examples: list[Example], task: str) -> tuple[list[str], list[str]]:
    """Texts and labels of the examples that label this task."""
    pairs = [(ex.text, lab) for ex in examples if (lab := ex.label(task)) is not None]
    return [t for t, _ in pairs], [lab for _, lab in pairs]
