"""The control: plain LoRA SFT on the character's in-character pairs, the baseline every other baker is compared
against.

It is the LoRA baker as it stands, nothing added: the same recipe format, data, LoRA setup, output folder
(resumable), checkpoint selection on the dev split, merge at scales and `candidate.json` lineage (baker "sft") as
push/pull, whose regulariser is all that it lacks. The loss is the model's causal-LM cross-entropy on the
assistant's reply tokens. There is no profile step, and the recipe's `[profile]` table and `[loss]`
push/pull/anchor are not used (`explode_factor` is), so a push/pull recipe with `baker = "sft"` is its own
control. Push/pull with push = pull = anchor = 0 trains to the same weights (tests/test_sft_baker.py).
"""

from __future__ import annotations

from ..recipe import Recipe
from .base import LoraBaker


class SFTBaker(LoraBaker):
    name = "sft"
    description = "plain LoRA SFT on the in-character replies (the control): train, select by eval, merge"
    label = "sft"

    def objective(self, recipe: Recipe) -> str:
        return "causal-LM loss on the in-character replies, no regulariser"
