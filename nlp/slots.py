"""Slot filling: the facts of the complaint form (DOMAIN.md template 1) found in one message.

Every slot is read from one canonical form of the text (NFKC, Simplified Chinese), so Traditional
and full-width messages are read like any other. Values quoted from the customer (name, product)
are cut from the cleaned text at the same offsets, so they keep the script the customer wrote in.

The patterns are deliberately conservative: a slot the bot leaves empty is asked for, a wrong one
is confirmed back to an already upset customer. jionlp (Chinese time expressions) and jieba (names
versus common words, nouns after a purchase verb) are imported lazily, so a message without a
time word or a name never pays for them; call `preload()` at start-up so no customer does.
"""

from __future__ import annotations

import bisect
import contextlib
import io
import re
import threading
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, Final

from nlp.labels import Demand
from nlp.normalize import clean, to_simplified
from nlp.triage import Amount, Slots

# ---------------------------------------------------------------------------------------------
# Contact patterns, shared with nlp.pii (one definition each). They expect the canonical form:
# ASCII digits, Simplified Chinese (see `canonical`).

MOBILE: Final = re.compile(
    r"(?<![0-9A-Za-z])(?:(?:\+|00)?86[ -]?|\(\+?86\)[ -]?)?"
    r"(1[3-9][0-9])[ -]?([0-9]{4})[ -]?([0-9]{4})(?![0-9A-Za-z])"
)
"""Chinese mobile numbers: 13812345678, 138-1234-5678, +86 138 1234 5678, 0086..., (+86)..."""

LANDLINE: Final = re.compile(
    r"(?<![0-9A-Za-z])(?:\((0[0-9]{2,3})\)[ -]?|(0[0-9]{2,3})[ -])([0-9]{7,8})"
    r"(?:(?:-|转|ext\.? ?)([0-9]{1,5}))?(?![0-9A-Za-z])",
    re.IGNORECASE,
)
"""Landlines with an area code set off by a dash, a space or brackets: 010-12345678, (0755)1234567.

A bare run of digits is not taken: without the separator it cannot be told from other numbers.
"""

HOTLINE: Final = re.compile(
    r"(?<![0-9A-Za-z])([48]00)[ -]?([0-9]{3,4})[ -]?([0-9]{3,4})(?![0-9A-Za-z])"
)
"""400/800 service numbers; the digit groups are checked to add up to ten digits."""

EMAIL: Final = re.compile(
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?)*\.[A-Za-z]{2,24}(?![A-Za-z0-9-])"
)

ID_CARD: Final = re.compile(
    r"(?<![0-9A-Za-z])[1-9][0-9]{5}(?:18|19|20)[0-9]{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])"
    r"[0-9]{3}[0-9Xx](?![0-9A-Za-z])"
)
"""Resident identity card numbers (18 characters, birth date inside, check digit last)."""

_ID_WEIGHTS: Final = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK: Final = "10X98765432"


