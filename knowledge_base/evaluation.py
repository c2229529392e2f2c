"""Measuring retrieval: hit@k, MRR and "no confident answer", and the calibration data.

The calibration data is made from the project's own files only: the seed FAQ's paraphrases held
out fold by fold (and against an index of the bare questions, as an imported FAQ without
paraphrases would be), and out-of-scope questions that no entry answers.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from knowledge_base.confidence import Sample
from knowledge_base.entries import PublishedEntry
from knowledge_base.errors import ImportRejected, RowError
from knowledge_base.retrieval import Searcher, SearchResult

OUT_OF_SCOPE_FILE = Path(__file__).resolve().parent.parent / "data" / "kb" / "out_of_scope.jsonl"
# Another desk's FAQ, never served and never fitted on: how well a fit carries over to a
# knowledge base the synonym table was not written for.
PRACTICE_FILE = Path(__file__).resolve().parent.parent / "data" / "kb" / "practice.yaml"


@dataclass(frozen=True, slots=True)
class Query:
    """A labelled question: the entry that answers it, or None when nothing should."""

    text: str
    faq_id: str | None


@dataclass(frozen=True, slots=True)
class EvalReport:
    """What `intakebot kb eval` prints."""

    queries: int
    answerable: int
    hit_at_1: float
    hit_at_3: float
    mrr: float
    confident_precision: float  # share of confident answers whose top-1 is right
    answered: float  # share of answerable questions answered confidently and rightly
    no_answer_precision: float  # of the "no confident answer" replies, share that were right
    no_answer_recall: float  # of the unanswerable questions, share that got no answer

    def to_dict(self) -> dict[str, Any]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


@dataclass(frozen=True, slots=True)
class Miss:
    """A labelled question the search got wrong: for editors to look at."""

    text: str
    expected: str | None
    got: str | None  # the top entry
    rank: int | None  # where the expected entry came (1-based), None when not among the hits
    confidence: float
    confident: bool

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "confidence": round(self.confidence, 4)}


def read_queries(path: Path) -> list[Query]:
    """JSON Lines of {"text": …, "faq_id": … or null}.

    Raises:
        ImportRejected: a line is not such an object.
    """
    queries: list[Query] = []
    errors: list[RowError] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            text = data["text"]
            faq_id = data.get("faq_id")
            if not isinstance(text, str) or not (faq_id is None or isinstance(faq_id, str | int)):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            errors.append(RowError(number, None, 'expected {"text": …, "faq_id": … or null}'))
            continue
        queries.append(Query(text, None if faq_id is None else str(faq_id)))
    if errors:
        raise ImportRejected(str(path), errors)
    return queries


def evaluate(results: Sequence[SearchResult], queries: Sequence[Query]) -> EvalReport:
    """Score search results against their labelled queries (same order)."""
    answerable = [(r, q) for r, q in zip(results, queries, strict=True) if q.faq_id is not None]
    hit1 = hit3 = rr = 0.0
    right_confident = confident = 0
    for result, query in answerable:
        ids = [h.id for h in result.hits]
        if ids[:1] == [query.faq_id]:
            hit1 += 1
        if query.faq_id in ids[:3]:
            hit3 += 1
        if query.faq_id in ids:
            rr += 1 / (ids.index(str(query.faq_id)) + 1)
    for result, query in zip(results, queries, strict=True):
        if result.confident:
            confident += 1
            right_confident += int(query.faq_id is not None and result.best is not None
                                   and result.best.id == query.faq_id)
    declined = [(r, q) for r, q in zip(results, queries, strict=True) if not r.confident]
    unanswerable = [q for q in queries if q.faq_id is None]
    declined_right = sum(1 for _, q in declined if q.faq_id is None)
    n = len(answerable) or 1
    return EvalReport(
        queries=len(queries),
        answerable=len(answerable),
        hit_at_1=hit1 / n,
        hit_at_3=hit3 / n,
        mrr=rr / n,
        confident_precision=right_confident / confident if confident else 0.0,
        answered=sum(1 for r, q in answerable if r.confident and r.best is not None
                     and r.best.id == q.faq_id) / n,
        no_answer_precision=declined_right / len(declined) if declined else 0.0,
        no_answer_recall=declined_right / len(unanswerable) if unanswerable else 0.0,
    )


def misses(results: Sequence[SearchResult], queries: Sequence[Query]) -> list[Miss]:
    """Answerable questions whose top entry is not theirs, and unanswerable ones answered
    confidently (same order as the queries)."""
    found: list[Miss] = []
    for result, query in zip(results, queries, strict=True):
        ids = [h.id for h in result.hits]
        top = ids[0] if ids else None
        if (top != query.faq_id if query.faq_id is not None else result.confident):
            found.append(Miss(query.text, query.faq_id, top,
                              ids.index(query.faq_id) + 1 if query.faq_id in ids else None,
                              result.confidence, result.confident))
    return found


def read_out_of_scope(path: Path = OUT_OF_SCOPE_FILE) -> list[str]:
    return [q.text for q in read_queries(path)]


# Chat style around a question: greetings, context, the order card a widget attaches. Asking
# each calibration question once more wrapped in these keeps the confidence model from trusting
# only short, clean questions (real chats are rarely either).
_OPENERS = ("你好 ", "在吗 ", "亲 ", "您好，请问一下 ", "客服你好 我想问下 ", "hi ", "")
_CONTEXT = ("", "我昨天买的 ", "今天刚收到 ", "上周下的单 ", "我买的空调 ", "帮我看看 ")
_CLOSERS = ("", " 谢谢", " 急", " [订单x]", " 咨询订单号:[订单x] 订单金额:[金额x]", "??", " 在吗")


def chat_variant(text: str, n: int) -> str:
    """`text` as a customer might send it in a chat (deterministic in `n`)."""
    return (_OPENERS[n % len(_OPENERS)] + _CONTEXT[(n // 7) % len(_CONTEXT)] + text
            + _CLOSERS[(n // 3) % len(_CLOSERS)])


def _bare(entry: PublishedEntry) -> PublishedEntry:
    return replace(entry, content=replace(entry.content, paraphrases=()))


def calibration_samples(
    searcher: Searcher,
    seed: Sequence[PublishedEntry],
    out_of_scope: Iterable[str],
    *,
    folds: int = 5,
    chat_style: bool = True,
    dense: bool = True,
    progress: Callable[[int], None] | None = None,
    customer: Sequence[Query] = (),
) -> list[Sample]:
    """Candidates' features and the right one, from the seed FAQ and out-of-scope questions.

    1. Paraphrases held out fold by fold: fold k's paraphrases are removed from the index and
       asked; the other paraphrases stay (a curated knowledge base).
    2. Every paraphrase asked against the bare questions and answers (an imported FAQ).
    3. Every out-of-scope question asked against both indexes: all negatives.
    4. `customer` messages (a deployment's real chats, labelled with the seed entry that
       answers them or None) asked against both indexes, as they are.

    With `chat_style`, the questions of 1-3 are asked a second time wrapped in chat noise;
    `dense` = False leaves the dense half out (the lexical-only model's data).
    """
    samples: list[Sample] = []

    def ask(entries: Sequence[PublishedEntry], asked: Iterable[tuple[str, str | None]], *,
            chat: bool = chat_style) -> None:
        snapshot = searcher.build(entries, dense=dense)
        questions = list(asked)
        if chat:
            questions += [(chat_variant(t, n), a) for n, (t, a) in enumerate(questions)]
        for text, answer in questions:
            candidates = searcher.candidates(snapshot, text, dense=dense)
            ids = [snapshot.entries[i].id for i, _ in candidates]
            right = ids.index(answer) if answer in ids else None
            samples.append(Sample(tuple(f for _, f in candidates), right))
        if progress is not None:
            progress(1)

    pairs = [(p, e.id, i) for e in seed for i, p in enumerate(e.content.paraphrases)]
    oos = list(out_of_scope)
    for fold in range(folds):
        held = {(entry_id, i) for n, (_, entry_id, i) in enumerate(pairs) if n % folds == fold}
        entries = [
            replace(e, content=replace(e.content, paraphrases=tuple(
                p for i, p in enumerate(e.content.paraphrases) if (e.id, i) not in held)))
            for e in seed
        ]
        ask(entries, [(p, entry_id) for n, (p, entry_id, _) in enumerate(pairs)
                      if n % folds == fold])
    ask([_bare(e) for e in seed], [(p, entry_id) for p, entry_id, _ in pairs])
    ask(seed, [(t, None) for t in oos])
    ask([_bare(e) for e in seed], [(t, None) for t in oos])
    if customer:
        messages = [(q.text, q.faq_id) for q in customer]
        ask(seed, messages, chat=False)
        ask([_bare(e) for e in seed], messages, chat=False)
    return samples
