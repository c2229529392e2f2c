"""Scoring triage against gold labels: per-class P/R/F1, macro-F1, accuracy, confusion matrix."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)

from nlp.labels import Category, Emotion, Intent, Priority

NONE = "none"

# The classes macro-F1 averages over; other predicted values (e.g. "none") still count as errors.
FIELD_LABELS: dict[str, list[str]] = {
    "intent": [Intent.COMPLAINT.value, Intent.INQUIRY.value, Intent.OTHER.value],
    "category": [c.value for c in Category],
    "emotion": [e.value for e in Emotion],
    "priority": [p.value for p in Priority],
}


def gold_value(field: str, row: dict[str, Any]) -> str | None:
    """The gold label of a row, None when the annotators did not agree (field absent)."""
    if field not in row:
        return None
    value = row[field]
    if value is None:
        return NONE
    if field == "intent" and value == Intent.REQUEST_HUMAN.value:
        return Intent.OTHER.value  # the evaluation scores request_human as other
    return str(value)


def predicted_value(field: str, prediction: dict[str, Any]) -> str:
    value = prediction.get(field)
    if value is None:
        return NONE
    if field == "intent" and value == Intent.REQUEST_HUMAN.value:
        return Intent.OTHER.value
    return str(value)


@dataclass(frozen=True, slots=True)
class FieldReport:
    field: str
    n: int
    accuracy: float
    macro_f1: float
    per_class: dict[str, tuple[float, float, float, int]]  # label -> (P, R, F1, support)
    labels: list[str]
    confusion: list[list[int]]

    def to_json(self) -> dict[str, Any]:
        return {
            "field": self.field, "n": self.n, "accuracy": round(self.accuracy, 4),
            "macro_f1": round(self.macro_f1, 4),
            "per_class": {k: {"precision": round(p, 4), "recall": round(r, 4), "f1": round(f, 4),
                              "support": s} for k, (p, r, f, s) in self.per_class.items()},
            "confusion": {"labels": self.labels, "matrix": self.confusion},
        }

    def render(self) -> str:
        lines = [f"== {self.field}  (n={self.n})  accuracy {self.accuracy:.3f}  "
                 f"macro-F1 {self.macro_f1:.3f}",
                 f"{'class':<16}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>9}"]
        for label, (p, r, f, s) in self.per_class.items():
            lines.append(f"{label:<16}{p:>10.3f}{r:>10.3f}{f:>10.3f}{s:>9d}")
        width = max(len(lb) for lb in self.labels) + 2
        lines.append("confusion (rows gold, columns predicted):")
        lines.append(" " * width + "".join(f"{lb[:10]:>11}" for lb in self.labels))
        for label, row in zip(self.labels, self.confusion, strict=True):
            lines.append(f"{label:<{width}}" + "".join(f"{v:>11d}" for v in row))
        return "\n".join(lines)


def score_field(field: str, gold: list[str], predicted: list[str]) -> FieldReport:
    classes = FIELD_LABELS[field]
    present = sorted(set(gold) | set(predicted), key=lambda x: (x not in classes, x))
    labels = [c for c in classes if c in present] + [x for x in present if x not in classes]
    p, r, f, s = precision_recall_fscore_support(gold, predicted, labels=classes, zero_division=0)
    per_class = {c: (float(p[i]), float(r[i]), float(f[i]), int(s[i]))
                 for i, c in enumerate(classes)}
    scored = [c for c in classes if c in set(gold)]  # classes absent from gold carry no signal
    return FieldReport(
        field=field,
        n=len(gold),
        accuracy=float(accuracy_score(gold, predicted)),
        macro_f1=float(f1_score(gold, predicted, labels=scored, average="macro", zero_division=0)),
        per_class=per_class,
        labels=labels,
        # sklearn warns on a 1x1 matrix; it is just the count.
        confusion=([[len(gold)]] if len(labels) == 1
                   else confusion_matrix(gold, predicted, labels=labels).tolist()),
    )


def evaluate(rows: list[dict[str, Any]], predictions: list[dict[str, Any]]) -> list[FieldReport]:
    """Reports for each field present in the gold rows, over the rows that have it."""
    reports = []
    for field in FIELD_LABELS:
        pairs = [(g, predicted_value(field, pred))
                 for row, pred in zip(rows, predictions, strict=True)
                 if (g := gold_value(field, row)) is not None]
        if pairs:
            reports.append(score_field(field, [g for g, _ in pairs], [p for _, p in pairs]))
    return reports
