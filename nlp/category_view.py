"""The category decision's scores: the category head averaged with the subcategory head.

Shared by the analyzer (which decides) and the E5 cascade (which asks whether it is sure).
"""

from __future__ import annotations

from nlp.labels import SUBCATEGORIES, Category


def category_scores(probs: dict[str, float], sub_probs: dict[str, float]) -> dict[str, float]:
    """The category head averaged with the subcategory head summed per category.

    The fine-grained head is a second view of the same question; averaging the two generalises
    better to real texts than either alone (docs/nlp.md).
    """
    views = [{c.value: probs.get(c.value, 0.0) for c in Category}]
    if sub_probs:
        views.append({c.value: sum(sub_probs.get(s, 0.0) for s in SUBCATEGORIES[c])
                      for c in Category})
    scores = dict.fromkeys(views[0], 0.0)
    for view in views:
        total = sum(view.values()) or 1.0
        for k, v in view.items():
            scores[k] += v / total / len(views)
    return scores
