"""The dpo baker (TRL's DPOTrainer: in-character replies chosen over the antipole's) on a tiny Qwen3: candidates
with lineage, selection on dev, the preference actually learned, pairs matched by prompt, resuming."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from character_baker.bakers import get_baker
from character_baker.bakers.lora.dpo import DPOBaker, preference_pairs
from character_baker.cli import main
from character_baker.harness.character import load_character
from character_baker.harness.data import Pair
from character_baker.harness.errors import UserError
from character_baker.harness.loading import load_base, load_model

from .test_bakers import assert_selection_saw_dev_only, interrupt_then_resume, write_recipe

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def dpo_bake(tiny_qwen3_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One uninterrupted dpo bake (8 steps, checkpoints 4 and 8, β 0.1)."""
    folder = tmp_path_factory.mktemp("dpo")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CHARACTER_BAKER_CACHE", str(folder / "caches"))
        mp.setenv("INSPECT_CACHE_DIR", str(folder / "caches" / "inspect"))
        assert main(["bake", str(write_recipe(folder, tiny_qwen3_dir, baker="dpo"))]) == 0
        yield folder / "out"


def _history(out: Path) -> list[dict]:  # type: ignore[type-arg]
    return [h for h in json.loads((out / "train" / "done.json").read_text())["log_history"] if "loss" in h]


def _reply_logp(model: torch.nn.Module, tokenizer: object, pair: Pair, reply: str) -> float:
    """Summed log-probability of `reply` after the chat-rendered prompt."""
    messages = [{"role": "user", "content": pair.prompt}]
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)  # type: ignore[attr-defined]
    full = tokenizer.apply_chat_template(messages + [{"role": "assistant", "content": reply}],  # type: ignore[attr-defined]
                                         tokenize=False)
    p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]  # type: ignore[operator]
    ids = torch.tensor([p_ids + tokenizer(full[len(prompt):], add_special_tokens=False)["input_ids"]])  # type: ignore[operator]
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, :-1].float().log_softmax(-1)
    targets = ids[0, 1:]
    return float(logits[len(p_ids) - 1:].gather(1, targets[len(p_ids) - 1:, None]).sum())


def test_dpo_is_an_installed_baker(capsys: pytest.CaptureFixture[str]) -> None:
    assert isinstance(get_baker("dpo"), DPOBaker)
    assert main(["bakers"]) == 0
    assert "dpo" in [line.split()[0] for line in capsys.readouterr().out.splitlines()]


def test_dpo_learns_the_preference_and_bakes_candidates_selected_on_dev(dpo_bake: Path, tiny_qwen3_dir: Path) -> None:
    out = dpo_bake
    candidates = sorted((out / "candidates").iterdir())
    lineages = [json.loads((c / "candidate.json").read_text())["lineage"] for c in candidates]
    assert [lin["scale"] for lin in lineages] == [0.5, 1.0, 1.5]
    assert all(lin["baker"] == "dpo" and lin["base"] == str(tiny_qwen3_dir) for lin in lineages)
    assert all(f"-dpo-step{lin['step']}-" in c.name for c, lin in zip(candidates, lineages))
    assert not (out / "profile").exists()
    # TRL's DPO loss starts at log 2 (the policy is the reference) and the reward margin opens up
    history = _history(out)
    assert len(history) == 8 and history[0]["loss"] == pytest.approx(0.6931, abs=1e-3)
    assert history[-1]["loss"] < history[0]["loss"] and history[-1]["rewards/margins"] > 0
    assert_selection_saw_dev_only(out, cards=3)
    # measured independently of TRL: on training pairs, the merged model prefers the in-character reply over the
    # antipole reply by more than the base did
    pack = load_character("skippy")
    rejected = {p.prompt: p.response for p in pack.antipole_pairs}
    pairs = pack.character_pairs[:12]
    merged, base = load_model(str(candidates[1])), load_base(str(tiny_qwen3_dir))

    def margin(loaded) -> float:  # type: ignore[no-untyped-def]
        return sum(_reply_logp(loaded.model, loaded.tokenizer, p, p.response)
                   - _reply_logp(loaded.model, loaded.tokenizer, p, rejected[p.prompt]) for p in pairs) / len(pairs)

    assert margin(merged) > margin(base) + 0.05  # measured: base -47.7 nats, the x1 candidate -45.8


def test_dpo_pairs_by_prompt_and_says_which_prompt_has_no_rejected_reply(tiny_qwen3_dir: Path, tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    char = [Pair("What is 2+2?", "4, monkey."), Pair("Capital of France?", "Paris, obviously.")]
    anti = [Pair("Capital of France?", "The capital of France is Paris. Happy to help!"),
            Pair("What is 2+2?", "2 + 2 = 4. Let me know if you need anything else!")]
    rows = preference_pairs(char, anti)
    assert [r["rejected"][0]["content"] for r in rows] == [anti[1].response, anti[0].response]
    assert rows[0]["prompt"] == [{"role": "user", "content": "What is 2+2?"}]
    with pytest.raises(UserError, match=r"1 of 2 in-character prompts have no antipole reply.*Capital of France"):
        preference_pairs(char, anti[1:])
    # through the CLI: one line, exit 2, nothing trained
    pack = load_character("skippy")
    (tmp_path / "anti.jsonl").write_text("".join(json.dumps({"prompt": p.prompt, "response": p.response}) + "\n"
                                                 for p in pack.antipole_pairs[1:]))
    recipe = write_recipe(tmp_path, tiny_qwen3_dir, baker="dpo", data={"antipole": str(tmp_path / "anti.jsonl")})
    assert main(["bake", str(recipe)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no antipole reply" in err[0] and "Traceback" not in err[0]
    assert not (tmp_path / "out" / "train").exists()


def test_interrupted_dpo_resumes_from_its_last_checkpoint(dpo_bake: Path, tiny_qwen3_dir: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from trl import DPOTrainer

    interrupt_then_resume(write_recipe(tmp_path, tiny_qwen3_dir, baker="dpo"), tmp_path / "out", monkeypatch,
                          trainer=DPOTrainer)
    resumed = [h["loss"] for h in _history(tmp_path / "out")]
    assert resumed == pytest.approx([h["loss"] for h in _history(dpo_bake)], abs=1e-5, rel=0)


def test_the_plan_of_a_dpo_round_names_its_loss_and_counts_both_replies(tiny_qwen3_dir: Path, tmp_path: Path) -> None:
    from character_baker.bakers.recipe import load_recipe
    from character_baker.rounds.plan import plan
    from character_baker.rounds.preflight import memory_budget

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    dpo = load_recipe(write_recipe(tmp_path / "a", tiny_qwen3_dir, baker="dpo", loss={"beta": 0.25}))
    sft = load_recipe(write_recipe(tmp_path / "b", tiny_qwen3_dir, baker="sft"))
    [line] = [x for x in plan(dpo).splitlines() if x.strip().startswith("baker")]
    assert "profile" not in line and line.endswith("DPO beta 0.25, in-character chosen over antipole")
    config = json.loads((tiny_qwen3_dir / "config.json").read_text())
    # chosen and rejected side by side: the activations of twice the sequences, the same weights and LoRA state
    ours, theirs = memory_budget(config, dpo), memory_budget(config, sft)
    assert ours["weights"] == theirs["weights"] and ours["lora_optimizer"] == theirs["lora_optimizer"]
    assert ours["activations"] == pytest.approx(2 * theirs["activations"], rel=0.01)
