"""Homophone typos of the desk's words: pinyin input turns 退货 into "腿货" and 发票 into "发漂".

A customer types toneless pinyin and picks the wrong characters, and what comes out is seldom a
word. So a stretch of a message that jieba does not know as a word (one its HMM guessed, or
single characters in a row), that reads in toneless pinyin exactly like one of the synonym
table's words and has at least one of its characters in place, is taken for that word. Only the
table's words are targets (a few hundred): over all the words of a FAQ, two-syllable collisions
are common ("不回" would become "不会").
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from itertools import accumulate, pairwise

_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]+")
MIN_CHARS, MAX_CHARS = 2, 4  # single characters collide with everything


@lru_cache(maxsize=65536)
def reading(text: str) -> str:
    """Toneless pinyin, syllables apart ("西安" is "xi an", not "xian")."""
    from pypinyin import lazy_pinyin

    return " ".join(lazy_pinyin(text))


class Homophones:
    """Replaces unknown stretches of Han characters that sound like a listed word.

    Args:
        words: every word of the synonym table, mapped to its canonical form.
        is_word: whether jieba's dictionary has a word (a typo is seldom one).
        stopwords: filler characters ("的", "了"), which no typo stands for.
    """

    def __init__(self, words: Mapping[str, str], is_word: Callable[[str], bool],
                 stopwords: frozenset[str]) -> None:
        sounds: dict[str, dict[str, str]] = {}  # reading -> {listed word: its canonical form}
        for word, canonical in words.items():
            if _HAN.fullmatch(word) and MIN_CHARS <= len(word) <= MAX_CHARS:
                sounds.setdefault(reading(word), {})[word] = canonical
        # Two canonical forms that sound alike leave nothing to pick ("保修" and "报修" are one).
        self._sounds = {key: listed for key, listed in sounds.items()
                        if len(set(listed.values())) == 1}
        self._listed = frozenset(words)
        self._is_word = is_word
        self._stopwords = stopwords

    def repair(self, tokens: Sequence[str]) -> list[str]:
        """The tokens of one Han run, typos replaced by the canonical words they stand for.

        Typed wrong, a word usually falls apart into single characters or merges with its
        neighbours into a word jieba's HMM guessed ("赔鸿包"); such stretches are searched.
        """
        out: list[str] = []
        loose: list[str] = []  # tokens jieba could not find in its dictionary, in a row
        for token in tokens:
            if token not in self._stopwords and (len(token) == 1 or (
                    token not in self._listed and not self._is_word(token))):
                loose.append(token)
                continue
            out.extend(self._repair_loose(loose))
            loose.clear()
            out.append(token)
        out.extend(self._repair_loose(loose))
        return out

    def _stand_in(self, text: str) -> str | None:
        """The canonical form of the listed word `text` is a typo of, if it is one."""
        if text in self._listed or self._is_word(text):
            return None
        listed = self._sounds.get(reading(text), {})
        # A wrong pick from the input method's list leaves the other characters right; two
        # words that only sound alike ("抱枕" and 保真) share none.
        for word, canonical in listed.items():
            if any(a == b for a, b in zip(text, word, strict=False)):
                return canonical
        return None

    def _repair_loose(self, tokens: Sequence[str]) -> list[str]:
        """`tokens` with the longest typo from each position replaced, left to right; the
        tokens around a typo keep their boundaries."""
        run = "".join(tokens)
        typos: list[tuple[int, int, str]] = []  # (start, end, canonical form)
        i = 0
        while i < len(run):
            for size in range(min(MAX_CHARS, len(run) - i), MIN_CHARS - 1, -1):
                target = self._stand_in(run[i:i + size])
                if target is not None:
                    typos.append((i, i + size, target))
                    i += size
                    break
            else:
                i += 1
        if not typos:
            return list(tokens)
        cuts = sorted({0, *accumulate(map(len, tokens)), *(c for t in typos for c in t[:2])})

        def pieces(start: int, end: int) -> list[str]:
            inside = [c for c in cuts if start <= c <= end]
            return [run[a:b] for a, b in pairwise(inside)]

        out: list[str] = []
        done = 0
        for start, end, canonical in typos:
            out.extend(pieces(done, start))
            out.append(canonical)
            done = end
        out.extend(pieces(done, len(run)))
        return out
