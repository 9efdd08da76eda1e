"""New tokens/s of the served transformers engine (continuous batching, serving/engine.py) against the in-process
static batches (harness/loading.generate_batch, batch 8 as the `cb/` provider), on a tiny random Qwen3 on the
CPU: the same prompts (the Skippy pack's eval personality prompts), greedy, the same budget; and whether the
replies are identical.

    PYTHONPATH=. HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 python benchmarks/engine_throughput.py [--prompts 32] [--tokens 64]
    # on a lent GPU (one prepared run, a few minutes; a 16 GB bf16 write):
    PYTHONPATH=. HF_HUB_OFFLINE=1 python benchmarks/engine_throughput.py --shape qwen3-8b --prompts 64 --tokens 256 \
        --batch 16 --concurrency 64

The random weights are scaled up (x`--scale`) so greedy replies vary with the prompt instead of repeating one token.
Figures go in benchmarks/RESULTS.md; on a 2-core shared machine quote the ratio, not the absolute rates.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

# Qwen3-8B's text shape (its config.json), for the GPU run: the transformers engine serves Qwen-family models (it
# refuses GPT-OSS: no harmony parser), so this is what it would serve on a GPU box without vLLM. The vocabulary is
# the tiny tokenizer's (random weights make no words anyway).
QWEN3_8B = dict(hidden_size=4096, intermediate_size=12288, num_hidden_layers=36, num_attention_heads=32,
                num_key_value_heads=8, head_dim=128, max_position_embeddings=4096, tie_word_embeddings=False)


def build(folder: Path, scale: float, shape: str = "tiny") -> Path:
    import torch
    from transformers import AutoModelForCausalLM

    from character_baker.rounds.tiny_models import tiny_qwen3

    if shape == "qwen3-8b":  # random bf16, built on the GPU when there is one, saved as safetensors
        from transformers import Qwen3Config, Qwen3ForCausalLM

        from character_baker.rounds.tiny_models import train_tokenizer

        tok = train_tokenizer()
        config = Qwen3Config(vocab_size=len(tok), eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                             torch_dtype="bfloat16", **QWEN3_8B)
        torch.manual_seed(0)
        with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
            model = Qwen3ForCausalLM(config).to(torch.bfloat16)
        path = folder / "qwen3-8b-shape"
        model.generation_config.eos_token_id, model.generation_config.pad_token_id = tok.eos_token_id, tok.pad_token_id
        model.save_pretrained(path, safe_serialization=True)
        tok.save_pretrained(path)
        del model
        return path
    path = tiny_qwen3(folder / "tiny-qwen3")
    model = AutoModelForCausalLM.from_pretrained(path)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 2 and "embed" not in name:
                p.mul_(scale)
    model.save_pretrained(path, safe_serialization=True)
    return path


def prompts(n: int) -> list[str]:
    from character_baker.harness.character import load_character

    return [p.prompt for p in load_character("skippy").personality_prompts[:n]]


def in_process(path: Path, texts: list[str], tokens: int, batch: int) -> tuple[list[str], int, float]:
    import torch

    from character_baker.harness.loading import generate_batch, load_model

    loaded = load_model(str(path), device="cuda" if torch.cuda.is_available() else "cpu")
    generate_batch(loaded, [[{"role": "user", "content": "warm up"}]], max_new_tokens=4)
    started = time.perf_counter()
    out: list[str] = []
    new = 0
    for i in range(0, len(texts), batch):
        for text, _, n_new, _ in generate_batch(loaded, [[{"role": "user", "content": t}] for t in texts[i:i + batch]],
                                                max_new_tokens=tokens, temperature=0.0):
            out.append(text)
            new += n_new
    return out, new, time.perf_counter() - started


def served(path: Path, texts: list[str], tokens: int, concurrency: int) -> tuple[list[str], int, float, float]:
    from character_baker.serving.engine import serve

    def ask(base_url: str, model: str, text: str) -> dict[str, Any]:
        body = {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": tokens,
                "temperature": 0, "seed": 0}
        request = urllib.request.Request(base_url + "/chat/completions", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=600) as response:
            return json.loads(response.read())

    with serve(path, engine="transformers", served_name="bench", max_concurrency=concurrency,
               env={"OMP_NUM_THREADS": "1"}, quiet=True) as ep:
        ask(ep.base_url, ep.model, "warm up")
        started = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            replies = list(pool.map(lambda t: ask(ep.base_url, ep.model, t), texts))
        elapsed = time.perf_counter() - started
        startup = ep.startup_s
    texts_out = [r["choices"][0]["message"].get("content") or "" for r in replies]
    return texts_out, sum(r["usage"]["completion_tokens"] for r in replies), elapsed, startup


def main() -> None:
    import torch

    torch.set_num_threads(1)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--batch", type=int, default=8, help="in-process static batch (the cb/ provider's default)")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight to the server")
    parser.add_argument("--scale", type=float, default=8.0)
    parser.add_argument("--shape", choices=("tiny", "qwen3-8b"), default="tiny",
                        help="qwen3-8b: the GPU run (e.g. --prompts 64 --tokens 256 --batch 16 --concurrency 64)")
    parser.add_argument("--dir", default=None, help="where the model is written (default: a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path = build(Path(tmp), args.scale, args.shape)
        texts = prompts(args.prompts)
        local, local_new, local_s = in_process(path, texts, args.tokens, args.batch)
        remote, remote_new, remote_s, startup = served(path, texts, args.tokens, args.concurrency)
    same = sum(a.strip() == b.strip() for a, b in zip(local, remote))
    print(json.dumps({
        "shape": args.shape, "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "prompts": len(texts), "max_new_tokens": args.tokens,
        "inprocess": {"batch": args.batch, "new_tokens": local_new, "seconds": round(local_s, 2),
                      "tokens_per_s": round(local_new / local_s, 1)},
        "transformers_serve": {"concurrency": args.concurrency, "new_tokens": remote_new,
                               "seconds": round(remote_s, 2), "tokens_per_s": round(remote_new / remote_s, 1),
                               "startup_s": round(startup, 1)},
        "speedup": round((remote_new / remote_s) / (local_new / local_s), 2),
        "identical_replies": f"{same}/{len(texts)}",
        "distinct_replies": len(set(local)),
    }, indent=2))


if __name__ == "__main__":
    main()
