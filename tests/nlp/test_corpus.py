from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from nlp.corpus import CorpusError, for_task, load, read_file
from nlp.labels import Category, Intent


def test_corpus_is_valid_and_large_enough() -> None:
    examples = load()
    intents = Counter(ex.intent for ex in examples if ex.intent)
    categories = Counter(ex.category for ex in examples if ex.category)
    emotions = Counter(ex.emotion for ex in examples)
    # "Several hundred per class is a floor"
    for intent in Intent:
        assert intents[intent.value] >= 250, intent
    for category in Category:
        assert categories[category.value] >= 300, category
    for emotion, n in emotions.items():
        assert n >= 250, emotion
    langs = Counter(ex.lang for ex in examples)
    assert langs["zh-Hant"] >= 200 and langs["en"] >= 200


def test_category_none_for_intents_without_topic() -> None:
    texts, labels = for_task(load(), "category")
    assert "none" in labels and len(texts) == len(labels)


@pytest.mark.parametrize(("line", "message"), [
    ("not json", "invalid JSON"),
    ('{"text": "", "emotion": "anger", "lang": "en"}', "text"),
    ('{"text": "x", "intent": "complaint", "category": "food", "subcategory": "x", '
     '"emotion": "anger", "priority": "low", "lang": "en"}', "category"),
    ('{"text": "x", "intent": "other", "category": "product", "subcategory": "expired", '
     '"emotion": "anger", "priority": "low", "lang": "en"}', "takes no category"),
    ('{"text": "x", "intent": "complaint", "category": "product", "subcategory": "delay", '
     '"emotion": "anger", "priority": "low", "lang": "en"}', "subcategory"),
])
def test_bad_lines_are_reported_with_their_place(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "intake_bad.jsonl"
    path.write_text(line + "\n", encoding="utf-8")
    with pytest.raises(CorpusError, match=message) as info:
        list(read_file(path))
    assert "intake_bad.jsonl:1" in str(info.value)
