"""PushPullTrainer: transformers' Trainer with one thing changed, the loss (SFT + the push/pull regulariser;
without a regulariser it is Trainer's own causal-LM loss: the `sft` baker).

Gradient accumulation, gradient checkpointing, checkpointing, logging and `accelerate launch` come from
Trainer unchanged. A NaN or exploding loss raises `TrainingDiverged` before the bad step is applied.

The push/pull regulariser lives here too, computed from the layer outputs of the training forward pass (no
second pass).

For a monitored layer with profile means mu_C (in character), mu_A (assistant) and pooled spread sigma, a
unit's standardised activation on an assistant token is z = (h - mu_A) / sigma and its in-character target
is t = (mu_C - mu_A) / sigma. With P the push units, Q the pull units and R the anchor units:

    push   = mean over tokens, u in P of (z_u - t_u)^2                   (toward the in-character profile)
    pull   = mean over tokens, u in Q of relu(|t_u| - sign(t_u) z_u)^2   (away from the assistant profile)
    anchor = mean over tokens, u in R of ((h_u - a_u) / sigma_u)^2        (reasoning units stay at the base's
                                                                           math-prompt mean a_u)
    R = alpha_push * push + alpha_pull * pull + alpha_anchor * anchor     (each averaged over layers)

See docs/LOSS.md for the whole objective.
"""

from __future__ import annotations

import math
from statistics import median
from typing import Any

import torch
from transformers import Trainer, TrainerCallback

from .profile import LayerHooks, Profile
from .recipe import LossConfig


