"""Order and tracking numbers, phones, e-mail addresses and ID card numbers."""

from __future__ import annotations

from datetime import datetime

import pytest

from nlp.slots import extract_slots, find_order_ids, find_phones, is_id_card
from nlp.triage import Slots

REF = datetime(2026, 11, 25, 10, 30)


def slots(text: str) -> Slots:
    return extract_slots(text, REF)


# --------------------------------------------------------------------------------- order ids


@pytest.mark.parametrize(
    ("text", "order_id"),
    [
        ("我的订单123456789012还没发货", "123456789012"),
        ("订单号：JD0012345678，一直没发货", "JD0012345678"),
        ("订单号是DD20231105123456，麻烦查一下", "DD20231105123456"),
        ("我的订单DD20231105123456还没发货", "DD20231105123456"),
        ("SO-88231 这个订单能换货吗", "SO-88231"),
        ("订单号 1234 5678 9012 3456 到现在没发货", "1234567890123456"),
        ("订单号是 4567 8901 2345 6789 12，快点处理", "456789012345678912"),
        ("订单号：2023-1105-1234", "202311051234"),
        ("淘宝订单3456789012345678901，东西是坏的", "3456789012345678901"),
        ("单号123456789012查不到", "123456789012"),
        ("訂單號：123456789012，東西還沒到", "123456789012"),
        ("訂單編號 DD20231105123456 的貨有問題", "DD20231105123456"),
        ("order #A1B2C3D4 never arrived", "A1B2C3D4"),
        ("Order number: 98765432 is wrong", "98765432"),
        ("my order 12345678 has not arrived", "12345678"),
        ("order no. SO-88231 please check", "SO-88231"),
        ("京东的1234567890买错了颜色", "1234567890"),
    ],
)
def test_order_id(text: str, order_id: str) -> None:
    assert slots(text).order_id == order_id


@pytest.mark.parametrize(
    ("text", "order_id", "phone"),
    [
        # An 11-digit 1[3-9] number is a phone...
        ("我的电话13812345678，快递还没到", None, "13812345678"),
        ("13812345678", None, "13812345678"),
        # ...unless it follows an order keyword.
        ("订单号13812345678，电话打不通", "13812345678", None),
        ("订单号：JD0012345678，手机13812345678", "JD0012345678", "13812345678"),
        ("订单123456789012 联系电话 138-1234-5678", "123456789012", "13812345678"),
        ("+86 138 1234 5678 是我的手机，订单号20231105123", "20231105123", "13812345678"),
        ("8613812345678", None, "13812345678"),
        ("my order 12345678, call me at 13912345678", "12345678", "13912345678"),
    ],
)
def test_order_id_is_never_a_phone_and_back(
    text: str, order_id: str | None, phone: str | None
) -> None:
    found = slots(text)
    assert (found.order_id, found.phone) == (order_id, phone)


@pytest.mark.parametrize(
    ("text", "order_id"),
    [
        ("快递单号SF1234567890123，订单号987654321012，一直没到", "987654321012"),
        ("订单编号：1234567890，运单号YT1234567890123", "1234567890"),
        ("运单号773123456789012还没更新", None),
        ("快递773123456789012 到现在没动", None),
        ("SF1234567890123 这个快递三天没动了", None),
        ("物流单号 JT0001234567890 一直显示揽收", None),
        ("tracking number 1Z9999999999999999, order 55667788", "55667788"),
        ("快遞單號SF1234567890123，訂單號987654321012", "987654321012"),
    ],
)
def test_tracking_number_is_not_the_order(text: str, order_id: str | None) -> None:
    assert slots(text).order_id == order_id


@pytest.mark.parametrize(
    "text",
    [
        "身份证110101199003071234",  # a valid ID card number
        "银行卡号6222021234567890123",
        "我的QQ123456789",
        "订单金额500元",
        "订单3件，少了一件",
        "买了3件衣服",
        "2023年买的",
        "iPhone15的屏幕",
    ],
)
def test_no_order_id(text: str) -> None:
    assert slots(text).order_id is None


