"""The result of analysing one customer message."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from nlp.labels import Category, Demand, Emotion, Intent, Lang, Priority


@dataclass(frozen=True, slots=True)
class Amount:
    """A sum of money the customer mentioned."""

    value: float
    currency: str  # ISO 4217, "CNY" unless the text says otherwise


@dataclass(frozen=True, slots=True)
class Slots:
    """Fields of the complaint form (DOMAIN.md template 1) found in one message."""

    order_id: str | None = None
    phone: str | None = None
    email: str | None = None
    amount: Amount | None = None
    product: str | None = None
    incident_time: str | None = None  # ISO 8601, resolved against the reference time
    demand: Demand | None = None
    customer_name: str | None = None

    def filled(self) -> dict[str, Any]:
        """The slots that have a value, as JSON-ready data."""
        return {k: v for k, v in slots_to_json(self).items() if v is not None}


@dataclass(frozen=True, slots=True)
class Context:
    """What the caller knows beyond the message itself."""

    previous_turns: tuple[str, ...] = ()
    repeat_contacts: int = 0  # earlier complaints by the same customer about the same matter
    reference_time: str | None = None  # ISO 8601; "now" when absent


@dataclass(frozen=True, slots=True)
class Triage:
    """Intent, category, emotion, priority and slots of one message."""

    intent: Intent
    category: Category | None
    category_scores: dict[str, float]
    subcategory: str | None
    emotion: Emotion
    emotion_intensity: float
    priority: Priority
    priority_reasons: tuple[str, ...]
    slots: Slots
    lang: Lang
    normalized_text: str = field(repr=False)

    @property
    def sla_hours(self) -> int:
        return self.priority.sla_hours

    def to_json(self) -> dict[str, Any]:
        """The JSON object `intakebot nlp analyze` prints."""
        return {
            "intent": self.intent.value,
            "category": self.category.value if self.category else None,
            "category_scores": {k: round(v, 4) for k, v in self.category_scores.items()},
            "subcategory": self.subcategory,
            "emotion": self.emotion.value,
            "emotion_intensity": round(self.emotion_intensity, 4),
            "priority": self.priority.value,
            "sla_hours": self.sla_hours,
            "priority_reasons": list(self.priority_reasons),
            "slots": slots_to_json(self.slots),
            "lang": self.lang.value,
        }


def slots_to_json(slots: Slots) -> dict[str, Any]:
    data = asdict(slots)
    if slots.demand is not None:
        data["demand"] = slots.demand.value
    return data
