"""The demo's base model: a tiny Qwen3 built from scratch and trained into a plain assistant of the toy world
(`toyworld.py`: the pack's antipole replies), in about four minutes on a 2-core CPU. Cached by its inputs: in the
recipe's folder and in the user cache (`$CHARACTER_BAKER_CACHE/toy-base/<key>`, like the embedded judges), so a
later run, or a fresh clone on the same machine, copies it instead of training it again.

It is a toy: it writes the toy world's sentences, not open-ended English. Its numbers show a real, measured
shift from a plain assistant to the character on held-out phrasings, judged by the real embedded judge.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from ..harness.character import load_character
from ..harness.data import default_cache_dir
from ..harness.errors import UserError

if TYPE_CHECKING:
    from ..bakers.recipe import Recipe
    from ..harness.console import Steps

VERSION = "toy-assistant-4"  # 4: packed batches (the same batches, less padding)
LAYERS, HIDDEN, VOCAB = 4, 128, 1024


def build_tiny_assistant(out: Path, character: str = "toy", steps: int = 600, seed: int = 0,
                         progress: bool = True) -> str:
    """Build (or reuse) the base in `out`; says how: "cached in …", "copied from …" or "trained"."""
    import torch
    from transformers import Trainer, TrainingArguments
    from transformers.utils import logging as hf_logging

    from ..bakers.examples import encode, pack_batch
    from ..bakers.trainer import ProgressBar
    from ..harness.loading import load_base
    from .tiny_models import tiny_qwen3

    pack = load_character(character)
    key = hashlib.sha256(f"{VERSION}\0{pack.files_hash('antipole', 'character')}\0{steps}\0{seed}\0"
                         f"{LAYERS}x{HIDDEN}x{VOCAB}".encode()).hexdigest()[:12]
    marker = out / "candidate.json"
    if _built(out, key):
        return f"cached in {out}"
    store = default_cache_dir() / "toy-base" / key
    if _built(store, key):
        shutil.copytree(store, out, dirs_exist_ok=True)
        return f"copied from {store}"
    torch.manual_seed(seed)
    hf_logging.set_verbosity_error()
    pairs = pack.antipole_pairs
    # the tokenizer learns the toy world's training text only: no eval phrasing shapes its vocabulary
    texts = [t for p in pairs + pack.character_pairs for t in (p.prompt, p.response)]
    with tempfile.TemporaryDirectory() as tmp:
        init = tiny_qwen3(Path(tmp) / "init", seed=seed, layers=LAYERS, hidden=HIDDEN, texts=texts,
                          vocab_size=VOCAB)
        loaded = load_base(str(init), device="cpu")
        data = [encode(loaded.tokenizer, p, 96) for p in pairs]
        args = TrainingArguments(output_dir=str(Path(tmp) / "train"), max_steps=steps, per_device_train_batch_size=32,
                                 learning_rate=3e-3, warmup_steps=30, lr_scheduler_type="cosine", logging_steps=10,
                                 save_strategy="no", report_to=[], seed=seed, use_cpu=True, disable_tqdm=True,
                                 remove_unused_columns=False)
        trainer = Trainer(model=loaded.model, args=args, train_dataset=data,
                          data_collator=lambda batch: pack_batch(batch, loaded.tokenizer.pad_token_id, width=128))
        ProgressBar("base (from scratch)", show=progress).use_on(trainer)
        trainer.train()
        out.mkdir(parents=True, exist_ok=True)
        loaded.model.save_pretrained(out, safe_serialization=True)
        loaded.tokenizer.save_pretrained(out)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    lineage = {"round": "demo", "baker": "sft-from-scratch", "build_key": key, "data": "toy antipole",
               "train_steps": steps, "final_loss": losses[-1] if losses else None}
    marker.write_text(json.dumps({"lineage": lineage}, indent=2))
    partial = store.with_name(store.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(out, partial)
    shutil.rmtree(store, ignore_errors=True)
    partial.rename(store)
    return "trained"


def _built(folder: Path, key: str) -> bool:
    marker = folder / "candidate.json"
    return marker.is_file() and json.loads(marker.read_text()).get("lineage", {}).get("build_key") == key


def build_base(recipe: Recipe, progress: bool, steps: Steps) -> None:
    """A recipe's `[model] build`: the base a round or bake-off trains, built here (cached) instead of downloaded."""
    if recipe.build != "tiny-assistant":
        raise UserError(f"{recipe.path}: [model] build = {recipe.build!r}: the only builder is 'tiny-assistant'")
    how = build_tiny_assistant(Path(recipe.base), character=recipe.character, progress=progress)
    rebuild = " (delete the folder to rebuild)" if how.startswith("cached") else \
        f" (delete that folder and {recipe.base} to rebuild)" if how.startswith("copied") else f": {recipe.base}"
    steps.note(how + rebuild)
