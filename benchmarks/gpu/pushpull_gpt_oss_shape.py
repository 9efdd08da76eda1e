"""GPU: GPT-OSS-20B's real shape, random-initialised in bf16 (no weights needed), LoRA and the tracker as a recipe
sets them: peak GPU memory and step time with and without the push/pull regulariser, beside the plan's estimate
for the same shape and settings (`rounds/preflight.memory_budget`), and the memory left on the card after the
model is dropped and `release_memory()` runs (one model resident at a time).

The research plan budgets ~55 GB on a 96 GB card.
    python benchmarks/gpu/pushpull_gpt_oss_shape.py --recipe rounds/r6.toml   # r6's batch, length, LoRA, checkpointing
    python benchmarks/gpu/pushpull_gpt_oss_shape.py --batch 1 --seq 1024      # the research plan's setting
    python benchmarks/gpu/pushpull_gpt_oss_shape.py --tiny                    # scaled-down shape (CPU smoke run)
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import replace
from types import SimpleNamespace

import torch

from character_baker.bakers.recipe import TrainConfig, load_recipe

GPT_OSS_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")

GPT_OSS_20B = dict(vocab_size=201088, hidden_size=2880, intermediate_size=2880, num_hidden_layers=24,
                   num_attention_heads=64, num_key_value_heads=8, head_dim=64, num_local_experts=32,
                   num_experts_per_tok=4, sliding_window=128, max_position_embeddings=131072,
                   layer_types=["sliding_attention", "full_attention"] * 12)
TINY = dict(GPT_OSS_20B, vocab_size=512, hidden_size=64, intermediate_size=64, num_hidden_layers=4,
            num_attention_heads=4, num_key_value_heads=2, head_dim=16, num_local_experts=4, num_experts_per_tok=2,
            layer_types=["sliding_attention", "full_attention"] * 2)


def synthetic_profile(layers: list[int], hidden: int, units: int):  # type: ignore[no-untyped-def]
    """Profile statistics of the right shapes (the step's cost does not depend on their values)."""
    from character_baker.bakers.profile import Profile

    g = torch.Generator().manual_seed(0)
    perm = {layer: torch.randperm(hidden, generator=g) for layer in layers}
    return Profile(
        layers=layers,
        mean_character={la: torch.randn(hidden, generator=g) for la in layers},
        mean_antipole={la: torch.randn(hidden, generator=g) for la in layers},
        sd={la: torch.rand(hidden, generator=g) + 0.5 for la in layers},
        effect={la: torch.randn(hidden, generator=g) for la in layers},
        push={la: perm[la][:units].sort().values for la in layers},
        pull={la: perm[la][units:2 * units].sort().values for la in layers},
        anchor={la: torch.tensor([], dtype=torch.long) for la in layers},
        anchor_target={la: torch.tensor([]) for la in layers},
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--recipe", help="take batch, length, LoRA and checkpointing from this recipe's [train]")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--seq", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--rank", type=int, default=32)
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--expert-lora", action="store_true", help="also LoRA the fused experts")
    args = parser.parse_args()
    train = settings(args)

    from transformers import GptOssConfig, GptOssForCausalLM

    from character_baker.bakers.architectures import GPT_OSS, monitored_layers
    from character_baker.bakers.recipe import LossConfig
    from character_baker.bakers.trainer import Regulariser, lora_model
    from character_baker.harness.loading import release_memory
    from character_baker.rounds.preflight import memory_budget

    if args.tiny:
        torch.set_num_threads(1)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    shape = TINY if args.tiny else GPT_OSS_20B
    config = GptOssConfig(**shape)
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)
    with torch.device(device):
        model = GptOssForCausalLM(config)
    torch.set_default_dtype(torch.float32)
    weights_gib = torch.cuda.memory_allocated() / 2**30 if device == "cuda" else float("nan")
    if train.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    model = lora_model(model, train.lora_r, 2 * train.lora_r, 0.0, list(train.targets),
                       list(GPT_OSS.expert_parameters) if train.expert_lora == "all" else None)
    layers = monitored_layers(config.num_hidden_layers)
    reg = Regulariser(synthetic_profile(layers, config.hidden_size, 32), GPT_OSS.layers(model), LossConfig(), device)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    ids = torch.randint(0, config.vocab_size, (train.batch_size, train.max_length), device=device)
    labels = ids.clone()
    labels[:, : train.max_length // 4] = -100  # the prompt part

    def step(with_reg: bool) -> float:
        if device == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        with reg.hooks.capture() as captured:
            out = model(input_ids=ids, labels=labels)
        loss = out.loss
        if with_reg:
            loss = loss + reg(captured, labels != -100)[0]
        captured.clear()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - started

    results = {}
    for with_reg in (False, True, False, True):  # alternate; the first pair warms up
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        times = [step(with_reg) for _ in range(args.steps)]
        peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else float("nan")
        results["pushpull" if with_reg else "plain"] = {"median_step_s": statistics.median(times[1:]),
                                                        "peak_gib": peak}
    results["overhead"] = results["pushpull"]["median_step_s"] / results["plain"]["median_step_s"]
    recipe = SimpleNamespace(train=train, scales=[1.0], baker="pushpull", tables={})  # what the budget reads
    estimate = memory_budget({**shape, "model_type": "gpt_oss"}, recipe)
    results.update(device=torch.cuda.get_device_name() if device == "cuda" else "cpu", batch=train.batch_size,
                   seq=train.max_length, lora_rank=train.lora_r, targets=list(train.targets),
                   expert_lora=train.expert_lora, tracked_layers=len(layers),
                   shape="tiny" if args.tiny else "gpt-oss-20b",
                   params_b=round(sum(p.numel() for p in model.parameters()) / 1e9, 3),
                   gradient_checkpointing=train.gradient_checkpointing, weights_gib=weights_gib,
                   estimate_gib={k: round(v * 1e9 / 2**30, 2) for k, v in estimate.items()
                                 if k in ("weights", "lora_optimizer", "activations", "train_total")})
    model = reg = optimizer = ids = labels = None  # drop every reference, then release (one model resident)
    release_memory()
    results["left_after_release_gib"] = torch.cuda.memory_allocated() / 2**30 if device == "cuda" else float("nan")
    print(json.dumps(results, indent=2))


def settings(args: argparse.Namespace) -> TrainConfig:
    """The training settings measured: a recipe's [train], or the command line's."""
    if args.recipe:
        train = load_recipe(args.recipe).train
        return replace(train, expert_lora="all" if args.expert_lora else train.expert_lora,
                       targets=train.targets or list(GPT_OSS_TARGETS))
    return TrainConfig(lora_r=args.rank, batch_size=args.batch, max_length=args.seq, targets=list(GPT_OSS_TARGETS),
                       gradient_checkpointing=args.gradient_checkpointing,
                       expert_lora="all" if args.expert_lora else "none")


if __name__ == "__main__":
    main()
