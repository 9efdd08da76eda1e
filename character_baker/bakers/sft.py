"""The control: plain LoRA SFT on the character's in-character pairs, the baseline every other baker is compared
against.

It is the push/pull baker with the regulariser taken out, nothing else: the same recipe format, data, LoRA setup,
output folder (resumable), checkpoint selection on the dev split, merge at scales and `candidate.json` lineage
(baker "sft"). The loss is the model's causal-LM cross-entropy on the assistant's reply tokens. There is no
profile step, and the recipe's `[profile]` table and `[loss]` push/pull/anchor are not used (`explode_factor` is),
so a push/pull recipe with `baker = "sft"` is its own control. Push/pull with push = pull = anchor = 0 trains to
the same weights (tests/test_sft_baker.py).
"""

from __future__ import annotations

from ..harness.console import Steps
from ..harness.data import Pair
from ..harness.loading import Loaded
from .architectures import Architecture
from .pushpull import PushPullBaker
from .recipe import Recipe


class SFTBaker(PushPullBaker):
    name = "sft"
    description = "plain LoRA SFT on the in-character replies (the control): train, select by eval, merge"
    label = "sft"

    def _prepare(self, recipe: Recipe, loaded: Loaded, arch: Architecture, char: list[Pair], anti: list[Pair],
                 progress: bool, steps: Steps) -> None:
        steps.start("profile", "skipped: sft has no regulariser")
        return None

    def _objective(self, recipe: Recipe) -> str:
        return "causal-LM loss on the in-character replies, no regulariser"
