"""Where trained models live, and building the configured backend (training on first use)."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from nlp import backend_classical
from nlp.backends import Progress, TriageBackend
from nlp.corpus import DEFAULT_CORPUS_DIR, load

BACKENDS = ("classical", "transformers", "sentence-transformers")


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """Which backend to use and where its files are."""

    data_dir: Path
    backend: str = "classical"
    model_path: Path | None = None  # transformers / sentence-transformers model directory
    corpus_dir: Path = DEFAULT_CORPUS_DIR

    @classmethod
    def from_env(cls) -> ModelConfig:
        """INTAKEBOT_DATA_DIR, INTAKEBOT_NLP_BACKEND, INTAKEBOT_NLP_MODEL_PATH."""
        data_dir = Path(os.environ.get("INTAKEBOT_DATA_DIR") or Path.home() / ".intakebot")
        path = os.environ.get("INTAKEBOT_NLP_MODEL_PATH")
        return cls(
            data_dir=data_dir.expanduser(),
            backend=os.environ.get("INTAKEBOT_NLP_BACKEND", "classical"),
            model_path=Path(path) if path else None,
        )


def corpus_fingerprint(corpus_dir: Path) -> str:
    """Changes whenever the corpus or the feature code changes, so a stale model is retrained."""
    h = hashlib.sha256(f"v{backend_classical.FORMAT_VERSION}".encode())
    code = Path(__file__).parent
    for path in [*sorted(corpus_dir.glob("*.jsonl")), code / "features.py", code / "cues.yaml",
                 code / "backend_classical.py"]:
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def classical_dir(config: ModelConfig) -> Path:
    return config.data_dir / "models" / f"classical-{corpus_fingerprint(config.corpus_dir)}"


def train_classical(config: ModelConfig, progress: Progress | None = None) -> TriageBackend:
    """Train the default backend on the corpus and cache it under the data directory."""
    backend = backend_classical.fit_heads(load(config.corpus_dir), progress=progress)
    backend.save(classical_dir(config))
    return backend


def load_classical(config: ModelConfig, progress: Progress | None = None) -> TriageBackend:
    """The cached default backend, trained first when absent or stale."""
    directory = classical_dir(config)
    if (directory / backend_classical.MODEL_FILE).exists():
        return backend_classical.ClassicalBackend.load(directory)
    return train_classical(config, progress)


def load_backend(config: ModelConfig) -> tuple[TriageBackend, TriageBackend | None]:
    """(primary, fallback): the configured backend, and the classical one for tasks it lacks."""
    if config.backend not in BACKENDS:
        raise ValueError(f"unknown nlp backend {config.backend!r}; choose one of {BACKENDS}")
    classical = load_classical(config)
    if config.backend == "classical":
        return classical, None
    if config.model_path is None:
        raise ValueError(f"the {config.backend} backend needs INTAKEBOT_NLP_MODEL_PATH")
    if config.backend == "transformers":
        from nlp.backend_transformers import TransformersBackend

        return TransformersBackend.load(config.model_path), classical
    from nlp.backend_sentence import SentenceBackend

    return SentenceBackend.load(config.model_path), classical
