"""Cue-word lists (nlp/cues.yaml) compiled into matchers."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

_CUES_FILE = Path(__file__).with_name("cues.yaml")


@dataclass(frozen=True, slots=True)
class CueSet:
    """One list of cue words; Latin cues match whole words, Chinese ones anywhere."""

    name: str
    pattern: re.Pattern[str]

    def count(self, text: str) -> int:
        return len(self.pattern.findall(text))

    def found(self, text: str) -> bool:
        return self.pattern.search(text) is not None


def _compile(name: str, words: list[Any]) -> CueSet:
    parts = []
    for word in sorted({str(w).lower() for w in words}, key=len, reverse=True):
        escaped = re.escape(word)
        # \b would fail beside Han characters (they are word characters too): look at ASCII only.
        ascii_word = word.isascii() and word[:1].isalnum()
        parts.append(rf"(?<![a-z0-9]){escaped}(?![a-z0-9])" if ascii_word else escaped)
    return CueSet(name, re.compile("|".join(parts)))


@dataclass(frozen=True, slots=True)
class Cues:
    emotion: dict[str, CueSet]
    negation: CueSet
    intensifier: CueSet
    request_human: CueSet
    priority: dict[str, CueSet]


@lru_cache(maxsize=1)
def cues() -> Cues:
    """The cue sets, compiled once per process."""
    raw = yaml.safe_load(_CUES_FILE.read_text(encoding="utf-8"))
    return Cues(
        emotion={k: _compile(k, v) for k, v in raw["emotion"].items()},
        negation=_compile("negation", raw["negation"]),
        intensifier=_compile("intensifier", raw["intensifier"]),
        request_human=_compile("request_human", raw["request_human"]),
        priority={k: _compile(k, v) for k, v in raw["priority"].items()},
    )
