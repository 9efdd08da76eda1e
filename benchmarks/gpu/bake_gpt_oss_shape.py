"""GPU: r6's bake from end to end on GPT-OSS-20B's real shape, starting from an MXFP4 checkpoint as the released
weights are stored (random values; no weights can be downloaded on the lent machine): the dequantising load, the
push/pull profile with the per-expert routing counts, the base's routes on the eval prompts, LoRA training, the
merge and the candidate's routing shift, and a reload of the written candidate. Each stage's wall time and peak
GPU memory, and the process's peak host memory, go to a JSON file as they are measured, so a run cut short still
reports what it finished.

Selection on the dev split is generation through Inspect (measured by generate_gpt_oss_shape.py; Inspect is not on
the lent image): here it is replaced by "the last checkpoint", which is said in the output.

    python benchmarks/gpu/bake_gpt_oss_shape.py --out /tmp/r6-shape --steps 20     # on the GPU box
    python benchmarks/gpu/bake_gpt_oss_shape.py --tiny --out /tmp/r6-tiny          # scaled-down shape (CPU)
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pushpull_gpt_oss_shape import GPT_OSS_20B, TINY  # noqa: E402

from character_baker.bakers.lora import base as lora_base  # noqa: E402
from character_baker.bakers.lora.pushpull import PushPullBaker  # noqa: E402
from character_baker.bakers.lora.selection import CheckpointSelector  # noqa: E402
from character_baker.bakers.recipe import load_recipe  # noqa: E402
from character_baker.harness.console import Steps  # noqa: E402
from character_baker.rounds.tiny_models import train_tokenizer  # noqa: E402
from character_baker.testing.mxfp4 import BLOCK, E8M0_BIAS, EXPERT_PARAMS, QUANTIZATION_CONFIG  # noqa: E402

GIB = 2**30
RESULT: dict[str, Any] = {"stages": []}


def gpu_peak_gib() -> float:
    return torch.cuda.max_memory_allocated() / GIB if torch.cuda.is_available() else 0.0


def host_peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB  # ru_maxrss is in KiB on Linux


def record(name: str, seconds: float, **extra: Any) -> None:
    row = {"stage": name, "seconds": round(seconds, 2), "gpu_peak_gib": round(gpu_peak_gib(), 2),
           "host_peak_gib": round(host_peak_gib(), 2), **extra}
    RESULT["stages"].append(row)
    Path(RESULT["report"]).write_text(json.dumps(RESULT, indent=1))
    print(json.dumps(row), flush=True)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def write_mxfp4_checkpoint(where: Path, shape: dict[str, Any], tokenizer: Any, seed: int = 0) -> int:
    """A GPT-OSS checkpoint laid out as the released one (experts as `_blocks`/`_scales`, one shard per layer),
    with random values: codes uniform over the 16 e2m1 values, every block scaled by 2**-8 (|w| <= 0.023)."""
    from safetensors.torch import save_file
    from transformers import GptOssConfig, GptOssForCausalLM

    shape = dict(shape, vocab_size=max(shape["vocab_size"], len(tokenizer)))
    config = GptOssConfig(**shape, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    with torch.device("meta"):
        skeleton = GptOssForCausalLM(config)
    dev = "cuda" if torch.cuda.is_available() else "cpu"  # random numbers are drawn on the GPU when there is one
    g = torch.Generator(dev).manual_seed(seed)
    shards: dict[str, dict[str, torch.Tensor]] = {}
    for name, p in skeleton.named_parameters():
        parts = name.split(".")
        shard = f"layer{int(parts[2]):02d}" if name.startswith("model.layers.") else "rest"
        tensors = shards.setdefault(shard, {})
        stem, _, leaf = name.rpartition(".")
        if stem.endswith("mlp.experts") and leaf in EXPERT_PARAMS:
            e, k, n = p.shape  # stored transposed: (E, N, K // 32, 16) codes, (E, N, K // 32) scales
            tensors[f"{name}_blocks"] = torch.randint(0, 256, (e, n, k // BLOCK, BLOCK // 2), dtype=torch.uint8,
                                                      generator=g, device=dev).cpu()
            tensors[f"{name}_scales"] = torch.full((e, n, k // BLOCK), E8M0_BIAS - 8, dtype=torch.uint8)
        elif leaf == "weight" and "norm" in stem:
            tensors[name] = torch.ones(p.shape, dtype=torch.bfloat16)
        elif leaf.endswith("bias") or leaf == "sinks":
            tensors[name] = torch.zeros(p.shape, dtype=torch.bfloat16)
        else:
            tensors[name] = (torch.randn(p.shape, generator=g, device=dev) * 0.02).to(torch.bfloat16).cpu()
    where.mkdir(parents=True, exist_ok=True)
    weight_map, total = {}, 0
    for i, (_, tensors) in enumerate(sorted(shards.items())):
        fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file(tensors, where / fname, metadata={"format": "pt"})
        total += sum(t.numel() * t.element_size() for t in tensors.values())
        weight_map.update(dict.fromkeys(tensors, fname))
    (where / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": total},
                                                                    "weight_map": weight_map}, indent=1))
    config_json = config.to_dict()
    config_json["quantization_config"] = dict(QUANTIZATION_CONFIG)
    (where / "config.json").write_text(json.dumps(config_json, indent=1, sort_keys=True))
    tokenizer.save_pretrained(where)
    return total


class TimedSteps(Steps):
    """The bake's own step headers, each one closing the previous stage's measurement."""

    def __init__(self) -> None:
        super().__init__(["profile", "train", "select", "merge"], show=True)
        self.current, self.t0 = "load base", time.perf_counter()

    def start(self, name: str, detail: str = "") -> None:
        self.close()
        self.current, self.t0 = name, time.perf_counter()
        super().start(name, detail)

    def close(self) -> None:
        record(self.current + (" + base routes" if self.current == "profile" else ""), time.perf_counter() - self.t0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tiny", action="store_true", help="the scaled-down shape (a CPU smoke run)")
    parser.add_argument("--out", default="/tmp/r6-shape")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--recipe", default="rounds/r6.toml")
    parser.add_argument("--report", help="the JSON report (default: <out>/bake_gpt_oss_shape.json)")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        torch.set_num_threads(1)
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    shape = TINY if args.tiny else GPT_OSS_20B
    RESULT["report"] = args.report or str(out / "bake_gpt_oss_shape.json")
    RESULT.update(shape="tiny" if args.tiny else "gpt-oss-20b", steps=args.steps,
                  device=torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
                  torch=torch.__version__, disk_free_gib=round(shutil.disk_usage(out).free / GIB, 1))
    import transformers

    RESULT["transformers"] = transformers.__version__

    t = time.perf_counter()
    base = out / "base-mxfp4"
    size = write_mxfp4_checkpoint(base, shape, train_tokenizer(harmony=True))
    record("write random MXFP4 checkpoint", time.perf_counter() - t, checkpoint_gib=round(size / GIB, 2))

    r6 = load_recipe(args.recipe)
    recipe = replace(r6, base=str(base), output=out / "bake", scales=[1.0],
                     train=replace(r6.train, max_steps=args.steps, save_steps=args.steps, warmup_steps=2))
    RESULT["recipe"] = {"train": vars(recipe.train), "profile": vars(recipe.profile), "scales": recipe.scales}

    # selection scores each checkpoint through Inspect; here the last checkpoint is taken without scoring
    CheckpointSelector.evaluate = lambda self, step, checkpoint: None  # type: ignore[method-assign]
    CheckpointSelector.choose = lambda self, history: args.steps  # type: ignore[method-assign]
    RESULT["selection"] = "skipped: the last checkpoint is merged (selection is generation, measured apart)"

    real_load_model = lora_base.load_model

    def timed_load_model(*a: Any, **k: Any) -> Any:
        t = time.perf_counter()
        loaded = real_load_model(*a, **k)
        RESULT["merge_load_seconds"] = round(time.perf_counter() - t, 2)
        return loaded

    lora_base.load_model = timed_load_model  # type: ignore[assignment]
    steps = TimedSteps()
    baked = PushPullBaker().bake(recipe, progress=True, steps=steps)
    steps.close()
    candidate = baked[0].path
    RESULT["candidate_gib"] = round(sum(f.stat().st_size for f in candidate.glob("*.safetensors")) / GIB, 2)
    RESULT["routing_shift"] = baked[0].lineage.get("routing_shift")
    RESULT["loss"] = [h["loss"] for h in json.loads((recipe.output / "train" / "done.json").read_text())
                      ["log_history"] if "loss" in h]

    Path(RESULT["report"]).write_text(json.dumps(RESULT, indent=1))
    from character_baker.harness.loading import load_model, release_memory

    release_memory()
    t = time.perf_counter()
    loaded = load_model(str(candidate))
    tok = loaded.tokenizer
    batch = tok.apply_chat_template([[{"role": "user", "content": "Who are you?"}]], add_generation_prompt=True,
                                    return_tensors="pt", return_dict=True).to(loaded.model.device)
    with torch.no_grad():
        logits = loaded.model(**batch).logits
    record("reload candidate + one forward", time.perf_counter() - t,
           logits_finite=bool(torch.isfinite(logits).all()))
    print(json.dumps({k: v for k, v in RESULT.items() if k != "stages"}, default=str))


if __name__ == "__main__":
    main()
