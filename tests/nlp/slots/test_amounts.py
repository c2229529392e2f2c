"""Numbers as customers write them, and sums of money."""

from __future__ import annotations

from datetime import datetime

import pytest

from nlp.slots import extract_slots, parse_number
from nlp.triage import Amount, Slots

REF = datetime(2026, 11, 25, 10, 30)


def slots(text: str) -> Slots:
    return extract_slots(text, REF)


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("500", 500.0),
        ("1,299.99", 1299.99),
        ("三百五", 350.0),
        ("三百五十", 350.0),
        ("一千二", 1200.0),
        ("一千二百", 1200.0),
        ("两千", 2000.0),
        ("两万五", 25000.0),
        ("一万二", 12000.0),
        ("1万2", 12000.0),
        ("1万2500", 12500.0),
        ("1.5万", 15000.0),
        ("3千5", 3500.0),
        ("3k", 3000.0),
        ("2w", 20000.0),
        ("一百零五", 105.0),
        ("两千零五十", 2050.0),
        ("十五", 15.0),
        ("十", 10.0),
        ("二十", 20.0),
        ("壹佰贰拾", 120.0),
        ("一亿两千万", 120_000_000.0),
    ],
)
def test_parse_number(text: str, number: float) -> None:
    assert parse_number(text) == pytest.approx(number)


@pytest.mark.parametrize("text", ["", "万", "abc", "1.2.3", "几百"])
def test_parse_number_rejects(text: str) -> None:
    assert parse_number(text) is None


@pytest.mark.parametrize(
    ("text", "value", "currency"),
    [
        ("这个东西500元", 500.0, "CNY"),
        ("花了三百五买的，退我三百五", 350.0, "CNY"),
        ("三百五块的鞋子", 350.0, "CNY"),
        ("一千二的手机，要求赔偿两千", 2000.0, "CNY"),
        ("一千二块钱买的", 1200.0, "CNY"),
        ("两千块的手机", 2000.0, "CNY"),
        ("五毛钱的东西都这么差", 0.5, "CNY"),
        ("两块五一瓶的水", 2.5, "CNY"),
        ("3块5的笔", 3.5, "CNY"),
        ("三块五毛", 3.5, "CNY"),
        ("1.5万元的电脑", 15000.0, "CNY"),
        ("花了1.5万买的电脑", 15000.0, "CNY"),
        ("3k块的手机", 3000.0, "CNY"),
        ("退我1万2", 12000.0, "CNY"),
        ("赔偿三千五", 3500.0, "CNY"),
        ("¥1299 的耳机左耳没声音", 1299.0, "CNY"),
        ("￥299买的", 299.0, "CNY"),
        ("RMB 300", 300.0, "CNY"),
        ("CNY500", 500.0, "CNY"),
        ("人民币三百", 300.0, "CNY"),
        ("一共付了1,299.99元", 1299.99, "CNY"),
        ("三百多块的鞋", 300.0, "CNY"),
        ("运费10块也要退", 10.0, "CNY"),
        ("价格2999，现在降价了要退差价", 2999.0, "CNY"),
        ("买了2双鞋，金额是398元", 398.0, "CNY"),
        ("$25 for this blender", 25.0, "USD"),
        ("I was charged $1,299.99 twice", 1299.99, "USD"),
        ("USD 49.99 for this", 49.99, "USD"),
        ("it cost 30 dollars", 30.0, "USD"),
        ("20 bucks for a broken toy", 20.0, "USD"),
        ("100美元的耳机", 100.0, "USD"),
        ("HK$500 的東西", 500.0, "HKD"),
        ("花了500港币", 500.0, "HKD"),
        ("NT$1200 買的", 1200.0, "TWD"),
        ("這雙鞋花了一千二百元", 1200.0, "CNY"),
        ("退我五百塊", 500.0, "CNY"),
        ("I paid 300 for it", 300.0, "CNY"),
        ("please refund me 50", 50.0, "CNY"),
    ],
)
def test_amount(text: str, value: float, currency: str) -> None:
    assert slots(text).amount == Amount(value=value, currency=currency)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("退我500，我花了3000块买的", 500.0),  # the sum asked back wins
        ("花了3000块买的手机，要求赔偿500元", 500.0),
        ("3000块的手机，坏了，还有200元的壳", 3000.0),  # otherwise the largest
        ("退款金额300，总价1000元", 300.0),
    ],
)
def test_amount_tied_to_the_demand_or_the_largest(text: str, value: float) -> None:
    found = slots(text).amount
    assert found is not None
    assert found.value == value


@pytest.mark.parametrize(
    "text",
    [
        "买了3件衣服，两个不能穿",
        "我买了5斤苹果，坏了2斤",
        "第2次投诉了，3天了还没到",
        "买了1台空调",
        "退了3件",
        "花了3天才到",
        "付了两次钱",
        "I bought 3 items and paid 2 times",
        "退一赔三",
        "假一赔十",
        "我想要三倍赔偿",
        "买了两块蛋糕",
        "买了一块手表",
        "1.5万的电脑坏了",  # no currency and no money verb: too unsure
        "两万五的沙发",
        "等了500天",
        "订单号123456789012",
        "电话13812345678",
        "元旦买的",
    ],
)
def test_quantity_is_not_an_amount(text: str) -> None:
    assert slots(text).amount is None
