"""E5 vectors of training texts, cached on disk by text hash.

Embedding the whole corpus takes minutes on one core, so every vector is computed once and kept
under the data directory. The cache is a folder of shard files (keys + vectors), one written per
batch, so an interrupted run keeps what it finished and a new text costs one more small shard.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from nlp import e5

# Which vectors a cache holds: the encoder's identity and the prefix used ("query: ").
CACHE_NAME = "e5-small-q4-query-v1"
BATCH = 32


def text_key(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()


class VectorCache:
    """text -> E5 query vector, persisted as shards under `directory`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._vectors: dict[bytes, np.ndarray] = {}
        self._lock = threading.Lock()
        self._loaded = False

    def _load(self) -> None:
        if self._loaded:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        for shard in sorted(self.directory.glob("shard-*.npz")):
            with np.load(shard) as data:
                keys, vectors = data["keys"], data["vectors"]
            for k, v in zip(keys, vectors, strict=True):
                self._vectors[bytes(k)] = v
        self._loaded = True

    def _write(self, keys: list[bytes], vectors: np.ndarray) -> None:
        name = f"shard-{os.getpid()}-{threading.get_ident()}-{len(list(self.directory.iterdir()))}"
        tmp = self.directory / f"{name}.tmp.npz"
        np.savez(tmp, keys=np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), -1),
                 vectors=vectors.astype(np.float32))
        tmp.replace(self.directory / f"{name}.npz")  # readers never see half a shard

    def vectors(self, texts: Sequence[str],
                progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """(n, 384) vectors for texts (normalised text, as the backends see it)."""
        with self._lock:
            self._load()
            keys = [text_key(t) for t in texts]
            missing = list({k: t for k, t in zip(keys, texts, strict=True)
                            if k not in self._vectors}.items())
            # Similar lengths in one batch: the engine pads to the longest text.
            missing.sort(key=lambda kt: len(kt[1]))
            encoder = e5.shared_encoder()
            for start in range(0, len(missing), BATCH):
                chunk = missing[start:start + BATCH]
                vecs = encoder.query([t for _, t in chunk])
                self._write([k for k, _ in chunk], vecs)
                for (k, _), v in zip(chunk, vecs, strict=True):
                    self._vectors[k] = v
                if progress:
                    progress(min(start + BATCH, len(missing)), len(missing))
            if not keys:
                return np.zeros((0, e5.DIM), dtype=np.float32)
            return np.stack([self._vectors[k] for k in keys]).astype(np.float32)


def cache_dir(data_dir: Path) -> Path:
    return data_dir / "cache" / CACHE_NAME
