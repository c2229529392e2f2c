"""Benchmark of the knowledge-base search: index build time and search latency p50/p95.

Synthetic knowledge bases of 500 and 5,000 entries are made from the seed FAQ (each seed entry
rewritten for many products: "空调退款多久到账？"), then questions are asked one at a time, as the
bot does. Three ways are measured:

- lexical: BM25 + reranker only (what Chinese questions get with the default English model);
- hybrid-en: lexical + the packaged all-MiniLM-L6-v2, English questions (dense is used);
- hybrid-all: the same model forced on for every language, i.e. the cost an operator's Chinese
  model of that size would add to Chinese questions.

Run: python bench/kb_search.py [--sizes 500 5000] [--queries 300] [--modes lexical hybrid-en]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
from dataclasses import replace

from knowledge_base.dense import SentenceTransformerEmbedder
from knowledge_base.entries import PublishedEntry
from knowledge_base.files import load_file
from knowledge_base.retrieval import Searcher
from knowledge_base.service import SEED_FILE, make_searcher
from nlp.labels import Lang

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
        # A distinct order number per question keeps the query-vector cache out of the timing.
        texts.append(f"你好 {rng.choice(options or [entry.content.question])} 订单{100000 + n}")
    return texts


def measure(name: str, searcher: Searcher, entries: list[PublishedEntry],
            texts: list[str]) -> None:
    started = time.perf_counter()
    searcher.rebuild(entries)
    build = time.perf_counter() - started
    for text in texts[:5]:  # warm caches (and the model) outside the timing
        searcher.search(text)
    latencies = []
    for text in texts:
        t0 = time.perf_counter()
        searcher.search(text)
        latencies.append((time.perf_counter() - t0) * 1000)
    # The model's share: one query embedding, timed alone on the same questions.
    embed = "-"
    if name != "lexical" and searcher.embedder is not None:
        times = []
        for text in texts:
            t0 = time.perf_counter()
            searcher.embedder.encode([text])
            times.append((time.perf_counter() - t0) * 1000)
        embed = f"{statistics.median(times):6.2f} ms"
    p50, p95 = _percentiles(latencies)
    print(f"| {name:<10} | {len(entries):>5} | {build:8.2f} s | {p50:7.2f} ms | {p95:7.2f} ms "
          f"| {embed:>9} |", flush=True)


def _percentiles(values: list[float]) -> tuple[float, float]:
    values = sorted(values)
    return statistics.median(values), values[int(0.95 * (len(values) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 5000])
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--modes", nargs="+", default=["lexical", "hybrid-en", "hybrid-all"],
                        choices=["lexical", "hybrid-en", "hybrid-all"])
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    seed_entries = [PublishedEntry(i, 1, c) for i, c in load_file(SEED_FILE)]
    print(f"cores: {os.cpu_count()}, load average at start: "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print("| mode       | size  | build      | p50        | p95        | embed p50 |")
    print("| ---------- | ----- | ---------- | ---------- | ---------- | --------- |")
    for size in args.sizes:
        entries = synthetic(size, seed_entries)
        for mode in args.modes:
            if mode == "lexical":
                searcher = make_searcher(dense=False)
            else:
                searcher = make_searcher(dense=True)
                if mode == "hybrid-all":
                    searcher.embedder = SentenceTransformerEmbedder(languages=frozenset(Lang))
            texts = questions(entries, args.queries, english=(mode == "hybrid-en"))
            measure(mode, searcher, entries, texts)
    print(f"load average at end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
