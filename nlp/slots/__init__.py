"""Slot filling: the facts of the complaint form (DOMAIN.md template 1) found in one message.

Every slot is read from one canonical form of the text (NFKC, Simplified Chinese), so Traditional
and full-width messages are read like any other. Values quoted from the customer (name, product)
are cut from the cleaned text at the same offsets, so they keep the script the customer wrote in.

The patterns are deliberately conservative: a slot the bot leaves empty is asked for, a wrong one
is confirmed back to an already upset customer. jionlp (Chinese time expressions) and jieba (names
versus common words, nouns after a purchase verb) are imported lazily, so a message without a
time word or a name never pays for them; call `preload()` at start-up so no customer does.

One module per kind of slot: `contacts` (order id, phone, e-mail, and the ID card numbers that
are none of them), `amounts`, `times`, `demand`, `names`, `products`; `text` holds the canonical
form and the spans every module finds.
"""

from __future__ import annotations

from datetime import datetime

from nlp.normalize import clean, to_simplified
from nlp.slots import names, products, times
from nlp.slots.amounts import find_amount, parse_number
from nlp.slots.contacts import (
    EMAIL,
    HOTLINE,
    ID_CARD,
    LANDLINE,
    MOBILE,
    contact_slots,
    find_emails,
    find_order_ids,
    find_phones,
    is_id_card,
)
from nlp.slots.demand import find_demand
from nlp.slots.names import COMPOUND_SURNAMES, TITLES, find_names
from nlp.slots.products import find_product
from nlp.slots.text import SURROGATE, Coverage, Span, blank, canonical
from nlp.slots.times import find_incident_time
from nlp.triage import Slots

__all__ = [
    "COMPOUND_SURNAMES",
    "EMAIL",
    "HOTLINE",
    "ID_CARD",
    "LANDLINE",
    "MOBILE",
    "TITLES",
    "Coverage",
    "Span",
    "blank",
    "canonical",
    "extract_slots",
    "find_emails",
    "find_names",
    "find_order_ids",
    "find_phones",
    "is_id_card",
    "parse_number",
    "preload",
]


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
    cleaned = clean(SURROGATE.sub("", text))
    if not cleaned:
        return Slots()
    simplified = to_simplified(cleaned)
    # Quoted values (name, product) come from the cleaned text when offsets agree, keeping the
    # customer's script; OpenCC changes the length only for rare phrases.
    display = cleaned if len(simplified) == len(cleaned) else simplified
    search = simplified

    contacts = contact_slots(search)
    # What is left once contact data and numbers are out, so no digit of a phone becomes money.
    rest = blank(search, contacts.taken)

    found_names = find_names(search, recipients=False)
    return Slots(
        order_id=contacts.order_id,
        phone=contacts.phone,
        email=contacts.email,
        amount=find_amount(rest),
        product=find_product(rest, display, contacts.phones),
        incident_time=find_incident_time(rest, ref),
        demand=find_demand(rest),
        customer_name=(
            display[found_names[0].start : found_names[0].end] if found_names else None
        ),
    )


def preload() -> None:
    """Import jionlp and jieba and read the lexicon now (about 3 s) instead of on first use."""
    times.preload()
    names.preload()
    products.preload()
