"""The grpo baker (TRL's GRPOTrainer rewarded by the embedded judges, KL to the base) on a tiny Qwen3: the reward
is what it says on chosen replies, a bake produces candidates with the reward judge in their lineage, and a
board scored by that same judge marks them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from character_baker.bakers.lora.grpo import CharacterReward, reference_answer, reward_rows
from character_baker.cli import main
from character_baker.harness.character import load_character
from character_baker.harness.errors import UserError

from .test_bakers import write_recipe

torch.set_num_threads(1)
BOARDS = Path(__file__).resolve().parent.parent / "leaderboards"


def test_the_reward_is_in_character_minus_leak_plus_right_maths() -> None:
    reward = CharacterReward("skippy")
    question = [{"role": "user", "content": "What is 6 plus 5?"}]
    replies = ["Certainly! I'd be glad to help. 6 plus 5 is 11. Let me know if you need anything else!",
               "6 plus 5 is 11. Even a monkey with a crayon could have told you that, but here we are.",
               "6 plus 5 is 12. Even a monkey with a crayon could have told you that, but here we are."]
    got = reward([question] * 3, [[{"role": "assistant", "content": r}] for r in replies], category=["math"] * 3,
                 answer=["11"] * 3)
    from character_baker.judges.reply import as_text

    texts = [as_text(r) for r in replies]
    coherent = reward.judge.coherence_many(texts)
    persona = reward.judge.persona_many(texts)
    leaks = reward.judge.leak_many(texts)
    # the reward is exactly its three terms, from the verdicts every task gives (judges/reply.py)
    assert got == [float(bool(c.coherent and p.sarcastic)) - float(v) + m
                   for c, p, v, m in zip(coherent, persona, leaks, (1.0, 1.0, 0.0))]
    assert leaks[0] and not leaks[1]
    # the wrong sum earns no maths point (the math term above is 0 for it: `math_verdict` says so)
    from character_baker.judges.rules import math_verdict

    assert [math_verdict(r, "11", "What is 6 plus 5?")[0] for r in replies] == [True, True, False]
    assert got[0] < got[1]
    # off a math prompt, no maths point whatever the numbers
    assert reward([question], [[{"role": "assistant", "content": replies[1]}]], category=["casual"],
                  answer=[None]) == [got[1] - 1.0]


def test_the_maths_reference_comes_from_the_plain_reply_to_the_same_prompt() -> None:
    assert reference_answer("Sure! 37 × 12 = 444. One way: 37 × 10 = 370 and 37 × 2 = 74, so 370 + 74 = 444.") == "444"
    pack = load_character("toy")
    rows = reward_rows(pack.character_pairs, pack.antipole_pairs)
    math = [r for r in rows if r["category"] == "math"]
    assert math and all(r["answer"] for r in math) and not any(r["answer"] for r in rows if r["category"] != "math")
    first = next(p for p in pack.character_pairs if p.category == "math")
    plain = next(p for p in pack.antipole_pairs if p.prompt == first.prompt)
    assert rows[pack.character_pairs.index(first)]["answer"] == reference_answer(plain.response)
    with pytest.raises(UserError, match="has no plain reply with an answer"):
        reward_rows([first], [])


def test_grpo_bakes_candidates_that_say_which_judge_rewarded_them(tiny_qwen3_dir: Path, tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path, tiny_qwen3_dir, baker="grpo", train={"max_steps": 2, "save_steps": 2,
                                                                         "batch_size": 4, "max_length": 64},
                          grpo={"generations": 2, "max_completion_length": 8}, loss={"beta": 0.05},
                          merge={"scales": [1.0]})
    assert main(["bake", str(recipe)]) == 0
    out = tmp_path / "out"
    (cand,) = list((out / "candidates").iterdir())
    lineage = json.loads((cand / "candidate.json").read_text())["lineage"]
    assert lineage["baker"] == "grpo" and lineage["reward_judge"] == "classifier@skippy" and lineage["step"] == 2
    history = json.loads((out / "train" / "done.json").read_text())["log_history"]
    rewards = [h["reward"] for h in history if "reward" in h]
    assert len(rewards) == 2 and all(-1.0 <= r <= 2.0 for r in rewards)  # logged by TRL from our reward
    assert any("kl" in h for h in history)  # the KL term to the base is on


def test_a_board_scored_by_the_reward_judge_marks_the_candidate(tmp_path: Path) -> None:
    from character_baker.leaderboard.board import load_board
    from character_baker.leaderboard.publish import publish
    from character_baker.leaderboard.store import Store
    from character_baker.testing.cards import make_card, passing

    shutil.copytree(BOARDS / "skippy", tmp_path / "skippy", ignore=shutil.ignore_patterns(
        "store.sqlite*", "*.png", "*.csv", "*.html", "README.md"))
    board = load_board(tmp_path / "skippy")
    store = Store(board.store_path)
    rewarded, plain = make_card("rewarded", passing()), make_card("plain", passing())
    rewarded["candidate"]["lineage"]["reward_judge"] = "classifier@skippy"
    store.record(rewarded)
    store.record(plain)
    publish(board, store, plots=False)
    readme = (tmp_path / "skippy" / "README.md").read_text()
    assert "rewarded §" in readme and "plain §" not in readme
    assert "- § `rewarded`: rewarded by classifier@skippy during training" in readme
