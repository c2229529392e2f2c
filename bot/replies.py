"""The bot's reply texts: templates from bot/replies.yaml, rendered in the customer's language.

Loading checks the file: every template and label in zh-Hans, zh-Hant and en, the same
placeholders in each language, and no phrase of the compliance list (`banned`).
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from nlp.labels import Lang
from nlp.normalize import clean, to_simplified

REPLIES_FILE = Path(__file__).with_name("replies.yaml")
LANGS: tuple[Lang, ...] = (Lang.ZH_HANS, Lang.ZH_HANT, Lang.EN)


class RepliesError(ValueError):
    """The reply file is malformed or breaks the wording rules."""


def _fields(template: str) -> frozenset[str]:
    return frozenset(name for _, name, _, _ in string.Formatter().parse(template) if name)


def find_banned(text: str, banned: Iterable[str]) -> list[str]:
    """The banned phrases in `text`, compared in Simplified script and lower case."""
    plain = to_simplified(clean(text)).lower()
    return [phrase for phrase in banned if to_simplified(phrase).lower() in plain]


def _by_lang(section: str, key: str, value: Any, *, same_fields: bool) -> dict[Lang, str]:
    if not isinstance(value, Mapping):
        raise RepliesError(f"{section}.{key}: expected one text per language")
    texts: dict[Lang, str] = {}
    for lang in LANGS:
        text = value.get(lang.value)
        if not isinstance(text, str) or not text.strip():
            raise RepliesError(f"{section}.{key}: no {lang.value} text")
        texts[lang] = text
    extra = set(value) - {lang.value for lang in LANGS}
    if extra:
        raise RepliesError(f"{section}.{key}: unknown languages {sorted(extra)}")
    fields = {lang: _fields(t) for lang, t in texts.items()}
    if same_fields and len(set(fields.values())) != 1:
        raise RepliesError(f"{section}.{key}: the languages use different placeholders {fields}")
    return texts


_PUNCT = re.compile(r"[\s\"'“”‘’。，,.!！?？~～、:：;；()（）\[\]【】]+")


@lru_cache(maxsize=512)
def _plain(text: str) -> str:
    # Cached: each message is compared with every button label (OpenCC each time otherwise),
    # and the labels are a fixed, small set.
    return _PUNCT.sub("", to_simplified(clean(text)).lower())


@dataclass(frozen=True, slots=True)
class Replies:
    """Templates and labels by key and language."""

    templates: Mapping[str, Mapping[Lang, str]]
    labels: Mapping[str, Mapping[Lang, str]]
    banned: tuple[str, ...]

    @classmethod
    def load(cls, path: Path = REPLIES_FILE) -> Replies:
        """Read and check a reply file; RepliesError when it is incomplete or non-compliant."""
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        if not isinstance(data, Mapping):
            raise RepliesError(f"{path}: expected a mapping")
        banned = tuple(str(p) for p in data.get("banned") or ())
        templates = {k: _by_lang("templates", k, v, same_fields=True)
                     for k, v in (data.get("templates") or {}).items()}
        # Labels may differ (a date is written with a month number in Chinese, a name in English).
        labels = {k: _by_lang("labels", k, v, same_fields=False)
                  for k, v in (data.get("labels") or {}).items()}
        for section, items in (("templates", templates), ("labels", labels)):
            for key, texts in items.items():
                for lang, text in texts.items():
                    found = find_banned(text, banned)
                    if found:
                        raise RepliesError(
                            f"{section}.{key} ({lang.value}) contains banned wording {found}")
        return cls(templates=templates, labels=labels, banned=banned)

    def render(self, key: str, lang: Lang, **fields: object) -> str:
        """The template `key` in `lang` (zh-Hans for anything else), filled with `fields`."""
        return self.templates[key][_lang(lang)].format(**fields)

    def label(self, key: str, lang: Lang) -> str:
        return self.labels[key][_lang(lang)]

    def label_matches(self, text: str, key: str) -> bool:
        """Whether `text` is the label `key` in any language (a tapped or typed button)."""
        plain = _plain(text)
        return bool(plain) and any(_plain(t) == plain for t in self.labels[key].values())

    def label_keys(self, prefix: str) -> list[str]:
        return [k for k in self.labels if k.startswith(prefix)]


def _lang(lang: Lang) -> Lang:
    return lang if lang in LANGS else Lang.ZH_HANS


@lru_cache(maxsize=1)
def default_replies() -> Replies:
    """The shipped reply file, loaded and checked once."""
    return Replies.load()


def banned_phrases() -> tuple[str, ...]:
    """The compliance list of bot/replies.yaml, for any other text a customer is sent."""
    return default_replies().banned