def test_find_order_ids_tells_orders_from_tracking_numbers() -> None:
    text = "快递单号SF1234567890123，订单号987654321012"
    found = find_order_ids(text)
    assert [(s.value, s.kind) for s in found] == [
        ("SF1234567890123", "tracking"),
        ("987654321012", "order"),
    ]
    assert all(text[s.start : s.end].replace(" ", "") == s.value for s in found)


# ------------------------------------------------------------------------------------ phones


@pytest.mark.parametrize(
    ("text", "phone"),
    [
        ("我的电话是13812345678", "13812345678"),
        ("手机：138-1234-5678", "13812345678"),
        ("手机 138 1234 5678 随时打", "13812345678"),
        ("我的电话是+86 138 1234 5678", "13812345678"),
        ("联系电话 0086-13912345678", "13912345678"),
        ("(+86)15012345678", "15012345678"),
        ("86 18612345678", "18612345678"),
        ("座机010-12345678", "010-12345678"),
        ("(0755)1234567 是我家电话", "0755-1234567"),
        ("电话0755-1234567转123", "0755-1234567-123"),
        ("021 87654321", "021-87654321"),
        ("打了400-812-3123没人接", "4008123123"),
        ("800 820 8820", "8008208820"),
        ("電話：13812345678，請回電", "13812345678"),
        ("call me at +86 139 1234 5678 please", "13912345678"),
        ("全角号码１３８１２３４５６７８", "13812345678"),
        # A mobile is the customer's; a 400 number is usually the shop's hotline.
        ("客服400-812-3123打不通，我的手机13812345678", "13812345678"),
    ],
)
def test_phone(text: str, phone: str) -> None:
    assert slots(text).phone == phone


@pytest.mark.parametrize(
    "text",
    [
        "12345678901",  # 11 digits, not 1[3-9]
        "1381234567",  # too short
        "138123456789",  # too long
        "订单号13812345678",
        "价格13800元",
        "0123-456",
    ],
)
def test_no_phone(text: str) -> None:
    assert slots(text).phone is None


def test_find_phones_keeps_offsets_and_kinds() -> None:
    text = "电话138-1234-5678或010-12345678，客服400-812-3123"
    found = find_phones(text)
    assert [(s.value, s.kind) for s in found] == [
        ("13812345678", "mobile"),
        ("010-12345678", "landline"),
        ("4008123123", "hotline"),
    ]
    assert text[found[0].start : found[0].end] == "138-1234-5678"


# ------------------------------------------------------------------------------------- email


@pytest.mark.parametrize(
    ("text", "email"),
    [
        ("我的邮箱是john.doe@example.com", "john.doe@example.com"),
        ("邮箱：12345678@qq.com 请回复", "12345678@qq.com"),
        ("email me at Jane_Smith+shop@mail.example.co.uk.", "Jane_Smith+shop@mail.example.co.uk"),
        ("郵箱 chen.dawen@gmail.com", "chen.dawen@gmail.com"),
        ("发到 13812345678@163.com", "13812345678@163.com"),
    ],
)
def test_email(text: str, email: str) -> None:
    assert slots(text).email == email


def test_an_email_is_neither_phone_nor_order() -> None:
    found = slots("发到 13812345678@163.com 或 123456789012@qq.com")
    assert (found.phone, found.order_id) == (None, None)


@pytest.mark.parametrize("text", ["john@", "@example.com", "a@b", "我在@客服"])
def test_no_email(text: str) -> None:
    assert slots(text).email is None


@pytest.mark.parametrize(
    ("number", "valid"),
    [
        ("11010519491231002X", True),
        ("110101199003074477", True),
        ("110101199003074478", False),
        ("1101011990030744", False),
    ],
)
def test_is_id_card(number: str, valid: bool) -> None:
    assert is_id_card(number) is valid
