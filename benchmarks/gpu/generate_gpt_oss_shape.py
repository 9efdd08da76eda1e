"""GPU: how fast HF `generate` writes with GPT-OSS-20B's real shape (random bf16, no weights needed), the path the
persona suite takes when vLLM is absent: new tokens/s at the recipe's batch, and what that makes of r6's scoring
(4 conditions x the eval prompts x max_tokens, per model scored). Random weights never stop early, so every
sequence runs to the budget: the figures are the full-length case.

    python benchmarks/gpu/generate_gpt_oss_shape.py [--batch 16] [--new 256]
    python benchmarks/gpu/generate_gpt_oss_shape.py --tiny      # CPU smoke run of the same code
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from pushpull_gpt_oss_shape import GPT_OSS_20B, TINY


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--prompt", type=int, default=64)
    parser.add_argument("--new", type=int, default=256)
    args = parser.parse_args()
    from transformers import GptOssConfig, GptOssForCausalLM

    if args.tiny:
        torch.set_num_threads(1)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    config = GptOssConfig(**(TINY if args.tiny else GPT_OSS_20B))
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)
    with torch.device(device):
        model = GptOssForCausalLM(config).eval()
    torch.set_default_dtype(torch.float32)
    results: dict[str, object] = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
                                  "prompt_tokens": args.prompt, "new_tokens": args.new}
    for batch in args.batch:
        ids = torch.randint(0, config.vocab_size, (batch, args.prompt), device=device)
        kwargs = dict(do_sample=False, pad_token_id=0, eos_token_id=None)
        model.generate(ids, max_new_tokens=8, min_new_tokens=8, **kwargs)  # warm-up
        if device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        out = model.generate(ids, max_new_tokens=args.new, min_new_tokens=args.new, **kwargs)
        if device == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - started
        new = (out.shape[1] - args.prompt) * batch
        results[f"batch{batch}"] = {"seconds": round(seconds, 2), "new_tokens_per_s": round(new / seconds, 1),
                                    "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 1)
                                    if device == "cuda" else None}
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
