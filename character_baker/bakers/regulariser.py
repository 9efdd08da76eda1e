"""The push/pull regulariser, computed from the layer outputs of the training forward pass (no second pass).

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

from typing import Any

import torch

from .recipe import LossConfig
from .tracker import LayerHooks, Profile


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
