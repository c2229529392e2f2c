"""The canonical form every slot pattern reads."""

from __future__ import annotations

from nlp.slots import canonical


def test_canonical_keeps_offsets() -> None:
    text = "訂單號：１２３４５６７８９０１２\x00，電話 13812345678"
    folded = canonical(text)
    assert len(folded) == len(text)
    assert folded.startswith("订单号:123456789012 ")
