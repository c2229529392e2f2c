"""The amount slot: numbers as customers write them, and the sums of money among them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from nlp.slots.text import Coverage, is_han
from nlp.triage import Amount

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
    if cur == "块" and not jiao and after and is_han(after) and after not in _AFTER_KUAI_OK:
        return None
    return _money(text, m.start(), end, value, _CURRENCY_WORDS[cur])


def _unit_follows(text: str, pos: int) -> bool:
    return pos < len(text) and (text[pos].isdigit() or text[pos] in _UNIT_AFTER)


def _best_amount(found: list[_Money]) -> Amount | None:
    if not found:
        return None
    best = max(found, key=lambda m: (m.tied, m.value))
    return Amount(value=best.value, currency=best.currency)


def find_amount(text: str) -> Amount | None:
    """The sum of money a text is about: one the customer asks back first, else the largest.

    Expects canonical text with phone and order numbers blanked out, so none of their digits
    is read as money.
    """
    return _best_amount(_amounts(text))

