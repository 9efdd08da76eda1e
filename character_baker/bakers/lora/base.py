"""`LoraBaker`, what every LoRA baker shares: the bake as one process or as ranks (`distributed/`), LoRA on the base,
training (Trainer's loop: seeded, resumable, `done.json` at the end), the choice of a checkpoint on dev
(`selection.CheckpointSelector`), merges at the recipe's scales, `candidate.json` lineage.

A LoRA baker overrides only what differs (TRL's style: one Trainer per method): `prepare` (the "profile" step: what
training needs made first), `train_pairs` (the data), `regulariser` (a term added to the loss from hooked layers),
`create_trainer` (the Trainer and its data), `objective` (the "train" header) and `extra_lineage`.

    <output>/train/checkpoint-N/        Trainer checkpoints (an interrupted run resumes from the last)
    <output>/train/done.json            the finished run: steps, ranks, parallelism, the log history
    <output>/selection/                 quick-suite scorecards per checkpoint, selection.sqlite, curve.csv/png
    <output>/candidates/<name>-x<s>/    merged models with candidate.json lineage (with [router] combine,
                                        -r<strength> steered twins)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback, TrainingArguments, set_seed

from ...harness.console import Steps
from ...harness.data import Pair
from ...harness.errors import UserError
from ...harness.loading import Loaded, load_model, release_memory
from ..bake import Bake, Baked, BakerBase, claim_output, conductor_device, data_hash, finished, picks_json, write_json
from ..distributed import (
    barrier,
    check_kind,
    config_file,
    is_main,
    last_checkpoint,
    parallel_kind,
    rank,
    train_in_ranks,
)
from ..examples import collate, encode
from ..experts import (
    Picks,
    Routes,
    Routing,
    add_router_bias,
    expert_lora_targets,
    freeze_unpicked_experts,
    restore_router_bias,
    router_biases,
)
from ..plain.settings import RouterSettings
from ..recipe import Recipe
from ..trainer import ProgressBar, PushPullTrainer, Regulariser, TrainingDiverged, lora_model
from .selection import CheckpointSelector


class LoraBaker(BakerBase):
    """Profile or prepare, LoRA-train, choose a checkpoint on dev, merge at scales. As it stands: LoRA SFT on the
    in-character replies with the causal-LM loss (`sft` adds only its name)."""

    name = "lora"
    description = "LoRA on the in-character replies: train, select by eval, merge"
    label = "lora"  # on the training progress bar
    lower = "the learning rate"  # what to lower when training diverges

    # -- what a LoRA baker overrides --------------------------------------------------------------------------
    def prepare(self, bake: Bake) -> None:
        """The "profile" step: what training needs made first (push/pull: the profile; sdft: the restatements)."""
        bake.steps.start("profile", f"skipped: {self.name} has no regulariser")

    def objective(self, recipe: Recipe) -> str:
        """What the loss is, for the "train" step header."""
        return "causal-LM loss on the in-character replies"

    def train_pairs(self, bake: Bake) -> list[Pair]:
        """What the default Trainer trains on: the in-character pairs."""
        return bake.char

    def regulariser(self, bake: Bake, model: Any) -> Regulariser | None:
        """A term the Trainer adds to the loss from the LoRA model's hooked layers (push/pull); None: the loss alone.
        Its hooks are removed when training ends."""
        return None

    def create_trainer(self, bake: Bake, model: Any, regulariser: Regulariser | None, args: dict[str, Any],
                       callback: TrainerCallback) -> Any:
        """The Trainer for the LoRA-wrapped model: the causal-LM loss on `train_pairs`, plus the regulariser when
        there is one (a baker with another objective overrides this, see dpo.py). `args`: `trainer_args`."""
        tokenizer = bake.loaded.tokenizer
        dataset = [encode(tokenizer, p, bake.recipe.train.max_length) for p in self.train_pairs(bake)]
        return PushPullTrainer(
            model=model, args=TrainingArguments(**args, remove_unused_columns=False), train_dataset=dataset,
            regulariser=regulariser, explode_factor=bake.recipe.loss.explode_factor,
            data_collator=lambda batch: collate(batch, tokenizer.pad_token_id), callbacks=[callback])

    def extra_lineage(self, recipe: Recipe) -> dict[str, Any]:
        """What a baker adds to each candidate's lineage (grpo: the judge it was rewarded by)."""
        return {}

    # -- the steps ------------------------------------------------------------------------------------------
    def bake(self, recipe: Recipe, progress: bool = True, steps: Steps | None = None) -> list[Baked]:
        steps = steps or Steps(["profile", "train", "select", "merge"], show=progress)
        d = recipe.distributed
        if d.processes > 1 and not (recipe.output / "train" / "done.json").is_file():
            claim_output(recipe)
            steps.start("profile", f"and train: {d.processes} ranks under accelerate launch ({d.strategy}; "
                        f"{config_file(recipe)})")
            train_in_ranks(recipe, progress)
            steps.note(f"trained: {recipe.output / 'train'}; the choice on dev, merges and scores run here")
        bake = Bake.open(recipe, progress, steps, conductor_device(recipe))
        self.prepare(bake)
        combine = RouterSettings.of(recipe).combine
        needed = recipe.train.expert_lora == "profile" or combine
        routing, picks = self._expert_picks(bake) if needed else (None, None)
        base_routes = self._base_routes(bake)
        steps.start("train", f"LoRA r={recipe.train.lora_r}, {self.objective(recipe)}, "
                    f"{recipe.train.max_steps} steps; each checkpoint scored on the dev prompts")
        step, checkpoint = self._train(bake, picks)
        steps.start("select")
        steps.note(f"checkpoint {step} passes the most gate criteria on the dev prompts "
                   f"({recipe.output / 'selection' / 'curve.csv'})")
        bake.release()
        steps.start("merge", f"scales {', '.join(f'{x:g}' for x in recipe.scales)}")
        baked = self._merge(bake, step, checkpoint, base_routes, (routing, picks) if combine else None)
        steps.note(f"{len(baked)} candidates in {recipe.output / 'candidates'}")
        return baked

    def train_ranks(self, recipe: Recipe, device: str, progress: bool = True, parallel: str | None = None) -> None:
        """One rank of a launched bake (distributed/launch.py): profile with the other ranks, then train. The choice on
        dev and the merges are the round's, from the checkpoints rank 0 saves."""
        bake = Bake.open(recipe, progress, Steps(["profile", "train"], show=False), device)
        self.prepare(bake)
        picks = self._expert_picks(bake)[1] if recipe.train.expert_lora == "profile" else None
        self._fit(bake, picks, None, parallel)

    def _train(self, bake: Bake, picks: Picks | None = None) -> tuple[int, Path]:
        """Train (unless done), score every saved checkpoint on dev, and return the chosen one."""
        recipe = bake.recipe
        train_dir = recipe.output / "train"
        selector = CheckpointSelector(bake, recipe.output / "selection")
        model = None
        if not (train_dir / "done.json").is_file():
            model = self._fit(bake, picks, selector)
        unscored = selector.unscored(train_dir)  # trained as ranks: scored here, from the saved adapters
        if unscored:
            selector.model = model if model is not None else self._lora_model(bake, picks)
            for step, checkpoint in unscored:
                if checkpoint is None:
                    with selector.model.disable_adapter():  # the base itself, whatever the LoRA holds now
                        selector.evaluate(step, None)
                else:
                    load_adapter_weights(selector.model, checkpoint)
                    selector.evaluate(step, checkpoint)
        history = json.loads((train_dir / "done.json").read_text()).get("log_history", [])
        step = selector.choose(history)
        return step, train_dir / f"checkpoint-{step}"

    def _lora_model(self, bake: Bake, picks: Picks | None) -> Any:
        """The base wrapped with the recipe's LoRA (fresh: it equals the base until trained)."""
        recipe, arch = bake.recipe, bake.arch
        cfg = recipe.train
        set_seed(cfg.seed)  # the LoRA initialisation too: one seed, one bake (every rank alike)
        if not arch.expert_parameters and cfg.expert_lora != "none":
            raise UserError(f"{recipe.path}: [train] expert_lora is for MoE models; {arch.name} has no experts")
        experts = {"none": None, "all": list(arch.expert_parameters),
                   "profile": None if picks is None else expert_lora_targets(arch, picks)}[cfg.expert_lora]
        model = lora_model(bake.loaded.model, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout,
                           cfg.targets or list(arch.lora_targets), experts)
        if cfg.expert_lora == "profile" and picks is not None:
            freeze_unpicked_experts(model, picks)  # LoRA on the picked experts only: the others stay the base's
        return model

    def _fit(self, bake: Bake, picks: Picks | None, selector: CheckpointSelector | None,
             parallel: str | None = None) -> Any:
        """The training loop (Trainer's), resumed from the last checkpoint; `done.json` at the end. `selector`
        scores each checkpoint as it is saved (one process); ranks pass None and the round scores them after.
        `parallel`: what the ranks' accelerate config asks for, checked against what the Trainer runs."""
        recipe = bake.recipe
        cfg = recipe.train
        train_dir = recipe.output / "train"
        model = self._lora_model(bake, picks)
        regulariser = self.regulariser(bake, model)
        trainer = self.create_trainer(bake, model, regulariser, trainer_args(recipe, train_dir),
                                      selector or TrainerCallback())
        if parallel is not None:
            check_kind(trainer, parallel)
        ProgressBar(self.label, show=bake.progress).use_on(trainer)
        if selector is not None:
            selector.model = model
        last = last_checkpoint(train_dir)
        try:
            trainer.train(resume_from_checkpoint=str(last) if last else None)
        except TrainingDiverged as e:
            good = last_checkpoint(train_dir)
            raise UserError(f"training stopped: {e}; last good checkpoint: {good or 'none'} (lower {self.lower}; "
                            "rerunning resumes from it)") from None
        finally:
            if regulariser is not None:
                regulariser.remove()
        final = train_dir / f"checkpoint-{trainer.state.global_step}"
        if trainer.state.global_step % cfg.save_steps:  # the final step is a checkpoint too (every rank: FSDP and
            trainer.save_model(str(final))               # ZeRO-3 gather the adapter; rank 0 writes it)
            if selector is not None:
                selector.evaluate(trainer.state.global_step, final)
        if is_main():
            write_json(train_dir / "done.json", {"recipe_hash": recipe.hash(), "steps": trainer.state.global_step,
                                                 "ranks": rank()[1], "parallel": parallel_kind(trainer),
                                                 "log_history": trainer.state.log_history})
        barrier()
        return model

    def _merge(self, bake: Bake, step: int, checkpoint: Path, base_routes: Routes | None = None,
               steering: tuple[Routing, Picks] | None = None) -> list[Baked]:
        """One candidate per merge scale; with [router] combine, each also steered once per router strength."""
        recipe, arch = bake.recipe, bake.arch
        baked = []
        strengths: list[float | None] = [None] + (list(RouterSettings.of(recipe).strengths) if steering else [])
        for scale in recipe.scales:
            merged: Loaded | None = None
            for strength in strengths:
                target = self._candidate_dir(recipe, f"step{step}-x{scale:g}" + (
                    "" if strength is None else f"-r{strength:g}"))
                lineage = {**self._origin(recipe), "scale": scale, "step": step, "parent": str(checkpoint),
                           "data_hash": data_hash(bake.char, bake.anti), "recipe_hash": recipe.hash(),
                           **self.extra_lineage(recipe)}
                if strength is not None and steering is not None:
                    lineage.update(router_strength=strength, experts=picks_json(steering[1]))
                done = finished(target, lineage)
                if done is not None:
                    baked.append(Baked(target, done))
                    continue
                if merged is None:
                    merged = load_model(recipe.base, adapter=str(checkpoint), scale=scale, dtype=recipe.dtype,
                                        device=conductor_device(recipe), trust_remote_code=recipe.trust_remote_code)
                original = None
                if strength is not None and steering is not None:
                    original = add_router_bias(merged.model, arch, router_biases(*steering, strength))
                try:
                    baked.append(self._save_candidate(merged, arch, target, lineage, base_routes))
                finally:
                    if original is not None:
                        restore_router_bias(merged.model, arch, original)
            del merged
            release_memory()
        return baked


