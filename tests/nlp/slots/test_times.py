"""Incident times, relative ones resolved against the message time."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from nlp.slots import extract_slots
from nlp.triage import Slots

# A Wednesday morning; every relative time below is resolved against it.
REF = datetime(2026, 11, 25, 10, 30)


def slots(text: str) -> Slots:
    return extract_slots(text, REF)


@pytest.mark.parametrize(
    ("text", "iso"),
    [
        ("昨天下午买的", "2026-11-24T13:00:00"),
        ("昨天下午3点收到的", "2026-11-24T15:00:00"),
        ("昨天下午3点半收到的", "2026-11-24T15:30:00"),
        ("昨晚收到的", "2026-11-24T18:00:00"),
        ("上周三下的单到现在还没发货", "2026-11-18T00:00:00"),
        ("上周三下午3点", "2026-11-18T15:00:00"),
        ("11月5号买的", "2026-11-05T00:00:00"),
        ("11月5日下午3点买的", "2026-11-05T15:00:00"),
        ("前天收到的", "2026-11-23T00:00:00"),
        ("大前天收到的", "2026-11-22T00:00:00"),
        ("前天晚上9点给客服打电话没人接", "2026-11-23T21:00:00"),
        ("3天前收到的", "2026-11-22T00:00:00"),
        ("三天前的下午", "2026-11-22T13:00:00"),
        ("两周前买的", "2026-11-11T00:00:00"),
        ("半个月前买的", "2026-11-10T00:00:00"),
        ("一个月前买的", "2026-10-25T00:00:00"),
        ("3小时前下的单", "2026-11-25T07:30:00"),
        ("上个月买的", "2026-10-01T00:00:00"),
        ("上上个月买的", "2026-09-01T00:00:00"),
        ("今天早上8点收到", "2026-11-25T08:00:00"),
        ("今早收到的", "2026-11-25T06:00:00"),
        ("刚才收到的快递是坏的", "2026-11-25T10:30:00"),
        ("双十一买的，到现在还没发货", "2026-11-11T00:00:00"),
        ("去年双十一买的", "2025-11-11T00:00:00"),
        ("10月买的", "2026-10-01T00:00:00"),
        ("去年11月买的", "2025-11-01T00:00:00"),
        ("2026-11-05 下单", "2026-11-05T00:00:00"),
        ("2023年11月5日下午3点买的", "2023-11-05T15:00:00"),
        ("凌晨3点收到短信", "2026-11-25T03:00:00"),
        # Written in November, December 20th is last year's; Sunday is last Sunday.
        ("12月20号买的", "2025-12-20T00:00:00"),
        ("周日收到的", "2026-11-22T00:00:00"),
        ("晚上8点收到的", "2026-11-24T20:00:00"),
        ("我11月5号买的衣服，3天前才收到", "2026-11-05T00:00:00"),
        ("昨天下午買的，前天就該到了", "2026-11-24T13:00:00"),
        ("上週三下的單", "2026-11-18T00:00:00"),
        ("yesterday I received a broken blender", "2026-11-24T00:00:00"),
        ("it was delivered yesterday at 3pm", "2026-11-24T15:00:00"),
        ("yesterday afternoon the box arrived", "2026-11-24T13:00:00"),
        ("last night the parcel came", "2026-11-24T18:00:00"),
        ("this morning it stopped working", "2026-11-25T06:00:00"),
        ("the day before yesterday", "2026-11-23T00:00:00"),
        ("last Monday I ordered the blender", "2026-11-23T00:00:00"),
        ("on Monday it broke", "2026-11-23T00:00:00"),
        ("on Friday it broke", "2026-11-20T00:00:00"),
        ("last week I ordered", "2026-11-16T00:00:00"),
        ("last month", "2026-10-01T00:00:00"),
        ("I bought it 3 days ago", "2026-11-22T00:00:00"),
        ("two weeks ago the order arrived", "2026-11-11T00:00:00"),
        ("an hour ago", "2026-11-25T09:30:00"),
        ("on Nov 5 I bought a jacket", "2026-11-05T00:00:00"),
        ("received on 5 November", "2026-11-05T00:00:00"),
        ("on November 5th, 2025 at 10:15", "2025-11-05T10:15:00"),
        ("ordered on Dec 20", "2025-12-20T00:00:00"),
        ("on 11/20 I placed an order", "2026-11-20T00:00:00"),
        ("delivered 2026-11-05", "2026-11-05T00:00:00"),
    ],
)
def test_incident_time(text: str, iso: str) -> None:
    assert slots(text).incident_time == iso


@pytest.mark.parametrize(
    "text",
    [
        "前几天买的",  # too vague for a form
        "下周要用，快点发货",
        "明天就要了",
        "等了3天了还没到",  # a duration, not a moment
        "这个月第3次了",
        "我住在3号楼502",
        "建国路88号3单元",
        "订单号20231105123456",
        "买了3件衣服",
        "I have waited a few days",
        "rated it 1/5",
        "衣服质量太差",
        "",
    ],
)
def test_no_incident_time(text: str) -> None:
    assert slots(text).incident_time is None


def test_incident_time_defaults_to_now() -> None:
    before = datetime.now()
    found = extract_slots("昨天收到的")
    after = datetime.now()
    expected = {(d - timedelta(days=1)).date().isoformat() for d in (before, after)}
    assert found.incident_time is not None
    assert found.incident_time[:10] in expected


def test_aware_reference_time_is_read_in_its_own_zone() -> None:
    shanghai = timezone(timedelta(hours=8))
    found = extract_slots("昨天下午买的", datetime(2026, 11, 25, 10, 30, tzinfo=shanghai))
    assert found.incident_time == "2026-11-24T13:00:00"
