"""Text normalisation shared by every model: one canonical form of what the customer wrote."""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

from nlp.labels import Lang

MAX_CHARS = 20_000  # longer texts are cut: nothing a customer writes needs more to be triaged

# Control characters, zero-width marks, and lone surrogates (a broken JSON escape yields them
# and OpenCC cannot encode them).
_CONTROL = re.compile(
    "[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f\u200b-\u200f\ufeff\ud800-\udfff]")
_SPACE = re.compile(r"\s+")
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN_WORD = re.compile(r"[A-Za-z]{2,}")


@lru_cache(maxsize=1)
def _t2s() -> object:
    import opencc

    return opencc.OpenCC("t2s")


@lru_cache(maxsize=1)
def _s2t() -> object:
    import opencc

    return opencc.OpenCC("s2t")


def to_simplified(text: str) -> str:
    """Traditional -> Simplified Chinese with OpenCC; other text passes through."""
    return str(_t2s().convert(text))  # type: ignore[attr-defined]


def to_traditional(text: str) -> str:
    """Simplified -> Traditional Chinese with OpenCC, for replies to zh-Hant customers."""
    return str(_s2t().convert(text))  # type: ignore[attr-defined]


def clean(text: str) -> str:
    """NFKC (full-width -> half-width), control characters dropped, white space folded."""
    text = unicodedata.normalize("NFKC", text[:MAX_CHARS])
    text = _CONTROL.sub("", text)
    return _SPACE.sub(" ", text).strip()


def normalize(text: str) -> str:
    """The form models see: cleaned, Simplified, Latin letters lower-cased."""
    return to_simplified(clean(text)).lower()


def detect_lang(text: str) -> Lang:
    """zh-Hans, zh-Hant, en or mixed, from the script of the characters.

    Traditional is told from Simplified by whether OpenCC changes the Han characters; a text with
    both Han characters and several Latin words is mixed.
    """
    text = clean(text)
    han = _HAN.findall(text)
    latin_words = _LATIN_WORD.findall(text)
    if not han:
        # Emoji, digits or nothing at all: answer in the product's default language.
        return Lang.EN if latin_words else Lang.ZH_HANS
    han_text = "".join(han)
    changed = sum(a != b for a, b in zip(han_text, to_simplified(han_text), strict=True))
    # A few characters (著, 乾…) are valid in Simplified too, so one change in a long text is noise.
    hant = changed >= 2 or (changed == 1 and len(han) <= 12)
    script = Lang.ZH_HANT if hant else Lang.ZH_HANS
    latin_chars = sum(len(w) for w in latin_words)
    if len(latin_words) >= 2 and latin_chars >= len(han):
        return Lang.MIXED
    return script
