"""A judge-free activation monitor: how far each reply sits toward the character in the model's own activations.

A bake's profile (`<output>/profile/profile.safetensors`) holds, per monitored layer L, the mean layer output on
in-character replies (mu_C) and on assistant replies (mu_A). The monitor reads each scored reply back through the
candidate (teacher-forced after its prompt), takes layer L's output on the reply's tokens and scores

    s = mean over reply tokens of (h - (mu_C + mu_A) / 2) . u,     u = (mu_C - mu_A) / |mu_C - mu_A|

(s > 0: nearer the in-character mean). L is the profiled layer where the two means differ most relative to the
spread of the activations. Its agreement with the judge is the AUROC of s against the first judge's sarcastic
verdict on the personality replies (0.5: no agreement), with a bootstrap interval over replies; on the drift task
the mean s at each turn is a cheap drift meter that needs no judge call.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..harness.errors import UserError


@dataclass
class Direction:
    layer: int
    midpoint: torch.Tensor
    unit: torch.Tensor
    source: str


def load_direction(profile_dir: str | Path, layer: int | None = None) -> Direction:
    """The persona direction of a saved profile (the profile folder or its profile.safetensors)."""
    from safetensors.torch import load_file

    path = Path(profile_dir)
    path = path / "profile.safetensors" if path.is_dir() else path
    if not path.is_file():
        raise UserError(f"--monitor {profile_dir}: no profile.safetensors there (a bake writes <output>/profile/)")
    try:
        tensors = load_file(str(path))
    except Exception as e:  # noqa: BLE001 - a damaged file is the user's to fix
        raise UserError(f"--monitor {path}: not a readable safetensors file ({type(e).__name__})") from None
    layers = sorted(int(k.split(".")[1]) for k in tensors if k.startswith("mean_character."))
    if not layers or not all(f"mean_antipole.{x}" in tensors and f"sd.{x}" in tensors for x in layers):
        raise UserError(f"--monitor {path}: not a character-baker profile (no mean_character/mean_antipole/sd)")

    def contrast(x: int) -> float:
        d = tensors[f"mean_character.{x}"] - tensors[f"mean_antipole.{x}"]
        return float(d.norm() / tensors[f"sd.{x}"].pow(2).mean().sqrt().clamp_min(1e-8))

    if layer is None:
        layer = max(layers, key=contrast)
    elif layer not in layers:
        raise UserError(f"--monitor-layer {layer}: the profile measured layers {layers}")
    c, a = tensors[f"mean_character.{layer}"].float(), tensors[f"mean_antipole.{layer}"].float()
    if float((c - a).norm()) == 0.0:
        raise UserError(f"--monitor {path}: the two means are equal at layer {layer}; no direction to project on")
    return Direction(layer, (c + a) / 2, (c - a) / (c - a).norm(), str(path))


def project(loaded: Any, direction: Direction, conversations: list[list[dict[str, str]]]) -> list[float]:
    """s for the last assistant message of each conversation, read back through the model."""
    tok, model = loaded.tokenizer, loaded.model
    layers = _layers(model)
    if not 0 <= direction.layer < len(layers):
        raise UserError(f"--monitor: the profile's layer {direction.layer} is not in this model "
                        f"({len(layers)} layers): was it profiled on another base?")
    kept: dict[str, torch.Tensor] = {}
    handle = layers[direction.layer].register_forward_hook(
        lambda m, a, o: kept.__setitem__("h", o[0] if isinstance(o, tuple) else o))
    device = next(model.parameters()).device
    out: list[float] = []
    try:
        for messages in conversations:
            prefix = tok.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
            full = prefix + messages[-1]["content"]  # the reply's own tokens, as the model produced them
            ids = tok(full, return_tensors="pt", add_special_tokens=False)["input_ids"].to(device)
            n_prefix = len(tok(prefix, add_special_tokens=False)["input_ids"])
            with torch.no_grad():
                model(input_ids=ids)
            h = kept["h"][0, n_prefix:].float()
            if h.shape[0] == 0:
                out.append(float("nan"))
                continue
            if h.shape[-1] != direction.unit.shape[0]:
                raise UserError(f"--monitor: the profile's width {direction.unit.shape[0]} is not this model's "
                                f"({h.shape[-1]}): it was profiled on another base")
            out.append(float(((h - direction.midpoint.to(h.device)) @ direction.unit.to(h.device)).mean()))
    finally:
        handle.remove()
    return out


def _layers(model: Any) -> Any:
    root = model.get_base_model() if hasattr(model, "get_base_model") else model
    for path in ("model.layers", "model.language_model.layers", "transformer.h", "gpt_neox.layers"):
        obj = root
        try:
            for part in path.split("."):
                obj = getattr(obj, part)
            return obj
        except AttributeError:
            continue
    raise UserError("--monitor: cannot find this model's decoder layers")


def auroc(scores: list[float], labels: list[bool], reps: int = 2000, seed: int = 0) -> dict[str, Any]:
    """AUROC of the scores against the labels (Mann-Whitney, ties half), with a bootstrap interval over items;
    None when one class is empty."""
    pairs = [(s, y) for s, y in zip(scores, labels, strict=True) if s == s]
    s = np.array([p[0] for p in pairs])
    y = np.array([p[1] for p in pairs], dtype=bool)
    result: dict[str, Any] = {"n_positive": int(y.sum()), "n_negative": int((~y).sum()), "auroc": None,
                              "ci_low": None, "ci_high": None}
    if not y.any() or y.all():
        return result

    def one(sv: np.ndarray, yv: np.ndarray) -> float:
        pos, neg = sv[yv], sv[~yv]
        greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
        return float(greater / (len(pos) * len(neg)))

    result["auroc"] = one(s, y)
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(reps):
        idx = rng.integers(0, len(s), len(s))
        if y[idx].any() and not y[idx].all():
            boots.append(one(s[idx], y[idx]))
    result["ci_low"], result["ci_high"] = (float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5)))
    return result


def monitor_card(loaded: Any, direction: Direction, logs: list[Any], judge: str) -> dict[str, Any]:
    """The scorecard's `monitor` section from a run's Inspect logs: agreement with `judge` on the personality
    replies (per condition) and the mean score per turn of the drift conversations."""
    from inspect_ai.log import read_eval_log

    from ..harness.scorecard import task_short_name

    out: dict[str, Any] = {"profile": direction.source, "layer": direction.layer, "judge": judge,
                           "agreement": {}, "drift": {}}
    for header in logs:
        log = read_eval_log(header.location)
        task = task_short_name(log.eval.task)
        condition = str(log.eval.task_args.get("condition", "none"))
        if task == "personality":
            convs, labels = [], []
            for s in log.samples or []:
                value = next((sc.value for sc in (s.scores or {}).values() if isinstance(sc.value, dict)), None)
                verdict = None if value is None else value.get(f"sarcastic:{judge}")
                if s.error or verdict is None or not s.output or not s.output.completion:
                    continue
                convs.append([{"role": "user", "content": str(s.metadata.get("prompt", s.input))},
                              {"role": "assistant", "content": s.output.completion}])
                labels.append(bool(verdict))
            out["agreement"][condition] = auroc(project(loaded, direction, convs), labels)
        elif task == "drift":
            by_turn: dict[int, list[float]] = {}
            for s in log.samples or []:
                if s.error:
                    continue
                history: list[dict[str, str]] = []
                turn = 0
                for m in s.messages:
                    history.append({"role": m.role, "content": m.text})
                    if m.role == "assistant":
                        turn += 1
                        if m.text:
                            by_turn.setdefault(turn, []).append(project(loaded, direction, [list(history)])[0])
            out["drift"][condition] = {str(t): float(np.nanmean(v)) for t, v in sorted(by_turn.items())}
    return out