def trainer_args(recipe: Recipe, train_dir: Path) -> dict[str, Any]:
    """The Trainer settings of a bake, every one that matters set explicitly: TRL's configs have other defaults
    (bf16 autocast and gradient checkpointing, slow on a CPU), and every baker's Trainer takes these. As ranks,
    `batch_size` is each rank's: the global batch is batch_size x grad_accum x processes."""
    cfg = recipe.train
    use_cuda = torch.cuda.is_available()
    ranks = {"ddp_backend": "gloo"} if not use_cuda and rank()[1] > 1 else {}
    return ranks | dict(
        output_dir=str(train_dir), max_steps=cfg.max_steps, per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum, learning_rate=cfg.learning_rate,
        warmup_steps=cfg.warmup_steps, save_strategy="steps", save_steps=cfg.save_steps,
        logging_steps=1, report_to=[], seed=cfg.seed,
        gradient_checkpointing=cfg.gradient_checkpointing, use_cpu=not use_cuda,
        bf16=use_cuda and recipe.dtype in ("auto", "bfloat16"), disable_tqdm=True,
        dataloader_pin_memory=use_cuda,
    )


def load_adapter_weights(model: Any, checkpoint: Path) -> None:
    """A saved checkpoint's LoRA weights into a model wrapped with the same LoRA config (no reload of the base)."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    set_peft_model_state_dict(model, load_file(str(checkpoint / "adapter_model.safetensors")))
