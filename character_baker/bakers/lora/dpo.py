"""DPO: TRL's `DPOTrainer` on preference pairs built from the character's data. For every training prompt the
chosen reply is the in-character one and the rejected reply is the antipole's (the plain assistant's) reply to
the same prompt.

Everything else is every LoRA baker's (`base.LoraBaker`): recipe format, LoRA setup, output folder (resumable),
checkpoint selection on the dev split, merges at scales and `candidate.json` lineage (baker "dpo"). There is no
profile step. The reference model is the base itself (the LoRA adapter switched off), and `[loss] beta` is DPO's β.
"""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback

from ...harness.data import Pair
from ...harness.errors import UserError
from ..bake import Bake
from ..recipe import Recipe
from ..trainer import CheckedLoss, Regulariser
from .base import LoraBaker


def preference_pairs(char: list[Pair], anti: list[Pair]) -> list[dict[str, Any]]:
    """Conversational (prompt, chosen, rejected) rows matched by prompt (and system prompt). Every in-character
    prompt needs an antipole reply: a silent drop would train on a subset nobody chose."""
    rejected = {(p.system, p.prompt): p.response for p in anti}
    missing = [p for p in char if (p.system, p.prompt) not in rejected]
    if missing:
        raise UserError(f"dpo: {len(missing)} of {len(char)} in-character prompts have no antipole reply to the same "
                        f"prompt (first: {missing[0].prompt[:80]!r}); DPO pairs the two by prompt")
    rows = []
    for p in char:
        rows.append({"prompt": p.prompt_messages(),
                     "chosen": [{"role": "assistant", "content": p.response}],
                     "rejected": [{"role": "assistant", "content": rejected[(p.system, p.prompt)]}]})
    return rows


class DPOBaker(LoraBaker):
    name = "dpo"
    description = "TRL DPO on in-character (chosen) vs antipole (rejected) replies: train, select by eval, merge"
    label = "dpo"

    def prepare(self, bake: Bake) -> None:
        preference_pairs(bake.char, bake.anti)  # a data error stops the bake before anything is trained
        super().prepare(bake)

    def objective(self, recipe: Recipe) -> str:
        return f"DPO β {recipe.loss.beta:g}, in-character chosen over antipole"

    def create_trainer(self, bake: Bake, model: Any, regulariser: Regulariser | None, args: dict[str, Any],
                       callback: TrainerCallback) -> Any:
        from datasets import Dataset
        from trl import DPOConfig, DPOTrainer

        class CharacterDPOTrainer(CheckedLoss, DPOTrainer):
            pass

        recipe = bake.recipe
        config = DPOConfig(**args, beta=recipe.loss.beta, max_length=recipe.train.max_length,
                           dataset_num_proc=None)
        trainer = CharacterDPOTrainer(model=model, args=config, processing_class=bake.loaded.tokenizer,
                                      train_dataset=Dataset.from_list(preference_pairs(bake.char, bake.anti)),
                                      callbacks=[callback])
        trainer.explode_factor = recipe.loss.explode_factor
        return trainer
