"""Shared by the slot tests: the lazily imported libraries, loaded once."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from nlp.slots import preload


@pytest.fixture(scope="session", autouse=True)
def _loaded() -> Iterator[None]:
    # Import jionlp and jieba once, so the timings measure extraction, not imports.
    preload()
    yield
