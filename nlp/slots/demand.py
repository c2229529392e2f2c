"""The demand slot: what the customer asks for (refund, exchange, repair…), negations left out."""

from __future__ import annotations

import re
from typing import Final

from nlp.labels import Demand

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


def find_demand(text: str) -> Demand | None:
    """What the customer asks for, the first demand in `_DEMANDS` order that is not negated."""
    for demand, pattern in _DEMANDS:
        for m in pattern.finditer(text):
            if _NEGATION.search(text[max(0, m.start() - 30) : m.start()]) is None:
                return demand
    return None

