"""Where trained models live, and building the configured backend (training on first use)."""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from nlp import backend_classical
from nlp.backends import Progress, TriageBackend
from nlp.corpus import DEFAULT_CORPUS_DIR, load
from nlp.main_topic import MainTopicBackend

if TYPE_CHECKING:
    from nlp.e5_heads import E5Heads

BACKENDS = ("classical", "transformers", "sentence-transformers")
# How the classical backend uses the E5 encoder: "cascade" (only when unsure; the default),
# "always" (every text; for measuring) or "off".
E5_MODES = ("cascade", "always", "off")
E5_ENV = "INTAKEBOT_NLP_E5"
# E5 heads trained on the shipped corpus, so that no installation has to embed it first.
PACKAGED_E5_HEADS = Path(__file__).resolve().parent / "e5_heads.json"

log = logging.getLogger(__name__)


def _e5_mode_from_env() -> str:
    return os.environ.get(E5_ENV) or "cascade"


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """Which backend to use and where its files are."""

    data_dir: Path
    backend: str = "classical"
    model_path: Path | None = None  # transformers / sentence-transformers model directory
    corpus_dir: Path = DEFAULT_CORPUS_DIR
    e5: str = field(default_factory=_e5_mode_from_env)  # one of E5_MODES (classical backend)

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


def e5_heads_path(config: ModelConfig) -> Path:
    return config.data_dir / "models" / "e5_heads.json"


def train_e5_heads(config: ModelConfig, progress: Progress | None = None) -> E5Heads:
    """Embed the corpus (vectors cached by text under the data directory) and fit the E5 heads."""
    from nlp.e5_cache import VectorCache, cache_dir
    from nlp.e5_heads import fit_e5_heads

    def embedded(done: int, total: int) -> None:
        if progress:
            progress("e5 vectors", done, total)

    heads = fit_e5_heads(load(config.corpus_dir), VectorCache(cache_dir(config.data_dir)),
                         embedded)
    heads.save(e5_heads_path(config))
    return heads


def load_e5_heads(config: ModelConfig) -> E5Heads | None:
    """The heads trained here (`intakebot nlp train`), else the packaged ones."""
    from nlp.e5_heads import E5Heads

    for path in (e5_heads_path(config), PACKAGED_E5_HEADS):
        if path.exists():
            try:
                return E5Heads.load(path)
            except (ValueError, KeyError) as exc:
                log.warning("ignoring %s: %s", path, exc)
    return None


def with_e5(classical: TriageBackend, config: ModelConfig) -> TriageBackend:
    """The classical backend behind the E5 cascade, or alone when E5 is off or unavailable."""
    if config.e5 not in E5_MODES:
        raise ValueError(f"unknown {E5_ENV} mode {config.e5!r}; choose one of {E5_MODES}")
    from nlp import e5

    if config.e5 == "off" or not e5.available():
        return classical
    heads = load_e5_heads(config)
    if heads is None:
        log.warning("no E5 heads found; run `intakebot nlp train`. Using the classical model alone")
        return classical
    from nlp.backend_cascade import CascadeBackend, CascadePolicy

    encoder = e5.shared_encoder()
    try:
        encoder.query(["你好"])  # load the engine now, not on the first unsure message
    except e5.E5Unavailable as exc:
        log.warning("%s; using the classical model alone", exc)
        return classical
    policy = CascadePolicy.always() if config.e5 == "always" else CascadePolicy()
    return CascadeBackend(classical, heads, encoder.query, policy)


def load_backend(config: ModelConfig) -> tuple[TriageBackend, TriageBackend | None]:
    """(primary, fallback): the configured backend, and the classical one for tasks it lacks."""
    if config.backend not in BACKENDS:
        raise ValueError(f"unknown nlp backend {config.backend!r}; choose one of {BACKENDS}")
    classical = load_classical(config)
    if config.backend == "classical":
        # Spans are read by the classical model alone: E5 on each would cost it per span.
        return MainTopicBackend(with_e5(classical, config), classical), None
    if config.model_path is None:
        raise ValueError(f"the {config.backend} backend needs INTAKEBOT_NLP_MODEL_PATH")
    if config.backend == "transformers":
        from nlp.backend_transformers import TransformersBackend

        return TransformersBackend.load(config.model_path), classical
    from nlp.backend_sentence import SentenceBackend

    return SentenceBackend.load(config.model_path), classical
