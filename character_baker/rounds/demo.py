"""The demo's base model: a tiny Qwen3 built from scratch and trained into a plain assistant on the pack's
antipole replies, in about a minute on a CPU. Cached by its inputs, so later demo runs reuse it.

It is a toy: its numbers demonstrate the pipeline (a real, measured shift from base to candidate), not the
method.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path

from ..harness.character import load_character

VERSION = "tiny-assistant-1"


def build_tiny_assistant(out: Path, character: str = "skippy", steps: int = 400, seed: int = 0,
                         progress: bool = True) -> Path:
    import torch
    from transformers import Trainer, TrainingArguments

    from ..bakers.examples import collate, encode
    from ..harness.loading import load_base
    from ..testing.tiny import tiny_qwen3

    pack = load_character(character)
    key = hashlib.sha256(f"{VERSION}\0{pack.files_hash('antipole')}\0{steps}\0{seed}".encode()).hexdigest()[:12]
    marker = out / "candidate.json"
    if marker.is_file() and json.loads(marker.read_text()).get("lineage", {}).get("build_key") == key:
        return out
    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory() as tmp:
        init = tiny_qwen3(Path(tmp) / "init", seed=seed, layers=4, hidden=128)
        loaded = load_base(str(init), device="cpu")
        data = [encode(loaded.tokenizer, p, 160) for p in pack.antipole_pairs]
        args = TrainingArguments(output_dir=str(Path(tmp) / "train"), max_steps=steps, per_device_train_batch_size=16,
                                 learning_rate=3e-3, warmup_steps=20, lr_scheduler_type="cosine", logging_steps=50,
                                 save_strategy="no", report_to=[], seed=seed, use_cpu=True, disable_tqdm=not progress,
                                 remove_unused_columns=False)
        trainer = Trainer(model=loaded.model, args=args, train_dataset=data,
                          data_collator=lambda batch: collate(batch, loaded.tokenizer.pad_token_id))
        trainer.train()
        out.mkdir(parents=True, exist_ok=True)
        loaded.model.save_pretrained(out, safe_serialization=True)
        loaded.tokenizer.save_pretrained(out)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    marker.write_text(json.dumps({"lineage": {"round": "demo", "baker": "sft-from-scratch", "build_key": key,
                                              "data": "antipole", "steps": steps, "final_loss": losses[-1]}}, indent=2))
    return out
