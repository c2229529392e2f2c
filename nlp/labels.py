"""Closed vocabularies of the triage: intents, categories, emotions, priorities, languages."""

from __future__ import annotations

from enum import Enum


class Intent(str, Enum):
    COMPLAINT = "complaint"
    INQUIRY = "inquiry"
    REQUEST_HUMAN = "request_human"
    OTHER = "other"


class Category(str, Enum):
    PRODUCT = "product"
    LOGISTICS = "logistics"
    SERVICE = "service"
    AFTER_SALES = "after_sales"
    COMPLIANCE = "compliance"


class Emotion(str, Enum):
    ANGER = "anger"
    ANXIETY = "anxiety"
    DISAPPOINTMENT = "disappointment"
    NEUTRAL = "neutral"
    SATISFACTION = "satisfaction"


class Priority(str, Enum):
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"

    @property
    def sla_hours(self) -> int:
        """Response time promised by the SOP (DOMAIN.md step 2)."""
        return _SLA_HOURS[self]

    @property
    def rank(self) -> int:
        """Higher is more urgent; lets callers take the max of several priorities."""
        return _RANK[self]


_SLA_HOURS = {Priority.HIGH: 2, Priority.MEDIUM: 4, Priority.LOW: 24}
_RANK = {Priority.LOW: 0, Priority.MEDIUM: 1, Priority.HIGH: 2}


class Lang(str, Enum):
    ZH_HANS = "zh-Hans"
    ZH_HANT = "zh-Hant"
    EN = "en"
    MIXED = "mixed"


class Demand(str, Enum):
    REFUND = "refund"
    EXCHANGE = "exchange"
    REPAIR = "repair"
    APOLOGY = "apology"
    COMPENSATION = "compensation"
    OTHER = "other"


# Fine-grained topics under each category; the training corpus uses exactly these names.
SUBCATEGORIES: dict[Category, tuple[str, ...]] = {
    Category.PRODUCT: (
        "quality_defect", "not_as_described", "function_issue", "expired", "wrong_item",
        "missing_parts", "taste_smell", "poor_value",
    ),
    Category.LOGISTICS: (
        "delay", "lost", "damaged_in_transit", "fake_delivery_scan", "courier_attitude",
        "wrong_address", "shipping_status",
    ),
    Category.SERVICE: ("rude_staff", "slow_response", "promise_not_kept", "passed_around"),
    Category.AFTER_SALES: (
        "refund_blocked", "return_exchange", "warranty_repair", "invoice", "compensation",
        "price_protection", "order_change",
    ),
    Category.COMPLIANCE: (
        "counterfeit", "refurbished_as_new", "false_advertising", "fake_discount", "fraud",
    ),
}
