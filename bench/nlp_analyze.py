"""Throughput and latency of nlp analyze() on one core, default backend (classical, main topic
read span by span, E5 cascade).

    python bench/nlp_analyze.py [--n 3000] [--e5 cascade|always|off] [--texts FILE.jsonl]

Pins the process to one CPU and one BLAS thread, warms up, then times analyze() one message at
a time (the bot's case) over texts drawn from the project's corpus (or from --texts, JSON Lines
with "text", e.g. a public dev set: measuring on it is fine, training is not), and once in
batches. With the cascade it also reports how many messages E5 was asked about.
"""

from __future__ import annotations

import argparse
import json
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

from nlp import e5  # noqa: E402
from nlp.analyzer import Analyzer  # noqa: E402
from nlp.backend_cascade import CascadeBackend  # noqa: E402
from nlp.corpus import load  # noqa: E402
from nlp.main_topic import MainTopicBackend  # noqa: E402
from nlp.models import E5_MODES, ModelConfig, load_backend  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=3000, help="messages to time")
    parser.add_argument("--data-dir", type=Path,
                        default=Path(os.environ.get("INTAKEBOT_DATA_DIR") or tempfile.mkdtemp()))
    parser.add_argument("--e5", choices=E5_MODES, default=os.environ.get("INTAKEBOT_NLP_E5")
                        or "cascade", help="how the E5 encoder is used (default: cascade)")
    parser.add_argument("--texts", type=Path, help="JSON Lines with \"text\" to time instead")
    args = parser.parse_args()

    started = time.perf_counter()
    config = ModelConfig(data_dir=args.data_dir, e5=args.e5)
    primary, _ = load_backend(config)
    analyzer = Analyzer(primary)
    # The E5 cascade sits under the main-topic reading; its counter says how often E5 was asked.
    backend = primary.inner if isinstance(primary, MainTopicBackend) else primary
    print(f"{backend.name} model ready in {time.perf_counter() - started:.1f} s "
          f"(trained if not cached)")
    if args.texts:
        texts = [json.loads(line)["text"] for line in
                 args.texts.read_text(encoding="utf-8").splitlines() if line.strip()]
    else:
        texts = [ex.text for ex in load()]
    random.Random(0).shuffle(texts)
    texts = (texts * (args.n // len(texts) + 1))[: args.n]
    for text in texts[:200]:
        analyzer.analyze(text)

    consulted_before = backend.consulted if isinstance(backend, CascadeBackend) else 0
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
    if isinstance(backend, CascadeBackend):
        share = (backend.consulted - consulted_before) / len(texts)
        print(f"E5 consulted on {share:.1%} of messages (engine: {e5.shared_encoder().engine})")

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
