"""The sdft baker (self-distillation: the base restates each in-character reply, LoRA SFT on the restatements) on a
tiny Qwen3: the targets are the base's own greedy restatements, candidates with lineage selected on dev, resuming."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from character_baker.bakers import get_baker
from character_baker.bakers.lora.sdft import REWRITES, SDFTBaker, rewrite, rewrite_messages
from character_baker.bakers.recipe import load_recipe
from character_baker.harness import loading
from character_baker.harness.character import load_character
from character_baker.harness.loading import generate_batch, load_base

from .test_bakers import assert_selection_saw_dev_only, write_recipe

torch.set_num_threads(1)
PACK = load_character("skippy")


def test_sdft_restates_with_the_base_then_bakes_like_sft(tiny_qwen3_dir: Path, tmp_path: Path) -> None:
    """With a real (random) tiny base: every row is the base's greedy answer to system prompt + reference + the
    user's prompt; a random model only rambles to the token budget, so every target keeps its reference, and says
    so. Then the shared steps: selection on dev, merges with lineage."""
    baker = get_baker("sdft")
    assert isinstance(baker, SDFTBaker)
    baked = baker.bake(load_recipe(write_recipe(tmp_path, tiny_qwen3_dir, baker="sdft")), progress=False)
    out = tmp_path / "out"
    rows = [json.loads(line) for line in (out / REWRITES).read_text().splitlines()]
    char = PACK.character_pairs
    assert len(rows) == len(char) and [r["reference"] for r in rows] == [p.response for p in char]
    base = load_base(str(tiny_qwen3_dir))  # the baker's first batch, regenerated as the same batch of 16
    again = generate_batch(base, [rewrite_messages(PACK.system_prompt, p) for p in char[:16]], max_new_tokens=96)
    assert [(r["generated"], r["finished"]) for r in rows[:16]] == [(t.strip(), not cut) for t, _, _, cut in again]
    assert not any(r["finished"] for r in rows) and not any(r["response"] for r in rows)
    assert [p.response for p in baker._targets] == [p.response for p in char]
    assert [b.lineage["scale"] for b in baked] == [0.5, 1.0, 1.5]
    assert all(b.lineage["baker"] == "sdft" and f"-sdft-step{b.lineage['step']}-" in b.path.name for b in baked)
    assert_selection_saw_dev_only(out, cards=3)
    history = [h for h in json.loads((out / "train" / "done.json").read_text())["log_history"] if "loss" in h]
    assert len(history) == 8 and history[-1]["loss"] < history[0]["loss"]


def test_finished_restatements_become_the_targets(tiny_qwen3_dir: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Which restatement is used: a finished one; not an empty one, one cut by the budget, or a reasoning
    model's that never reached its final channel (the generator stands in for a base that can write)."""
    pairs = PACK.character_pairs[:4]
    said = ["Forty-four, monkey. Obviously.", "   ", "Paris, you primate, and I was cut off mid",
            "<|channel|>analysis<|message|>The user asks about"]
    monkeypatch.setattr(loading, "generate_batch", lambda loaded, conversations, **kw: [
        (said[i], 10, 5, i == 2) for i in range(len(conversations))])
    targets, kept = rewrite(load_base(str(tiny_qwen3_dir)), PACK.system_prompt, pairs, tmp_path / REWRITES,
                            max_new_tokens=16, progress=False)
    assert kept == 3
    assert [t.response for t in targets] == [said[0], pairs[1].response, pairs[2].response, pairs[3].response]
    assert [(t.prompt, t.category) for t in targets] == [(p.prompt, p.category) for p in pairs]


def test_restating_resumes_where_it_stopped(tiny_qwen3_dir: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    base = load_base(str(tiny_qwen3_dir))
    pairs = PACK.character_pairs[:20]
    out = tmp_path / REWRITES
    first, _ = rewrite(base, PACK.system_prompt, pairs, out, max_new_tokens=16, progress=False)
    lines = out.read_text().splitlines()
    out.write_text("\n".join(lines[:16]) + "\n")  # interrupted after the first batch of 16
    asked: list[int] = []

    def counted(loaded, conversations, **kwargs):  # type: ignore[no-untyped-def]
        asked.append(len(conversations))
        return generate_batch(loaded, conversations, **kwargs)

    monkeypatch.setattr(loading, "generate_batch", counted)
    second, kept = rewrite(base, PACK.system_prompt, pairs, out, max_new_tokens=16, progress=False)
    assert asked == [4] and second == first and len(out.read_text().splitlines()) == 20
    assert kept == sum(not json.loads(x)["response"] for x in out.read_text().splitlines())


def test_sdft_is_listed_and_its_plan_names_its_objective(tiny_qwen3_dir: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from character_baker.cli import main
    from character_baker.rounds.plan import plan

    assert main(["bakers"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert {"pushpull", "sft", "dpo", "sdft"} <= set(listed)
    [line] = [x for x in plan(load_recipe(write_recipe(tmp_path, tiny_qwen3_dir, baker="sdft"))).splitlines()
              if x.strip().startswith("baker")]
    assert "profile" not in line and line.endswith("SFT on the base's own restatements, no regulariser")


def test_a_damaged_rewrites_file_is_regenerated_where_it_does_not_read(tiny_qwen3_dir: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """An interrupted write leaves a cut last line; a hand-edited file may hold rows that are not rows. Those are
    generated again (no traceback, nothing trained on garbage), and the next row does not glue onto the cut line."""
    pairs = PACK.character_pairs[:5]
    monkeypatch.setattr(loading, "generate_batch", lambda loaded, conversations, **kw: [
        (f"Restated {len(c[1]['content'])}.", 10, 3, False) for c in conversations])
    out = tmp_path / REWRITES
    good = [json.dumps({"prompt": p.prompt, "reference": p.response, "response": f"Kept {i}."})
            for i, p in enumerate(pairs[:2])]
    out.write_text("\n".join([good[0], "[1, 2, 3]", json.dumps({"prompt": pairs[2].prompt}), "not json at all",
                              good[1], good[0][:40]]))  # the last line cut mid-write, no newline
    targets, kept = rewrite(load_base(str(tiny_qwen3_dir)), PACK.system_prompt, pairs, out, max_new_tokens=8,
                            progress=False)
    assert kept == 0
    assert [t.response for t in targets] == ["Kept 0.", "Kept 1."] + [f"Restated {len(p.prompt)}." for p in pairs[2:]]
    rows = []
    for line in out.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    assert [r["prompt"] for r in rows if isinstance(r, dict) and "reference" in r][-3:] == [p.prompt for p in pairs[2:]]
