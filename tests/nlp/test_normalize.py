from __future__ import annotations

import pytest

from nlp.labels import Lang
from nlp.normalize import MAX_CHARS, clean, detect_lang, normalize, to_traditional


def test_traditional_to_simplified_and_full_width() -> None:
    assert normalize("我買的東西壞了！ＯＫ") == "我买的东西坏了!ok"


def test_control_characters_and_spaces() -> None:
    assert clean(" a\x00b\u200b\t\n  c ") == "ab c"


def test_lone_surrogates_are_dropped() -> None:
    assert normalize("退\ud800款") == "退款"


def test_length_is_capped() -> None:
    assert len(normalize("退" * (MAX_CHARS * 5))) == MAX_CHARS


def test_round_trip_to_traditional() -> None:
    assert to_traditional("退货很麻烦") == "退貨很麻煩"


@pytest.mark.parametrize(("text", "lang"), [
    ("我買的東西壞了，退貨很麻煩", Lang.ZH_HANT),
    ("我买的东西坏了", Lang.ZH_HANS),
    ("The parcel never arrived", Lang.EN),
    ("这个iPhone的battery life太差了", Lang.MIXED),
    ("😡😡", Lang.ZH_HANS),
    ("", Lang.ZH_HANS),
    ("他是著名的作家，我很喜欢他写的书，推荐大家看看", Lang.ZH_HANS),
])
def test_detect_lang(text: str, lang: Lang) -> None:
    assert detect_lang(text) is lang
