"""The canonical form the slot patterns read, and the spans they find in it."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from nlp.normalize import to_simplified


@dataclass(frozen=True, slots=True)
class Span:
    """A value found at [start, end) of the text it was found in."""

    start: int
    end: int
    value: str
    kind: str  # what the value is: "mobile", "order", "tracking", "name"…


_CONTROL_CHAR = re.compile(
    r"[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f\u200b-\u200f\ufeff]"
)
# Lone surrogates (from JSON "\ud800" escapes) make OpenCC's UTF-8 encoding raise.
SURROGATE = re.compile(r"[\ud800-\udfff]")


def canonical(text: str) -> str:
    """The form the patterns read, with every character at its original offset.

    Each character is NFKC-folded on its own (so full-width digits become ASCII) unless folding
    would change the length, control characters become spaces, and the text is converted to
    Simplified Chinese when OpenCC keeps the length (it does for everything but rare phrases).
    Offsets into the result are therefore offsets into `text`, which nlp.pii relies on.
    """
    folded = []
    for char in text:
        if char.isascii():
            folded.append(char)
            continue
        nfkc = unicodedata.normalize("NFKC", char)
        folded.append(nfkc if len(nfkc) == 1 else char)
    plain = SURROGATE.sub(" ", _CONTROL_CHAR.sub(" ", "".join(folded)))
    simplified = to_simplified(plain)
    return simplified if len(simplified) == len(plain) else plain


def blank(text: str, spans: Iterable[Span]) -> str:
    """Text with the spans overwritten by spaces, so later patterns cannot read into them."""
    chars = list(text)
    for span in spans:
        chars[span.start : span.end] = " " * (span.end - span.start)
    return "".join(chars)


class Coverage:
    """The offsets of a text already claimed by a value, so no two values share a character.

    A byte per character: checking a span costs its length, not the number of values found, which
    keeps a text with thousands of phone numbers linear.
    """

    __slots__ = ("_claimed",)

    def __init__(self, length: int) -> None:
        self._claimed = bytearray(length)

    def overlaps(self, start: int, end: int) -> bool:
        """Whether any character of [start, end) is claimed."""
        return self._claimed.find(1, start, end) >= 0

    def claim(self, start: int, end: int) -> None:
        self._claimed[start:end] = b"\x01" * (end - start)

    def next_claimed(self, start: int, end: int) -> int:
        """The first claimed offset in [start, end), or end when there is none."""
        found = self._claimed.find(1, start, end)
        return end if found < 0 else found


def coverage_of(length: int, spans: Iterable[Span]) -> Coverage:
    """A coverage of a text of `length` characters with the spans already claimed."""
    coverage = Coverage(length)
    for span in spans:
        coverage.claim(span.start, span.end)
    return coverage


def is_han(char: str) -> bool:
    """Whether a character is a Chinese character (CJK unified or compatibility ideograph)."""
    return "\u3400" <= char <= "\u9fff" or "\uf900" <= char <= "\ufaff"
