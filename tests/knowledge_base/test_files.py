"""Import files: every format, every bad row reported with its line, nothing half-read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from knowledge_base.entries import EntryContent
from knowledge_base.errors import ImportRejected, KnowledgeBaseError
from knowledge_base.files import dump, load_file

GOOD: list[dict[str, Any]] = [
    {"id": "refund", "question": "怎么退款？", "answer": "在订单详情申请。",
     "paraphrases": ["退钱", "钱怎么退"], "category": "after_sales", "tags": ["退款"]},
    {"id": "invoice", "question": "怎么开发票？", "answer": "结算页选择发票。",
     "answer_en": "Choose an invoice at checkout."},
]


@pytest.mark.parametrize("fmt", ["yaml", "json", "jsonl", "csv"])
def test_round_trip_every_format(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"kb.{fmt}"
    path.write_text(dump(GOOD, fmt), encoding="utf-8")
    items = load_file(path)
    assert [i for i, _ in items] == ["refund", "invoice"]
    refund = items[0][1]
    assert refund == EntryContent("怎么退款？", "在订单详情申请。", ("退钱", "钱怎么退"),
                                  category="after_sales", tags=("退款",))
    assert items[1][1].answer_en == "Choose an invoice at checkout."


def test_yaml_reports_every_bad_row_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "- id: a\n  question: q\n  answer: x\n"        # line 1: fine
        "- id: a\n  question: q2\n  answer: y\n"       # line 4: duplicate id
        "- id: b\n  question: ''\n  answer: y\n"       # line 7: empty question
        "- just text\n"                                # line 10: not an object
        "- id: c\n  question: q\n  answer: " + "长" * 5001 + "\n",  # line 11: too long
        encoding="utf-8")
    with pytest.raises(ImportRejected) as caught:
        load_file(path)
    lines = [(e.line, e.entry_id) for e in caught.value.errors]
    assert lines == [(4, "a"), (7, "b"), (10, None), (11, "c")]
    assert "duplicate id (first on line 1)" in str(caught.value)
    assert "longer than 5000" in str(caught.value)


def test_jsonl_and_csv_lines(tmp_path: Path) -> None:
    jsonl = tmp_path / "bad.jsonl"
    jsonl.write_text(json.dumps(GOOD[0], ensure_ascii=False) + "\n\n{not json\n"
                     + json.dumps({"id": "x", "question": "q"}) + "\n", encoding="utf-8")
    with pytest.raises(ImportRejected) as caught:
        load_file(jsonl)
    assert [(e.line, e.message) for e in caught.value.errors] == [
        (3, "not valid JSON: Expecting property name enclosed in double quotes"),
        (4, "answer is missing")]

    csv_file = tmp_path / "bad.csv"
    csv_file.write_text('id,question,answer\nok,问,答\nnoanswer,问,\n"multi",'
                        '"两行\n的问题",答\nextra,a,b,c\n', encoding="utf-8")
    with pytest.raises(ImportRejected) as caught:
        load_file(csv_file)
    assert [e.line for e in caught.value.errors] == [3, 6]


def test_json_lines_of_a_list(tmp_path: Path) -> None:
    path = tmp_path / "kb.json"
    path.write_text('[\n  {"id": "a", "question": "q", "answer": "x"},\n  {"id": "a",\n'
                    '   "question": "q", "answer": "y"}\n]\n', encoding="utf-8")
    with pytest.raises(ImportRejected) as caught:
        load_file(path)
    assert [e.line for e in caught.value.errors] == [3]


def test_unreadable_files(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("- id: a\n  question: [unclosed\n", encoding="utf-8")
    with pytest.raises(ImportRejected, match="invalid YAML"):
        load_file(broken)
    empty = tmp_path / "empty.json"
    empty.write_text("[]", encoding="utf-8")
    with pytest.raises(ImportRejected, match="no entries"):
        load_file(empty)
    with pytest.raises(KnowledgeBaseError, match="unknown file type"):
        load_file(tmp_path / "kb.txt")
    with pytest.raises(ImportRejected, match="cannot read"):
        load_file(tmp_path / "missing.yaml")


def test_the_seed_is_valid_and_compliant() -> None:
    from knowledge_base.service import SEED_FILE

    items = load_file(SEED_FILE)
    assert len(items) >= 60
    for entry_id, content in items:
        assert len(content.paraphrases) >= 3, entry_id
        for text in (content.answer, content.answer_en or ""):
            for banned in ("绝对保证", "全额赔偿", "百分之百", "100%"):
                assert banned not in text, (entry_id, banned)
    assert sum(1 for _, c in items if c.answer_en) >= 20
