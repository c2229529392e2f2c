from __future__ import annotations

import pytest

from nlp.labels import Emotion, Intent, Priority
from nlp.priority import decide
from nlp.triage import Context

LOW = {"low": 0.8, "medium": 0.15, "high": 0.05}


@pytest.mark.parametrize(("text", "reason"), [
    ("吃了以后过敏了", "safety"),
    ("热水壶漏电把我电到了", "safety"),
    ("孩子吃了发霉的面包", "safety"),
    ("群里好多人都遇到了", "group"),
    ("我要去12315投诉你们", "media_or_regulator"),
    ("i will sue you and call the press", "media_or_regulator"),
])
def test_triggers_make_it_high(text: str, reason: str) -> None:
    level, reasons = decide(text, Intent.COMPLAINT, Emotion.ANGER, LOW, None)
    assert level is Priority.HIGH
    assert reason in reasons


def test_hazard_without_exposure_is_not_safety() -> None:
    level, reasons = decide("收到的面包发霉了", Intent.COMPLAINT, Emotion.DISAPPOINTMENT, LOW, None)
    assert "safety" not in reasons and level is Priority.LOW


def test_cannot_use_is_at_least_medium() -> None:
    level, reasons = decide("新买的冰箱不制冷", Intent.COMPLAINT, Emotion.NEUTRAL, LOW, None)
    assert level is Priority.MEDIUM and "cannot_use" in reasons


def test_other_intent_is_always_low() -> None:
    assert decide("12315", Intent.OTHER, Emotion.NEUTRAL, None, None) == (Priority.LOW, ())


def test_anger_alone_does_not_raise_but_escalation_does() -> None:
    level, reasons = decide("太差了", Intent.COMPLAINT, Emotion.ANGER, LOW, None)
    assert level is Priority.LOW and "angry" in reasons
    ctx = Context(previous_turns=("气死我了，垃圾",))
    level, reasons = decide("太差了", Intent.COMPLAINT, Emotion.ANGER, LOW, ctx)
    assert level is Priority.MEDIUM and "escalating" in reasons


def test_repeat_contact_raises_one_level() -> None:
    level, _ = decide("太差了", Intent.COMPLAINT, Emotion.NEUTRAL, LOW, Context(repeat_contacts=1))
    assert level is Priority.MEDIUM
