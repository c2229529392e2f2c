"""Complaint triage: intent, category, emotion, priority/SLA and form slots, Chinese first.

`nlp.analyze(text, context=None) -> Triage` is the entry point; heavy modules load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nlp.analyzer import Analyzer, analyze
    from nlp.pii import mask_pii
    from nlp.triage import Context, Slots, Triage

__all__ = ["Analyzer", "Context", "Slots", "Triage", "analyze", "mask_pii"]

_LAZY = {
    "Analyzer": "nlp.analyzer", "analyze": "nlp.analyzer", "mask_pii": "nlp.pii",
    "Context": "nlp.triage", "Slots": "nlp.triage", "Triage": "nlp.triage",
}


def __getattr__(name: str) -> Any:
    # Lazy so that `import nlp` (e.g. for its label enums) does not load scikit-learn and jieba.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'nlp' has no attribute {name!r}")
