"""Generation time with router steering (`bakers.experts.add_router_bias`) against without, on the same loaded tiny
GPT-OSS: the unquantised checkpoint (`--model bf16`, `tiny_gpt_oss`), the MXFP4 one (`--model mxfp4`,
`tiny_gpt_oss_mxfp4`, dequantised on load), or both. Target: steering adds at most 2 % to the time per generated
token.

Steering writes a vector into each router's existing bias (`F.linear(h, W, b)` then top-k), so the per-token
compute is the same; what can change is which experts get tokens, and transformers' eager expert loop only visits
the experts that do. The bias is synthetic but built the way a bake builds it: one profiling pass over the prompts
through `RouteCounter`/`RoutingBuilder` gives σ_L of every layer's router logits, then per layer 2 experts (seeded
random) are boosted and 2 damped by `--strength` · σ_L (`router_biases`).

Both arms greedy-decode the same prompts (a dozen of skippy's personality prompts, one batch, `--new-tokens` each)
through `harness.loading.generate_batch`; the steered arm adds the bias, generates, restores it (the add and restore
are inside its timing). After one warm-up each, `--rounds` rounds alternate the two (order flipped every round);
medians of seconds per generated token are compared, so a reply that stops earlier at EOS cannot fake a speed-up.
Before timing, the expert choices of one forward pass over the prompts are counted with and without the bias
(`count_routes`, `routing_shift`): if the total variation between the two usage distributions is 0 the steering
changed nothing, the benchmark measured nothing, and it exits 1. Each model is timed under the experts
implementation `load_base` leaves (transformers' default: `grouped_mm`, one grouped matmul over all experts) and
under `eager`, the per-expert loop where skipped experts are skipped work (`--experts-impl`); the share of expert
choices landing on the boosted and damped experts is printed, since a steered arm that concentrates the tokens on
fewer experts runs faster under `eager`.

    python benchmarks/router_steering.py [--model {bf16,mxfp4,both}] [--strength 2.0] [--rounds 5]
                                         [--experts-impl {load,eager,both}]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

torch.set_num_threads(1)

LAYERS, HIDDEN, EXPERTS, ROUTER_SCALE = 4, 64, 8, 20.0
PER_SIDE = 2  # experts boosted and damped per layer
TARGET = 1.02


def prompts(n: int) -> list[str]:
    """`n` of skippy's personality prompts, spread over the list (its categories come in runs)."""
    from character_baker.harness.character import load_character

    every = load_character("skippy").personality_prompts
    step = max(1, len(every) // n)
    return [p.prompt for p in every[::step][:n]]


def steering_biases(loaded: Any, arch: Any, texts: list[str], strength: float,
                    seed: int) -> tuple[dict[int, torch.Tensor], torch.Tensor]:
    """Per layer: +strength·σ_L on 2 experts, −strength·σ_L on 2 others, σ_L measured on the prompts' tokens; and
    the σ_L."""
    from character_baker.bakers.experts import RouteCounter, RoutingBuilder, experts_per_token, router_biases

    model, tok = loaded.model, loaded.tokenizer
    chats = [tok.apply_chat_template([{"role": "user", "content": t}], tokenize=False, add_generation_prompt=True)
             for t in texts]
    counter = RouteCounter(model, arch)
    builder = RoutingBuilder(counter)
    side = tok.padding_side
    tok.padding_side = "right"
    try:
        enc = tok(chats, return_tensors="pt", padding=True, add_special_tokens=False)
        counter.arm(enc["attention_mask"])
        with torch.no_grad():
            model(**enc.to(model.device))
        builder.add("character", "benchmark", enc["attention_mask"])
    finally:
        counter.remove()
        tok.padding_side = side
    routing = builder.build(experts_per_token(model))
    gen = torch.Generator().manual_seed(seed)
    picks = {}
    for layer in routing.layers:
        order = torch.randperm(routing.n_experts, generator=gen).tolist()
        picks[layer] = {"personality": order[:PER_SIDE], "assistant": order[PER_SIDE:2 * PER_SIDE]}
    return router_biases(routing, picks, strength), routing.logit_sd


def bench(kind: str, model_dir: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    from character_baker.bakers.architectures import GPT_OSS
    from character_baker.bakers.experts import (
        add_router_bias,
        count_routes,
        restore_router_bias,
        routers,
        routing_shift,
    )
    from character_baker.harness.loading import load_base

    loaded = load_base(str(model_dir), dtype=args.dtype)
    loaded.model.eval()
    arch = GPT_OSS
    texts = prompts(args.prompts)
    conversations = [[{"role": "user", "content": t}] for t in texts]
    biases, sigma = steering_biases(loaded, arch, texts, args.strength, args.seed)
    before = {i: r.bias.detach().clone() for i, r in routers(loaded.model, arch).items()}

    # did the steering move the routing at all? (one forward pass over the prompts, every token)
    base_routes = count_routes(loaded.model, loaded.tokenizer, arch, texts, batch_size=len(texts))
    original = add_router_bias(loaded.model, arch, biases)
    try:
        steered_routes = count_routes(loaded.model, loaded.tokenizer, arch, texts, batch_size=len(texts))
    finally:
        restore_router_bias(loaded.model, arch, original)
    shift = routing_shift(base_routes, steered_routes)

    print(f"\n[{kind}] tiny GPT-OSS {LAYERS}x{HIDDEN}, {EXPERTS} experts top-2, router x{ROUTER_SCALE:g}, "
          f"{next(loaded.model.parameters()).dtype}; {len(texts)} prompts in one batch, greedy, "
          f"<= {args.new_tokens} new tokens; strength {args.strength:g} sigma, {PER_SIDE}+{PER_SIDE} experts/layer; "
          "one thread")
    print("  sigma of router logits per layer: "
          + ", ".join(f"{float(v):.2f}" for v in sigma))
    print(f"  routing shift (steered vs base, one forward pass, {shift['tokens']} prompt tokens): mean TV "
          f"{shift['mean_tv']:.4f}, max TV {shift['max_tv']:.4f} (layer {shift['max_tv_layer']}); per layer "
          + ", ".join(f"{x['tv']:.3f}" for x in shift["layers"]))

    def share(routes: Any, sign: int) -> float:  # of all top-k choices, the share on the boosted (damped) experts
        picked = sum(float(routes.counts[:, pos, (biases[layer] * sign) > 0].sum())
                     for pos, layer in enumerate(routes.layers) if layer in biases)
        return picked / float(routes.counts.sum())

    print(f"  share of expert choices on the {PER_SIDE} boosted experts/layer: base {share(base_routes, 1):.3f}, "
          f"steered {share(steered_routes, 1):.3f}; on the {PER_SIDE} damped: base {share(base_routes, -1):.3f}, "
          f"steered {share(steered_routes, -1):.3f}")
    restored = True
    results = []
    impls = [None, "eager"] if args.experts_impl == "both" else [None if args.experts_impl == "load" else "eager"]
    for impl in impls:
        if impl:
            loaded.model.set_experts_implementation(impl)
        results.append(time_arms(kind, loaded, arch, conversations, biases, shift, args))
        restored = restored and all(torch.equal(r.bias, before[i]) for i, r in routers(loaded.model, arch).items())
    print(f"  router biases restored exactly after every steered run: {restored}")
    for r in results:
        r["biases_restored"] = restored
    return results


def time_arms(kind: str, loaded: Any, arch: Any, conversations: list[list[dict[str, str]]],
              biases: dict[int, torch.Tensor], shift: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    from character_baker.bakers.experts import add_router_bias, restore_router_bias
    from character_baker.harness.loading import generate_batch

    def base() -> list[tuple[str, int, int, bool]]:
        return generate_batch(loaded, conversations, max_new_tokens=args.new_tokens)

    def steered() -> list[tuple[str, int, int, bool]]:
        saved = add_router_bias(loaded.model, arch, biases)
        try:
            return generate_batch(loaded, conversations, max_new_tokens=args.new_tokens)
        finally:
            restore_router_bias(loaded.model, arch, saved)

    arms = {"base": base, "steered": steered}
    per_token: dict[str, list[float]] = {a: [] for a in arms}
    per_step: dict[str, list[float]] = {a: [] for a in arms}
    tokens: dict[str, list[int]] = {a: [] for a in arms}
    replies: dict[str, list[str]] = {}
    for r in range(-1, args.rounds):  # round -1: warm-up, not kept
        for name in (list(arms) if r % 2 else list(arms)[::-1]):  # alternating, order flipped every round
            started = time.perf_counter()
            out = arms[name]()
            seconds = time.perf_counter() - started
            replies[name] = [o[0] for o in out]
            if r < 0:
                continue
            generated = sum(o[2] for o in out)
            per_token[name].append(seconds / max(generated, 1))
            per_step[name].append(seconds / max(max(o[2] for o in out), 1))  # a batch decodes to its longest reply
            tokens[name].append(generated)

    n = len(conversations)
    med = {a: statistics.median(v) for a, v in per_token.items()}
    ratio = med["steered"] / med["base"]
    step_ratio = statistics.median(per_step["steered"]) / statistics.median(per_step["base"])
    impl = getattr(loaded.model.config, "_experts_implementation", None)
    dtype = str(next(loaded.model.parameters()).dtype).removeprefix("torch.")
    print(f"  -- experts implementation {impl!r}: {args.rounds} rounds after a warm-up; replies differing from base "
          f"{sum(a != b for a, b in zip(replies['base'], replies['steered']))}/{n}")
    for name in arms:
        print(f"  {name:8s} {med[name] * 1000:7.3f} ms/generated token   {1 / med[name]:7.1f} tokens/s   "
              f"generated {statistics.median(tokens[name]):.0f}/{n * args.new_tokens}   "
              f"runs (ms/token): {', '.join(f'{v * 1000:.3f}' for v in per_token[name])}")
    print(f"  ratio steered/base, s per generated token: {ratio:.4f} (per decode step: {step_ratio:.4f})   "
          f"<= {TARGET}: {ratio <= TARGET}")
    return {"model": kind, "experts_impl": impl, "dtype": dtype, "strength": args.strength, "rounds": args.rounds,
            "prompts": n, "new_tokens": args.new_tokens, "mean_tv": shift["mean_tv"], "max_tv": shift["max_tv"],
            "base_ms_per_token": round(med["base"] * 1000, 4), "steered_ms_per_token": round(med["steered"] * 1000, 4),
            "base_tokens_per_s": round(1 / med["base"], 1), "steered_tokens_per_s": round(1 / med["steered"], 1),
            "ratio": round(ratio, 4), "ratio_per_step": round(step_ratio, 4), "within_2pct": ratio <= TARGET}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=("bf16", "mxfp4", "both"), default="both")
    parser.add_argument("--strength", type=float, default=2.0, help="steering strength s, in sigma of the logits")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--prompts", type=int, default=12)
    parser.add_argument("--new-tokens", type=int, default=48)
    parser.add_argument("--dtype", default="auto", help="load_base dtype (auto: float32 on CPU, bfloat16 on CUDA)")
    parser.add_argument("--seed", type=int, default=0, help="which experts get boosted and damped")
    parser.add_argument("--experts-impl", choices=("load", "eager", "both"), default="both",
                        help="time the experts implementation load_base leaves (transformers' default, grouped_mm "
                             "where it can dispatch), the eager per-expert loop, or both")
    args = parser.parse_args()

    from character_baker.rounds.tiny_models import tiny_gpt_oss
    from character_baker.testing.mxfp4 import tiny_gpt_oss_mxfp4

    builders = {"bf16": tiny_gpt_oss, "mxfp4": tiny_gpt_oss_mxfp4}
    kinds = list(builders) if args.model == "both" else [args.model]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in kinds:
            model_dir = builders[kind](Path(tmp) / kind, seed=0, layers=LAYERS, hidden=HIDDEN, experts=EXPERTS,
                                       router_scale=ROUTER_SCALE)
            results.extend(bench(kind, model_dir, args))
    print("\n" + json.dumps(results, indent=1))
    unmoved = sorted({r["model"] for r in results if not r["max_tv"] > 0})
    if unmoved:
        print(f"steering did not change the routing of {', '.join(unmoved)} (TV 0): nothing was measured",
              file=sys.stderr)
        sys.exit(1)
    if not all(r["biases_restored"] for r in results):
        print("restore_router_bias did not put the router biases back exactly", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
