"""Throughput and latency of nlp analyze() on one core, default (classical) backend.

    python bench/nlp_analyze.py [--n 3000]

Pins the process to one CPU and one BLAS thread, warms up, then times analyze() one message at
a time (the bot's case) over texts drawn from the project's corpus, and once in batches.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = "1"
if hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nlp.analyzer import Analyzer  # noqa: E402
from nlp.corpus import load  # noqa: E402
from nlp.models import ModelConfig, load_classical  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=3000, help="messages to time")
    parser.add_argument("--data-dir", type=Path,
                        default=Path(os.environ.get("INTAKEBOT_DATA_DIR") or tempfile.mkdtemp()))
    args = parser.parse_args()

    started = time.perf_counter()
    analyzer = Analyzer(load_classical(ModelConfig(data_dir=args.data_dir)))
    print(f"model ready in {time.perf_counter() - started:.1f} s (trained if not cached)")
    texts = [ex.text for ex in load()]
    random.Random(0).shuffle(texts)
    texts = (texts * (args.n // len(texts) + 1))[: args.n]
    for text in texts[:200]:
        analyzer.analyze(text)

    latencies = []
    cpu_started = time.process_time()
    for text in texts:
        t0 = time.perf_counter()
        analyzer.analyze(text)
        latencies.append((time.perf_counter() - t0) * 1000)
    cpu_ms = (time.process_time() - cpu_started) / len(texts) * 1000
    latencies.sort()
    total = sum(latencies) / 1000
    q = statistics.quantiles(latencies, n=100)
    print(f"single: {len(texts)} messages, {len(texts) / total:.0f} msg/s, "
          f"p50 {q[49]:.2f} ms, p95 {q[94]:.2f} ms, p99 {q[98]:.2f} ms, max {latencies[-1]:.1f} ms")
    # Wall-clock percentiles include time the scheduler gave to other processes; CPU time
    # per message does not, so a busy machine shows up as a gap between the two.
    print(f"CPU time per message {cpu_ms:.2f} ms; load average {os.getloadavg()[0]:.1f}")

    t0 = time.perf_counter()
    for i in range(0, len(texts), 256):
        analyzer.analyze_many(texts[i:i + 256])
    batch = time.perf_counter() - t0
    print(f"batch of 256: {len(texts) / batch:.0f} msg/s")
    mean_len = statistics.mean(len(t) for t in texts)
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "?"
    print(f"mean text length {mean_len:.0f} characters; one core (affinity {cpus})")


if __name__ == "__main__":
    main()
