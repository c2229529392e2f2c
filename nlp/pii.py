"""Masking of personal data in customer text (DOMAIN.md, privacy rule).

Phone numbers, addresses and ID numbers may be seen only by the staff handling the complaint, so
text that goes anywhere else (logs, reports, training data, other agents) is masked first. Phone
and e-mail patterns, order numbers and names come from nlp.slots, so what the bot fills into a
form and what it hides are found the same way. Order and tracking numbers are not personal data
and stay readable: they are what a supervisor needs to look a case up.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from nlp.slots import (
    COMPOUND_SURNAMES,
    ID_CARD,
    TITLES,
    Coverage,
    Span,
    blank,
    canonical,
    find_emails,
    find_names,
    find_order_ids,
    find_phones,
    is_id_card,
)

_ID_KEYWORD = re.compile(
    r"(?:身份证号?码?|证件号码?|\bID\s*(?:card\s*)?(?:number|no\.?)|\bID\b)[\s:：#]*(?:是|为)?[\s:：]*"
    r"(?P<id>[0-9]{17}[0-9Xx]|[0-9]{15})(?![0-9A-Za-z])",
    re.IGNORECASE,
)
_BANK_CARD = re.compile(
    r"(?:银行卡号?|卡号|信用卡号?|储蓄卡号?|借记卡号?|\bcard\s*(?:number|no\.?|#)"
    r"|\baccount\s*(?:number|no\.?))[\s:：#]*(?:是|为)?[\s:：]*"
    r"(?P<card>[0-9](?:[ -]?[0-9]){11,22})(?![0-9])",
    re.IGNORECASE,
)
_ADDRESS_KEYWORD = re.compile(
    r"(?:收货地址|收件地址|送货地址|家庭住址|详细地址|地址|住址|家住|住在|寄到|送到"
    r"|\baddress\b|\bI live at\b|\blive at\b)(?:是|为|在)?[\s:：]*",
    re.IGNORECASE,
)
# Where an address ends: the end of the clause, or the next field of a form-like message.
_ADDRESS_END = re.compile(
    r"[，,。；;！!？?\n]|电话|手机|联系|收件人|收货人|姓名|邮编|\btel\b|\bphone\b", re.IGNORECASE
)
_ENGLISH_ADDRESS_END = re.compile(r"\.\s|[;!?\n]|\btel\b|\bphone\b", re.IGNORECASE)
_ADDRESS_MAX = 60
_HAN = r"[\u4e00-\u9fff]"
# Province, city and district are kept: they route the complaint and identify no one.
_ADMIN_AREA = re.compile(
    rf"(?:{_HAN}{{2,8}}?(?:省|自治区|特别行政区))?"
    rf"(?:{_HAN}{{1,8}}?(?<![超菜集门夜])(?:市|自治州|地区|盟))?"
    rf"(?:{_HAN}{{1,8}}?(?<![小社园校景厂营城])(?:区|县|旗))?"
)
_STARS: Final = "****"


@dataclass(frozen=True, slots=True)
class _Mask:
    start: int
    end: int
    replacement: str


def mask_pii(text: str) -> str:
    """The text with personal data masked, everything else unchanged.

    Masked: mobile numbers (138****5678), landlines (010-****5678), e-mail addresses
    (j***@example.com), resident ID numbers (110***********1234), bank card numbers after a
    card keyword (************1234), the street part of an address after 地址/住在/收货地址…
    (北京市朝阳区****), and names after 我叫/我是/本人/收件人/"my name is" (张**). Order and
    tracking numbers and 400/800 service numbers stay as they are.

    Args:
        text: any text, raw as the customer wrote it (Traditional, full-width and control
            characters are read through nlp.slots.canonical, offsets unchanged).
    """
    if not text:
        return text
    search = canonical(text)
    masks: list[_Mask] = []
    taken = Coverage(len(text))

    def add(span: Span, replacement: str) -> None:
        if not taken.overlaps(span.start, span.end):
            masks.append(_Mask(span.start, span.end, replacement))
            taken.claim(span.start, span.end)

    emails = find_emails(search)
    for email in emails:
        add(email, _mask_email(text[email.start : email.end]))
    # Order and tracking numbers are claimed first so that nothing below masks them.
    without_emails = blank(search, emails)
    for order in find_order_ids(without_emails):
        taken.claim(order.start, order.end)
    for span in _id_cards(without_emails):
        add(span, span.value[:3] + "*" * (len(span.value) - 7) + span.value[-4:])
    for span in _bank_cards(without_emails):
        add(span, "*" * (len(span.value) - 4) + span.value[-4:])
    for phone in find_phones(search):
        if phone.kind == "mobile":
            add(phone, phone.value[:3] + _STARS + phone.value[-4:])
        elif phone.kind == "landline":
            area = phone.value.split("-", 1)[0]
            add(phone, f"{area}-{_STARS}{_digits_of(phone.value)[-4:]}")
    for name in find_names(search):
        add(name, _mask_name(text[name.start : name.end], name.value))
    for address in _addresses(search, taken):
        kept = text[address.start : address.start + len(address.value)]  # the customer's script
        add(address, kept + _STARS)
    return _apply(text, masks)


def _digits_of(text: str) -> str:
    return "".join(c for c in text if c.isdigit())


def _mask_email(address: str) -> str:
    local, _, domain = address.partition("@")
    return f"{local[:1]}***@{domain}"


def _mask_name(original: str, canonical_name: str) -> str:
    if original.isascii():
        return " ".join(word[:1] + "***" for word in original.split())
    title = TITLES.search(canonical_name)
    if title and title.end() == len(canonical_name):
        return original  # 李女士 tells no more than the surname
    surname = 2 if len(canonical_name) >= 3 and canonical_name[:2] in COMPOUND_SURNAMES else 1
    return original[:surname] + "**"


def _id_cards(text: str) -> list[Span]:
    found = [
        Span(m.start("id"), m.end("id"), m["id"], "id_card") for m in _ID_KEYWORD.finditer(text)
    ]
    for m in ID_CARD.finditer(text):
        # Without a keyword only a valid check digit tells an ID from an 18-digit order number.
        if is_id_card(m.group(0)) and not any(s.start == m.start() for s in found):
            found.append(Span(m.start(), m.end(), m.group(0), "id_card"))
    return found


def _bank_cards(text: str) -> list[Span]:
    found = []
    for m in _BANK_CARD.finditer(text):
        digits = _digits_of(m["card"])
        if 12 <= len(digits) <= 19:
            found.append(Span(m.start("card"), m.end("card"), digits, "bank_card"))
    return found


def _addresses(text: str, taken: Coverage) -> list[Span]:
    """The street part of each address after a keyword; value is the part that is kept."""
    found = []
    for keyword in _ADDRESS_KEYWORD.finditer(text):
        start = keyword.end()
        if start >= len(text):
            continue
        # An address ends where the next value (a phone, an order number…) begins.
        limit = taken.next_claimed(start, min(len(text), start + _ADDRESS_MAX))
        ending = _ENGLISH_ADDRESS_END if text[start].isascii() else _ADDRESS_END
        end_match = ending.search(text, start, limit)
        end = end_match.start() if end_match else limit
        while end > start and text[end - 1].isspace():
            end -= 1
        if end <= start:
            continue
        kept = _ADMIN_AREA.match(text, start, end)
        kept_end = kept.end() if kept else start
        if kept_end < end:
            found.append(Span(start, end, text[start:kept_end], "address"))
    return found


def _apply(text: str, masks: list[_Mask]) -> str:
    out: list[str] = []
    pos = 0
    for mask in sorted(masks, key=lambda m: m.start):
        out.append(text[pos : mask.start])
        out.append(mask.replacement)
        pos = mask.end
    out.append(text[pos:])
    return "".join(out)
