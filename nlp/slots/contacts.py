"""Contact slots: phone numbers, e-mail addresses, ID card numbers, order and tracking numbers.

The patterns are shared with nlp.pii (one definition each), so what the bot fills into a form and
what it masks are found the same way. They expect the canonical form: ASCII digits, Simplified
Chinese (see `nlp.slots.text.canonical`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Final

from nlp.slots.text import Coverage, Span, blank, coverage_of, is_han

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
        short_last = 2 <= len(group) < len(body) and not is_han(following)
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
    found += _unanchored_ids(text, coverage_of(len(text), (span for span, _ in found)))
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
    claimed = coverage_of(len(text), taken)
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



@dataclass(frozen=True, slots=True)
class ContactSlots:
    """The order id, phone and e-mail slots of a text, with the spans they were chosen from."""

    order_id: str | None
    phone: str | None
    email: str | None
    phones: tuple[Span, ...]
    taken: tuple[Span, ...]
    """Every e-mail, order or tracking number, phone and ID card number found: no later slot
    may read a digit of them."""


def contact_slots(text: str) -> ContactSlots:
    """The contact slots of canonical text.

    An order keyword makes the digits after it an order number, never a phone; digits inside an
    e-mail address are neither. The best phone is a mobile or landline before a 400 number.
    """
    emails = find_emails(text)
    id_candidates = _id_candidates(blank(text, emails))
    ids = [span for span, _ in id_candidates]
    phones = _phones(text, ids + emails)
    id_cards = [Span(m.start(), m.end(), m.group(0), "id_card") for m in ID_CARD.finditer(text)]
    return ContactSlots(
        order_id=_best_order(id_candidates),
        phone=_best_phone(phones),
        email=emails[0].value if emails else None,
        phones=tuple(phones),
        taken=(*emails, *ids, *phones, *id_cards),
    )
