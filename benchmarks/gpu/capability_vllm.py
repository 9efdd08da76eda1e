"""GPU only: the capability suite's generation throughput, vLLM vs lm-eval's HF backend, on the same model.

Builds one random-initialised Qwen3 (default hidden 1024 x 16 layers, bf16; our offline tokenizer, so nothing is
downloaded), then runs `run_capability` on the fixture (12 problems x k samples, greedy, fixed token budget)
once per backend, each in its own process so the two never share GPU memory. Prints generations/s and
tokens/s for each and the ratio. Tokens are counted the same way for both: each reply re-tokenised with the
model's tokenizer (HF's exact counts are printed too).

Needs a CUDA GPU, and vLLM in the environment (an optional extra: vllm 0.33 pins its own torch and
transformers<5.21, so use a separate GPU venv, never the CPU test venv):
    pip install -e ".[gpu]" "lm-eval[vllm]==0.4.13"
    python benchmarks/gpu/capability_vllm.py [--k 16] [--budget 512] [--hidden 1024] [--layers 16]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def child(backend: str, model: str, out: str, k: int, budget: int, batch_size: int) -> None:
    """One backend's run; prints one JSON line with its timings."""
    from transformers import AutoTokenizer

    from character_baker.tasks.capability import run_capability

    extra = {"gpu_memory_utilization": 0.6, "max_model_len": 1024} if backend == "vllm" else {}
    result = run_capability(model, out_dir=out, backend=backend, k=k, max_tokens=budget, use_cache=False,
                            device="cuda", dtype="bfloat16", batch_size=batch_size if backend == "hf" else "auto",
                            model_args=extra)
    samples = [json.loads(line) for line in Path(result["samples_path"]).read_text().splitlines()]
    tok = AutoTokenizer.from_pretrained(model)
    retokenised = sum(len(tok.encode(s["response"], add_special_tokens=False)) for s in samples)
    exact = sum(s["tokens"] for s in samples) if all(s["budget_check"] == "recorded" for s in samples) else None
    print("RESULT " + json.dumps({"backend": backend, "seconds": result["seconds"], "generations": len(samples),
                                  "tokens": retokenised, "exact_tokens": exact,
                                  "truncated": result["rows"][0]["truncated"]}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=16, help="samples per fixture problem (12 problems)")
    parser.add_argument("--budget", type=int, default=512, help="max new tokens per reply (prompt + budget <= 1024)")
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=64, help="HF backend batch size")
    parser.add_argument("--child", choices=["hf", "vllm"], help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.model, args.out, args.k, args.budget, args.batch_size)
        return

    import torch

    if not torch.cuda.is_available():
        sys.exit("needs a CUDA GPU")
    from character_baker.rounds.tiny_models import tiny_qwen3

    with tempfile.TemporaryDirectory() as tmp:
        model = tiny_qwen3(Path(tmp) / "model", layers=args.layers, hidden=args.hidden)
        params = sum(p.stat().st_size for p in model.glob("*.safetensors")) / 4 / 1e6  # saved in float32
        results = {}
        for backend in ("hf", "vllm"):
            cmd = [sys.executable, __file__, "--child", backend, "--model", str(model), "--out",
                   str(Path(tmp) / backend), "--k", str(args.k), "--budget", str(args.budget),
                   "--batch-size", str(args.batch_size)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
            if proc.returncode != 0 or line is None:
                sys.exit(f"{backend} run failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
            results[backend] = json.loads(line[len("RESULT "):])
    gpu = torch.cuda.get_device_name(0)
    print(f"{gpu}; random Qwen3 ~{params:.0f}M params (hidden {args.hidden} x {args.layers} layers), bf16; "
          f"fixture 12 problems x k={args.k}, greedy, {args.budget}-token budget")
    for backend, r in results.items():
        exact = f", exact {r['exact_tokens']}" if r["exact_tokens"] is not None else ""
        print(f"{backend:5s}: {r['seconds']:7.2f} s  {r['generations'] / r['seconds']:7.1f} generations/s  "
              f"{r['tokens'] / r['seconds']:9.1f} tokens/s  ({r['tokens']} tokens re-tokenised{exact}; "
              f"{r['truncated']} truncated)")
    hf, vl = results["hf"], results["vllm"]
    print(f"vLLM / HF tokens/s: {(vl['tokens'] / vl['seconds']) / (hf['tokens'] / hf['seconds']):.1f}x")


if __name__ == "__main__":
    main()
