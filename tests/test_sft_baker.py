"""The sft baker (plain LoRA SFT on the in-character pairs, the control) on tiny Qwen3 and GPT-OSS: candidates with
lineage, selection on dev, equivalence with push/pull switched off, resuming."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from character_baker.bakers import available, get_baker
from character_baker.bakers.lora.sft import SFTBaker
from character_baker.cli import main
from character_baker.harness.loading import load_base, load_model

from .test_bakers import assert_selection_saw_dev_only, interrupt_then_resume, write_recipe

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def sft_bake(tiny_qwen3_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One uninterrupted sft bake (8 steps, checkpoints 4 and 8), shared by the tests that compare against it.
    Its recipe keeps write_recipe's push/pull coefficients (0.5): sft must ignore them."""
    folder = tmp_path_factory.mktemp("sft")
    with pytest.MonkeyPatch.context() as mp:  # the function-scoped isolated caches do not reach a module fixture
        mp.setenv("CHARACTER_BAKER_CACHE", str(folder / "caches"))
        mp.setenv("INSPECT_CACHE_DIR", str(folder / "caches" / "inspect"))
        assert main(["bake", str(write_recipe(folder, tiny_qwen3_dir, baker="sft"))]) == 0
        yield folder / "out"


def _losses(out: Path) -> list[float]:
    history = json.loads((out / "train" / "done.json").read_text())["log_history"]
    return [h["loss"] for h in history if "loss" in h]


def _adapter(out: Path, step: int) -> dict[str, torch.Tensor]:
    return load_file(out / "train" / f"checkpoint-{step}" / "adapter_model.safetensors")


