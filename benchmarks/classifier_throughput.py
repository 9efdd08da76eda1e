"""The embedded classifier judge on CPU, one thread: one-time training cost and responses/s on 1,000 responses.

Target: >= 100 responses/s, training < 30 s.
    python benchmarks/classifier_throughput.py
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import torch

torch.set_num_threads(1)
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from character_baker.harness.character import load_character  # noqa: E402
from character_baker.judges.classifier import ClassifierJudge, embed_dtype, embedder  # noqa: E402


def main() -> None:
    pack = load_character("skippy")
    started = time.perf_counter()
    embedder()
    load_s = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        judge = ClassifierJudge.for_character(pack, use_cache=False, cache_dir=Path(tmp))
        train_s = time.perf_counter() - started
    pool = [p.response for p in pack.character_pairs + pack.antipole_pairs]
    responses = [pool[i % len(pool)] for i in range(1000)]
    judge.judge_many(responses[:64])  # warm-up
    started = time.perf_counter()
    verdicts = judge.judge_many(responses)
    judge_s = time.perf_counter() - started
    print(f"embedder load       : {load_s:6.2f} s (once per process), embeddings in {embed_dtype()}")
    print(f"training (uncached) : {train_s:6.2f} s on {judge.clf.n_train} responses, 5-fold CV accuracy "
          f"{judge.clf.cv_accuracy:.3f} (target < 30 s)")
    print(f"judging 1,000       : {judge_s:6.2f} s = {len(verdicts) / judge_s:6.0f} responses/s, 1 thread "
          "(target >= 100/s)")


if __name__ == "__main__":
    main()
