"""How texts become search terms: the same steps for customers' questions and for entries.

normalise (nlp.normalize: OpenCC Traditional->Simplified, NFKC, lower case) -> drop placeholders,
links and long numbers -> map colloquial variants to one canonical form (synonyms.yaml) -> jieba
words, with pinyin typos of the table's words repaired (typos.py: "腿货" is 退货), without filler
words, plus character bigrams of the Han runs (robust to unknown words and segmentation
differences between a question and a paraphrase).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from knowledge_base.typos import Homophones
from nlp.normalize import normalize

SYNONYMS_FILE = Path(__file__).with_name("synonyms.yaml")

# Masked PII and chat-widget placeholders ("[数字x]", "[订单x]"), links, order and phone numbers,
# and the labels of the order card that chat widgets attach to a question ("订单编号: …").
_NOISE = re.compile(
    r"\[[^\[\]]{1,16}\]|https?://\S+|www\.\S+|\d{5,}|[a-z0-9._%+-]+@[a-z0-9.-]+\.[a-z]{2,}"
    r"|(?:咨询)?(?:订单编号|订单号|订单金额|下单时间|商品名称)\s*[:：]"
)
_HAN_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]+")
_WORD = re.compile(r"[a-z][a-z0-9']*|\d+|[\u3400-\u4dbf\u4e00-\u9fff]+")

STOPWORDS_FILE = Path(__file__).with_name("stopwords.txt")


@lru_cache(maxsize=1)
def stopwords() -> frozenset[str]:
    """Words that carry no topic (stopwords.txt); kept from the lexical terms."""
    words: set[str] = set()
    for line in STOPWORDS_FILE.read_text(encoding="utf-8").splitlines():
        words.update(line.split("#", 1)[0].split())
    return frozenset(words)


# What kind of answer a question wants, from its question words: two texts about the same topic
# can still ask different things ("退款多久到账" vs "退款退到哪里").
_QUESTION_TYPES = {
    "time": re.compile(r"多久|什么时候|几天|几号|多长|时效|何时|when|how long"),
    "place": re.compile(r"哪里|哪儿|到哪|在哪|去哪|哪个|哪家|where|which"),
    "cost": re.compile(
        r"多少钱|收费|费用|运费|要钱|付钱|谁出|谁承担|免费|cost|fee|how much|pay for"),
    "how": re.compile(r"怎么|如何|怎样|流程|步骤|操作|how do|how can|how to"),
    "why": re.compile(r"为什么|为啥|怎么回事|原因|why"),
    "can": re.compile(r"能不能|可不可以|可以|能否|能吗|支持|行吗|can i|is it possible"),
    "status": re.compile(r"进度|状态|到哪一步|结果|怎么样了|status|progress"),
}


# Clauses of a chat message (Chinese customers separate them with spaces as often as with
# commas; a space next to a Latin word only separates words), and the words that make a clause a
# question. A message often tells a story before it asks: the asking clauses say what the
# customer wants to know, the others only where it happened.
_CLAUSE_BREAK = re.compile(
    r"(?<=[?？])|[,，。.!！;；:：~～、]+\s*|(?<=[\u3400-\u9fff])\s+(?=[\u3400-\u9fff])")
_ASKING = re.compile(
    r"[?？吗么呢啥几哪]|如何|多久|多少|是否|能否|可以|能不能|可不可以"
    r"|\b(?:how|what|when|where|which|why|can|could|is|are|do|does|will|would)\b")


# An asking clause with at most this many characters of words ("怎么办", "是什么问题", "可以退吗")
# borrows the clause before it; grouped CV on the calibration data: 1 over 2 or "all terms".
TOPICLESS_CHARS = 1


def question_types(canonical: str) -> frozenset[str]:
    """The kinds of answer a (canonical) question asks for: time, place, cost, how, why…"""
    return frozenset(name for name, pattern in _QUESTION_TYPES.items()
                     if pattern.search(canonical))


@dataclass(frozen=True, slots=True)
class Analysed:
    """A text ready for the index: its canonical form and its lexical terms."""

    canonical: str
    terms: tuple[str, ...]
    types: frozenset[str] = frozenset()

    @property
    def content_terms(self) -> frozenset[str]:
        return frozenset(self.terms)


class Synonyms:
    """Maps every listed variant to its canonical form, longest variant first."""

    def __init__(self, groups: Mapping[str, list[str]]) -> None:
        mapping: dict[str, str] = {}
        for canonical, variants in groups.items():
            canonical = normalize(str(canonical))
            mapping.setdefault(canonical, canonical)
            for variant in variants:
                mapping[normalize(str(variant))] = canonical
        self.words: Mapping[str, str] = mapping  # every listed word -> its canonical form
        self.canonical_forms = frozenset(mapping.values())
        keys = sorted(mapping, key=len, reverse=True)
        self._pattern = re.compile("|".join(re.escape(k) for k in keys)) if keys else None

    @classmethod
    def from_file(cls, path: Path = SYNONYMS_FILE) -> Synonyms:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping of canonical form -> variants")
        return cls(data)

    @classmethod
    def empty(cls) -> Synonyms:
        return cls({})

    def apply(self, text: str) -> str:
        if self._pattern is None:
            return text
        return self._pattern.sub(lambda m: self.words[m.group(0)], text)


@lru_cache(maxsize=1)
def _tokenizer() -> Any:
    """A jieba tokenizer of our own: the global one is shared with nlp, which adds words."""
    import logging

    import jieba

    jieba.setLogLevel(logging.WARNING)
    tokenizer = jieba.Tokenizer()
    tokenizer.initialize()
    return tokenizer


def _split(run: str, tokenizer: Any, whole: re.Pattern[str] | None) -> list[str]:
    """jieba words of a Han run; matches of `whole` stay single words, and jieba splits only
    what lies between them."""
    words: list[str] = []
    start = 0
    for match in whole.finditer(run) if whole is not None else ():
        if match.start() > start:
            words.extend(tokenizer.lcut(run[start:match.start()]))
        words.append(match.group(0))
        start = match.end()
    if start < len(run):
        words.extend(tokenizer.lcut(run[start:]))
    return words


class Analyzer:
    """Turns a text into lexical terms: jieba words ("w:") and Han character bigrams ("b:")."""

    def __init__(self, synonyms: Synonyms | None = None, *, bigrams: bool = True,
                 typos: bool = True) -> None:
        self._synonyms = synonyms if synonyms is not None else Synonyms.from_file()
        self._bigrams = bigrams
        self._stopwords = stopwords()
        self._tokenizer = _tokenizer()
        # Canonical forms stay whole words ("到账" must not split into 到 + 账), and jieba does
        # not see them: next to each other ("价保价保会…") it would split them across.
        forms = sorted((f for f in self._synonyms.canonical_forms if _HAN_RUN.fullmatch(f)),
                       key=len, reverse=True)
        self._whole = re.compile("|".join(map(re.escape, forms))) if forms else None
        # typos=False leaves homophone typos as they are (to measure what repairing them wins).
        self._homophones = Homophones(
            self._synonyms.words if typos else {}, lambda w: self._tokenizer.FREQ.get(w, 0) > 0,
            self._stopwords)

    def canonical(self, text: str) -> str:
        """The normalised text with noise removed and variants replaced by canonical forms."""
        text = _NOISE.sub(" ", normalize(text))
        return self._synonyms.apply(text)

    def analyse(self, text: str) -> Analysed:
        canonical = self.canonical(text)
        return Analysed(canonical=canonical, terms=self._terms(canonical),
                        types=question_types(canonical))

    def asking_terms(self, analysed: Analysed) -> frozenset[str]:
        """The terms of the clauses that ask something (all terms when none does or all do)."""
        clauses = [c for c in _CLAUSE_BREAK.split(analysed.canonical) if c.strip()]
        chosen: dict[int, tuple[str, ...]] = {}  # clause index -> its terms
        for i, clause in enumerate(clauses):
            if not _ASKING.search(clause):
                continue
            terms = chosen[i] = self._terms(clause)
            # "…，怎么办" / "是什么问题": a question with (almost) no topic of its own asks
            # about the clause before it.
            topic = sum(len(t) - 2 for t in terms if t.startswith("w:"))
            if i > 0 and topic <= TOPICLESS_CHARS and i - 1 not in chosen:
                chosen[i - 1] = self._terms(clauses[i - 1])
        if not chosen or len(chosen) == len(clauses):
            return frozenset(analysed.terms)
        found = frozenset(t for terms in chosen.values() for t in terms)
        # Only terms of the whole text: a clause alone may split into other words.
        return found & frozenset(analysed.terms) or frozenset(analysed.terms)

    def _words(self, text: str) -> list[str]:
        """jieba words of each Han run with typos repaired, Latin words and numbers; " " where
        the text had a break."""
        words: list[str] = []
        for chunk in _WORD.findall(text):
            if _HAN_RUN.fullmatch(chunk):
                words.extend(self._homophones.repair(_split(chunk, self._tokenizer, self._whole)))
            else:
                words.append(chunk)
            words.append(" ")
        return words

    def _terms(self, canonical: str) -> tuple[str, ...]:
        terms: list[str] = []
        kept_chars: list[str] = []
        for word in self._words(canonical):
            if word in self._stopwords or (not _HAN_RUN.match(word) and not word.isalnum()):
                kept_chars.append(" ")
                continue
            terms.append("w:" + _stem(word))
            kept_chars.append(word)
        if self._bigrams:
            # Bigrams across the words that survived, so a filler word splits a run.
            for run in _HAN_RUN.findall("".join(kept_chars)):
                terms.extend("b:" + run[i : i + 2] for i in range(len(run) - 1))
        return tuple(terms)


def _stem(word: str) -> str:
    # A crude English plural fold; enough for FAQ questions, no dependency.
    if len(word) > 4 and word.isascii() and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word