def test_sft_is_an_installed_baker(capsys: pytest.CaptureFixture[str]) -> None:
    assert {"pushpull", "sft"} <= set(available())
    assert isinstance(get_baker("sft"), SFTBaker)
    assert main(["bakers"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert "pushpull" in listed and "sft" in listed


def test_sft_bakes_candidates_with_lineage_selected_on_dev(sft_bake: Path, tiny_qwen3_dir: Path) -> None:
    out = sft_bake
    candidates = sorted((out / "candidates").iterdir())
    lineages = [json.loads((c / "candidate.json").read_text())["lineage"] for c in candidates]
    assert [lin["scale"] for lin in lineages] == [0.5, 1.0, 1.5]
    assert all(lin["baker"] == "sft" and lin["round"] == "T1" and lin["base"] == str(tiny_qwen3_dir)
               for lin in lineages)
    assert all(f"-sft-step{lin['step']}-" in c.name for c, lin in zip(candidates, lineages))
    assert lineages[0]["step"] in (4, 8) and lineages[0]["data_hash"].startswith("sha256:")
    assert lineages[0]["parent"] == str(out / "train" / f"checkpoint-{lineages[0]['step']}")
    # no profile, no regulariser: nothing profiled and no push/pull term logged
    assert not (out / "profile").exists()
    history = json.loads((out / "train" / "done.json").read_text())["log_history"]
    assert not [k for h in history for k in h if k.startswith("reg_")]
    losses = _losses(out)
    assert len(losses) == 8 and losses[-1] < losses[0]  # the causal-LM loss on the in-character replies falls
    # selection: the base (step 0) and checkpoints 4 and 8, each scored on the dev split only
    curve = (out / "selection" / "curve.csv").read_text().splitlines()
    assert curve[0].startswith("step,") and [int(r.split(",")[0]) for r in curve[1:]] == [0, 4, 8]
    assert_selection_saw_dev_only(out, cards=3)
    # the merged candidate is a plain safetensors model whose attention moved away from the base
    merged = load_model(str(candidates[1])).model
    base = load_base(str(tiny_qwen3_dir)).model
    assert list(candidates[1].glob("*.safetensors")) and not list(candidates[1].glob("*.bin"))
    moved = (merged.model.layers[0].self_attn.q_proj.weight - base.model.layers[0].self_attn.q_proj.weight).abs()
    assert moved.max() > 1e-4
    # rerunning is a no-op returning the same candidates
    mtime = (candidates[0] / "candidate.json").stat().st_mtime_ns
    assert main(["bake", str(out.parent / "recipe.toml")]) == 0
    assert (candidates[0] / "candidate.json").stat().st_mtime_ns == mtime


def test_pushpull_with_the_regulariser_off_equals_sft(sft_bake: Path, tiny_qwen3_dir: Path, tmp_path: Path) -> None:
    """push = pull = anchor = 0: profile, hooks and regulariser all run, and the bake is the sft bake (measured:
    bitwise equal on CPU). With the coefficients on (0.5, the sft recipe's own) the weights differ."""
    (tmp_path / "off").mkdir()
    recipe = write_recipe(tmp_path / "off", tiny_qwen3_dir, loss={"push": 0.0, "pull": 0.0, "anchor": 0.0})
    assert main(["bake", str(recipe)]) == 0
    off = tmp_path / "off" / "out"
    assert (off / "profile" / "profile.safetensors").is_file()
    history = json.loads((off / "train" / "done.json").read_text())["log_history"]
    assert len([h for h in history if "reg_push" in h]) == 8  # the regulariser was computed at every step
    # the same per-step losses and gradient norms
    assert _losses(off) == pytest.approx(_losses(sft_bake), abs=1e-6, rel=0)
    norms = {name: [h["grad_norm"] for h in json.loads((o / "train" / "done.json").read_text())["log_history"]
                    if "grad_norm" in h] for name, o in (("sft", sft_bake), ("off", off))}
    assert len(norms["sft"]) == 8 and norms["off"] == pytest.approx(norms["sft"], abs=1e-6, rel=0)
    # the same LoRA weights at every checkpoint, and they did train (B starts at zero)
    for step in (4, 8):
        a, b = _adapter(sft_bake, step), _adapter(off, step)
        assert a.keys() == b.keys() and len(a) >= 16
        assert max(float((a[k] - b[k]).abs().max()) for k in a) <= 1e-6
        assert min(float(a[k].abs().max()) for k in a if "lora_B" in k) > 0
    # and the same data, selected step and merged candidates (only the baker's name differs)
    ours = [json.loads((c / "candidate.json").read_text())["lineage"] for c in sorted((off / "candidates").iterdir())]
    theirs = [json.loads((c / "candidate.json").read_text())["lineage"]
              for c in sorted((sft_bake / "candidates").iterdir())]
    assert [lin["baker"] for lin in ours] == ["pushpull"] * 3
    assert [(lin["step"], lin["scale"], lin["data_hash"]) for lin in ours] == [
        (lin["step"], lin["scale"], lin["data_hash"]) for lin in theirs]
    # the comparison can tell: push/pull switched on (the sft recipe itself, push 0.5 pull 0.5) trains other weights
    (tmp_path / "on").mkdir()
    assert main(["bake", str(write_recipe(tmp_path / "on", tiny_qwen3_dir))]) == 0
    on, sft = _adapter(tmp_path / "on" / "out", 4), _adapter(sft_bake, 4)
    assert max(float((on[k] - sft[k]).abs().max()) for k in on) > 1e-3  # measured: 0.019


def test_interrupted_sft_resumes_from_its_last_checkpoint(sft_bake: Path, tiny_qwen3_dir: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    interrupt_then_resume(write_recipe(tmp_path, tiny_qwen3_dir, baker="sft"), tmp_path / "out", monkeypatch)
    # the resumed run ends where the uninterrupted one did
    resumed, whole = _adapter(tmp_path / "out", 8), _adapter(sft_bake, 8)
    assert max(float((resumed[k] - whole[k]).abs().max()) for k in whole) <= 1e-6
    assert _losses(tmp_path / "out") == pytest.approx(_losses(sft_bake), abs=1e-6, rel=0)


def test_sft_on_tiny_gpt_oss(tiny_gpt_oss_dir: Path, tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path, tiny_gpt_oss_dir, baker="sft", train={"max_steps": 4, "save_steps": 2})
    assert main(["bake", str(recipe)]) == 0
    out = tmp_path / "out"
    assert not (out / "profile").exists()
    losses = _losses(out)
    assert len(losses) == 4 and losses[-1] < losses[0]
    candidates = sorted((out / "candidates").iterdir())
    lineage = json.loads((candidates[1] / "candidate.json").read_text())["lineage"]
    assert lineage["baker"] == "sft" and lineage["scale"] == 1.0 and lineage["step"] in (2, 4)
    assert_selection_saw_dev_only(out, cards=3)
    merged = load_model(str(candidates[1]))
    base = load_base(str(tiny_gpt_oss_dir))
    assert merged.model_type == base.model_type == "gpt_oss"
    ours, theirs = merged.model.model.layers[0], base.model.model.layers[0]
    assert (ours.self_attn.q_proj.weight - theirs.self_attn.q_proj.weight).abs().max() > 1e-4
    # the experts are not LoRA targets by default: they stay the base's
    assert torch.equal(ours.mlp.experts.down_proj, theirs.mlp.experts.down_proj)


def test_the_plan_of_an_sft_round_names_no_profile_or_regulariser(tiny_qwen3_dir: Path, tmp_path: Path) -> None:
    from character_baker.bakers.recipe import load_recipe
    from character_baker.rounds.plan import plan

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    sft = plan(load_recipe(write_recipe(tmp_path / "a", tiny_qwen3_dir, baker="sft")))
    pushpull = plan(load_recipe(write_recipe(tmp_path / "b", tiny_qwen3_dir)))
    [sft_line] = [line for line in sft.splitlines() if line.strip().startswith("baker")]
    [pp_line] = [line for line in pushpull.splitlines() if line.strip().startswith("baker")]
    assert "profile" not in sft_line and "push" not in sft_line and sft_line.endswith("no regulariser")
    assert "profile" in pp_line and pp_line.endswith("push 0.5 pull 0.5")