def is_id_card(number: str) -> bool:
    """Whether an 18-character string has the check digit of a resident identity card (GB 11643)."""
    if len(number) != 18 or not number[:17].isdigit():
        return False
    total = sum(int(d) * w for d, w in zip(number[:17], _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11] == number[17].upper()


@dataclass(frozen=True, slots=True)
class Span:
    """A value found at [start, end) of the text it was found in."""

    start: int
    end: int
    value: str
    kind: str  # what the value is: "mobile", "order", "tracking", "name"…


# ---------------------------------------------------------------------------------------------
# Canonical form

_CONTROL_CHAR = re.compile(
    r"[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f\u200b-\u200f\ufeff]"
)
# Lone surrogates (from JSON "\ud800" escapes) make OpenCC's UTF-8 encoding raise.
_SURROGATE = re.compile(r"[\ud800-\udfff]")


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
    plain = _SURROGATE.sub(" ", _CONTROL_CHAR.sub(" ", "".join(folded)))
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


def _coverage(length: int, spans: Iterable[Span]) -> Coverage:
    coverage = Coverage(length)
    for span in spans:
        coverage.claim(span.start, span.end)
    return coverage


# ---------------------------------------------------------------------------------------------
# Order and tracking numbers

_ID_KEYWORD = re.compile(
    r"(?P<track>快递单号|运单号码?|物流单号|快递号|物流号|运单"
    r"|\btracking(?:\s*(?:number|no\.?|num|id|#))?|\bwaybill(?:\s*(?:number|no\.?))?)"
    r"|(?P<order>订单编号|订单号码?|订单id|订单|单号|\border\b(?:\s*(?:number|no\.?|num|id|#))?)",
    re.IGNORECASE,
)
_ID_AFTER_KEYWORD = re.compile(
    r"(?:[\s:：#=]|是|为|\bis\b){0,4}"
    r"(?P<head>[A-Za-z]{1,6}-)?(?P<body>[0-9A-Za-z]+)(?P<rest>(?:[ -][0-9A-Za-z]+)*)",
    re.IGNORECASE,
)
_PREFIXED_ID = re.compile(
    r"(?<![0-9A-Za-z])([A-Za-z]{1,4})(?:-[0-9]{5,20}|[0-9]{6,20})(?![0-9A-Za-z])"
)
_LONG_DIGITS = re.compile(r"(?<![0-9A-Za-z.\-])[0-9]{10,19}(?![0-9A-Za-z]|\.[0-9])")
# Courier prefixes (SF Express, YTO, ZTO, STO, Yunda, J&T, JD Logistics, China Post…).
_TRACKING_PREFIXES: Final = frozenset(
    {"SF", "YT", "ZTO", "ZT", "STO", "YD", "JT", "JTSD", "JDVA", "JDVB", "JDVC", "JDVD", "JDVE",
     "JDX", "EMS", "DPK", "DBL", "HTKY", "BEST", "TT", "UPS", "DHL", "KYE", "YZ", "LP"}
)
# Prefixes that mark something else than an order: money, chat accounts, phone labels.
_NOT_ORDER_PREFIXES: Final = frozenset(
    {"RMB", "CNY", "USD", "HKD", "EUR", "NT", "QQ", "WX", "VX", "TEL"}
)
_TRACKING_CONTEXT = re.compile(
    r"(快递|物流|运单|顺丰|中通|圆通|韵达|申通|邮政|极兔|tracking|courier|waybill)", re.IGNORECASE
)
_CARD_CONTEXT = re.compile(r"(身份证|证件|卡号|银行卡|信用卡|储蓄卡|card|\bID\b)", re.IGNORECASE)
_KEYWORD_SCORE, _PREFIXED_SCORE, _DIGITS_SCORE = 3, 2, 1


def _looks_like_phone(digits: str) -> bool:
    # A leading 0 is an area code (or a typo): no platform numbers orders that way.
    mobile = re.fullmatch(r"(?:0086|86)?1[3-9][0-9]{9}", digits) is not None
    hotline = len(digits) == 10 and digits[:3] in ("400", "800")
    return mobile or hotline or digits.startswith("0")


def _join_groups(body: str, rest: str) -> tuple[str, int]:
    """The id typed in digit groups ("1234 5678 9012") and how much of `rest` it used.

    Groups are joined only while they have the length of the first one; a shorter last group
    ("... 3456 78") is taken when no unit or currency follows it, so "1234 5678 500元" keeps the
    amount out of the order number.
    """
    if not body.isdigit() or not 3 <= len(body) <= 6:
        return body, 0
    joined, used = body, 0
    for m in re.finditer(r"[ -]([0-9A-Za-z]+)", rest):
        group = m.group(1)
        following = rest[m.end() : m.end() + 1] or " "
        same = len(group) == len(body)
        short_last = 2 <= len(group) < len(body) and not _is_han(following)
        if not group.isdigit() or not (same or short_last):
            break
        joined, used = joined + group, m.end()
        if not same:
            break
    return joined, used


def _keyword_ids(text: str) -> Iterator[tuple[Span, int]]:
    for kw in _ID_KEYWORD.finditer(text):
        after = _ID_AFTER_KEYWORD.match(text, kw.end())
        if after is None:
            continue
        head = after["head"] or ""
        joined, used = _join_groups(after["body"], after["rest"])
        value = head + joined
        compact = value.replace("-", "")
        if not 5 <= len(compact) <= 32 or sum(c.isdigit() for c in compact) < 4:
            continue
        start = after.start("head") if head else after.start("body")
        end = after.start("rest") + used if used else after.end("body")
        kind = "tracking" if kw["track"] else "order"
        yield Span(start, end, value, kind), _KEYWORD_SCORE


def _unanchored_ids(text: str, taken: Coverage) -> Iterator[tuple[Span, int]]:
    for m in _PREFIXED_ID.finditer(text):
        if taken.overlaps(m.start(), m.end()):
            continue
        prefix = m.group(1).upper()
        if prefix in _NOT_ORDER_PREFIXES:
            continue
        before = text[max(0, m.start() - 12) : m.start()]
        tracking = prefix in _TRACKING_PREFIXES or _TRACKING_CONTEXT.search(before) is not None
        kind = "tracking" if tracking else "order"
        yield Span(m.start(), m.end(), m.group(0), kind), _PREFIXED_SCORE
    for m in _LONG_DIGITS.finditer(text):
        digits = m.group(0)
        if taken.overlaps(m.start(), m.end()) or _looks_like_phone(digits):
            continue
        before = text[max(0, m.start() - 12) : m.start()]
        if (len(digits) == 18 and is_id_card(digits)) or _CARD_CONTEXT.search(before):
            continue
        kind = "tracking" if _TRACKING_CONTEXT.search(before) else "order"
        yield Span(m.start(), m.end(), digits, kind), _DIGITS_SCORE


def _id_candidates(text: str) -> list[tuple[Span, int]]:
    found = list(_keyword_ids(text))
    found += _unanchored_ids(text, _coverage(len(text), (span for span, _ in found)))
    return found


def find_order_ids(text: str) -> list[Span]:
    """Order and tracking numbers in canonical text, in text order (kind "order" or "tracking").

    Neither is personal data; nlp.pii keeps them readable.
    """
    return sorted((span for span, _ in _id_candidates(text)), key=lambda s: s.start)


def _best_order(candidates: list[tuple[Span, int]]) -> str | None:
    """The order id found with the most confidence (a keyword before it), the first on a tie."""
    orders = [(span, score) for span, score in candidates if span.kind == "order"]
    if not orders:
        return None
    return max(orders, key=lambda c: (c[1], -c[0].start))[0].value


# ---------------------------------------------------------------------------------------------
# Phones and e-mail

def _phones(text: str, taken: Iterable[Span]) -> list[Span]:
    claimed = _coverage(len(text), taken)
    found: list[Span] = []

    def keep(m: re.Match[str], value: str, kind: str) -> None:
        if not claimed.overlaps(m.start(), m.end()):
            claimed.claim(m.start(), m.end())
            found.append(Span(m.start(), m.end(), value, kind))

    for m in MOBILE.finditer(text):
        keep(m, "".join(m.groups()), "mobile")
    for m in LANDLINE.finditer(text):
        area = m.group(1) or m.group(2)
        # Three-digit area codes exist only for Beijing (010) and the 02x cities.
        if len(area) == 3 and area[1] not in "12":
            continue
        keep(m, f"{area}-{m.group(3)}" + (f"-{m.group(4)}" if m.group(4) else ""), "landline")
    for m in HOTLINE.finditer(text):
        digits = "".join(m.groups())
        if len(digits) == 10:
            keep(m, digits, "hotline")
    return sorted(found, key=lambda s: s.start)


def find_phones(text: str) -> list[Span]:
    """Phone numbers in canonical text, in text order, with normalised values.

    Values are 11-digit mobiles (kind "mobile"), "area-number" landlines ("0755-1234567",
    "landline") and 10-digit 400/800 numbers ("hotline"). Digits after an order keyword are an
    order number, and digits inside an e-mail address are part of the address.
    """
    emails = find_emails(text)
    ids = [span for span, _ in _id_candidates(blank(text, emails))]
    return _phones(text, ids + emails)


def find_emails(text: str) -> list[Span]:
    """E-mail addresses in canonical text."""
    return [Span(m.start(), m.end(), m.group(0), "email") for m in EMAIL.finditer(text)]


_PHONE_RANK: Final = {"mobile": 0, "landline": 1, "hotline": 2}


def _best_phone(phones: list[Span]) -> str | None:
    # A customer leaves a mobile or a landline; a 400 number is usually the shop's own hotline.
    return min(phones, key=lambda s: (_PHONE_RANK[s.kind], s.start)).value if phones else None


# ---------------------------------------------------------------------------------------------
# Amounts of money

_CN_DIGIT: Final = {
    **{c: i for i, c in enumerate("零一二三四五六七八九")},
    **{c: i + 1 for i, c in enumerate("壹贰叁肆伍陆柒捌玖")},
    "〇": 0,
    "两": 2,
}
_CN_UNIT: Final = {"十": 10, "拾": 10, "百": 100, "佰": 100, "千": 1000, "仟": 1000}
_CN_BIG: Final = {"万": 10_000, "亿": 100_000_000}


def parse_number(text: str) -> float | None:
    """A number written in digits, Chinese numerals or a mix, as customers type it.

    Handles the colloquial forms jionlp's parse_money gets wrong: a digit after a unit counts in
    the next lower unit (三百五 = 350, 一千二 = 1200, 两万五 = 25000, 1万2 = 12000), while 零
    keeps its place (一百零五 = 105). "3k" and "2w" are thousands and ten-thousands. None when
    the text is not a number.
    """
    text = text.replace(",", "").replace(" ", "")
    if not text:
        return None
    multiplier = 1.0
    if text[-1] in "kK":
        multiplier, text = 1000.0, text[:-1]
    elif text[-1] in "wW":
        multiplier, text = 10_000.0, text[:-1]
    total = section = 0.0
    number: float | None = None
    last_unit = 0  # the unit just passed, for the colloquial trailing digit; 0 after 零
    seen_digit = False
    i = 0
    while i < len(text):
        char = text[i]
        if char.isascii() and (char.isdigit() or char == "."):
            j = i
            while j < len(text) and text[j].isascii() and (text[j].isdigit() or text[j] == "."):
                j += 1
            try:
                number = float(text[i:j])
            except ValueError:
                return None
            seen_digit, i = True, j
            continue
        if char in _CN_DIGIT:
            digit = _CN_DIGIT[char]
            seen_digit = True
            if digit == 0:
                last_unit, number = 0, None
            elif number is not None and last_unit == 0:
                number = number * 10 + digit  # digit by digit, as in 二零二三
            else:
                number = float(digit)
        elif char in _CN_UNIT:
            section += (1.0 if number is None else number) * _CN_UNIT[char]
            number, last_unit, seen_digit = None, _CN_UNIT[char], True
        elif char in _CN_BIG:
            if number is None and section == 0 and total == 0:
                return None
            big = _CN_BIG[char]
            if big > 10_000:
                total = (total + section + (number or 0.0)) * big
            else:
                total += (section + (number or 0.0)) * big
            section, number, last_unit = 0.0, None, big
        else:
            return None
        i += 1
    if not seen_digit:
        return None
    if number is not None and last_unit >= 100 and number.is_integer() and 1 <= number <= 9:
        number *= last_unit / 10
    return (total + section + (number or 0.0)) * multiplier


_CN_NUMERAL = "零〇一二两三四五六七八九十百千万亿壹贰叁肆伍陆柒捌玖拾佰仟"
# Bounded and starting where a run of digits starts: an unbounded run tried from every offset of
# a long digit string is quadratic (20,000 digits took minutes).
_NUM = (
    rf"(?:(?<![0-9.,])[0-9]{{1,12}}(?:,[0-9]{{3}}){{0,4}}(?:\.[0-9]{{1,4}})?"
    r"(?:[十百千万亿]{1,3}[0-9一二两三四五六七八九]?)?(?: ?[kKwW](?![A-Za-z]))?"
    rf"|(?<![{_CN_NUMERAL}])[{_CN_NUMERAL}]{{1,12}})"
)
_CURRENCY_WORDS: Final = {
    "¥": "CNY", "rmb": "CNY", "cny": "CNY", "人民币": "CNY", "元": "CNY", "元钱": "CNY",
    "圆": "CNY", "块": "CNY", "块钱": "CNY", "$": "USD", "us$": "USD", "usd": "USD",
    "dollar": "USD", "dollars": "USD", "bucks": "USD", "美元": "USD", "美金": "USD",
    "hk$": "HKD", "hkd": "HKD",
    "港币": "HKD", "港元": "HKD", "nt$": "TWD", "twd": "TWD", "台币": "TWD", "新台币": "TWD",
    "€": "EUR", "eur": "EUR", "euro": "EUR", "euros": "EUR", "欧元": "EUR",
}
_AMOUNT_PREFIX = re.compile(
    rf"(?P<cur>¥|us\$|hk\$|nt\$|\$|€|人民币|(?:rmb|cny|usd|hkd|twd|eur)(?![a-z])) ?(?P<num>{_NUM})",
    re.IGNORECASE,
)
_AMOUNT_SUFFIX = re.compile(
    rf"(?P<num>{_NUM}) ?(?:多|余|来)? ?"
    r"(?P<cur>块钱|块|元钱|元|圆|人民币|美元|美金|港币|港元|新台币|台币|欧元"
    r"|(?:rmb|cny|usd|dollars?|bucks|hkd|twd|euros?|eur)(?![a-z]))"
    r"(?P<jiao>[0-9一二三四五六七八九两半](?:毛|角)?)?",
    re.IGNORECASE,
)
_AMOUNT_JIAO = re.compile(rf"(?P<num>{_NUM}) ?(?:毛|角)(?![衣巾线绒呢料毯皮发])")
_UNIT_AFTER = (
    "件个台斤天次只条双箱盒瓶包袋份支张把套年月日号周小分秒岁%倍部辆本位人克公米层楼单赔到"
)
_AMOUNT_VERB = re.compile(
    r"(?P<verb>退我|退给我|退还|退回|退款|退|赔我|赔偿|赔付|补偿|赔|返还|花了|花费|付了|支付了?|付款|实付"
    r"|价格是?|价钱是?|售价|单价|总价|价值|金额(?:是|为)?|差价|运费"
    r"|refund(?:ed)?(?: me)?(?: of)?|paid|spent|cost|charged(?: me)?|compensation of)"
    rf"[ :：]*(?P<num>{_NUM})"
    rf"(?![0-9]|\.[0-9]| ?[{_UNIT_AFTER}]"
    r"| ?(?:times|items?|pcs|pieces|units|days?|hours?|weeks?|months?|years?|orders?|kg|g|lbs?)\b)",
    re.IGNORECASE,
)
# "退一赔三", "假一赔十": multiples of the price, not sums of money.
_MULTIPLE_CLAIM = re.compile(r"[退假][一1]赔[一二三四五六七八九十0-9]+")
# 块 after a number is money, unless a noun follows: 两块蛋糕, 一块手表.
_AFTER_KUAI_OK: Final = frozenset("钱毛角的了啊呀呢吧吗都就买也还退赔给是左多")
_TIED_TO_DEMAND = re.compile(
    r"(退|赔|补偿|返还|refund|compensat|reimburs)[^，,。.!！?？;；]{0,6}$", re.IGNORECASE
)


@dataclass(frozen=True, slots=True)
class _Money:
    start: int
    end: int
    value: float
    currency: str
    tied: bool  # the customer asks for this sum back ("退我500")


def _money(text: str, start: int, end: int, value: float, currency: str) -> _Money:
    before = text[max(0, start - 12) : start]
    return _Money(start, end, round(value, 2), currency, _TIED_TO_DEMAND.search(before) is not None)


def _amounts(text: str) -> list[_Money]:
    text = _MULTIPLE_CLAIM.sub(lambda m: " " * len(m.group(0)), text)
    found: list[_Money] = []
    for m in _AMOUNT_PREFIX.finditer(text):
        value = parse_number(m["num"])
        if value is not None:
            found.append(_money(text, m.start(), m.end(), value, _CURRENCY_WORDS[m["cur"].lower()]))
    for m in _AMOUNT_SUFFIX.finditer(text):
        suffixed = _suffixed(text, m)
        if suffixed is not None:
            found.append(suffixed)
    for m in _AMOUNT_JIAO.finditer(text):
        value = parse_number(m["num"])
        if value is not None and value < 100:
            found.append(_money(text, m.start(), m.end(), value / 10, "CNY"))
    for m in _AMOUNT_VERB.finditer(text):
        num = m["num"]
        # A bare Chinese numeral needs a unit to be money: 赔三百, not 退一.
        if not num[0].isascii() and not re.search(r"[十百千万亿拾佰仟]", num):
            continue
        value = parse_number(num)
        if value is not None:
            found.append(_money(text, m.start("num"), m.end(), value, "CNY"))
    # Where two patterns read the same number, the one that saw a currency (found first) wins.
    claimed = Coverage(len(text))
    kept: list[_Money] = []
    for money in found:
        if not claimed.overlaps(money.start, money.end):
            claimed.claim(money.start, money.end)
            kept.append(money)
    return kept


def _suffixed(text: str, m: re.Match[str]) -> _Money | None:
    """The sum of a number followed by a currency word, with 角 after 块 (两块五 = 2.5)."""
    value = parse_number(m["num"])
    if value is None:
        return None
    cur = m["cur"].lower()
    jiao = m["jiao"] or ""
    end = m.end()
    if jiao and (jiao[-1] in "毛角" or value < 100) and not _unit_follows(text, end):
        value += 0.5 if jiao[0] == "半" else (parse_number(jiao[0]) or 0.0) / 10
    elif jiao:
        end -= len(jiao)
        jiao = ""
    after = text[end : end + 1]
    if cur == "元" and after and after in "素旦宵":
        return None  # 元素, 元旦, 元宵
    if cur == "块" and not jiao and after and _is_han(after) and after not in _AFTER_KUAI_OK:
        return None
    return _money(text, m.start(), end, value, _CURRENCY_WORDS[cur])


def _unit_follows(text: str, pos: int) -> bool:
    return pos < len(text) and (text[pos].isdigit() or text[pos] in _UNIT_AFTER)


def _is_han(char: str) -> bool:
    return "\u3400" <= char <= "\u9fff" or "\uf900" <= char <= "\ufaff"


def _best_amount(found: list[_Money]) -> Amount | None:
    if not found:
        return None
    best = max(found, key=lambda m: (m.tied, m.value))
    return Amount(value=best.value, currency=best.currency)


# ---------------------------------------------------------------------------------------------
# Demand

_NEGATION = re.compile(
    r"(?:不用|不要|不想|不需要|无需|没必要|不必|用不着|不打算|不考虑|不求|不是要|并不想)"
    r"(?:你们|给我|帮我|再|去|申请|了|求|要)?$"
    r"|\b(?:don[’']?t|do not|doesn[’']?t|no need (?:for|to)|not|never)\s+(?:[a-z’']+\s+){0,3}$",
    re.IGNORECASE,
)
# What follows 换 when the customer changes something else than the goods: 换个地址, 换人.
_NOT_GOODS = r"(?!个?(?:地址|电话|手机号|号码|时间|客服|人|快递|物流))"
# A verb that asks for the demand: 要退, 想换. Lookbehinds, so that the match starts at 退/换
# and the negation check sees "不要" whole.
_ASKING = "|".join(
    f"(?<={verb})" for verb in ("能", "可以", "要", "想", "申请", "给我", "帮我", "必须", "马上")
)
# Checked in this order: the first demand found unnegated wins ("退货退款并赔偿" -> compensation).
_DEMANDS: Final = (
    (Demand.COMPENSATION, re.compile(
        r"赔偿|补偿|赔钱|赔付|赔我|[退假][一1]赔|倍赔|\bcompensat\w*", re.IGNORECASE)),
    (Demand.REFUND, re.compile(
        rf"退款|退钱|退费|退货|退我|退给我|退回|全额退|把钱退|钱退|退差价|补差价|(?:{_ASKING})退"
        r"|\brefund\w*|money back|\breimburse\w*", re.IGNORECASE)),
    (Demand.EXCHANGE, re.compile(
        rf"换货|换新|调换|换一[个台件双部条只盒瓶套]|换个{_NOT_GOODS}|(?:{_ASKING})换{_NOT_GOODS}"
        r"|更换(?:商品|产品|新的|一)"
        r"|\bexchange\w*|\breplace\w*|\bswap\b", re.IGNORECASE)),
    (Demand.REPAIR, re.compile(
        r"维修|修一下|修好|修理|保修|返修|送修|报修|\brepair\w*|\bfix(?:ed)?\b|\bwarranty\b",
        re.IGNORECASE)),
    (Demand.APOLOGY, re.compile(
        r"道歉|给个说法|给我个说法|给一个说法|赔礼|认错|\bapologi[sz]\w*|\bapology\b|say sorry",
        re.IGNORECASE)),
    (Demand.OTHER, re.compile(
        r"补发|重发|重新发|再发一|开发票|开票|取消订单|\bresend\b|\bre-send\b|\breship\b"
        r"|send (?:it|me|another) again|cancel (?:the|my) order|\binvoice\b", re.IGNORECASE)),
)


def _demand(text: str) -> Demand | None:
    for demand, pattern in _DEMANDS:
        for m in pattern.finditer(text):
            if _NEGATION.search(text[max(0, m.start() - 30) : m.start()]) is None:
                return demand
    return None


# ---------------------------------------------------------------------------------------------
# Customer name

# Common surnames; a name is only taken when it starts with one (better empty than wrong).
_SURNAMES: Final = frozenset(
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任"
    "沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫"
    "孔向汤常温康施文牛樊葛邢安齐易乔伍庞颜倪庄聂章鲁岳翟殷詹申欧耿关兰焦俞左柳甘祝包宁尚符舒阮柯纪梅"
    "童凌毕单季裴霍涂成苗谷盛曲翁冉骆蓝路游辛靳管柴蒙鲍华喻祁蒲房滕屈饶解牟艾尤阳时穆农司卓古吉缪简车"
    "项连芦麦褚娄窦戚岑景党宫费卜冷晏席卫米柏宗瞿桂全佟应臧闵苟邬边卞姬师和仇栾隋商刁沙荣巫寇桑郎甄丛"
    "仲虞敖巩明佘池查麻苑迟邝"
)
COMPOUND_SURNAMES: Final = frozenset(
    {"欧阳", "司马", "上官", "诸葛", "东方", "皇甫", "慕容", "司徒", "令狐", "夏侯", "公孙", "长孙",
     "尉迟", "宇文", "独孤", "端木", "南宫", "西门", "轩辕", "呼延"}
)
TITLES: Final = re.compile(r"先生|女士|小姐|太太|老师|师傅")
"""Polite forms that follow a surname: 李女士, 王先生."""
_NAME_ANCHOR = re.compile(
    r"(?P<customer>我叫|我的名字[是叫]|名字[是叫]|姓名[是为]?|联系人[是为]?|本人|我是)"
    r"|(?P<recipient>收件人[是为]?|收货人[是为]?)"
    r"|(?P<english>\bmy name is\b|\bmy name's\b|\bname\s*:)",
    re.IGNORECASE,
)
_ANCHOR_GAP = re.compile(r"[\s:：]*")
# Characters that never belong to a given name but often follow one.
_NOT_GIVEN: Final = frozenset("我你他她它的了是在和跟也都就还从这那吗呢吧啊呀哦么个们买卖要想说用")
_AFTER_NAME: Final = frozenset(
    "我你他她的了是在和跟也都就还从这那吗呢吧啊呀哦么买卖要想说用今昨前上下这订电手联住家因之刚去来已对有请帮给但可所"
)
# Words jieba's dictionary tags as person names that are roles or things here.
_NOT_NAMES: Final = frozenset({"白领", "文明", "林子", "叶子", "石头"})
# Two letters at least: "J*** S***", a name masked by nlp.pii, is no name to find again.
_LATIN_NAME = re.compile(r"[A-Za-z][A-Za-z'\-]+(?:\s+[A-Z][A-Za-z'\-]+){0,2}(?![*])")
_ENGLISH_NOT_NAME: Final = frozenset(
    {"and", "i", "my", "from", "the", "order", "is", "was", "but", "not", "a", "an", "here",
     "please"}
)


@lru_cache(maxsize=1)
def _word_tags() -> dict[str, str]:
    """jieba's dictionary of words and their part of speech, to tell 高价/江苏 from names."""
    import jieba.posseg

    tags: dict[str, str] = jieba.posseg.dt.word_tag_tab
    return tags


def _is_common_word(word: str) -> bool:
    tag = _word_tags().get(word)
    return word in _NOT_NAMES or (tag is not None and not tag.startswith("nr"))


def _chinese_name(text: str, pos: int) -> Span | None:
    surname_len = 2 if text[pos : pos + 2] in COMPOUND_SURNAMES else 1
    if surname_len == 1 and text[pos : pos + 1] not in _SURNAMES:
        return None
    after_surname = pos + surname_len
    title = TITLES.match(text, after_surname)
    if title:
        return Span(pos, title.end(), text[pos : title.end()], "name")
    for given in (2, 1):
        end = after_surname + given
        name = text[pos:end]
        if len(name) < surname_len + given or not all(
            _is_han(c) and c not in _NOT_GIVEN for c in name[surname_len:]
        ):
            continue
        follow = text[end : end + 1]
        ends_there = not follow or not _is_han(follow) or follow in _AFTER_NAME
        if not ends_there and not TITLES.match(text, end):
            continue
        if _is_common_word(name) or (surname_len == 1 and given == 2 and _is_common_word(name[:2])):
            continue
        return Span(pos, end, name, "name")
    return None


def _latin_name(text: str, pos: int) -> Span | None:
    m = _LATIN_NAME.match(text, pos)
    if m is None:
        return None
    words = list(re.finditer(r"[A-Za-z][A-Za-z'\-]+", m.group(0)))
    if not words[0].group(0)[0].isupper():
        words = words[:1]  # typed in lower case: only the first word is surely part of the name
    if words[0].group(0).lower() in _ENGLISH_NOT_NAME:
        return None
    end = pos + words[-1].end()
    return Span(pos, end, text[pos:end], "name")


def find_names(text: str, *, recipients: bool = True) -> list[Span]:
    """Person names introduced in canonical text, in text order.

    我叫张三, 我是李女士, 本人王小明, 姓名：赵六, "my name is John Smith" give kind "name";
    收件人/收货人 give kind "recipient" (left out with recipients=False: the parcel may be for
    someone else). A name must start with a common surname and not be a dictionary word
    (我是高价买的, 我是江苏人).
    """
    found: list[Span] = []
    for anchor in _NAME_ANCHOR.finditer(text):
        if anchor["recipient"] and not recipients:
            continue
        pos = _ANCHOR_GAP.match(text, anchor.end())
        start = pos.end() if pos else anchor.end()
        if start >= len(text):
            continue
        latin_allowed = anchor["english"] or anchor.group(0) == "我叫"
        if anchor["english"] or (text[start].isascii() and text[start].isalpha()):
            span = _latin_name(text, start) if latin_allowed else None
        else:
            span = _chinese_name(text, start)
        if span is not None:
            kind = "recipient" if anchor["recipient"] else "name"
            found.append(Span(span.start, span.end, span.value, kind))
    return found


# ---------------------------------------------------------------------------------------------
# Product

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


def _zh_products(text: str, anchors: list[int]) -> Iterator[_Product]:
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
        if (after and after in _TOOL_AFTER) or (before and before in _TOOL_BEFORE):
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


def _en_products(text: str, zh_anchors: list[int]) -> Iterator[_Product]:
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
        if following in _EN_TOOL_AFTER:
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


def _noun_after_purchase(text: str) -> tuple[int, int] | None:
    """The noun right after 买的/收到的… when it is not in the lexicon (羊毛衫, 拖拉机).

    Only one word is taken: jieba tags many complaint predicates as nouns (起球, 漏水, 漏电), so
    a run of nouns would turn "羊毛衫起球了" into a product called 羊毛衫起球.
    """
    for anchor in _NOUN_ANCHOR.finditer(text):
        window = _CLAUSE_END.split(text[anchor.end() : anchor.end() + 10], maxsplit=1)[0]
        if len(window) < 2 or not _is_han(window[0]):
            continue
        offset = anchor.end()
        for pair in _posseg().cut(window, HMM=False):
            word, flag = str(pair.word), str(pair.flag)
            if flag in _NOUN_FLAGS and word not in _GENERIC_NOUNS:
                if len(word) >= 2:
                    return offset, offset + len(word)
                break
            if word in _GENERIC_NOUNS or flag not in _BEFORE_NOUN_FLAGS:
                break  # a verb or an adverb first: 买的不是正品 names no product
            offset += len(word)
    return None


def _product(search: str, display: str) -> str | None:
    anchors = _product_anchors(search)
    found = [*_zh_products(search, anchors), *_en_products(search, anchors)]
    anchored = [p for p in found if p.anchored]
    if anchored:
        best = max(anchored, key=lambda p: (p.branded, -p.start, p.end - p.start))
        return display[best.start : best.end].strip()
    if found and len({p.head for p in found}) == 1:
        first = max(found, key=lambda p: (p.branded, -p.start, p.end - p.start))
        return display[first.start : first.end].strip()
    if not found:
        noun = _noun_after_purchase(search)
        if noun is not None:
            return display[noun[0] : noun[1]]
    return None


# ---------------------------------------------------------------------------------------------
# Incident time

_N = r"[0-9一二两三四五六七八九十]"
_CLOCK = rf"{_N}{{1,3}}[点时](?:{_N}{{1,2}}分?|半|一刻|三刻|整)?"
_ZH_DATE = rf"(?<![0-9]){_N}{{1,3}}月(?:份|初|上旬|中旬|下旬|中|底|末|{_N}{{1,3}}[日号]?)?"
# Not a house number: 建国路88号, 3号楼.
_ZH_DAY = (
    rf"(?<![0-9路街道巷弄村里院楼栋]){_N}{{1,3}}[日号](?![楼院单元栋层室门线路床房口码店仓位车])"
)
_ZH_WEEKDAY = r"(?:周|星期|礼拜)[一二三四五六日天末]"
_ZH_WEEK = rf"(?:上上|上|本|这)个?(?:周|星期|礼拜)[一二三四五六日天末]?|{_ZH_WEEKDAY}"
_ZH_FESTIVAL = (
    r"双十一|双11|双十二|双12|国庆节?|元旦|春节|中秋节?|圣诞节?|除夕|元宵节?|端午节?|情人节|七夕"
)
_ZH_PART = r"凌晨|清晨|早上|早晨|上午|中午|下午|傍晚|晚上|夜里|半夜|深夜|白天"
_ZH_AGO_UNIT = r"分钟|小时|钟头|天|日|周|星期|礼拜|月|年"
_ZH_AGO = rf"(?<![0-9])(?:{_N}{{1,3}}|半|几|一两|两三)个?多?(?:{_ZH_AGO_UNIT})(?:之)?前"
_ZH_REL_DAY = r"大前天|前天|昨天|今天|当天|昨日|今日|昨晚|今晚|前晚|今早|昨早|明天|后天"
# 本月/这个月 is left out: "这个月第三次了" counts complaints, it dates nothing.
_ZH_MONTH_REL = r"上上个?月|上个?月"
_ZH_TIME = re.compile(
    rf"(?:刚才|刚刚|{_ZH_AGO}|[0-9]{{4}}[-/.][0-9]{{1,2}}[-/.][0-9]{{1,2}}(?![0-9])|(?:[0-9]{{4}}|[去今前])年"
    rf"|{_ZH_REL_DAY}|{_ZH_WEEK}|{_ZH_MONTH_REL}|{_ZH_DATE}|{_ZH_DAY}|{_ZH_FESTIVAL}|{_ZH_PART}"
    rf"|(?<![0-9])[0-9]{{1,2}}[点时](?:[0-9]{{1,2}}分?|半|一刻|三刻|整)?)"
    rf"(?:的?(?:{_ZH_DATE}|{_ZH_DAY}|{_ZH_WEEK}|{_ZH_FESTIVAL}|{_ZH_PART}|{_CLOCK})){{0,4}}"
)
_ZH_AGO_HEAD = re.compile(
    rf"(?P<qty>{_N}{{1,3}}|半|几|一两|两三)个?多?(?P<unit>{_ZH_AGO_UNIT})(?:之)?前"
)
_ZH_MONTH_ONLY = re.compile(rf"(?:(?P<year>[0-9]{{4}}|[去今前])年)?(?P<month>{_N}{{1,3}})月份?")
_ZH_ABBREVIATIONS: Final = (
    ("昨晚", "昨天晚上"), ("今晚", "今天晚上"), ("前晚", "前天晚上"), ("今早", "今天早上"),
    ("昨早", "昨天早上"), ("昨日", "昨天"), ("今日", "今天"),
)

_MONTHS: Final = {
    "jan": 1, "feb": 2, "mar": 3, "apr": 4, "may": 5, "jun": 6, "jul": 7, "aug": 8, "sep": 9,
    "oct": 10, "nov": 11, "dec": 12,
}
_WEEKDAYS: Final = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_EN_NUMBERS: Final = {
    "a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "a couple of": 2,
}
_EN_MONTH = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
    r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"
)
_EN_TIME = re.compile(
    r"\b(?:(?P<rel>the day before yesterday|yesterday|today|tonight|last night|just now"
    r"|this (?:morning|afternoon|evening))"
    r"|(?P<qty>\d{1,3}|a couple of|a few|several|an?|one|two|three|four|five|six|seven|eight"
    r"|nine|ten|eleven|twelve)\s+(?P<unit>minute|hour|day|week|month|year)s?\s+ago"
    r"|last\s+(?P<last>week|month|year|weekend|" + "|".join(_WEEKDAYS) + r")"
    r"|(?:on\s+)?(?P<weekday>" + "|".join(_WEEKDAYS) + r")"
    rf"|(?:on\s+)?(?P<mname>{_EN_MONTH})\.?\s+(?P<mday>\d{{1,2}})(?:st|nd|rd|th)?\b(?:,?\s+(?P<myear>\d{{4}}))?"
    rf"|(?:on\s+)?(?:the\s+)?(?P<dday>\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?(?P<dname>{_EN_MONTH})\b\.?"
    r"(?:,?\s+(?P<dyear>\d{4}))?"
    r"|(?P<iso>\d{4}-\d{1,2}-\d{1,2})"
    r"|(?P<slash>\d{1,2}/\d{1,2}/\d{2,4}|(?<=on )\d{1,2}/\d{1,2}))"
    r"(?:\s+(?P<part>morning|afternoon|evening|night))?"
    r"(?:\s+(?:at\s+)?(?P<hour>\d{1,2})(?::(?P<minute>\d{2}))?\s*(?P<ampm>am|pm|a\.m\.|p\.m\.)"
    r"|\s+at\s+(?P<hour24>\d{1,2})(?::(?P<minute24>\d{2}))?)?"
    r"(?![0-9A-Za-z])",
    re.IGNORECASE,
)
_PART_HOURS: Final = {"morning": 6, "afternoon": 13, "evening": 18, "night": 18, "tonight": 18}
_MAX_TIME_CANDIDATES = 6  # each Chinese candidate costs a jionlp call; the incident comes early
_JIONLP_LOCK = threading.Lock()  # jionlp's TimeParser keeps per-call state on a shared instance


