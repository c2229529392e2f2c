"""Entry fields: validation, merging edits, the answer in the customer's language."""

from __future__ import annotations

import pytest

from knowledge_base.entries import (
    EntryContent,
    content_from_mapping,
    merge_content,
    validate_id,
)
from knowledge_base.errors import FieldTooLong, InvalidEntry
from nlp.labels import Lang


def test_validation() -> None:
    content = content_from_mapping({"question": " 怎么退款？ ", "answer": "申请售后。",
                                    "paraphrases": "退钱|钱怎么退||退钱", "answer_en": ""})
    assert content.question == "怎么退款？"
    assert content.paraphrases == ("退钱", "钱怎么退")
    assert content.answer_en is None
    with pytest.raises(InvalidEntry, match="answer is missing"):
        content_from_mapping({"question": "q"})
    with pytest.raises(InvalidEntry, match="must be text"):
        content_from_mapping({"question": 5, "answer": "a"})
    with pytest.raises(FieldTooLong):
        content_from_mapping({"question": "q", "answer": "a", "paraphrases": ["p"] * 51
                              + [str(i) for i in range(51)]})
    with pytest.raises(FieldTooLong):
        validate_id("x" * 65)
    assert validate_id(42) == "42"
    with pytest.raises(InvalidEntry):
        validate_id(True)


def test_merge_keeps_unchanged_fields() -> None:
    base = EntryContent("q", "a", ("p",), category="c")
    merged = merge_content(base, {"answer": "b"})
    assert merged == EntryContent("q", "b", ("p",), category="c")
    with pytest.raises(InvalidEntry, match="unknown field"):
        merge_content(base, {"status": "published"})


def test_answer_in_the_customers_language() -> None:
    both = EntryContent("发票", "请在订单详情里开发票。", answer_en="Get it in order details.")
    assert both.answer_for(Lang.EN) == "Get it in order details."
    assert both.answer_for(Lang.ZH_HANT) == "請在訂單詳情裏開發票。"
    assert both.answer_for(Lang.ZH_HANS) == "请在订单详情里开发票。"
    assert EntryContent("q", "只有中文").answer_for(Lang.EN) == "只有中文"
