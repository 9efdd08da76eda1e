"""The neuron-guided push/pull baker: profile -> LoRA-train with the regulariser -> pick a checkpoint by
evaluation -> merge at several scales into candidates.

Everything lands in the recipe's output folder; rerunning the same recipe skips what is done:

    <output>/bake.json                  recipe hash, base, round (refuses another recipe's folder)
    <output>/profile/                   profile.safetensors, profile.json, profile.md
    <output>/train/checkpoint-N/        Trainer checkpoints (an interrupted run resumes from the last)
    <output>/selection/                 quick-suite scorecards per checkpoint, selection.sqlite, curve.csv/png
    <output>/routing/base.safetensors   MoE: the base's expert choices on the eval prompts (routing shift)
    <output>/candidates/<name>-x<s>/    merged models (safetensors) with candidate.json lineage (MoE: and
                                        routing_shift.md/json; with [router] combine, -r<strength> steered twins)
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback, TrainingArguments, set_seed

from ..harness.candidates import LINEAGE_FILE, Candidate, slug
from ..harness.character import Character, load_character
from ..harness.console import Steps
from ..harness.data import Pair, atomic_write, load_pairs
from ..harness.errors import UserError
from ..harness.loading import (
    Loaded,
    copy_processor_files,
    load_base,
    load_model,
    release_memory,
    set_template_defaults,
)
from .architectures import Architecture, resolve
from .distributed import (
    barrier,
    check_kind,
    config_file,
    is_main,
    last_checkpoint,
    parallel_kind,
    rank,
    train_in_ranks,
)
from .examples import collate, encode
from .experts import (
    Picks,
    Routes,
    Routing,
    add_router_bias,
    count_routes,
    expert_lora_targets,
    expert_table,
    freeze_unpicked_experts,
    pick_experts,
    require_picks,
    restore_router_bias,
    router_biases,
    routing_shift,
    shift_report,
    shift_summary,
)
from .recipe import QUICK_TASKS, Recipe
from .tracker import Profile, profile_model, report
from .trainer import ProgressBar, PushPullTrainer, Regulariser, TrainingDiverged, lora_model


@dataclass
class Baked:
    path: Path
    lineage: dict[str, Any]


class PushPullBaker:
    """The steps every LoRA baker shares (output folder, data, training, selection on dev, merge, lineage); a
    baker that differs only in what training adds to the loss overrides `_prepare` and `_objective` (see sft.py)."""

    name = "pushpull"
    description = "neuron-guided push/pull LoRA: profile, train with the regulariser, select by eval, merge"
    label = "push/pull"  # on the training progress bar

    # -- the steps ---------------------------------------------------------------------------------------
    def profile(self, recipe: Recipe, progress: bool = True) -> tuple[Profile, Path]:
        """Profile the base model (cached in <output>/profile)."""
        _, char, anti, loaded, arch = self._begin(recipe)
        return self._profile(recipe, loaded, arch, char, anti, progress), recipe.output / "profile" / "profile.md"

    def _profile(self, recipe: Recipe, loaded: Loaded, arch: Architecture, char: list[Pair], anti: list[Pair],
                 progress: bool) -> Profile:
        where = recipe.output / "profile"
        if (where / "profile.safetensors").is_file():
            return Profile.load(where)
        # as ranks, every rank profiles its share and gets the summed profile; rank 0 writes it, and the others wait
        # for the write, so a later call finds it on every rank alike
        profile = profile_model(loaded.model, loaded.tokenizer, arch, char, anti, recipe.profile, progress)
        profile.meta.update(base=recipe.base, architecture=arch.name, recipe_hash=recipe.hash())
        if is_main():
            profile.save(where)
            (where / "profile.md").write_text(report(profile, experts_per_layer=recipe.experts.per_layer),
                                              encoding="utf-8")
            if profile.routing is not None:  # every expert, pooled and per category (profile.md lists the picks)
                expert_table(profile.routing).to_csv(where / "experts.csv", index=False)
        barrier()
        return profile

    def _begin(self, recipe: Recipe, device: str | None = None
               ) -> tuple[Character, list[Pair], list[Pair], Loaded, Architecture]:
        """Claim the output folder, read the data, load the base: the opening of every bake (and of every rank,
        each on its own `device`)."""
        _claim_output(recipe)
        pack, char, anti = _data(recipe)
        loaded = load_base(recipe.base, dtype=recipe.dtype, device=device, trust_remote_code=recipe.trust_remote_code)
        if recipe.score.reasoning_effort:  # trained, profiled and routed under the effort it is scored with
            set_template_defaults(loaded.tokenizer, reasoning_effort=recipe.score.reasoning_effort)
        return pack, char, anti, loaded, resolve(recipe.architecture, loaded.model_type)

    def bake(self, recipe: Recipe, progress: bool = True, steps: Steps | None = None) -> list[Baked]:
        steps = steps or Steps(["profile", "train", "select", "merge"], show=progress)
        d = recipe.distributed
        if d.processes > 1 and not (recipe.output / "train" / "done.json").is_file():
            _claim_output(recipe)
            steps.start("profile", f"and train: {d.processes} ranks under accelerate launch ({d.strategy}; "
                        f"{config_file(recipe)})")
            train_in_ranks(recipe, progress)
            steps.note(f"trained: {recipe.output / 'train'}; the choice on dev, merges and scores run here")
        pack, char, anti, loaded, arch = self._begin(recipe, conductor_device(recipe))
        profile = self._prepare(recipe, loaded, arch, char, anti, progress, steps)
        needed = recipe.train.expert_lora == "profile" or recipe.router.combine
        routing, picks = self._expert_picks(recipe, loaded, arch, char, anti, progress, steps) if needed else (None,
                                                                                                               None)
        base_routes = self._base_routes(recipe, pack, loaded, arch)
        steps.start("train", f"LoRA r={recipe.train.lora_r}, {self._objective(recipe)}, "
                    f"{recipe.train.max_steps} steps; each checkpoint scored on the dev prompts")
        step, checkpoint = self._train(recipe, pack, loaded, arch, profile, char, anti, progress, picks)
        steps.start("select")
        steps.note(f"checkpoint {step} passes the most gate criteria on the dev prompts "
                   f"({recipe.output / 'selection' / 'curve.csv'})")
        del loaded
        release_memory()
        steps.start("merge", f"scales {', '.join(f'{x:g}' for x in recipe.scales)}")
        baked = self._merge(recipe, arch, step, checkpoint, char, anti, base_routes,
                            (routing, picks) if recipe.router.combine else None)
        steps.note(f"{len(baked)} candidates in {recipe.output / 'candidates'}")
        return baked

    def _prepare(self, recipe: Recipe, loaded: Loaded, arch: Architecture, char: list[Pair], anti: list[Pair],
                 progress: bool, steps: Steps) -> Profile | None:
        """The "profile" step: what the regulariser needs (None: train on the causal-LM loss alone)."""
        steps.start("profile", f"{len(char)} in-character vs {len(anti)} assistant replies")
        cached = (recipe.output / "profile" / "profile.safetensors").is_file()
        profile = self._profile(recipe, loaded, arch, char, anti, progress)
        steps.note(f"{'cached' if cached else 'profiled'}: layers {profile.layers}, "
                   f"{recipe.output / 'profile' / 'profile.md'}")
        return profile

    def _expert_picks(self, recipe: Recipe, loaded: Loaded, arch: Architecture, char: list[Pair], anti: list[Pair],
                      progress: bool, steps: Steps) -> tuple[Routing, Picks]:
        """MoE: the experts the profile picks ([experts]), for expert-targeted LoRA and router steering."""
        if not arch.router:
            raise UserError(f"{recipe.path}: expert picks (expert_lora = \"profile\", router steering) are for MoE "
                            f"models; {arch.name} has no router")
        profile = self._profile(recipe, loaded, arch, char, anti, progress)
        if profile.routing is None:
            raise UserError(f"{recipe.output / 'profile'} was profiled without expert choices (an older profile): "
                            "remove that folder to profile again")
        picks = require_picks(pick_experts(profile.routing, recipe.experts.per_layer, recipe.experts.category or None),
                              str(recipe.path))
        steps.note("experts: " + "; ".join(f"L{layer} +{p['personality']} -{p['assistant']}"
                                           for layer, p in picks.items() if p["personality"] or p["assistant"]))
        return profile.routing, picks

    def _base_routes(self, recipe: Recipe, pack: Character, loaded: Loaded, arch: Architecture) -> Routes | None:
        """MoE: the base's expert choices on the eval prompts, before any training touches the weights (cached)."""
        if not arch.router:
            return None
        where = recipe.output / "routing" / "base.safetensors"
        if where.is_file():
            return Routes.load(where)
        prompts = list(dict.fromkeys(p.prompt for kind in ("identity", "personality", "math_probes")
                                     for p in pack.prompts(kind)))
        routes = count_routes(loaded.model, loaded.tokenizer, arch, prompts, recipe.profile.batch_size)
        routes.save(where)
        return routes

    def _save_candidate(self, loaded: Loaded, arch: Architecture, target: Path, lineage: dict[str, Any],
                        base_routes: Routes | None) -> Baked:
        """Write a candidate: weights, lineage and, for a MoE model, how its routing moved from the base's."""
        if base_routes is not None:
            shift = routing_shift(base_routes, count_routes(loaded.model, loaded.tokenizer, arch, base_routes.prompts))
            lineage = {**lineage, "routing_shift": shift_summary(shift)}
        save_merged(loaded, target)
        if base_routes is not None:
            _write_json(target / "routing_shift.json", shift)
            (target / "routing_shift.md").write_text(shift_report(shift, target.name), encoding="utf-8")
        _write_json(target / LINEAGE_FILE, {"lineage": lineage})
        return Baked(target, lineage)

    def _lineage(self, recipe: Recipe) -> dict[str, Any]:
        """What a baker adds to each candidate's lineage (grpo: the judge it was rewarded by)."""
        return {}

    def _objective(self, recipe: Recipe) -> str:
        """What the loss is, for the "train" step header."""
        return f"push {recipe.loss.push} pull {recipe.loss.pull}"

    def train_ranks(self, recipe: Recipe, device: str, progress: bool = True, parallel: str | None = None) -> None:
        """One rank of a launched bake (distributed/launch.py): profile with the other ranks, then train. The choice on
        dev and the merges are the round's, from the checkpoints rank 0 saves."""
        steps = Steps(["profile", "train"], show=False)
        _, char, anti, loaded, arch = self._begin(recipe, device)
        profile = self._prepare(recipe, loaded, arch, char, anti, progress, steps)
        picks = None
        if recipe.train.expert_lora == "profile":
            picks = self._expert_picks(recipe, loaded, arch, char, anti, progress, steps)[1]
        self._fit(recipe, loaded, arch, profile, char, anti, progress, picks, None, parallel)

    def _train(self, recipe: Recipe, pack: Character, loaded: Loaded, arch: Architecture, profile: Profile | None,
               char: list[Pair], anti: list[Pair], progress: bool, picks: Picks | None = None) -> tuple[int, Path]:
        """Train (unless done), score every saved checkpoint on dev, and return the chosen one."""
        train_dir = recipe.output / "train"
        selector = CheckpointSelector(recipe, pack, loaded, recipe.output / "selection")
        model = None
        if not (train_dir / "done.json").is_file():
            model = self._fit(recipe, loaded, arch, profile, char, anti, progress, picks, selector)
        unscored = selector.unscored(train_dir)  # trained as ranks: scored here, from the saved adapters
        if unscored:
            selector.model = model if model is not None else self._lora_model(recipe, loaded, arch, picks)
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

    def _lora_model(self, recipe: Recipe, loaded: Loaded, arch: Architecture, picks: Picks | None) -> Any:
        """The base wrapped with the recipe's LoRA (fresh: it equals the base until trained)."""
        cfg = recipe.train
        set_seed(cfg.seed)  # the LoRA initialisation too: one seed, one bake (every rank alike)
        if not arch.expert_parameters and cfg.expert_lora != "none":
            raise UserError(f"{recipe.path}: [train] expert_lora is for MoE models; {arch.name} has no experts")
        experts = {"none": None, "all": list(arch.expert_parameters),
                   "profile": None if picks is None else expert_lora_targets(arch, picks)}[cfg.expert_lora]
        model = lora_model(loaded.model, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout,
                           cfg.targets or list(arch.lora_targets), experts)
        if cfg.expert_lora == "profile" and picks is not None:
            freeze_unpicked_experts(model, picks)  # LoRA on the picked experts only: the others stay the base's
        return model

    def _fit(self, recipe: Recipe, loaded: Loaded, arch: Architecture, profile: Profile | None, char: list[Pair],
             anti: list[Pair], progress: bool, picks: Picks | None, selector: CheckpointSelector | None,
             parallel: str | None = None) -> Any:
        """The training loop (Trainer's), resumed from the last checkpoint; `done.json` at the end. `selector`
        scores each checkpoint as it is saved (one process); ranks pass None and the round scores them after.
        `parallel`: what the ranks' accelerate config asks for, checked against what the Trainer runs."""
        cfg = recipe.train
        train_dir = recipe.output / "train"
        model = self._lora_model(recipe, loaded, arch, picks)
        device = next(model.parameters()).device
        regulariser = None if profile is None else Regulariser(profile, arch.layers(model), recipe.loss, device)
        trainer = self._trainer(recipe, loaded, model, char, anti, regulariser, trainer_args(recipe, train_dir),
                                selector or TrainerCallback())
        if parallel is not None:
            check_kind(trainer, parallel)
        ProgressBar(self.label, show=progress).use_on(trainer)
        if selector is not None:
            selector.model = model
        last = last_checkpoint(train_dir)
        try:
            trainer.train(resume_from_checkpoint=str(last) if last else None)
        except TrainingDiverged as e:
            good = last_checkpoint(train_dir)
            lower = "the learning rate" + (" or the push/pull coefficients" if regulariser is not None else "")
            raise UserError(f"training stopped: {e}; last good checkpoint: {good or 'none'} (lower {lower}; "
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
            _write_json(train_dir / "done.json", {"recipe_hash": recipe.hash(), "steps": trainer.state.global_step,
                                                  "ranks": rank()[1], "parallel": parallel_kind(trainer),
                                                  "log_history": trainer.state.log_history})
        barrier()
        return model

    def _trainer(self, recipe: Recipe, loaded: Loaded, model: Any, char: list[Pair], anti: list[Pair],
                 regulariser: Regulariser | None, args: dict[str, Any], selector: TrainerCallback) -> Any:
        """The Trainer for the LoRA-wrapped model: the causal-LM loss on the in-character replies, plus the
        regulariser when there is one (a baker with another objective overrides this, see dpo.py)."""
        dataset = [encode(loaded.tokenizer, p, recipe.train.max_length) for p in char]
        return PushPullTrainer(
            model=model, args=TrainingArguments(**args, remove_unused_columns=False), train_dataset=dataset,
            regulariser=regulariser, explode_factor=recipe.loss.explode_factor,
            data_collator=lambda batch: collate(batch, loaded.tokenizer.pad_token_id), callbacks=[selector])

    def _merge(self, recipe: Recipe, arch: Architecture, step: int, checkpoint: Path, char: list[Pair],
               anti: list[Pair], base_routes: Routes | None = None,
               steering: tuple[Routing, Picks] | None = None) -> list[Baked]:
        """One candidate per merge scale; with [router] combine, each also steered once per router strength."""
        baked = []
        strengths: list[float | None] = [None] + (list(recipe.router.strengths) if steering else [])
        for scale in recipe.scales:
            merged: Loaded | None = None
            for strength in strengths:
                name = f"{recipe.round.lower()}-{slug(Path(recipe.base).name)}-{self.name}-step{step}-x{scale:g}" + (
                    "" if strength is None else f"-r{strength:g}")
                target = recipe.output / "candidates" / name
                base = str(Path(recipe.base).resolve()) if Path(recipe.base).exists() else recipe.base
                lineage = {"round": recipe.round, "baker": self.name, "base": base, "scale": scale, "step": step,
                           "parent": str(checkpoint), "data_hash": _data_hash(char, anti),
                           "recipe_hash": recipe.hash(), **self._lineage(recipe)}
                if strength is not None and steering is not None:
                    lineage.update(router_strength=strength, experts=_picks_json(steering[1]))
                done = _done(target, lineage)
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


def conductor_device(recipe: Recipe) -> str | None:
    """Where the round's own process holds the base for the choice on dev and the merges: a model trained as ranks
    may not fit one card, so it is spread over the visible GPUs ("auto"); else the one device (None)."""
    return "auto" if recipe.distributed.processes > 1 and torch.cuda.is_available() else None


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


def save_merged(loaded: Loaded, target: Path) -> None:
    """Full weights as safetensors; a dequantised MXFP4 model is saved as the plain weights it now holds."""
    tmp = target.with_name(target.name + ".partial")
    model = loaded.model
    if getattr(model.config, "quantization_config", None) is not None:
        del model.config.quantization_config
        if hasattr(model, "hf_quantizer"):
            model.hf_quantizer = None
    model.save_pretrained(tmp, safe_serialization=True)
    loaded.tokenizer.save_pretrained(tmp)
    copy_processor_files(loaded.source, tmp)  # a VL candidate needs its base's preprocessor_config.json
    if target.exists():
        import shutil

        shutil.rmtree(target)
    tmp.rename(target)


class CheckpointSelector(TrainerCallback):
    """At each saved checkpoint, run the quick suite on the dev split with the in-memory model and record it;
    pick by the gate. The dev prompts are disjoint from eval, so the reported numbers are not chosen on them."""

    def __init__(self, recipe: Recipe, pack: Character, loaded: Loaded, out: Path) -> None:
        from ..leaderboard.board import load_board
        from ..leaderboard.store import Store

        self.recipe = recipe
        self.pack = pack
        self.loaded = loaded
        self.out = out
        self.model: Any = None
        board = recipe.select.board
        candidate = recipe.path.parent / board
        self.board = load_board(candidate.resolve() if candidate.exists() else board)
        out.mkdir(parents=True, exist_ok=True)
        self.store = Store(out / "selection.sqlite")

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step == 0:
            self.evaluate(0, None)  # the base, for the curve

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.evaluate(state.global_step, Path(args.output_dir) / f"checkpoint-{state.global_step}")

    def unscored(self, train_dir: Path) -> list[tuple[int, Path | None]]:
        """The base (step 0) and the saved checkpoints not yet scored on dev, in step order: a bake trained as
        ranks saved them without scoring."""
        saved: list[tuple[int, Path | None]] = [(0, None)]
        saved += sorted((int(p.name.split("-")[1]), p) for p in train_dir.glob("checkpoint-*")
                        if p.name.split("-")[1].isdigit() and (p / "adapter_model.safetensors").is_file())
        return [(step, path) for step, path in saved if not (self.out / f"step-{step}.json").is_file()]

    def evaluate(self, step: int, checkpoint: Path | None) -> None:
        from ..harness.candidates import content_of
        from ..harness.providers import IN_MEMORY
        from ..tasks.run import ScoreOptions, score_candidate

        marker = self.out / f"step-{step}.json"
        if marker.is_file():
            return
        fingerprint = hashlib.sha256(content_of(self.recipe.base).encode())  # a rebuilt base is another model
        if checkpoint is not None:
            for f in sorted(checkpoint.glob("adapter_model*.safetensors")):
                fingerprint.update(f.read_bytes())
        cid = f"{self.recipe.round.lower()}-{self.recipe.hash()}-step{step}-{fingerprint.hexdigest()[:8]}"
        model = self.model
        IN_MEMORY[cid] = Loaded(model=model, tokenizer=self.loaded.tokenizer, model_type=self.loaded.model_type)
        was_training = model.training
        model.eval()
        try:
            # step 0 is the base itself: relative criteria ("sarcastic vs base") compare checkpoints with it
            lineage = {"round": self.recipe.round, "step": step,
                       **({"role": "base"} if checkpoint is None else {"base": self.recipe.base})}
            candidate = Candidate(cid, "model", str(checkpoint or self.recipe.base), {"in_memory": cid}, lineage)
            sel = self.recipe.select
            # the dev split: selection never sees a prompt that is reported (tests/test_bakers.py proves it)
            card, _ = score_candidate(candidate, ScoreOptions(
                character=str(self.pack.root), judge="classifier", tasks=QUICK_TASKS, limit=sel.limit, split="dev",
                max_tokens=sel.max_tokens, reasoning_effort=self.recipe.score.reasoning_effort, out=self.out / "runs",
                display="none"))
        finally:
            model.train(was_training)
            del IN_MEMORY[cid]
        self.store.record(card.to_json())
        _write_json(marker, {"step": step, "candidate": cid, "checkpoint": str(checkpoint) if checkpoint else None})

    def choose(self, history: list[dict[str, Any]]) -> int:
        """The trained checkpoint passing the most gate criteria, then ranking best; the curve is saved."""
        from ..leaderboard.board import Measurements, evaluate

        measured = Measurements(self.store.frame())
        rows = []
        for marker in sorted(self.out.glob("step-*.json"), key=lambda p: int(re.findall(r"\d+", p.name)[0])):
            info = json.loads(marker.read_text())
            verdicts = evaluate(self.board, measured, info["candidate"])
            row: dict[str, Any] = {"step": info["step"], "candidate": info["candidate"],
                                   "criteria_passed": sum(v.passed for v in verdicts)}
            for col in self.board.columns:
                m = measured.get(info["candidate"], col)
                row[col.label] = None if m is None else m["value"]
            rank = measured.get(info["candidate"], self.board.rank_by)
            row["rank_value"] = None if rank is None else rank["value"]
            losses = [h["loss"] for h in history if "loss" in h and h.get("step", 0) <= info["step"]]
            row["train_loss"] = losses[-1] if losses else None
            rows.append(row)
        trained = [r for r in rows if r["step"] > 0]
        if not trained:
            raise UserError(f"no trained checkpoint was evaluated in {self.out}")
        best = max(trained, key=lambda r: (r["criteria_passed"], r["rank_value"] or 0.0, -r["step"]))
        for r in rows:
            r["selected"] = r is best
        _save_curve(rows, self.out, self.board)
        return int(best["step"])


def _save_curve(rows: list[dict[str, Any]], out: Path, board: Any) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    frame = pd.DataFrame(rows)
    frame.to_csv(out / "curve.csv", index=False)
    fig, ax = plt.subplots(figsize=(7, 4))
    for col in board.columns:
        if col.label in frame and frame[col.label].notna().any() and col.name != "personality":
            ax.plot(frame.step, frame[col.label], marker="o", label=col.label)
    best = frame[frame.selected]
    ax.axvline(float(best.step.iloc[0]), color="grey", linestyle="--", label="selected")
    ax.set_xlabel("step")
    ax.set_ylabel("rate (quick suite, no system prompt)")
    if frame.train_loss.notna().any():
        ax2 = ax.twinx()
        ax2.plot(frame.step, frame.train_loss, color="black", alpha=0.4, label="train loss")
        ax2.set_ylabel("train loss")
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title("Checkpoint curve: chosen by the gate, not by loss")
    fig.tight_layout()
    fig.savefig(out / "curve.png", dpi=110)
    plt.close(fig)


def _data(recipe: Recipe) -> tuple[Character, list[Pair], list[Pair]]:
    pack = load_character(recipe.character)
    char = load_pairs(recipe.character_data) if recipe.character_data else pack.character_pairs
    anti = load_pairs(recipe.antipole_data) if recipe.antipole_data else pack.antipole_pairs
    return pack, char, anti


def _data_hash(char: list[Pair], anti: list[Pair]) -> str:
    h = hashlib.sha256()
    for p in char + anti:
        h.update(f"{p.category}\0{p.prompt}\0{p.response}\0".encode())
    return "sha256:" + h.hexdigest()[:16]


def preflight(recipe: Recipe) -> None:
    """Checks that need only the model's config, so a bad recipe fails before any weights load."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(recipe.base, trust_remote_code=recipe.trust_remote_code)
    except (OSError, ValueError) as e:
        raise UserError(f"{recipe.path}: [model] base {recipe.base!r}: cannot read its config "
                        f"({str(e).splitlines()[0]})") from None
    text = getattr(config, "text_config", None) or config
    n_layers = getattr(text, "num_hidden_layers", None)
    bad = [i for i in (recipe.profile.layers or []) if n_layers is not None and not 0 <= i < n_layers]
    if bad:
        raise UserError(f"{recipe.path}: [profile] layers: monitored layer index {bad[0]} is out of range: "
                        f"the model has {n_layers} decoder layers")


def _claim_output(recipe: Recipe) -> Path:
    """The output folder belongs to one recipe: refuse to mix two bakes in one folder."""
    preflight(recipe)
    out = recipe.output
    out.mkdir(parents=True, exist_ok=True)
    meta = out / "bake.json"
    if meta.is_file():
        previous = json.loads(meta.read_text()).get("recipe_hash")
        if previous != recipe.hash():
            raise UserError(f"{out} holds a bake of another recipe (hash {previous}, this one {recipe.hash()}); "
                            "set a different output or remove that folder")
    else:
        _write_json(meta, {"recipe_hash": recipe.hash(), "round": recipe.round, "base": recipe.base,
                           "recipe": str(recipe.path)})
    return out


def _done(target: Path, lineage: dict[str, Any]) -> dict[str, Any] | None:
    """The lineage of a candidate already written from the same inputs (what it measured included), else None."""
    f = target / LINEAGE_FILE
    if not f.is_file():
        return None
    stored = json.loads(f.read_text()).get("lineage") or {}
    return stored if {k: v for k, v in stored.items() if k != "routing_shift"} == lineage else None


def _picks_json(picks: Picks) -> dict[str, dict[str, list[int]]]:
    return {str(layer): p for layer, p in picks.items() if p["personality"] or p["assistant"]}


def _write_json(path: Path, data: Any) -> None:
    atomic_write(path, json.dumps(data, indent=2, default=str))
