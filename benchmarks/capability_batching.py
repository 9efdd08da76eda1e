"""Capability suite on lm-eval's HF backend: batched generation vs one prompt at a time, side by side.

The fixture's 12 problems x k=4 samples (48 generations, greedy, 64-token budget) on a tiny random Qwen3,
through `run_capability` (real lm-eval, chat template applied), with lm-eval's response cache off.
Rounds alternate the two settings; the best of each is compared. Target: batched >= 3x the throughput.
    python benchmarks/capability_batching.py [--rounds 2] [--batch-size 16] [--hidden 64]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import torch

torch.set_num_threads(1)
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from character_baker.rounds.tiny_models import tiny_qwen3  # noqa: E402
from character_baker.tasks.capability import run_capability  # noqa: E402

K = 4
BUDGET = 64


def run(model: Path, out: Path, batch_size: int) -> tuple[float, int, int]:
    """(seconds inside lm-eval, generations, generated tokens)."""
    result = run_capability(model, out_dir=out, backend="hf", k=K, max_tokens=BUDGET, batch_size=batch_size,
                            use_cache=False, device="cpu", dtype="float32")
    samples = [json.loads(line) for line in Path(result["samples_path"]).read_text().splitlines()]
    return result["seconds"], len(samples), sum(s["tokens"] for s in samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model = tiny_qwen3(root / "model", hidden=args.hidden)
        run(model, root / "warm", args.batch_size)  # first-call costs (imports, dataset build) out of the timings
        best: dict[int, tuple[float, int, int]] = {}
        for r in range(args.rounds):
            for bs in (1, args.batch_size):
                seconds, gens, tokens = run(model, root / f"r{r}-bs{bs}", bs)
                print(f"round {r + 1}  batch size {bs:3d}: {seconds:7.2f} s  {gens} generations  {tokens} tokens  "
                      f"{tokens / seconds:8.1f} tokens/s", flush=True)
                if bs not in best or seconds < best[bs][0]:
                    best[bs] = (seconds, gens, tokens)
    (s1, _, t1), (sb, _, tb) = best[1], best[args.batch_size]
    print(f"tiny Qwen3 (hidden {args.hidden}, 4 layers), fixture x k={K}, {BUDGET}-token budget, greedy, 1 thread")
    print(f"batch size 1           : {t1 / s1:8.1f} tokens/s (best of {args.rounds})")
    print(f"batch size {args.batch_size:<3d}         : {tb / sb:8.1f} tokens/s (best of {args.rounds})")
    print(f"throughput ratio       : {(tb / sb) / (t1 / s1):8.1f}x  (target >= 3x)")


if __name__ == "__main__":
    main()
