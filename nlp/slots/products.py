"""The product slot: the goods complained about, from a lexicon of product words and brands.

Nouns outside the lexicon are found after a purchase verb with jieba, imported on first use.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Final

from nlp.slots.text import Span, is_han

_LEXICON_FILE: Final = Path(__file__).with_name("product_words.txt")


@dataclass(frozen=True, slots=True)
class _Lexicon:
    products_zh: dict[str, tuple[str, ...]]  # first character -> words, longest first
    brands_zh: frozenset[str]
    products_en: frozenset[str]
    brands_en: frozenset[str]
    longest_brand: int


@lru_cache(maxsize=1)
def _lexicon() -> _Lexicon:
    sections: dict[str, set[str]] = {"products": set(), "brands": set()}
    section = "products"
    for raw in _LEXICON_FILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        sections[section].add(line.lower())
    zh_products = [w for w in sections["products"] if not w.isascii()]
    index: dict[str, list[str]] = {}
    for word in zh_products:
        index.setdefault(word[0], []).append(word)
    brands = sections["brands"]
    return _Lexicon(
        products_zh={k: tuple(sorted(v, key=len, reverse=True)) for k, v in index.items()},
        brands_zh=frozenset(brands),  # Latin brands too: "oppo手机", "tcl电视"
        products_en=frozenset(w for w in sections["products"] if w.isascii()),
        brands_en=frozenset(w for w in brands if w.isascii()),
        longest_brand=max((len(b) for b in brands), default=0),
    )


_PURCHASE_ANCHOR = re.compile(
    r"(?:买的|购买的|收到的|买了|购买了|收到了?|订购的|订的|下单的|入手的|拍的|网购的)"
)
# Stricter than _PURCHASE_ANCHOR for nouns outside the lexicon: 收到短信 names no product.
_NOUN_ANCHOR = re.compile(r"(?:买的|购买的|买了|购买了|收到的|订购的|下单的|入手的|网购的)")
_POINTING_ANCHOR = re.compile(r"(?:这个|这款|这件|这台|这双|这部|这套|这条|这瓶|这盒|那个|我的)")
_ANCHOR_WINDOW = 6  # characters allowed between an anchor and the product (一台, 黑色的…)
_CLAUSE_END = re.compile(r"[，,。.!！?？;；\n]")
_MODEL = re.compile(r"[A-Za-z][A-Za-z0-9+\-]{0,15} ?$")
# The phone as a tool, not the thing complained about: 手机号, 手机上, 用手机.
_TOOL_AFTER: Final = frozenset("号上里端版店")
_TOOL_BEFORE: Final = frozenset("用拿")
# A product word right before a phone number labels it: 手机13812345678, 手机：138…, phone: 138….
_PHONE_LABEL_GAP = re.compile(r"\s*(?:号码?)?\s*[:：]?\s*")
_GENERIC_NOUNS: Final = frozenset(
    [
        "东西", "商品", "产品", "宝贝", "货", "货物", "质量", "问题", "时候", "快递", "包裹",
        "订单", "客服", "价格", "钱", "情况", "时间", "地址", "颜色", "尺码", "尺寸", "型号",
        "款式", "店", "店铺", "商家", "卖家", "物流", "包装", "发票", "服务", "态度", "效果",
        "味道", "样子", "图片", "照片", "视频", "链接", "页面", "活动", "优惠券", "红包", "会员",
        "积分", "赠品", "月", "天", "年", "次", "短信", "消息", "通知", "电话", "信息", "邮件",
        "验证码", "回复", "退款", "款", "答复", "结果", "反馈",
    ]
)
_NOUN_FLAGS: Final = frozenset({"n", "nz", "nr", "nrt", "nrfg", "ng"})
# Quantities, demonstratives and adjectives may stand between 买的 and the noun: 一件黑色的.
_BEFORE_NOUN_FLAGS: Final = frozenset({"m", "q", "mq", "r", "a", "b", "uj", "x"})
_EN_WORD = re.compile(r"[A-Za-z][A-Za-z\-]*")
# "my phone number", "the tv app": the product word names something else.
_EN_TOOL_AFTER: Final = frozenset({"number", "numbers", "no", "call", "calls", "app", "bill"})
_EN_DETERMINER = re.compile(
    r"\b(?:my|the|this|that|these|those|a|an|our|new)\s+(?:[A-Za-z\-]+\s+){0,2}$", re.IGNORECASE
)
_EN_ORDERED_AFTER = re.compile(
    r"\s+(?:that\s+|which\s+)?I\s+(?:just\s+)?(?:ordered|bought|purchased|got|received)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class _Product:
    start: int
    end: int
    head: str
    anchored: bool
    branded: bool


def _product_anchors(text: str) -> list[int]:
    """Where the words that introduce a product end (买的, 这个…), in order."""
    anchors = [m.end() for m in _PURCHASE_ANCHOR.finditer(text)]
    anchors += [m.end() for m in _POINTING_ANCHOR.finditer(text)]
    return sorted(anchors)


def _labels_phone(text: str, end: int, phone_starts: list[int]) -> bool:
    """Whether the word ending at `end` is the label of a phone number that follows it."""
    following = bisect.bisect_left(phone_starts, end)
    return following < len(phone_starts) and (
        _PHONE_LABEL_GAP.fullmatch(text, end, phone_starts[following]) is not None
    )


def _zh_products(text: str, anchors: list[int], phone_starts: list[int]) -> Iterator[_Product]:
    lex = _lexicon()
    i = 0
    while i < len(text):
        words = lex.products_zh.get(text[i])
        head = next((w for w in words if text.startswith(w, i)), None) if words else None
        if head is None:
            i += 1
            continue
        end = i + len(head)
        after, before = text[end : end + 1], text[i - 1 : i] if i else ""
        if (
            (after and after in _TOOL_AFTER)
            or (before and before in _TOOL_BEFORE)
            or _labels_phone(text, end, phone_starts)
        ):
            i = end
            continue
        start = i
        model = _MODEL.search(text[max(0, i - 17) : i])
        if model and _is_model_name(model.group(0).strip()):
            start = i - len(model.group(0))
        branded = False
        for size in range(min(lex.longest_brand, start), 0, -1):
            brand = text[start - size : start].lower()
            if brand in lex.brands_zh:
                start, branded = start - size, True
                break
        yield _Product(start, end, head, _anchored(text, start, anchors), branded)
        i = end
    # A brand and model without a product word: 买的华为Mate60屏幕碎了, 收到的戴森坏了.
    for anchor in anchors:
        rest = text[anchor : anchor + lex.longest_brand + 17]
        for size in range(min(lex.longest_brand, len(rest)), 0, -1):
            if rest[:size].lower() in lex.brands_zh:
                model = re.match(r" ?[A-Za-z0-9][A-Za-z0-9+\-]{0,15}", rest[size:])
                end = anchor + size + (len(model.group(0)) if model else 0)
                yield _Product(anchor, end, rest[:size], True, True)
                break


def _is_model_name(word: str) -> bool:
    """iPhone15, Mate60, ThinkPad: a digit or an inner capital, unlike plain English words."""
    return any(c.isdigit() for c in word) or any(c.isupper() for c in word[1:])


def _anchored(text: str, start: int, anchors: list[int]) -> bool:
    """Whether an anchor ends at most _ANCHOR_WINDOW characters before start, in its clause."""
    nearest = bisect.bisect_right(anchors, start) - 1
    if nearest < 0 or start - anchors[nearest] > _ANCHOR_WINDOW:
        return False
    return not _CLAUSE_END.search(text, anchors[nearest], start)


def _en_products(
    text: str, zh_anchors: list[int], phone_starts: list[int]
) -> Iterator[_Product]:
    lex = _lexicon()
    words = list(_EN_WORD.finditer(text))
    for i, m in enumerate(words):
        lower = m.group(0).lower()
        pair = f"{lower} {words[i + 1].group(0).lower()}" if i + 1 < len(words) else ""
        if pair in lex.products_en and text[m.end() : words[i + 1].start()] == " ":
            start, end, head = m.start(), words[i + 1].end(), pair
        elif any(form in lex.products_en for form in (lower, lower[:-1], lower[:-2])):
            start, end, head = m.start(), m.end(), lower  # plurals too: blenders, dresses
        else:
            continue
        following = words[i + 1].group(0).lower() if i + 1 < len(words) else ""
        if following in _EN_TOOL_AFTER or _labels_phone(text, end, phone_starts):
            continue
        previous = words[i - 1] if i else None
        branded = (
            previous is not None
            and previous.group(0).lower() in lex.brands_en
            and text[previous.end() : start].isspace()
        )
        if previous is not None and branded:
            start = previous.start()
        anchored = (
            _EN_DETERMINER.search(text[max(0, start - 40) : start]) is not None
            or _EN_ORDERED_AFTER.match(text, end) is not None
            or _anchored(text, start, zh_anchors)
        )
        if anchored:
            yield _Product(start, end, head, True, branded)


@lru_cache(maxsize=1)
def _posseg() -> Any:
    import jieba.posseg

    return jieba.posseg


def _noun_after_purchase(text: str, phone_starts: list[int]) -> tuple[int, int] | None:
    """The noun right after 买的/收到的… when it is not in the lexicon (羊毛衫, 拖拉机).

    Only one word is taken: jieba tags many complaint predicates as nouns (起球, 漏水, 漏电), so
    a run of nouns would turn "羊毛衫起球了" into a product called 羊毛衫起球.
    """
    for anchor in _NOUN_ANCHOR.finditer(text):
        window = _CLAUSE_END.split(text[anchor.end() : anchor.end() + 10], maxsplit=1)[0]
        if len(window) < 2 or not is_han(window[0]):
            continue
        offset = anchor.end()
        for pair in _posseg().cut(window, HMM=False):
            word, flag = str(pair.word), str(pair.flag)
            if flag in _NOUN_FLAGS and word not in _GENERIC_NOUNS:
                if len(word) >= 2 and not _labels_phone(text, offset + len(word), phone_starts):
                    return offset, offset + len(word)
                break
            if word in _GENERIC_NOUNS or flag not in _BEFORE_NOUN_FLAGS:
                break  # a verb or an adverb first: 买的不是正品 names no product
            offset += len(word)
    return None


def find_product(search: str, display: str, phones: Iterable[Span]) -> str | None:
    """The product the customer complains about, quoted from `display`; None when unsure.

    A product introduced by a purchase or pointing word (买的, 这个, "the … I ordered") wins, a
    branded one first; without one, a product word is taken only when no other is in the text,
    and without any, the noun after a purchase word.

    Args:
        search: canonical text, with contact data and numbers blanked out.
        display: the text to quote the product from, at the same offsets as `search`.
        phones: the phone numbers found in `search`; a product word that labels one
            (手机：13812345678) is not the product.
    """
    anchors = _product_anchors(search)
    phone_starts = sorted(span.start for span in phones)
    found = [
        *_zh_products(search, anchors, phone_starts),
        *_en_products(search, anchors, phone_starts),
    ]
    anchored = [p for p in found if p.anchored]
    if anchored:
        best = max(anchored, key=lambda p: (p.branded, -p.start, p.end - p.start))
        return display[best.start : best.end].strip()
    if found and len({p.head for p in found}) == 1:
        first = max(found, key=lambda p: (p.branded, -p.start, p.end - p.start))
        return display[first.start : first.end].strip()
    if not found:
        noun = _noun_after_purchase(search, phone_starts)
        if noun is not None:
            return display[noun[0] : noun[1]]
    return None


def preload() -> None:
    """Load jieba's tagger and read the lexicon now instead of on the first product."""
    _posseg().lcut("预热", HMM=False)
    _lexicon()
