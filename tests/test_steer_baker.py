"""The steer baker (contrastive activation vectors written into the attention output bias) on tiny Qwen3 and
GPT-OSS: the vector is the profile's mean difference, the checkpoint computes exactly the base plus that vector in
the residual stream, and it is a plain model every scorer loads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from character_baker.bakers.architectures import resolve
from character_baker.bakers.profile import Profile
from character_baker.cli import main
from character_baker.harness.loading import load_base

from .test_bakers import write_recipe

torch.set_num_threads(1)


def _bake(tmp_path: Path, base: Path, **sections: dict) -> tuple[Path, list[Path]]:  # type: ignore[type-arg]
    tmp_path.mkdir(parents=True, exist_ok=True)
    recipe = write_recipe(tmp_path, base, baker="steer", **sections)
    assert main(["bake", str(recipe)]) == 0
    out = tmp_path / "out"
    return out, sorted((out / "candidates").iterdir(), key=lambda c: json.loads(
        (c / "candidate.json").read_text())["lineage"]["scale"])


def _logits(model: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_steering_adds_the_profiles_mean_difference_to_the_residual_stream(tiny_qwen3_dir: Path,
                                                                          tmp_path: Path) -> None:
    out, candidates = _bake(tmp_path, tiny_qwen3_dir)
    profile = Profile.load(out / "profile")
    lineages = [json.loads((c / "candidate.json").read_text())["lineage"] for c in candidates]
    assert [lin["scale"] for lin in lineages] == [0.5, 1.0, 1.5]
    assert all(lin["baker"] == "steer" and lin["data_hash"].startswith("sha256:") for lin in lineages)
    (layer,) = lineages[0]["layers"]
    assert layer in profile.layers and not (out / "train").exists()  # nothing trained
    # the default layer: the largest contrast relative to the activations' spread
    contrast = {i: float((profile.mean_character[i] - profile.mean_antipole[i]).norm()
                         / profile.sd[i].pow(2).mean().sqrt()) for i in profile.layers}
    assert layer == max(contrast, key=contrast.__getitem__)
    d = (profile.mean_character[layer] - profile.mean_antipole[layer]).float()
    assert d.norm() > 0

    base = load_base(str(tiny_qwen3_dir)).model.eval()
    ids = torch.randint(5, base.config.vocab_size, (2, 12), generator=torch.Generator().manual_seed(0))
    plain = _logits(base, ids)
    for cand, lin in zip(candidates, lineages):
        c = lin["scale"]
        assert torch.allclose(load_file(cand / "steering.safetensors")[f"layer.{layer}"], c * d)
        assert list(cand.glob("*.safetensors")) and not list(cand.glob("*.bin"))
        steered = load_base(str(cand)).model.eval()
        assert steered.config.attention_bias is True
        # the base with c·d added to layer `layer`'s attention output by a hook computes the same logits
        attn = base.model.layers[layer].self_attn
        handle = attn.register_forward_hook(lambda m, a, o, c=c: (o[0] + c * d,) + tuple(o[1:]))
        try:
            hooked = _logits(base, ids)
        finally:
            handle.remove()
        got = _logits(steered, ids)
        assert torch.allclose(got, hooked, atol=1e-4), (got - hooked).abs().max()
        assert (got - plain).abs().max() > 1e-3  # and it moved
        # every other bias is zero: the same function as the base, plus the vector
        for i, lay in enumerate(steered.model.layers):
            for proj in ("q_proj", "k_proj", "v_proj") + (("o_proj",) if i != layer else ()):
                assert getattr(lay.self_attn, proj).bias.abs().max() == 0
    # rerunning is a no-op returning the same candidates
    mtime = (candidates[0] / "candidate.json").stat().st_mtime_ns
    assert main(["bake", str(tmp_path / "recipe.toml")]) == 0
    assert (candidates[0] / "candidate.json").stat().st_mtime_ns == mtime


def test_chosen_layers_and_a_bad_layer(tiny_qwen3_dir: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    out, candidates = _bake(tmp_path / "a", tiny_qwen3_dir, steer={"layers": [1, 3]}, merge={"scales": [2.0]})
    (cand,) = candidates
    assert json.loads((cand / "candidate.json").read_text())["lineage"]["layers"] == [1, 3]
    assert set(load_file(cand / "steering.safetensors")) == {"layer.1", "layer.3"}
    (tmp_path / "b").mkdir()
    recipe = write_recipe(tmp_path / "b", tiny_qwen3_dir, baker="steer", steer={"layers": [7]})
    assert main(["bake", str(recipe)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "[steer] layers must be among the profiled layers [1, 2, 3]" in err[0]


def test_gpt_oss_keeps_its_own_attention_biases(tiny_gpt_oss_dir: Path, tmp_path: Path) -> None:
    out, candidates = _bake(tmp_path, tiny_gpt_oss_dir, merge={"scales": [1.0]})
    (cand,) = candidates
    layer = json.loads((cand / "candidate.json").read_text())["lineage"]["layers"][0]
    vector = load_file(cand / "steering.safetensors")[f"layer.{layer}"]
    base = load_base(str(tiny_gpt_oss_dir)).model
    steered = load_base(str(cand)).model
    arch = resolve("auto", "gpt_oss")
    for i, (a, b) in enumerate(zip(arch.layers(base), arch.layers(steered))):
        want = a.self_attn.o_proj.bias + (vector if i == layer else 0)
        assert torch.allclose(b.self_attn.o_proj.bias.float(), want.float(), atol=1e-5)
        assert torch.equal(a.self_attn.q_proj.bias, b.self_attn.q_proj.bias)


def test_the_plan_says_what_steering_does(tiny_qwen3_dir: Path, tmp_path: Path) -> None:
    from character_baker.bakers.recipe import load_recipe
    from character_baker.rounds.plan import plan

    recipe = load_recipe(write_recipe(tmp_path, tiny_qwen3_dir, baker="steer", steer={"layers": [2]}))
    text = plan(recipe)
    [line] = [x for x in text.splitlines() if x.strip().startswith("baker")]
    assert "attention output bias at layers [2]; no training" in line and "LoRA" not in line
    assert "coefficients 0.5, 1, 1.5 -> 3 candidates" in text
