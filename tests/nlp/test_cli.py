"""`intakebot nlp analyze|eval|train` through the real command line app."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from bot.cli import app
from nlp.analyzer import Analyzer

runner = CliRunner()


def test_analyze_keeps_lines_aligned_and_survives_bad_lines(analyzer: Analyzer, data_dir: Path
                                                            ) -> None:
    lines = [
        "收到的杯子是碎的",
        '{"text": "请问怎么开发票", "id": 7}',
        '{"text": broken json',
        "",
        '{"no_text": 1}',
        '{"text": "快递还没到", "context": {"repeat_contacts": -1}}',
        "😡" * 10,
        '{"text": "上周三买的耳机坏了", "context": {"reference_time": "2026-11-23T10:00:00"}}',
    ]
    result = runner.invoke(app, ["nlp", "analyze", "--data-dir", str(data_dir)],
                           input="\n".join(lines) + "\n")
    assert result.exit_code == 0, result.output
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(out) == len(lines)
    assert out[0]["intent"] == "complaint" and out[0]["category"] == "product"
    assert out[1]["id"] == 7 and out[1]["intent"] == "inquiry"
    assert "invalid JSON" in out[2]["error"]
    assert out[3]["intent"] == "other"
    assert "text" in out[4]["error"]
    assert "repeat_contacts" in out[5]["error"]
    assert out[6]["intent"] == "other"
    assert out[7]["slots"]["incident_time"].startswith("2026-11-18")
    for row in out:
        if "error" not in row:
            assert row["sla_hours"] in (2, 4, 24)
            assert row["lang"] in ("zh-Hans", "zh-Hant", "en", "mixed")


def test_eval_prints_reports(analyzer: Analyzer, data_dir: Path, tmp_path: Path) -> None:
    gold = tmp_path / "gold.jsonl"
    rows = [
        {"text": "物流太慢了等了一周", "intent": "complaint", "category": "logistics",
         "emotion": "disappointment", "priority": "low"},
        {"text": "谢谢", "intent": "other", "category": None},
        {"text": "衣服破了个洞", "intent": "complaint", "category": "product"},
    ]
    gold.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    result = runner.invoke(app, ["nlp", "eval", str(gold), "--data-dir", str(data_dir), "--json"])
    assert result.exit_code == 0, result.output
    reports = {r["field"]: r for r in json.loads(result.stdout)}
    assert reports["intent"]["n"] == 3 and reports["category"]["n"] == 3
    assert reports["emotion"]["n"] == 1
    assert "confusion" in reports["intent"]
    text = runner.invoke(app, ["nlp", "eval", str(gold), "--data-dir", str(data_dir)])
    assert "macro-F1" in text.stdout and "confusion" in text.stdout


def test_eval_rejects_bad_file(data_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "x"}\nnot json\n', encoding="utf-8")
    result = runner.invoke(app, ["nlp", "eval", str(bad), "--data-dir", str(data_dir)])
    assert result.exit_code != 0
    assert "line 2" in result.output
