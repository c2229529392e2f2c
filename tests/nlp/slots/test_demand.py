"""What the customer asks for, negations left out."""

from __future__ import annotations

from datetime import datetime

import pytest

from nlp.labels import Demand
from nlp.slots import extract_slots
from nlp.triage import Slots

REF = datetime(2026, 11, 25, 10, 30)


def slots(text: str) -> Slots:
    return extract_slots(text, REF)


@pytest.mark.parametrize(
    ("text", "demand"),
    [
        ("质量太差了，我要退款", Demand.REFUND),
        ("赶紧退钱", Demand.REFUND),
        ("申请退货退款", Demand.REFUND),
        ("商家不给退款", Demand.REFUND),  # the merchant refuses; the customer wants it
        ("能退吗", Demand.REFUND),
        ("降价了要退差价", Demand.REFUND),
        ("I want a refund", Demand.REFUND),
        ("just give me my money back", Demand.REFUND),
        ("我要退款！！", Demand.REFUND),
        ("請儘快退款", Demand.REFUND),
        ("尺码不对，要换货", Demand.EXCHANGE),
        ("给我换一个新的", Demand.EXCHANGE),
        ("能不能换新", Demand.EXCHANGE),
        ("please exchange it for a bigger size", Demand.EXCHANGE),
        ("I need a replacement", Demand.EXCHANGE),
        ("我要換貨", Demand.EXCHANGE),
        ("可以修一下吗，还在保修期", Demand.REPAIR),
        ("申请维修", Demand.REPAIR),
        ("can you repair it", Demand.REPAIR),
        ("please fix it", Demand.REPAIR),
        ("客服态度太差，必须道歉", Demand.APOLOGY),
        ("我要投诉，给个说法", Demand.APOLOGY),
        ("you should apologize", Demand.APOLOGY),
        ("要求赔偿", Demand.COMPENSATION),
        ("假一赔三，三倍赔偿", Demand.COMPENSATION),
        ("退一赔三", Demand.COMPENSATION),
        ("耽误了我的时间，要补偿", Demand.COMPENSATION),
        ("I demand compensation", Demand.COMPENSATION),
        ("要求退货退款并赔偿损失", Demand.COMPENSATION),  # the costlier demand is kept
        ("帮我补发一个", Demand.OTHER),
        ("please cancel my order", Demand.OTHER),
        ("给我开发票", Demand.OTHER),
    ],
)
def test_demand(text: str, demand: Demand) -> None:
    assert slots(text).demand is demand


@pytest.mark.parametrize(
    ("text", "demand"),
    [
        ("不用退款，给我换一个", Demand.EXCHANGE),
        ("不要换货，我要退款", Demand.REFUND),
        ("不想换货了，直接退钱", Demand.REFUND),
        ("我不要道歉，我要赔偿", Demand.COMPENSATION),
        ("不需要退款，修好就行", Demand.REPAIR),
        ("I don't want a refund, just send a replacement", Demand.EXCHANGE),
        ("no need for a refund, please fix it", Demand.REPAIR),
        ("不用退款", None),
        ("不要換貨，我要退款", Demand.REFUND),
        ("不需要道歉，賠償就好", Demand.COMPENSATION),
        ("不要换货", None),
        ("I don't want a refund", None),
    ],
)
def test_negated_demand_is_not_taken(text: str, demand: Demand | None) -> None:
    assert slots(text).demand is demand


@pytest.mark.parametrize(
    "text",
    ["快递怎么还没到", "能换个地址吗", "帮我换个快递", "谢谢", "what is the status of my order"],
)
def test_no_demand(text: str) -> None:
    assert slots(text).demand is None
