"""Push/pull step time over plain LoRA SFT on the same model and batch, alternating in one run.

Target: <= 1.10x. Also: profiling peak memory as the number of examples grows 10x (target: flat).
    python benchmarks/pushpull_overhead.py
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

torch.set_num_threads(1)

PROFILE_SNIPPET = """
import json, resource, sys, torch
torch.set_num_threads(1)
from character_baker.harness.loading import load_base
from character_baker.harness.character import load_character
from character_baker.bakers.architectures import resolve
from character_baker.bakers.profile import profile_model
from character_baker.bakers.recipe import ProfileConfig
loaded = load_base(sys.argv[1])
pack = load_character("skippy")
n = int(sys.argv[2])
char = (pack.character_pairs * 20)[:n]
anti = (pack.antipole_pairs * 20)[:n]
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
profile_model(loaded.model, loaded.tokenizer, resolve("auto", loaded.model_type), char, anti,
              ProfileConfig(skip_first=1, every=1, units=16, batch_size=8, max_length=128), progress=False)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"n": n, "before_kb": before, "after_kb": after}))
"""


def overhead(model_dir: Path, steps: int = 30) -> tuple[float, float]:
    from transformers import TrainingArguments

    from character_baker.bakers.architectures import resolve
    from character_baker.bakers.examples import collate, encode
    from character_baker.bakers.profile import profile_model
    from character_baker.bakers.recipe import LossConfig, ProfileConfig
    from character_baker.bakers.trainer import PushPullTrainer, Regulariser, lora_model
    from character_baker.harness.character import load_character
    from character_baker.harness.loading import load_base

    pack = load_character("skippy")
    loaded = load_base(str(model_dir))
    arch = resolve("auto", loaded.model_type)
    prof = profile_model(loaded.model, loaded.tokenizer, arch, pack.character_pairs, pack.antipole_pairs,
                         ProfileConfig(skip_first=1, every=2, units=16, max_length=128), progress=False)
    model = lora_model(loaded.model, 16, 32, 0.0, list(arch.lora_targets))
    reg = Regulariser(prof, arch.layers(model), LossConfig(push=0.1, pull=0.1), "cpu")
    batch = collate([encode(loaded.tokenizer, p, 128) for p in pack.character_pairs[:8]], loaded.tokenizer.pad_token_id)
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(output_dir=tmp, use_cpu=True, report_to=[], per_device_train_batch_size=8)
        plain = PushPullTrainer(model=model, args=args, train_dataset=[0])
        pushpull = PushPullTrainer(model=model, args=args, train_dataset=[0], regulariser=reg)
        for t in (plain, pushpull):  # set by Trainer's own loop, which this benchmark bypasses
            t.current_gradient_accumulation_steps = 1
        times: dict[str, list[float]] = {"plain": [], "pushpull": []}
        for i in range(2 * steps + 4):
            name, trainer = ("plain", plain) if i % 2 == 0 else ("pushpull", pushpull)
            started = time.perf_counter()
            trainer.training_step(model, dict(batch))
            if i >= 4:  # warm-up excluded
                times[name].append(time.perf_counter() - started)
    return statistics.median(times["plain"]), statistics.median(times["pushpull"])


def main() -> None:
    from character_baker.rounds.tiny_models import tiny_qwen3

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = tiny_qwen3(Path(tmp) / "m", layers=6, hidden=128)
        plain, pushpull = overhead(model_dir)
        print(f"LoRA SFT step (fwd+bwd, batch 8 x <=128 tokens, tiny Qwen3 6x128): {plain * 1000:7.1f} ms (median)")
        print(f"push/pull step, same model and batch, 3 of 6 layers tracked:      {pushpull * 1000:7.1f} ms (median)")
        print(f"overhead ratio: {pushpull / plain:.3f}x (target <= 1.10x)")
        rows = []
        for n in (40, 400):
            out = subprocess.run([sys.executable, "-c", PROFILE_SNIPPET, str(model_dir), str(n)], capture_output=True,
                                 text=True, check=True).stdout.strip().splitlines()[-1]
            rows.append(json.loads(out))
        for r in rows:
            print(f"profiling {r['n']:4d} + {r['n']:4d} examples: peak RSS {r['after_kb'] / 1024:7.1f} MiB "
                  f"(+{(r['after_kb'] - r['before_kb']) / 1024:.1f} MiB over the loaded model)")
        print(f"peak-memory ratio 10x examples: {rows[1]['after_kb'] / rows[0]['after_kb']:.3f} (target: flat, ~1.0)")


if __name__ == "__main__":
    main()