class Regulariser:
    def __init__(self, profile: Profile, layer_list: Any, cfg: LossConfig, device: Any) -> None:
        self.cfg = cfg
        self.hooks = LayerHooks(layer_list, profile.layers)
        self.terms: dict[int, dict[str, torch.Tensor]] = {}
        for layer in profile.layers:
            sd = profile.sd[layer]
            target = (profile.mean_character[layer] - profile.mean_antipole[layer]) / sd
            push, pull, anchor = profile.push[layer], profile.pull[layer], profile.anchor[layer]
            self.terms[layer] = {k: v.to(device) for k, v in {
                "push": push, "pull": pull, "anchor": anchor,
                "mu_push": profile.mean_antipole[layer][push], "sd_push": sd[push], "t_push": target[push],
                "mu_pull": profile.mean_antipole[layer][pull], "sd_pull": sd[pull], "t_pull": target[pull],
                "a": profile.anchor_target[layer], "sd_anchor": sd[anchor],
            }.items()}

    def __call__(self, outputs: dict[int, torch.Tensor], mask: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """The weighted regulariser and its unweighted parts, over the assistant tokens of the batch."""
        parts: dict[str, list[torch.Tensor]] = {"push": [], "pull": [], "anchor": []}
        for layer, h in outputs.items():
            tokens = h[mask].float()  # (N, H): assistant tokens only
            if tokens.shape[0] == 0:
                continue
            t = self.terms[layer]
            z_push = (tokens[:, t["push"]] - t["mu_push"]) / t["sd_push"]
            parts["push"].append(((z_push - t["t_push"]) ** 2).mean())
            z_pull = (tokens[:, t["pull"]] - t["mu_pull"]) / t["sd_pull"]
            sign = torch.sign(t["t_pull"])
            parts["pull"].append(torch.relu(t["t_pull"].abs() - sign * z_pull).pow(2).mean())
            if t["anchor"].numel():
                parts["anchor"].append((((tokens[:, t["anchor"]] - t["a"]) / t["sd_anchor"]) ** 2).mean())
        means = {k: torch.stack(v).mean() if v else None for k, v in parts.items()}
        anchor = means["anchor"]
        total = torch.zeros((), device=mask.device)
        if means["push"] is not None:
            total = total + self.cfg.push * means["push"] + self.cfg.pull * means["pull"]
        if anchor is not None:
            total = total + self.cfg.anchor * anchor
        return total, {k: float(v.detach()) for k, v in means.items() if v is not None}

    def remove(self) -> None:
        self.hooks.remove()


class TrainingDiverged(RuntimeError):
    def __init__(self, step: int, value: float, why: str) -> None:
        super().__init__(f"loss {why} at step {step} (value {value:.4g})")
        self.step, self.value, self.why = step, value, why


class DivergenceCheck:
    """Mixed into a Trainer: `_check(loss)` raises `TrainingDiverged` on a NaN or a loss past `explode_factor`
    times its early median, before the bad step is applied."""

    explode_factor: float = 20.0
    state: Any

    def _check(self, value: float) -> None:
        early: list[float] = self.__dict__.setdefault("_early", [])
        step = self.state.global_step + 1
        if not math.isfinite(value):
            raise TrainingDiverged(step, value, "is not finite")
        if len(early) < 10:
            early.append(abs(value))
        elif abs(value) > self.explode_factor * max(median(early), 1e-8):
            raise TrainingDiverged(step, value, f"exploded past {self.explode_factor:g}x its early median")


class CheckedLoss(DivergenceCheck):
    """Mixed in before a library Trainer (TRL's DPO, GRPO): its own loss, checked by `_check` before the step."""

    def compute_loss(self, model: Any, inputs: Any, return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        out = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)  # type: ignore[misc]
        self._check(float((out[0] if return_outputs else out).detach()))
        return out


class PushPullTrainer(DivergenceCheck, Trainer):
    def __init__(self, *args: Any, regulariser: Regulariser | None = None, explode_factor: float = 20.0,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.regulariser = regulariser
        self.explode_factor = explode_factor
        self._parts: dict[str, list[float]] = {}

    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        if self.regulariser is None:
            loss, outputs = super().compute_loss(model, inputs, True, num_items_in_batch)
            parts: dict[str, float] = {}
        else:
            with self.regulariser.hooks.capture() as captured:
                loss, outputs = super().compute_loss(model, inputs, True, num_items_in_batch)
            reg, parts = self.regulariser(captured, inputs["labels"] != -100)
            # Trainer divides the loss by the accumulation steps unless the model already normalised it over
            # the whole accumulated batch; then the per-micro-batch regulariser must be divided here instead.
            scaled = self.loss_is_scaled_for_ga if self.loss_is_scaled_for_ga is not None else (
                (self.model_accepts_loss_kwargs and num_items_in_batch is not None)
                or self.compute_loss_func is not None)
            loss = loss + (reg / self.current_gradient_accumulation_steps if scaled else reg)
            captured.clear()
        self._check(float(loss.detach()))
        if model.training:
            for k, v in parts.items():
                self._parts.setdefault(k, []).append(v)
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        for k, values in self._parts.items():
            if values:
                logs[f"reg_{k}"] = round(sum(values) / len(values), 6)
        self._parts = {}
        super().log(logs, *args, **kwargs)


def lora_model(model: Any, r: int, alpha: int, dropout: float, targets: list[str],
               target_parameters: list[str] | None = None) -> Any:
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets,
                        target_parameters=target_parameters or None, task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, config)
    if hasattr(peft_model, "enable_input_require_grads"):
        peft_model.enable_input_require_grads()  # gradient checkpointing with frozen embeddings needs this
    return peft_model


def has_grad(model: Any) -> bool:
    """Whether every trainable LoRA weight received a gradient (tests: the regulariser reaches them)."""
    return all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters() if p.requires_grad)


class ProgressBar(TrainerCallback):
    """One rich progress bar for a training run: step, ETA, loss and the push/pull terms on the bar, instead of
    a printed dict per logging step. Replaces the Trainer's own printer (`use_on(trainer)`)."""

    def __init__(self, label: str, show: bool = True) -> None:
        self.label = label
        self.show = show  # False: no bar and no printed dicts either (pipes, tests)
        self.bar: Any = None
        self.task: Any = None

    def use_on(self, trainer: Trainer) -> None:
        from transformers.trainer_callback import PrinterCallback, ProgressCallback

        trainer.remove_callback(PrinterCallback)
        trainer.remove_callback(ProgressCallback)
        trainer.add_callback(self)

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not self.show:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(TextColumn(f"  {self.label}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                            TextColumn("{task.fields[info]}"), transient=False)
        self.bar.start()
        self.task = self.bar.add_task(self.label, total=state.max_steps, completed=state.global_step, info="")

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if self.bar is not None and logs:
            shown = [f"loss {logs['loss']:.3f}"] if "loss" in logs else []
            shown += [f"{k[4:]} {v:.3f}" for k, v in logs.items() if k.startswith("reg_")]
            if "rewards/margins" in logs:  # DPO: how far the chosen reply's reward is above the rejected one's
                shown.append(f"margin {float(logs['rewards/margins']):.3f}")
            self.bar.update(self.task, info="  ".join(shown))

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=state.global_step)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None