@lru_cache(maxsize=1)
def _jionlp() -> Any:
    # jionlp prints a banner on stdout at import, which would corrupt JSON printed by the CLI.
    with contextlib.redirect_stdout(io.StringIO()):
        import jionlp
    return jionlp


def _months_back(base: datetime, months: int) -> datetime:
    index = base.year * 12 + base.month - 1 - months
    year, month = divmod(index, 12)
    return base.replace(year=year, month=month + 1, day=1)


def _day_start(moment: datetime) -> datetime:
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def _zh_ago(match: re.Match[str], ref: datetime) -> datetime | None:
    qty_text, unit = match["qty"], match["unit"]
    if qty_text in ("几", "一两", "两三"):
        return None  # 几天前, 一两天前: too vague to write on a form
    qty = 0.5 if qty_text == "半" else parse_number(qty_text)
    if not qty:
        return None
    if unit == "分钟":
        return ref.replace(second=0, microsecond=0) - timedelta(minutes=qty)
    if unit in ("小时", "钟头"):
        return ref.replace(second=0, microsecond=0) - timedelta(hours=qty)
    if unit in ("天", "日"):
        return _day_start(ref - timedelta(days=qty))
    if unit in ("周", "星期", "礼拜"):
        return _day_start(ref - timedelta(weeks=qty))
    months = int(qty * 12) if unit == "年" else int(qty) if qty >= 1 else 0
    if months == 0:
        return _day_start(ref - timedelta(days=15))  # 半个月前
    first = _months_back(ref, months)
    day = min(ref.day, _month_length(first))
    return _day_start(first.replace(day=day))


