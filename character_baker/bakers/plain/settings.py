"""The plain bakers' own recipe tables, `[steer]` and `[router]` (registered in pyproject.toml under
`character_baker.recipe_tables`). Standard library only: the plan reads them before anything heavy is installed."""

from __future__ import annotations

from dataclasses import dataclass, field

from ...harness.errors import UserError
from ..recipe import BakerSettings, Recipe


@dataclass
class SteerSettings(BakerSettings):
    """The steer baker: where the persona vector is added (None: the profiled layer with the largest contrast)."""

    layers: list[int] | None = None

    def check(self, recipe: Recipe, where: str) -> None:
        if self.layers is not None and not (isinstance(self.layers, list) and self.layers and all(
                isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in self.layers)):
            raise UserError(f"{where} layers = {self.layers!r}: a non-empty list of layer indices (leave it out for "
                            "the profiled layer of largest contrast)")


@dataclass
class RouterSettings(BakerSettings):
    """Router steering: +s·σ on the personality experts' router logits, −s·σ on the assistant experts' (σ: the
    spread of that router's logits), written into the router's bias. The router baker writes a candidate per
    strength; with `combine`, the LoRA bakers steer each merged candidate too, once per strength."""

    strengths: list[float] = field(default_factory=lambda: [0.5, 1.0, 2.0])
    combine: bool = False

    def check(self, recipe: Recipe, where: str) -> None:
        if not self.strengths or not all(0 < s <= 16 for s in self.strengths):
            raise UserError(f"{where} strengths must be a non-empty list of numbers in (0, 16], "
                            f"got {self.strengths!r}")
