"""Training step time of the demo's toy base on packed rows (`examples.pack_batch`) against one padded row per
example (`examples.collate`): the same random batches of 32 toy-world replies, alternating, side by side.

    python benchmarks/packed_batches.py
"""

from __future__ import annotations

import random
import statistics
import tempfile
import time
from pathlib import Path

import torch

torch.set_num_threads(1)
STEPS = 20


def main() -> None:
    from character_baker.bakers.examples import collate, encode, pack_batch
    from character_baker.harness.character import load_character
    from character_baker.harness.loading import load_base
    from character_baker.rounds.demo import HIDDEN, LAYERS, VOCAB
    from character_baker.rounds.tiny_models import tiny_qwen3

    pack = load_character("toy")
    texts = [t for p in pack.antipole_pairs + pack.character_pairs for t in (p.prompt, p.response)]
    with tempfile.TemporaryDirectory() as tmp:
        init = tiny_qwen3(Path(tmp) / "init", layers=LAYERS, hidden=HIDDEN, texts=texts, vocab_size=VOCAB)
        loaded = load_base(str(init))
        model, pad = loaded.model.train(), loaded.tokenizer.pad_token_id
        data = [encode(loaded.tokenizer, p, 96) for p in pack.antipole_pairs]
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        rng = random.Random(0)
        batches = [rng.sample(data, 32) for _ in range(STEPS)]
        ways = {"padded (collate)": lambda b: collate(b, pad), "packed (pack_batch, width 128)":
                lambda b: pack_batch(b, pad, width=128)}
        times: dict[str, list[float]] = {name: [] for name in ways}
        cells: dict[str, int] = dict.fromkeys(ways, 0)
        for batch in batches:
            for name, make in ways.items():  # alternating: both see the same machine load
                inputs = make(batch)
                cells[name] += inputs["input_ids"].numel()
                started = time.perf_counter()
                model(**inputs).loss.backward()
                optimizer.zero_grad()
                times[name].append(time.perf_counter() - started)
        tokens = sum(len(e.input_ids) for b in batches for e in b)
        padded = statistics.median(times["padded (collate)"])
        print(f"toy base {LAYERS}x{HIDDEN}, vocab {VOCAB}, batch 32 toy-world replies, {STEPS} batches, "
              "forward+backward, one thread")
        for name in ways:
            med = statistics.median(times[name])
            print(f"{name:32s} {med * 1000:7.1f} ms/step   tokens/cell {tokens / cells[name]:.2f}   "
                  f"ratio to padded {med / padded:.2f}x")


if __name__ == "__main__":
    main()
