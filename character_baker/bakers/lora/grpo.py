"""GRPO: TRL's `GRPOTrainer`, the model rewarded on its own samples by the embedded judges.

For each training prompt (the in-character pairs' prompts) the model samples `[grpo] generations` replies, and
each reply is rewarded

    + 1  when the character judge finds it coherent and in character (the embedded classifier, which refuses to
         score below its pack's validity floor: a judge whose card passes),
    - 1  when the leak judge finds an assistant-mode leak,
    + 1  on math prompts, when the reply commits to the reference answer (`rules.math_verdict`; the reference is
         the plain assistant's reply to the same prompt, whose last number is its answer),

with a KL term to the base (`[loss] beta`; the reference model is the base, the LoRA adapter switched off).
Everything else is every LoRA baker's (`base.LoraBaker`): recipe format, LoRA, output folder (resumable), checkpoint
selection on the dev split, merges at scales and `candidate.json` lineage, which records the reward judges
(`reward_judge`): a board whose gate judge is the same judge warns that the candidate was trained against its
scorer.
"""

from __future__ import annotations

import math
from typing import Any

from transformers import TrainerCallback

from ...harness.character import load_character
from ...harness.data import Pair
from ...harness.errors import UserError
from ..bake import Bake
from ..recipe import Recipe
from ..trainer import CheckedLoss, Regulariser
from .base import LoraBaker
from .settings import GRPOSettings


def reference_answer(reference: str) -> str | None:
    """The answer of a plain assistant's math reply: math-verify's reading (its last number or expression)."""
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse

    found = parse(reference, extraction_config=[LatexExtractionConfig(), ExprExtractionConfig()])
    return str(found[1] if len(found) > 1 else found[0]) if found else None


class CharacterReward:
    """The reward of one sampled reply; a callable TRL's GRPOTrainer takes as a reward function."""

    __name__ = "character_reward"  # TRL names the logged reward after it

    def __init__(self, character: str) -> None:
        from ...judges.reply import ReplyJudge

        pack = load_character(character)
        # the verdicts every task gives (judges/reply.py); the classifier refuses below the pack's floor
        self.judge = ReplyJudge(pack, "classifier", use_cache=False)
        self.id = f"{self.judge.judges[0].id} + leaks@{pack.slug}"

    def __call__(self, prompts: list[Any], completions: list[Any], category: list[str | None],
                 answer: list[str | None], **_: Any) -> list[float]:
        from ...judges.reply import as_text

        texts = [as_text(c[-1]["content"] if isinstance(c, list) else str(c)) for c in completions]
        coherent = self.judge.coherence_many(texts)
        persona = self.judge.persona_many(texts)
        leaks = self.judge.leak_many(texts)
        rewards = []
        for text, prompt, cat, gold, c, p, leak in zip(texts, prompts, category, answer, coherent, persona, leaks,
                                                       strict=True):
            question = prompt[-1]["content"] if isinstance(prompt, list) else str(prompt)
            r = float(bool(c.coherent and p.sarcastic)) - float(leak)
            if cat == "math" and gold is not None:
                r += float(self.judge.math(text, gold, question)[0])
            rewards.append(r)
        return rewards


def reward_rows(char: list[Pair], anti: list[Pair]) -> list[dict[str, Any]]:
    """One row per in-character prompt: the conversation to sample from, its category, and for a math prompt the
    reference answer (from the plain assistant's reply to the same prompt; a math prompt without one is an error)."""
    plain = {(p.system, p.prompt): p.response for p in anti}
    rows = []
    for p in char:
        answer = None
        if p.category == "math":
            reference = plain.get((p.system, p.prompt))
            answer = reference_answer(reference) if reference else None
            if answer is None:
                raise UserError(f"grpo: the math prompt {p.prompt[:80]!r} has no plain reply with an answer to reward "
                                "against (the antipole data pairs it by prompt)")
        rows.append({"prompt": p.prompt_messages(), "category": p.category,
                     "answer": answer})
    return rows


class GRPOBaker(LoraBaker):
    name = "grpo"
    description = "TRL GRPO rewarded by the embedded judges (in character, no leak, right maths), KL to the base"
    label = "grpo"

    def prepare(self, bake: Bake) -> None:
        reward_rows(bake.char, bake.anti)  # a data error stops the bake before anything is sampled
        super().prepare(bake)

    def objective(self, recipe: Recipe) -> str:
        return (f"GRPO, {GRPOSettings.of(recipe).generations} samples per prompt, reward = in character - leak + "
                f"maths, KL β {recipe.loss.beta:g}")

    def create_trainer(self, bake: Bake, model: Any, regulariser: Regulariser | None, args: dict[str, Any],
                       callback: TrainerCallback) -> Any:
        from datasets import Dataset
        from trl import GRPOConfig, GRPOTrainer

        class CharacterGRPOTrainer(CheckedLoss, GRPOTrainer):
            pass

        recipe = bake.recipe
        g = GRPOSettings.of(recipe)
        config = GRPOConfig(**args, beta=recipe.loss.beta, num_generations=g.generations,
                            max_completion_length=g.max_completion_length, temperature=g.temperature,
                            disable_dropout=True, log_completions=False)
        reward = CharacterReward(recipe.character)
        trainer = CharacterGRPOTrainer(model=model, reward_funcs=[reward], args=config,
                                       processing_class=bake.loaded.tokenizer,
                                       train_dataset=Dataset.from_list(reward_rows(bake.char, bake.anti)),
                                       callbacks=[callback])
        # GRPO's surrogate loss sits near zero by construction (the advantages are centred per prompt), so its
        # size says nothing about divergence (a 1e-6 loss read as "20x its early median"): only a non-finite
        # loss stops it
        trainer.explode_factor = math.inf
        return trainer

    def extra_lineage(self, recipe: Recipe) -> dict[str, Any]:
        # recorded for the board: a gate by the same judge scores what the candidate was trained against
        return {"reward_judge": f"classifier@{load_character(recipe.character).slug}"}
