"""Pluggable classifiers behind one interface: each scores normalised texts on every task."""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final, final

# The tasks a backend is trained on, in the order the triage uses them.
TASKS: Final = ("intent", "category", "subcategory", "emotion", "priority")

Scores = dict[str, dict[str, float]]  # task -> label -> probability
Progress = Callable[[str, int, int], None]  # (stage, done, total)


class TriageBackend(abc.ABC):
    """A trained set of per-task classifiers over normalised text (nlp.normalize.normalize)."""

    name: str

    @final
    def score(self, texts: Sequence[str]) -> list[Scores]:
        """Probabilities per task and label for each text; tasks the backend lacks are absent."""
        if not texts:
            return []
        results = self._score(list(texts))
        if len(results) != len(texts):
            raise RuntimeError(
                f"{self.name} backend returned {len(results)} results for {len(texts)} texts")
        return results

    @abc.abstractmethod
    def _score(self, texts: list[str]) -> list[Scores]:
        """Score a non-empty batch of normalised texts."""

    @property
    @abc.abstractmethod
    def tasks(self) -> tuple[str, ...]:
        """The tasks this backend can score."""

    @abc.abstractmethod
    def save(self, directory: Path) -> None:
        """Write everything needed to load the backend again into directory."""
