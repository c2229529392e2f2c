"""Customer names, and recipients told apart from them."""

from __future__ import annotations

from datetime import datetime

import pytest

from nlp.slots import extract_slots, find_names
from nlp.triage import Slots

REF = datetime(2026, 11, 25, 10, 30)


def slots(text: str) -> Slots:
    return extract_slots(text, REF)


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("我叫张三，手机坏了", "张三"),
        ("我叫张三我的订单还没到", "张三"),
        ("我是李女士，上周买的空气净化器坏了", "李女士"),
        ("本人王小明，购买的海尔冰箱不制冷", "王小明"),
        ("我叫欧阳娜娜", "欧阳娜娜"),
        ("我的名字是李娜", "李娜"),
        ("联系人：刘洋，电话13800001111", "刘洋"),
        ("姓名：赵六", "赵六"),
        ("我是王小明先生", "王小明"),
        ("我叫陳大文，前天收到的衣服破了", "陳大文"),
        ("my name is John Smith and my order 12345678 is late", "John Smith"),
        ("Hi, my name is Mary. The blender is broken", "Mary"),
        ("my name is john and i want a refund", "john"),
        ("我叫Tom，order 12345678", "Tom"),
    ],
)
def test_customer_name(text: str, name: str) -> None:
    assert slots(text).customer_name == name


@pytest.mark.parametrize(
    "text",
    [
        "我是买家",
        "我是会员",
        "我是老顾客了",
        "我是高价买的",
        "我是江苏人",
        "我是黄金会员",
        "我是周末买的",
        "我是马上要用的",
        "我是真的很生气",
        "我是白领",
        "本人在京东买的",
        "我姓王",
        "我叫了快递员",
        "收件人：王五",  # may be someone else than the customer
        "I am angry",
        "my name is not important",
    ],
)
def test_no_customer_name(text: str) -> None:
    assert slots(text).customer_name is None


def test_find_names_marks_recipients() -> None:
    found = find_names("我叫张三，收件人：王小明")
    assert [(s.value, s.kind) for s in found] == [("张三", "name"), ("王小明", "recipient")]
