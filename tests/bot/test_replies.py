"""The reply file: complete in every language, and compliant (DOMAIN.md 话术合规)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from bot.replies import LANGS, REPLIES_FILE, Replies, RepliesError, banned_phrases, find_banned
from nlp.labels import Lang
from nlp.normalize import detect_lang, to_simplified


def test_every_template_and_label_exists_in_all_three_languages() -> None:
    raw = yaml.safe_load(REPLIES_FILE.read_text(encoding="utf-8"))
    for section in ("templates", "labels"):
        for key, texts in raw[section].items():
            assert set(texts) == {lang.value for lang in LANGS}, f"{section}.{key}"
            assert all(isinstance(t, str) and t.strip() for t in texts.values()), key


def test_no_template_contains_a_banned_phrase() -> None:
    replies = Replies.load()
    banned = banned_phrases()
    assert {"绝对保证", "全额赔偿", "百分之百", "guarantee"} <= set(banned)
    for key, texts in replies.templates.items():
        for lang, text in texts.items():
            assert find_banned(text, banned) == [], (key, lang)
            assert "guarantee" not in text.lower()
            for phrase in ("绝对保证", "全额赔偿", "百分之百"):
                assert phrase not in to_simplified(text)


def test_the_receipt_says_the_outcome_depends_on_the_investigation() -> None:
    replies = Replies.load()
    for key in ("receipt", "handoff_urgent"):
        assert "调查核实" in to_simplified(replies.templates[key][Lang.ZH_HANS])
        assert "調查核實" in replies.templates[key][Lang.ZH_HANT]
        assert "investigation" in replies.templates[key][Lang.EN]


def test_each_language_is_written_in_its_own_script() -> None:
    replies = Replies.load()
    for key, texts in replies.templates.items():
        hans, hant, en = (re.sub(r"\{[^}]*\}", "", texts[lang]) for lang in LANGS)
        if not hans.strip():
            continue  # "{answer}": all placeholder
        assert detect_lang(hans) is Lang.ZH_HANS, key
        assert detect_lang(hant) is Lang.ZH_HANT, key
        assert not any("\u4e00" <= c <= "\u9fff" for c in en), key


def test_banned_wording_is_refused_at_load(tmp_path: Path) -> None:
    path = tmp_path / "replies.yaml"
    path.write_text(yaml.safe_dump({"banned": ["全额赔偿"], "templates": {"x": {
        "zh-Hans": "我们会全额赔偿", "zh-Hant": "我們會全額賠償", "en": "we pay"}}},
        allow_unicode=True), encoding="utf-8")
    with pytest.raises(RepliesError, match="banned"):
        Replies.load(path)


def test_a_missing_language_or_placeholder_mismatch_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "replies.yaml"
    path.write_text(yaml.safe_dump({"templates": {"x": {"zh-Hans": "好", "en": "ok"}}},
                                   allow_unicode=True), encoding="utf-8")
    with pytest.raises(RepliesError, match="zh-Hant"):
        Replies.load(path)
    path.write_text(yaml.safe_dump({"templates": {"x": {
        "zh-Hans": "单号 {number}", "zh-Hant": "單號 {number}", "en": "number {numbr}"}}},
        allow_unicode=True), encoding="utf-8")
    with pytest.raises(RepliesError, match="placeholders"):
        Replies.load(path)


def test_labels_match_a_tapped_button_in_any_language() -> None:
    replies = Replies.load()
    assert replies.label_matches("確認", "button.confirm")
    assert replies.label_matches(" confirm ", "button.confirm")
    assert replies.label_matches("换货。", "demand.exchange")
    assert not replies.label_matches("确认一下订单", "button.confirm")
    assert replies.render("evidence_received", Lang.MIXED, count=2).startswith("已收到")
