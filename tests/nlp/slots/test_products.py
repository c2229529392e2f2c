"""The product complained about, from the lexicon or after a purchase verb."""

from __future__ import annotations

from datetime import datetime

import pytest

from nlp.slots import extract_slots
from nlp.triage import Slots

REF = datetime(2026, 11, 25, 10, 30)


def slots(text: str) -> Slots:
    return extract_slots(text, REF)


@pytest.mark.parametrize(
    ("text", "product"),
    [
        ("我买的华为手机屏幕碎了", "华为手机"),
        ("本人王小明，购买的海尔冰箱不制冷", "海尔冰箱"),
        ("收到的纸尿裤漏了", "纸尿裤"),
        ("这个苹果手机是翻新机", "苹果手机"),
        ("我买了5斤苹果，坏了2斤", "苹果"),
        ("我在京东买的联想笔记本电脑开不了机", "联想笔记本电脑"),
        ("买了一台美的空调，不制冷", "美的空调"),
        ("我买的那个黑色的电饭煲坏了", "电饭煲"),
        ("我买的华为Mate60屏幕碎了", "华为Mate60"),
        ("我买的iPhone15手机是翻新机", "iPhone15手机"),
        ("买的雅诗兰黛是假货", "雅诗兰黛"),
        ("羽绒服掉毛严重", "羽绒服"),
        ("我在拼多多买了个加湿器", "加湿器"),
        ("买的羊毛衫起球了", "羊毛衫"),  # not in the lexicon: jieba finds the noun
        ("我買的華為手機螢幕碎了", "華為手機"),  # kept in the customer's script
        ("收到的筆電開不了機", "筆電"),
        ("the blender I ordered arrived broken", "blender"),
        ("My new laptop arrived with a cracked screen", "laptop"),
        ("the Nike shoes I bought fell apart", "Nike shoes"),
        ("my air fryer stopped working", "air fryer"),
        ("the headphones have no sound", "headphones"),
    ],
)
def test_product(text: str, product: str) -> None:
    assert slots(text).product == product


@pytest.mark.parametrize(
    "text",
    [
        "快递员态度很差",
        "我的手机号是13812345678",
        "用手机拍的照片发不过去",
        "买的东西是坏的",
        "收到的包裹是空的",
        "凌晨3点收到短信",
        "衣服破了，鞋也坏了",  # two products: unsure
        "I watch this shop every day",
        "my phone number is 13812345678",
        "客服一直不回复",
        "",
    ],
)
def test_no_product(text: str) -> None:
    assert slots(text).product is None


@pytest.mark.parametrize(
    "text",
    [
        "手机13812345678",
        "手机:13812345678",
        "手机：13812345678",
        "手机号13812345678",
        "手机号码：13812345678",
        "手机 138 1234 5678",
        "手机：+86 138-1234-5678",
        "订单号：JD0012345678，手机13812345678",
        "买的手机号13812345678",  # nor is the noun jieba finds after 买的
        "my phone: 13812345678",
    ],
)
def test_phone_label_is_not_a_product(text: str) -> None:
    found = slots(text)
    assert (found.product, found.phone) == (None, "13812345678")


@pytest.mark.parametrize(
    ("text", "product"),
    [
        ("我买的手机坏了，手机13812345678", "手机"),
        ("收到的手机屏幕是碎的，手机：138-1234-5678", "手机"),
        ("手机13812345678，买的电饭煲不加热", "电饭煲"),
        ("手机壳裂了，手机13812345678", "手机壳"),  # the label is no second product
        ("手机坏了，13812345678", "手机"),  # a clause apart: no label
    ],
)
def test_product_beside_a_phone_label(text: str, product: str) -> None:
    assert slots(text).product == product
