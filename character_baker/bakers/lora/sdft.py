"""SDFT, self-distillation: the base model restates each in-character reply in its own words, and LoRA SFT trains
on those restatements instead of the references.

The base gets the character's system prompt and the reference reply, then the user's prompt. Its answer is the
training target, so the targets stay in the base's own distribution (the research log's SDFT). An empty
restatement, one cut off by the token budget, or a reasoning model's that never reached its final answer keeps the
reference instead; the count is reported. The restatements are written to `<output>/rewrites.jsonl` as they
come, so an interrupted bake resumes them. Everything after that is the `sft` baker's (`base.LoraBaker`, on
other pairs: `train_pairs`): same recipe format, selection on dev, merges at the recipe's scales (the log's sweet
spot was a partial merge, 0.5) and `candidate.json` lineage (baker "sdft").
"""

from __future__ import annotations

import json
from pathlib import Path

from ...harness import loading
from ...harness.character import load_character
from ...harness.data import Pair
from ...harness.loading import Loaded, split_harmony
from ..bake import Bake
from ..distributed import main_first
from ..recipe import Recipe
from .base import LoraBaker

REWRITES = "rewrites.jsonl"
BATCH = 16

INSTRUCTION = ("{system}\n\nA reply in your voice to the user's next message:\n\n{reference}\n\nAnswer the user's "
               "next message yourself. Say what that reply says, in your own words and in the same voice.")


def rewrite_messages(system: str, pair: Pair) -> list[dict[str, str]]:
    """The conversation the base answers to restate `pair.response`."""
    return [{"role": "system", "content": INSTRUCTION.format(system=system.strip(), reference=pair.response)},
            {"role": "user", "content": pair.prompt}]


def rewrite(loaded: Loaded, system: str, pairs: list[Pair], out: Path, max_new_tokens: int,
            progress: bool = True) -> tuple[list[Pair], int]:
    """The pairs with the base's restatements as responses (greedy), and how many kept their reference. Rows
    already in `out` for the same prompt and reference are reused."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    done = _restated(out)
    todo = [p for p in pairs if (p.prompt, p.response) not in done]
    with out.open("a", encoding="utf-8") as f, Progress(TextColumn("  rewrite"), BarColumn(), MofNCompleteColumn(),
                                                       TimeRemainingColumn(), disable=not progress) as bar:
        task = bar.add_task("rewrite", total=len(pairs), completed=len(pairs) - len(todo))
        for start in range(0, len(todo), BATCH):
            batch = todo[start:start + BATCH]
            results = loading.generate_batch(loaded, [rewrite_messages(system, p) for p in batch],
                                             max_new_tokens=max_new_tokens)
            for p, (text, _, _, hit_budget) in zip(batch, results):
                said = _final_answer(text)
                # a restatement cut by the token budget would teach the model to stop mid-sentence
                usable = said if said and not hit_budget else ""
                done[(p.prompt, p.response)] = usable
                f.write(json.dumps({"prompt": p.prompt, "reference": p.response, "response": usable,
                                    "generated": said, "finished": not hit_budget, "category": p.category}) + "\n")
            f.flush()
            bar.advance(task, len(batch))
    restated = [done[(p.prompt, p.response)] for p in pairs]
    kept = sum(not r for r in restated)
    return [Pair(p.prompt, r or p.response, p.category, p.id, p.system) for p, r in zip(pairs, restated)], kept


def _restated(out: Path) -> dict[tuple[str, str], str]:
    """(prompt, reference) -> restatement, from the rows an earlier run wrote. A row that does not read (a line
    cut by an interrupted write, a hand-edited one) is generated again, and a cut last line is closed first so the
    next row starts on a line of its own."""
    done: dict[tuple[str, str], str] = {}
    if not out.is_file():
        return done
    text = out.read_text(encoding="utf-8")
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and all(isinstance(row.get(k), str) for k in ("prompt", "reference", "response")):
            done[(row["prompt"], row["reference"])] = row["response"]
    if text and not text.endswith("\n"):
        with out.open("a", encoding="utf-8") as f:
            f.write("\n")
    return done


def _final_answer(text: str) -> str:
    """The reply itself: a harmony model's final channel ("" when it never got there), or the plain text."""
    harmony = split_harmony(text)
    if harmony is None:
        return text.strip()
    return "" if harmony.truncated else (harmony.final or "").strip()


class SDFTBaker(LoraBaker):
    name = "sdft"
    description = "self-distillation: the base restates each in-character reply; LoRA SFT on those; merge"
    label = "sdft"

    def prepare(self, bake: Bake) -> None:
        """The restatements (the "rewrite" step), after the skipped "profile" step."""
        super().prepare(bake)
        recipe, steps = bake.recipe, bake.steps
        steps.start("rewrite", f"the base restates {len(bake.char)} in-character replies in its own words")
        system = load_character(recipe.character).system_prompt
        with main_first():  # as ranks: rank 0 restates, the others read its file
            pairs, kept = rewrite(bake.loaded, system, bake.char, recipe.output / REWRITES, recipe.train.max_length,
                                  bake.progress)
        self._targets = pairs
        steps.note(f"{len(pairs) - kept} restated, {kept} kept as written (empty or unfinished restatement): "
                   f"{recipe.output / REWRITES}")

    def objective(self, recipe: Recipe) -> str:
        return "causal-LM loss on the base's own restatements of the in-character replies"

    def train_pairs(self, bake: Bake) -> list[Pair]:
        return self._targets
