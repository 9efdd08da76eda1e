"""GPU: how long GPT-OSS-20B's MXFP4 checkpoint takes to reach the card, the way `harness/loading.load_base` loads it
(`device_map` = the GPU: experts dequantised on the GPU) and the CPU-first way (load on the CPU, dequantise
there, then `.to("cuda")`). Random values in the released layout (bake_gpt_oss_shape.write_mxfp4_checkpoint);
every file is flushed with `sync` before each load and the two paths alternate, so neither reads a warmer cache.

    python benchmarks/gpu/load_paths.py --out /tmp/load-paths --report $OUT/load_paths.json
    python benchmarks/gpu/load_paths.py --tiny --out /tmp/load-tiny                     # CPU smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bake_gpt_oss_shape import write_mxfp4_checkpoint  # noqa: E402
from pushpull_gpt_oss_shape import GPT_OSS_20B, TINY  # noqa: E402

from character_baker.harness.loading import load_base, release_memory  # noqa: E402
from character_baker.rounds.tiny_models import train_tokenizer  # noqa: E402

GIB = 2**30


def cpu_first(path: str, device: str) -> Any:
    """The CPU-first path the benchmark compares load_base against: from_pretrained on the CPU, then move."""
    from transformers import AutoModelForCausalLM, Mxfp4Config

    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16, use_safetensors=True,
                                                 attn_implementation="eager",
                                                 quantization_config=Mxfp4Config(dequantize=True))
    return model.to(device)


def timed(fn: Any) -> tuple[float, Any]:
    os.sync()
    t = time.perf_counter()
    model = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - t, model


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--out", default="/tmp/load-paths")
    parser.add_argument("--report")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    out = Path(args.out)
    base = out / "base-mxfp4"
    t = time.perf_counter()
    write_mxfp4_checkpoint(base, TINY if args.tiny else GPT_OSS_20B, train_tokenizer(harmony=True))
    result: dict[str, Any] = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
                              "write_s": round(time.perf_counter() - t, 1), "rows": []}
    report = Path(args.report or out / "load_paths.json")
    reference = None
    for r in range(args.rounds):
        for name, fn in (("load_base (device_map)", lambda: load_base(str(base), dtype="bfloat16").model),
                         ("cpu then .to", lambda: cpu_first(str(base), device))):
            if torch.cuda.is_available():
                torch.cuda.reset_peak_memory_stats()
            seconds, model = timed(fn)
            w = model.model.layers[0].mlp.experts.down_proj
            row = {"round": r, "path": name, "seconds": round(seconds, 1), "device": str(w.device),
                   "dtype": str(w.dtype),
                   "gpu_peak_gib": round(torch.cuda.max_memory_allocated() / GIB, 2) if device == "cuda" else 0.0}
            checksum = float(w.detach().float().abs().sum())
            reference = checksum if reference is None else reference
            row["same_weights"] = checksum == reference  # both paths must dequantise to the same values
            result["rows"].append(row)
            report.write_text(json.dumps(result, indent=1))
            print(json.dumps(row), flush=True)
            del model, w
            release_memory()


if __name__ == "__main__":
    main()
