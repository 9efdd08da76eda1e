"""The LoRA bakers' own recipe table, `[grpo]` (registered in pyproject.toml under `character_baker.recipe_tables`;
`[train]` and `[loss]` are the recipe's, read by every LoRA baker and by the plan). Standard library only."""

from __future__ import annotations

from dataclasses import dataclass

from ...harness.errors import UserError
from ..recipe import BakerSettings, Recipe


@dataclass
class GRPOSettings(BakerSettings):
    """The grpo baker's sampling: replies per prompt, their length and temperature (KL: `[loss] beta`)."""

    generations: int = 4
    max_completion_length: int = 64
    temperature: float = 1.0

    def check(self, recipe: Recipe, where: str) -> None:
        if recipe.baker != "grpo":
            return  # a shared bake-off table may carry [grpo] for its grpo baker only
        batch = recipe.train.batch_size * recipe.train.grad_accum
        if self.generations < 2 or batch % self.generations:
            raise UserError(f"{where} generations = {self.generations}: GRPO compares at least 2 samples per "
                            f"prompt, and [train] batch_size x grad_accum ({batch}) must be a multiple of it")
        if self.max_completion_length < 1:
            raise UserError(f"{where} max_completion_length = {self.max_completion_length}: must be at least 1")
        if not self.temperature > 0:
            raise UserError(f"{where} temperature = {self.temperature!r}: must be above 0")