def _month_length(first_of_month: datetime) -> int:
    return (_months_back(first_of_month, -1) - first_of_month).days


def _jionlp_start(expression: str, ref: datetime) -> datetime | None:
    jio = _jionlp()
    base = [ref.year, ref.month, ref.day, ref.hour, ref.minute, ref.second]
    try:
        with _JIONLP_LOCK:
            result = jio.parse_time(expression, time_base=base)
    except (ValueError, IndexError, KeyError, TypeError):
        # jionlp raises these (mostly ValueError) on strings it has no rule for.
        return None
    if not isinstance(result, dict) or result.get("type") not in ("time_point", "time_span"):
        return None  # durations ("3天") and periods ("每周一") are no moment
    times = result.get("time")
    if not isinstance(times, list) or not times:
        return None
    try:
        return datetime.strptime(str(times[0]), "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return None


def _zh_time(expression: str, ref: datetime) -> datetime | None:
    if expression in ("刚才", "刚刚"):
        return ref.replace(second=0, microsecond=0)
    ago = _ZH_AGO_HEAD.match(expression)
    if ago and ago.end() == len(expression):
        return _zh_ago(ago, ref)
    if re.fullmatch(_ZH_MONTH_REL, expression):
        return _day_start(_months_back(ref, 2 if expression.startswith("上上") else 1))
    month_only = _ZH_MONTH_ONLY.fullmatch(expression)
    if month_only:
        return _month_only(month_only, ref)
    for short, full in _ZH_ABBREVIATIONS:
        expression = expression.replace(short, full)
    start = _jionlp_start(expression, ref)
    if start is None and ago:
        return _zh_ago(ago, ref)  # 三天前的下午: the day at least
    if start is None or start <= ref:
        return start
    return _past_instead(expression, start, ref)


def _month_only(match: re.Match[str], ref: datetime) -> datetime | None:
    month = parse_number(match["month"])
    if month is None or not 1 <= month <= 12:
        return None
    year_text = match["year"]
    offsets = {"去": -1, "今": 0, "前": -2}
    if not year_text:
        year = ref.year
    else:
        year = ref.year + offsets[year_text] if year_text in offsets else int(year_text)
    start = datetime(year, int(month), 1)
    if start > ref and not year_text:
        start = start.replace(year=year - 1)
    return start if start <= ref else None


def _past_instead(expression: str, start: datetime, ref: datetime) -> datetime | None:
    """The past date a customer means by an expression jionlp resolved into the future.

    A complaint is about something that happened: "12月20号" written in November is last year's,
    "周日" written on a Wednesday is last Sunday, "晚上8点" written in the morning is last night.
    Expressions that are plainly future (明天, 下周) or have an explicit year stay unresolved.
    """
    if "年" in expression or re.search(r"明天|后天|下周|下个", expression):
        return None
    if re.search(_ZH_FESTIVAL, expression):
        return _jionlp_start("去年" + expression, ref)
    if "月" in expression:
        candidate = _shift_year(start, -1)
    elif re.match(_ZH_WEEKDAY, expression):
        candidate = start - timedelta(days=7)
    elif re.match(_ZH_DAY, expression):
        first = _months_back(start, 1)
        day = min(start.day, _month_length(first))
        candidate = first.replace(day=day, hour=start.hour, minute=start.minute)
    elif re.match(rf"(?:{_ZH_PART}|[0-9]{{1,2}}[点时])", expression):
        candidate = start - timedelta(days=1)
    else:
        return None
    return candidate if candidate <= ref else None


def _shift_year(moment: datetime, years: int) -> datetime:
    try:
        return moment.replace(year=moment.year + years)
    except ValueError:  # 29 February
        return moment.replace(year=moment.year + years, day=28)


def _en_time(m: re.Match[str], ref: datetime) -> datetime | None:
    today = _day_start(ref)
    day: datetime | None
    if m["rel"]:
        rel = m["rel"].lower()
        if rel == "just now":
            return ref.replace(second=0, microsecond=0)
        back = {"the day before yesterday": 2, "yesterday": 1, "last night": 1}.get(rel, 0)
        day = today - timedelta(days=back)
        if rel in ("last night", "tonight"):
            day = day.replace(hour=18)
        elif rel.startswith("this "):
            day = day.replace(hour=_PART_HOURS[rel[5:]])
    elif m["unit"]:
        qty_text = m["qty"].lower()
        if qty_text in ("a few", "several"):
            return None
        qty = int(qty_text) if qty_text.isdigit() else _EN_NUMBERS[re.sub(r"\s+", " ", qty_text)]
        unit = m["unit"].lower()
        if unit in ("minute", "hour"):
            return ref.replace(second=0, microsecond=0) - timedelta(**{f"{unit}s": qty})
        if unit in ("day", "week"):
            return today - timedelta(days=qty * (7 if unit == "week" else 1))
        first = _months_back(ref, qty * (12 if unit == "year" else 1))
        return _day_start(first.replace(day=min(ref.day, _month_length(first))))
    elif m["last"]:
        day = _en_last(m["last"].lower(), today)
    elif m["weekday"]:
        target = _WEEKDAYS.index(m["weekday"].lower())
        day = today - timedelta(days=(today.weekday() - target) % 7)
    else:
        day = _en_date(m, ref)
    if day is None:
        return None
    return _with_clock(m, day)


def _en_last(word: str, today: datetime) -> datetime:
    monday = today - timedelta(days=today.weekday())
    if word == "week":
        return monday - timedelta(days=7)
    if word == "weekend":
        return monday - timedelta(days=2)
    if word == "month":
        return _months_back(today, 1)
    if word == "year":
        return today.replace(year=today.year - 1, month=1, day=1)
    target = _WEEKDAYS.index(word)
    return today - timedelta(days=(today.weekday() - target - 1) % 7 + 1)


def _en_date(m: re.Match[str], ref: datetime) -> datetime | None:
    year: int | None
    if m["iso"]:
        year, month, day = (int(x) for x in m["iso"].split("-"))
    elif m["slash"]:
        parts = [int(x) for x in m["slash"].split("/")]
        month, day = parts[0], parts[1]  # US order: customers writing English dates use it
        year = (parts[2] + 2000 if parts[2] < 100 else parts[2]) if len(parts) == 3 else None
    else:
        name = (m["mname"] or m["dname"]).lower()[:3]
        month = _MONTHS[name]
        day = int(m["mday"] or m["dday"])
        year_text = m["myear"] or m["dyear"]
        year = int(year_text) if year_text else None
    try:
        date = datetime(year or ref.year, month, day)
    except ValueError:
        return None
    if year is None and date > ref:
        date = _shift_year(date, -1)
    return date


def _with_clock(m: re.Match[str], day: datetime) -> datetime:
    if m["part"]:
        day = day.replace(hour=_PART_HOURS[m["part"].lower()])
    hour_text = m["hour"] or m["hour24"]
    if hour_text is None:
        return day
    hour = int(hour_text)
    ampm = (m["ampm"] or "").lower().replace(".", "")
    if ampm == "pm" and hour < 12:
        hour += 12
    elif ampm == "am" and hour == 12:
        hour = 0
    minute = int(m["minute"] or m["minute24"] or 0)
    if hour > 23 or minute > 59:
        return day
    return day.replace(hour=hour, minute=minute)


def _incident_time(text: str, ref: datetime) -> str | None:
    candidates = [(m.start(), m, True) for m in _ZH_TIME.finditer(text)]
    candidates += [(m.start(), m, False) for m in _EN_TIME.finditer(text)]
    for _, match, chinese in sorted(candidates, key=lambda c: c[0])[:_MAX_TIME_CANDIDATES]:
        try:
            moment = _zh_time(match.group(0), ref) if chinese else _en_time(match, ref)
        except (ValueError, OverflowError):
            # Absurd dates leave datetime's range: 九千年前, 0000年5月, 999 years ago.
            continue
        if moment is not None and moment <= ref:
            return moment.isoformat(timespec="seconds")
    return None


# ---------------------------------------------------------------------------------------------
# Entry points


def extract_slots(text: str, reference_time: datetime | None = None) -> Slots:
    """The complaint-form slots found in one raw customer message.

    Args:
        text: what the customer wrote, in any script; it is cleaned and converted to Simplified
            Chinese here (nlp.normalize), and cut at nlp.normalize.MAX_CHARS.
        reference_time: the moment relative times ("昨天下午", "3 days ago") count from, naive local
            time; now when absent. An aware datetime is read in its own time zone.

    Returns:
        The slots found; a slot the text does not state clearly is None. Never raises on any
        text: empty, huge, control characters or emoji only give an empty `Slots`.
    """
    ref = (reference_time or datetime.now()).replace(tzinfo=None, microsecond=0)
    cleaned = clean(_SURROGATE.sub("", text))
    if not cleaned:
        return Slots()
    simplified = to_simplified(cleaned)
    # Quoted values (name, product) come from the cleaned text when offsets agree, keeping the
    # customer's script; OpenCC changes the length only for rare phrases.
    display = cleaned if len(simplified) == len(cleaned) else simplified
    search = simplified

    emails = find_emails(search)
    id_candidates = _id_candidates(blank(search, emails))
    ids = [span for span, _ in id_candidates]
    phones = _phones(search, ids + emails)
    id_cards = [Span(m.start(), m.end(), m.group(0), "id_card") for m in ID_CARD.finditer(search)]
    # What is left once contact data and numbers are out, so no digit of a phone becomes money.
    rest = blank(search, [*emails, *ids, *phones, *id_cards])

    names = find_names(search, recipients=False)
    return Slots(
        order_id=_best_order(id_candidates),
        phone=_best_phone(phones),
        email=emails[0].value if emails else None,
        amount=_best_amount(_amounts(rest)),
        product=_product(rest, display),
        incident_time=_incident_time(rest, ref),
        demand=_demand(rest),
        customer_name=display[names[0].start : names[0].end] if names else None,
    )


def preload() -> None:
    """Import jionlp and jieba and read the lexicon now (about 3 s) instead of on first use."""
    _jionlp()
    _word_tags()
    _posseg().lcut("预热", HMM=False)
    _lexicon()
