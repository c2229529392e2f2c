"""Fixtures shared by the nlp backend tests."""

from __future__ import annotations

from collections.abc import Iterator

import huggingface_hub.constants
import pytest


@pytest.fixture(scope="module")
def offline() -> Iterator[None]:
    """Any Hub request fails: huggingface_hub read HF_HUB_OFFLINE at import, so set both."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
        yield
