"""What pinyin typos cost the knowledge-base search, and what the homophone repair wins back.

The practice FAQ (data/kb/practice.yaml, never fitted on) is indexed bare (questions and
answers, as an imported FAQ), and its paraphrases are asked three ways: as written; with one
word of the synonym table typed the way a pinyin input method gets it wrong (one character
swapped for a common one that reads the same without tones, so that the result is no word); and
that typed version with the repair (knowledge_base/typos.py) switched off. Only paraphrases
that hold such a word are asked. Printed: top-1 of each, for the lexical and the default model.

Run: python bench/kb_typos.py [--modes lexical e5]
"""

from __future__ import annotations

import argparse
import random
from dataclasses import replace

from knowledge_base.analysis import _HAN_RUN, Analyzer, Synonyms, _tokenizer
from knowledge_base.entries import PublishedEntry
from knowledge_base.evaluation import PRACTICE_FILE
from knowledge_base.files import load_file
from knowledge_base.retrieval import Searcher
from knowledge_base.service import make_searcher
from knowledge_base.typos import MAX_CHARS, MIN_CHARS, reading
from nlp.normalize import normalize

COMMON = 2_000  # frequency in jieba's dictionary above which a one-character word is common


def sound_alikes() -> dict[str, list[str]]:
    """Common single characters by toneless reading: what an input method offers first."""
    freq = _tokenizer().FREQ
    chars: dict[str, list[str]] = {}
    for char, count in sorted(freq.items(), key=lambda kv: -kv[1]):
        if len(char) == 1 and _HAN_RUN.fullmatch(char) and count >= COMMON:
            chars.setdefault(reading(char), []).append(char)
    return chars


def typed(text: str, words: list[str], alikes: dict[str, list[str]],
          rng: random.Random) -> str | None:
    """`text` with one listed word mistyped, or None when it holds none that can be."""
    freq = _tokenizer().FREQ
    plain = normalize(text)
    options = []
    for word in words:
        at = plain.find(word)
        if at < 0:
            continue
        for i, char in enumerate(word):
            for other in alikes.get(reading(char), []):
                wrong = word[:i] + other + word[i + 1:]
                if other != char and freq.get(wrong, 0) == 0:
                    options.append(plain[:at] + wrong + plain[at + len(word):])
    return rng.choice(options) if options else None


def top1(searcher: Searcher, entries: list[PublishedEntry], asked: list[tuple[str, str]]) -> float:
    snapshot = searcher.build(entries)
    right = sum(bool(r.hits) and r.hits[0].id == want
                for r, want in ((searcher.search_in(snapshot, t), want) for t, want in asked))
    return right / len(asked)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", nargs="+", default=["lexical", "e5"],
                        choices=["lexical", "e5"])
    args = parser.parse_args()
    entries = [PublishedEntry(i, 1, c) for i, c in load_file(PRACTICE_FILE)]
    bare = [replace(e, content=replace(e.content, paraphrases=())) for e in entries]
    analyzer = Analyzer()
    words = sorted((w for w in Synonyms.from_file().words
                    if _HAN_RUN.fullmatch(w) and MIN_CHARS <= len(w) <= MAX_CHARS),
                   key=len, reverse=True)
    alikes = sound_alikes()
    rng = random.Random(7)
    clean, wrong = [], []
    for entry in entries:
        for paraphrase in entry.content.paraphrases:
            mistyped = typed(paraphrase, words, alikes, rng)
            if mistyped is not None:
                clean.append((paraphrase, entry.id))
                wrong.append((mistyped, entry.id))
    repaired = sum(analyzer.analyse(w).terms == analyzer.analyse(c).terms
                   for (w, _), (c, _) in zip(wrong, clean, strict=True))
    print(f"{len(clean)} paraphrases hold a listed word; {repaired} "
          f"({repaired / len(clean):.0%}) of their mistyped versions get back the terms of the "
          "text as written")
    for example in wrong[:5]:
        print("  e.g.", example[0])
    print("| model | as written | mistyped, repaired | mistyped, no repair |")
    print("| --- | --- | --- | --- |")
    for mode in args.modes:
        searcher = make_searcher(dense=mode == "e5")
        unrepaired = Searcher(Analyzer(typos=False), searcher.embedder, searcher.calibrator,
                              searcher.config, lexical_calibrator=searcher.lexical_calibrator)
        figures = [top1(searcher, bare, clean), top1(searcher, bare, wrong),
                   top1(unrepaired, bare, wrong)]
        print(f"| {mode} | " + " | ".join(f"{f:.3f}" for f in figures) + " |", flush=True)


if __name__ == "__main__":
    main()
