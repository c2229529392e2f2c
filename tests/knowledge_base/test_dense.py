"""The embedding model: packaged default, languages served, clear errors for a bad path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from knowledge_base.dense import SentenceTransformerEmbedder, default_model_path
from knowledge_base.errors import EmbeddingModelUnavailable
from knowledge_base.retrieval import Searcher
from nlp.labels import Lang


def test_default_model_serves_english_only() -> None:
    embedder = SentenceTransformerEmbedder()
    assert default_model_path().is_dir()
    assert embedder.serves(Lang.EN) and embedder.serves(Lang.MIXED)
    assert not embedder.serves(Lang.ZH_HANS) and not embedder.serves(Lang.ZH_HANT)
    assert embedder.encode([]).shape[0] == 0


def test_an_operators_model_serves_every_language(tmp_path: Path) -> None:
    embedder = SentenceTransformerEmbedder(tmp_path)
    assert all(embedder.serves(lang) for lang in Lang)
    with pytest.raises(EmbeddingModelUnavailable, match="cannot load"):
        embedder.encode(["退款"])


def test_missing_directory_is_refused_at_once(tmp_path: Path) -> None:
    with pytest.raises(EmbeddingModelUnavailable, match="no sentence-transformers model"):
        SentenceTransformerEmbedder(tmp_path / "nope")


def test_vectors_are_normalised(hybrid_searcher: Searcher) -> None:
    embedder = hybrid_searcher.embedder  # the model loaded once for the whole run
    assert embedder is not None
    vectors = embedder.encode(["where is my parcel", "refund please"])
    assert vectors.shape == (2, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)


def test_minilm_queries_take_the_direct_path_with_the_same_vectors(
        hybrid_searcher: Searcher) -> None:
    embedder = hybrid_searcher.embedder
    assert isinstance(embedder, SentenceTransformerEmbedder) and embedder.name == "minilm"
    text = "can I change the delivery address after paying?"
    direct = embedder.encode_queries([text])
    assert embedder._direct is not None  # the plain Transformer -> mean -> Normalize model
    assert np.allclose(direct, embedder.encode([text]), atol=1e-4)
