"""Step time of each training baker relative to `sft` (steer trains nothing), on the same tiny model, data,
batch and LoRA, each through its own Trainer (`baker.create_trainer`) for the same number of steps; the runs
alternate, twice each, medians reported.

    python benchmarks/baker_step_time.py
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import torch

torch.set_num_threads(1)

STEPS = 12


def step_seconds(baker_name: str, model_dir: Path, work: Path) -> float:
    from transformers import TrainerCallback

    from character_baker.bakers import get_baker
    from character_baker.bakers.architectures import resolve
    from character_baker.bakers.bake import Bake
    from character_baker.bakers.lora.base import trainer_args
    from character_baker.bakers.recipe import load_recipe
    from character_baker.bakers.trainer import lora_model
    from character_baker.harness.character import load_character
    from character_baker.harness.loading import load_base

    recipe_path = work / f"{baker_name}.toml"
    recipe_path.write_text(f'round = "B"\nbaker = "{baker_name}"\ncharacter = "skippy"\n'
                           f'output = "{work / baker_name}"\n[model]\nbase = "{model_dir}"\n'
                           '[train]\nmax_length = 128\nbatch_size = 8\nlearning_rate = 1e-4\n'
                           '[grpo]\ngenerations = 4\nmax_completion_length = 32\n')
    recipe = load_recipe(recipe_path)
    pack = load_character("skippy")
    loaded = load_base(str(model_dir))
    arch = resolve("auto", loaded.model_type)
    torch.manual_seed(0)
    model = lora_model(loaded.model, 16, 32, 0.0, list(arch.lora_targets))
    # the bake's own settings (a first run built its own and got TRL's bf16 autocast: dpo read 21x), for fewer steps
    args = {**trainer_args(recipe, work / baker_name / "train"), "max_steps": STEPS, "save_strategy": "no"}
    baker = get_baker(baker_name)
    bake = Bake(recipe, pack, pack.character_pairs, pack.antipole_pairs, loaded, arch)
    trainer = baker.create_trainer(bake, model, None, args, TrainerCallback())  # type: ignore[attr-defined]
    started = time.perf_counter()
    trainer.train()
    return (time.perf_counter() - started) / STEPS


def main() -> None:
    from character_baker.rounds.tiny_models import tiny_qwen3

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = tiny_qwen3(Path(tmp) / "m", layers=6, hidden=128)
        # grpo: a step is 2 prompts x 4 sampled replies of <= 32 tokens, judged, then the policy-gradient update
        times: dict[str, list[float]] = {"sft": [], "dpo": [], "grpo": []}
        for _ in range(2):
            for name in times:
                times[name].append(step_seconds(name, model_dir, Path(tempfile.mkdtemp(dir=tmp))))
        sft = statistics.median(times["sft"])
        print(f"tiny Qwen3 6x128, LoRA r16 on q/k/v/o, batch 8 x <=128 tokens, {STEPS} steps per run (incl. data prep)")
        for name, values in times.items():
            med = statistics.median(values)
            print(f"{name:4s}: {med * 1000:7.1f} ms/step (runs: {', '.join(f'{v * 1000:.0f}' for v in values)})"
                  f"   ratio to sft {med / sft:.2f}x")


if __name__ == "__main__":
    main()
