"""The push/pull baker on tiny Qwen3, Qwen3-VL and GPT-OSS: profiling, the regulariser, training, selection, merge."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from character_baker.bakers.architectures import resolve
from character_baker.bakers.examples import collate, encode
from character_baker.bakers.profile import LayerHooks, Profile
from character_baker.bakers.recipe import LossConfig, ProfileConfig, load_recipe
from character_baker.bakers.trainer import Regulariser
from character_baker.cli import main
from character_baker.harness.character import load_character
from character_baker.harness.loading import load_base, load_model

BOARD = Path(__file__).resolve().parent.parent / "leaderboards" / "skippy"
PACK = load_character("skippy")


def write_recipe(tmp_path: Path, base: Path, baker: str = "pushpull", **sections: dict) -> Path:  # type: ignore[type-arg]
    parts = {
        "": {"round": "T1", "baker": baker, "character": "skippy", "output": str(tmp_path / "out")},
        "model": {"base": str(base)},
        "profile": {"units": 8, "skip_first": 1, "every": 1},
        "train": {"max_steps": 8, "save_steps": 4, "batch_size": 8, "learning_rate": 3e-3, "lora_r": 4,
                  "max_length": 96},
        "loss": {"push": 0.5, "pull": 0.5},
        "select": {"board": str(BOARD), "limit": 3, "max_tokens": 12},
    }
    for name, values in sections.items():
        parts.setdefault(name, {}).update(values)
    lines = []
    for name, values in parts.items():
        if name:
            lines.append(f"[{name}]")
        for k, v in values.items():
            lines.append(f"{k} = {json.dumps(v) if not isinstance(v, float) or v == v else 'nan'}")
    path = tmp_path / "recipe.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def assert_selection_saw_dev_only(out: Path, cards: int) -> None:
    """Every checkpoint scorecard of a bake was scored on the dev split: no eval prompt reaches selection."""
    dev = {p.id for kind in ("identity", "personality", "math_probes") for p in PACK.prompts(kind, "dev")}
    evals = {p.id for p in PACK.identity_prompts + PACK.personality_prompts + PACK.math_probes}
    found = [json.loads(c.read_text()) for c in (out / "selection" / "runs").glob("*/scorecard.json")]
    seen = {pid for c in found for per_metric in c["samples"].values() for ids in per_metric.values() for pid in ids}
    assert len(found) == cards and all(c["suite"]["split"] == "dev" for c in found)
    assert seen and seen <= dev and not seen & evals


@pytest.fixture(scope="session")
def tiny_gpt_oss_mxfp4_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from character_baker.testing.mxfp4 import tiny_gpt_oss_mxfp4

    return tiny_gpt_oss_mxfp4(tmp_path_factory.mktemp("models") / "tiny-gpt-oss-mxfp4")


@pytest.mark.parametrize("fixture", ["tiny_qwen3_dir", "tiny_qwen3_vl_dir", "tiny_gpt_oss_dir",
                                     "tiny_gpt_oss_mxfp4_dir"])
def test_bake_end_to_end(fixture: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    base = request.getfixturevalue(fixture)
    recipe = write_recipe(tmp_path, base)
    assert main(["bake", str(recipe)]) == 0
    out = tmp_path / "out"
    candidates = sorted((out / "candidates").iterdir())
    assert [json.loads((c / "candidate.json").read_text())["lineage"]["scale"] for c in candidates] == [0.5, 1.0, 1.5]
    lineage = json.loads((candidates[0] / "candidate.json").read_text())["lineage"]
    assert lineage["round"] == "T1" and lineage["baker"] == "pushpull" and lineage["base"] == str(base)
    assert lineage["step"] in (4, 8) and lineage["data_hash"].startswith("sha256:")
    assert (out / "profile" / "profile.md").read_text().startswith("# Neuron profile")
    curve = (out / "selection" / "curve.csv").read_text().splitlines()
    assert curve[0].startswith("step,") and len(curve) == 4  # steps 0 (base), 4, 8
    assert (out / "selection" / "curve.png").read_bytes()[:4] == b"\x89PNG"
    assert_selection_saw_dev_only(out, cards=3)
    # the push/pull term falls during training
    history = json.loads((out / "train" / "done.json").read_text())["log_history"]
    push = [h["reg_push"] for h in history if "reg_push" in h]
    assert len(push) == 8 and push[-1] < push[0]
    # every merged candidate is a plain safetensors model dir the harness can load
    for c in candidates:
        assert list(c.glob("*.safetensors")) and not list(c.glob("*.bin"))
    loaded = load_model(str(candidates[1]))
    assert loaded.model_type == load_base(str(base)).model_type
    if fixture.startswith("tiny_gpt_oss"):
        assert "## Experts: personality and assistant" in (out / "profile" / "profile.md").read_text()
        for c in candidates:  # every MoE candidate reports how its routing moved from the base's
            assert "routing_shift" in json.loads((c / "candidate.json").read_text())["lineage"]
        # merged MXFP4 bases are saved as the plain weights they were dequantised to
        assert "quantization_config" not in json.loads((candidates[1] / "config.json").read_text())
    # rerunning the same recipe is a no-op that returns the same candidates
    mtime = (candidates[0] / "candidate.json").stat().st_mtime_ns
    assert main(["bake", str(recipe)]) == 0
    assert (candidates[0] / "candidate.json").stat().st_mtime_ns == mtime


def test_profiling_stats_equal_a_one_shot_computation(tiny_qwen3_dir: Path) -> None:
    from character_baker.bakers.profile import profile_model

    loaded = load_base(str(tiny_qwen3_dir))
    arch = resolve("auto", loaded.model_type)
    char = [p for p in PACK.character_pairs if p.category == "math"][:10]
    anti = [p for p in PACK.antipole_pairs if p.category == "math"][:10]
    cfg = ProfileConfig(layers=[1, 3], units=4, batch_size=3, max_length=96)
    prof = profile_model(loaded.model, loaded.tokenizer, arch, char, anti, cfg, progress=False)
    # one shot: every example in one batch, all assistant-token activations concatenated, plain torch stats
    hooks = LayerHooks(arch.layers(loaded.model), [1, 3])
    acts = {}
    for name, pairs in (("character", char), ("antipole", anti)):
        batch = collate([encode(loaded.tokenizer, p, 96) for p in pairs], loaded.tokenizer.pad_token_id)
        with torch.no_grad(), hooks.capture() as outputs:
            loaded.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        mask = batch["labels"] != -100
        acts[name] = {layer: h[mask].double() for layer, h in outputs.items()}
    for layer in (1, 3):
        c, a = acts["character"][layer], acts["antipole"][layer]
        assert torch.allclose(prof.mean_character[layer].double(), c.mean(0), atol=1e-5)
        assert torch.allclose(prof.mean_antipole[layer].double(), a.mean(0), atol=1e-5)
        pooled = ((len(c) * c.var(0, unbiased=False) + len(a) * a.var(0, unbiased=False)) / (len(c) + len(a))).sqrt()
        assert torch.allclose(prof.sd[layer].double(), pooled + 1e-6, atol=1e-4)
        d = (c.mean(0) - a.mean(0)) / (pooled + 1e-6)
        assert torch.allclose(prof.effect[layer].double(), d, atol=1e-3)
        assert set(prof.push[layer].tolist()) == set(torch.topk(d, 4).indices.tolist())
    assert prof.tokens["character/math"] == int(sum(len(encode(loaded.tokenizer, p, 96).labels) -
                                                    encode(loaded.tokenizer, p, 96).labels.count(-100) for p in char))


def test_regulariser_gradient_reaches_the_lora_weights(tiny_qwen3_dir: Path) -> None:
    from character_baker.bakers.profile import profile_model
    from character_baker.bakers.trainer import lora_model

    loaded = load_base(str(tiny_qwen3_dir))
    arch = resolve("auto", loaded.model_type)
    prof = profile_model(loaded.model, loaded.tokenizer, arch, PACK.character_pairs[:24], PACK.antipole_pairs[:24],
                         ProfileConfig(layers=[2, 3], units=4), progress=False)
    model = lora_model(loaded.model, 4, 8, 0.0, list(arch.lora_targets))
    for name, p in model.named_parameters():  # B starts at zero: give it a value so A gets a gradient too
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.02)
    reg = Regulariser(prof, arch.layers(model), LossConfig(push=1.0, pull=1.0), "cpu")
    batch = collate([encode(loaded.tokenizer, p, 96) for p in PACK.character_pairs[:4]], loaded.tokenizer.pad_token_id)
    with reg.hooks.capture() as outputs:
        model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    total, parts = reg(outputs, batch["labels"] != -100)
    assert total.requires_grad and parts["push"] > 0
    total.backward()  # the regulariser alone: no SFT loss in this graph
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    # LoRA in layers at or below the deepest monitored layer get gradient; above it there is nothing to push
    reached = [n for n, g in grads.items() if g is not None and g.abs().sum() > 0]
    assert any(".layers.2." in n for n in reached) and any(".layers.0." in n for n in reached)
    # the tiny model has 4 layers and the deepest monitored one is layer 3: every LoRA weight sits below it
    assert set(reached) == set(grads) and len(reached) >= 8


@pytest.mark.parametrize("fixture", ["tiny_qwen3_dir", "tiny_qwen3_vl_dir", "tiny_gpt_oss_dir"])
def test_merged_equals_scaled_adapter(fixture: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    from peft import LoraConfig, PeftModel, get_peft_model
    from peft.helpers import rescale_adapter_scale

    base = request.getfixturevalue(fixture)
    torch.manual_seed(0)
    model = load_base(str(base)).model
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    peft_model.save_pretrained(tmp_path / "adapter")
    ids = torch.tensor([[3, 17, 42, 7, 99, 5]])
    for scale in (0.5, 1.5):
        merged = load_model(str(base), adapter=str(tmp_path / "adapter"), scale=scale).model
        adapter = PeftModel.from_pretrained(load_base(str(base)).model, tmp_path / "adapter").eval()
        with torch.no_grad(), rescale_adapter_scale(adapter, scale):
            expected = adapter(input_ids=ids).logits
        with torch.no_grad():
            got = merged(input_ids=ids).logits
        assert torch.allclose(got, expected, atol=1e-4), (got - expected).abs().max()


@pytest.mark.parametrize(
    "change, message",
    [
        ({"model": {"architecture": "mamba"}}, "unknown architecture 'mamba'"),
        ({"data": {"character": "missing.jsonl"}}, "no such file"),
        ({"profile": {"layers": [1, 99]}}, "monitored layer index 99 is out of range: the model has 4 decoder layers"),
        ({"train": {"lora_r": "big"}}, "[train].lora_r: expected int, got str"),
        ({"train": {"epochs": 3}}, "unknown key 'epochs'"),
    ],
)
def test_bad_recipes_get_clear_errors(change: dict, message: str, tiny_qwen3_dir: Path, tmp_path: Path,  # type: ignore[type-arg]
                                      capsys: pytest.CaptureFixture[str]) -> None:
    recipe = write_recipe(tmp_path, tiny_qwen3_dir, **change)
    assert main(["bake", str(recipe)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and err.count("\n") == 0 and "Traceback" not in err


def test_nan_loss_stops_with_a_clear_message(tiny_qwen3_dir: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    recipe = write_recipe(tmp_path, tiny_qwen3_dir, loss={"push": float("nan")})
    assert main(["bake", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert "training stopped: loss is not finite at step 1" in err and "last good checkpoint: none" in err


def interrupt_then_resume(recipe: Path, out: Path, monkeypatch: pytest.MonkeyPatch,
                          trainer: type | None = None) -> None:
    """Bake `recipe`, interrupted at step 6 (exit 130), then again: the rerun must resume after checkpoint-4,
    train only steps 5-8 and not re-score checkpoint 4. Shared by every LoRA baker's resume test (`trainer`: the
    baker's Trainer class, PushPullTrainer by default)."""
    from character_baker.bakers.trainer import PushPullTrainer

    PushPullTrainer = trainer or PushPullTrainer  # noqa: N806
    real_step = PushPullTrainer.training_step

    def interrupted(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        if self.state.global_step == 6:
            raise KeyboardInterrupt
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(PushPullTrainer, "training_step", interrupted)
    assert main(["bake", str(recipe)]) == 130
    train = out / "train"
    assert (train / "checkpoint-4").is_dir() and not (train / "done.json").exists()
    marker = out / "selection" / "step-4.json"
    evaluated = marker.stat().st_mtime_ns
    calls: list[int] = []

    def counted(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(self.state.global_step)
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(PushPullTrainer, "training_step", counted)
    assert main(["bake", str(recipe)]) == 0
    assert calls == [4, 5, 6, 7]  # resumed after checkpoint-4: only steps 5-8 were trained again
    history = json.loads((train / "done.json").read_text())["log_history"]
    assert [h["step"] for h in history if "loss" in h] == list(range(1, 9))
    assert marker.stat().st_mtime_ns == evaluated  # checkpoint 4 was not re-evaluated


def test_interrupted_training_resumes_from_its_last_checkpoint(tiny_qwen3_dir: Path, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    interrupt_then_resume(write_recipe(tmp_path, tiny_qwen3_dir), tmp_path / "out", monkeypatch)


def test_profile_cli_and_recipe_of_another_bake(tiny_qwen3_dir: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    recipe = write_recipe(tmp_path, tiny_qwen3_dir)
    assert main(["profile", str(recipe)]) == 0
    prof = Profile.load(tmp_path / "out" / "profile")
    assert prof.layers == [1, 2, 3] and all(len(prof.push[layer]) == 8 for layer in prof.layers)
    assert load_recipe(recipe).hash() == prof.meta["recipe_hash"]
    other = write_recipe(tmp_path, tiny_qwen3_dir, train={"learning_rate": 1e-3})
    capsys.readouterr()
    assert main(["bake", str(other)]) == 2
    assert "holds a bake of another recipe" in capsys.readouterr().err


def test_gpt_oss_expert_lora_bakes_and_merges(tiny_gpt_oss_dir: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    bad = write_recipe(tmp_path, tiny_gpt_oss_dir, train={"expert_lora": True})
    assert main(["bake", str(bad)]) == 2
    assert "expert_lora needs lora_dropout = 0" in capsys.readouterr().err
    recipe = write_recipe(tmp_path, tiny_gpt_oss_dir, train={"expert_lora": True, "lora_dropout": 0.0})
    assert main(["bake", str(recipe)]) == 0
    adapter = json.loads((tmp_path / "out" / "train" / "checkpoint-8" / "adapter_config.json").read_text())
    assert set(adapter["target_parameters"]) == {"mlp.experts.gate_up_proj", "mlp.experts.down_proj"}
    merged = sorted((tmp_path / "out" / "candidates").iterdir())
    base_experts = load_base(str(tiny_gpt_oss_dir)).model.model.layers[0].mlp.experts.down_proj
    assert not torch.equal(load_model(str(merged[1])).model.model.layers[0].mlp.experts.down_proj, base_experts)
