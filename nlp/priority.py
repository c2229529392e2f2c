"""Priority and SLA: the classifier's estimate, raised by the SOP's explicit triggers."""

from __future__ import annotations

from nlp.cues import cues
from nlp.labels import Emotion, Intent, Priority
from nlp.triage import Context


def _raise(p: Priority) -> Priority:
    return Priority.HIGH if p is not Priority.LOW else Priority.MEDIUM


def decide(
    text: str,
    intent: Intent,
    emotion: Emotion,
    model: dict[str, float] | None,
    context: Context | None,
) -> tuple[Priority, tuple[str, ...]]:
    """Priority of a normalised text and the reasons behind it (DOMAIN.md step 2).

    high: personal safety, many customers, media/regulator/lawsuit; medium: core rights hurt (money,
    an unusable item); low: inquiries and minor issues. Anger counts only when it repeats: the SOP
    raises urgency for angry repeat contacts, not for every angry review.
    """
    c = cues().priority
    reasons: list[str] = []
    level = Priority.LOW
    if intent is Intent.COMPLAINT and model:
        level = Priority(max(model, key=model.__getitem__))
    if intent is Intent.OTHER:
        return Priority.LOW, ()
    if c["safety"].found(text) or (c["hazard"].found(text) and c["exposure"].found(text)):
        reasons.append("safety")
    if c["group"].found(text):
        reasons.append("group")
    if c["media_or_regulator"].found(text):
        reasons.append("media_or_regulator")
    if reasons:
        level = Priority.HIGH
    if intent is Intent.COMPLAINT:
        if c["cannot_use"].found(text):
            reasons.append("cannot_use")
            level = max(level, Priority.MEDIUM, key=lambda p: p.rank)
        if level is not Priority.LOW and c["money"].found(text):
            reasons.append("money")
    angry = emotion is Emotion.ANGER
    if angry:
        reasons.append("angry")
    if context is not None:
        if context.repeat_contacts > 0:
            reasons.append("repeat_contact")
            level = _raise(level)
        elif angry and any(cues().emotion["anger"].found(t) for t in context.previous_turns):
            reasons.append("escalating")
            level = _raise(level)
    return level, tuple(reasons)
