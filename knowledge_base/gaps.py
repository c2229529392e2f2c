"""Questions the knowledge base could not answer: masked, keyed and counted for editors."""

from __future__ import annotations

import re

from knowledge_base.analysis import Analyzer

MAX_GAP_CHARS = 500
_PUNCT = re.compile(r"[\W_]+", re.UNICODE)


def mask(text: str) -> str:
    """The text with personal data (phones, ids, addresses…) masked by nlp.pii."""
    # Imported here: nlp.pii is optional for the rest of the knowledge base.
    from nlp.pii import mask_pii

    return str(mask_pii(text))


def gap_key(masked: str, analyzer: Analyzer) -> str:
    """The key under which asks of the same question are counted.

    The canonical form (Simplified, lower case, synonyms, placeholders dropped) without
    punctuation or spaces, so "退款多久到账？" and "退款多久到账" count as one.
    """
    key = _PUNCT.sub("", analyzer.canonical(masked))
    return key[:200] or _PUNCT.sub("", masked)[:200] or "(empty)"
