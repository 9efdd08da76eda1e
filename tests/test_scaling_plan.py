"""A plan for GPT-OSS-120B. The plan of a multi-process round computes what each rank holds and the vLLM layout
that scores a candidate, from a config alone (no weights, no torch in the plan path), and refuses a layout that
cannot fit; single-process plans (r4-r6, demo) are untouched. The tracker's profile scales to GPT-OSS-120B's
36 layers x 128 experts."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from character_baker.bakers.recipe import load_recipe
from character_baker.rounds.plan import main, plan
from character_baker.rounds.preflight import (
    PLANNING_CONFIGS,
    check,
    layer_parameter_count,
    parameter_count,
    rank_memory,
    serving_layout,
)

ROOT = Path(__file__).resolve().parent.parent
R7 = ROOT / "rounds" / "r7.toml"
GPT_OSS_120B = json.loads((PLANNING_CONFIGS / "openai--gpt-oss-120b.json").read_text())


@pytest.fixture(autouse=True)
def no_local_bases(monkeypatch: pytest.MonkeyPatch) -> None:
    """Plan from the shipped config whatever the developer's environment points at."""
    for env in ("R6_BASE", "R7_BASE"):
        monkeypatch.delenv(env, raising=False)


def variant(tmp_path: Path, **changes: str) -> Path:
    """A copy of r7.toml with `key = value` lines replaced (each key must appear exactly once)."""
    text = R7.read_text()
    for key, value in changes.items():
        lines = [line for line in text.splitlines() if line.split("=")[0].strip() == key]
        assert len(lines) == 1, key
        text = text.replace(lines[0], f"{key} = {value}")
    out = tmp_path / "r7.toml"
    out.write_text(text)
    return out


def test_the_shipped_config_is_gpt_oss_120b() -> None:
    """The published architecture (36 layers, 128 experts top-4, 2880 wide, 64 heads over 8 KV heads of 64) and its
    parameter count: 116.8B in all ("gpt-oss-120b: 117B parameters"), ~3.2B in each decoder layer."""
    c = GPT_OSS_120B
    assert (c["num_hidden_layers"], c["num_local_experts"], c["num_experts_per_tok"], c["hidden_size"],
            c["intermediate_size"], c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"],
            c["vocab_size"], c["sliding_window"], c["max_position_embeddings"]) == \
        (36, 128, 4, 2880, 2880, 64, 8, 64, 201088, 128, 131072)
    assert c["layer_types"] == ["sliding_attention", "full_attention"] * 18
    assert 116.7e9 < parameter_count(c) < 116.9e9
    assert 3.1e9 < layer_parameter_count(c) < 3.3e9


def test_r7_dry_run_prints_the_per_rank_plan(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(R7), "--dry-run"]) == 0
    out = capsys.readouterr().out
    [rank] = [line for line in out.splitlines() if line.strip().startswith("per rank")]
    [layout] = [line for line in out.splitlines() if line.strip().startswith("vllm layout")]
    assert "8 ranks, zero3" in rank and "(fits)" in rank and "openai--gpt-oss-120b.json" in rank
    assert "MXFP4 experts dequantised for training" in rank and "gathered layer" in rank
    total = float(rank.split("~")[1].split()[0])
    recipe = load_recipe(R7)
    assert total == pytest.approx(rank_memory(GPT_OSS_120B, recipe)["total"], abs=0.05) and total < 80
    assert "tensor parallel 8" in layout and "1 candidate scored at once on 8 GPUs" in layout
    assert "sliding-window layers counted at full length" in layout
    assert "monitored layers [2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30, 32, 34] of 36" in out
    assert "merged bf16 candidates" in out and "dry run: nothing was installed" in out


def test_the_plan_path_imports_no_torch() -> None:
    """The plan runs before the GPU install: no torch (nor transformers) behind `tox -e r7 -- --dry-run`."""
    import os
    import subprocess
    import sys

    code = ("import sys; from character_baker.rounds.plan import main; rc = main(['rounds/r7.toml', '--dry-run']); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers'))); sys.exit(rc)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_two_ranks_are_refused_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The same recipe on 2 ranks: each would hold half the 234 GB of bf16 weights. Refused by the dry run, by the
    real run before anything installs, and by the preconditions a round checks."""
    two = variant(tmp_path, processes="2")
    assert main([str(two), "--dry-run"]) == 2
    captured = capsys.readouterr()
    assert "DOES NOT FIT" in captured.out
    [line] = captured.err.strip().splitlines()
    assert line.startswith(f"character-baker: error: {two}: [distributed] 2 ranks x 80 GB: each rank needs ~")
    need = float(line.split("needs ~")[1].split()[0])
    assert need > 80 and "zero3" in line and "weights 116.8" in line
    assert main([str(two)]) == 2  # the real run: refused before the preconditions and the GPU install
    assert capsys.readouterr().err.strip().splitlines() == [line]
    assert any(p.startswith(f"{two}: [distributed] 2 ranks") for p in check(two))


def test_the_per_rank_figure_falls_as_ranks_grow() -> None:
    recipe = load_recipe(R7)
    figures = {}
    for n in (2, 4, 8, 16):
        recipe.distributed = replace(recipe.distributed, processes=n)
        figures[n] = rank_memory(GPT_OSS_120B, recipe)
    assert figures[2]["total"] > figures[4]["total"] > figures[8]["total"] > figures[16]["total"]
    assert figures[8]["weights"] == pytest.approx(2 * figures[16]["weights"])
    assert figures[8]["lora_optimizer"] == pytest.approx(2 * figures[16]["lora_optimizer"])
    # not sharded: each rank runs its own batch and gathers one whole layer (MoE experts included) at a time
    for key in ("activations", "logits", "gathered"):
        assert figures[8][key] == figures[16][key]
    assert figures[8]["gathered"] == pytest.approx(2 * layer_parameter_count(GPT_OSS_120B) / 1e9)
    assert figures[8]["weights"] == pytest.approx(2 * parameter_count(GPT_OSS_120B) / 8 / 1e9)
    assert figures[2]["total"] > 80 > figures[8]["total"]
    # fsdp shards as zero3 does: the same figures
    recipe.distributed = replace(recipe.distributed, processes=8, strategy="fsdp")
    assert rank_memory(GPT_OSS_120B, recipe)["total"] == pytest.approx(figures[8]["total"])


def test_ddp_with_120b_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """ddp keeps the full bf16 weights on every rank: 234 GB does not fit an 80 GB card, however many ranks."""
    ddp = variant(tmp_path, strategy='"ddp"')
    recipe = load_recipe(ddp)
    figures = rank_memory(GPT_OSS_120B, recipe)
    assert figures["weights"] == pytest.approx(2 * parameter_count(GPT_OSS_120B) / 1e9) and not figures["gathered"]
    assert main([str(ddp), "--dry-run"]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "8 ranks x 80 GB" in line and "(ddp: weights 233.7" in line and 'strategy = "zero3"' in line


def test_the_vllm_layout_is_computed() -> None:
    recipe = load_recipe(R7)
    layout = serving_layout(GPT_OSS_120B, recipe)
    assert layout["tp"] >= 4 and layout["at_once"] == 8 // layout["tp"]
    assert 64 % layout["tp"] == 0 and 8 % layout["tp"] == 0
    assert layout["per_gpu"] <= 0.9 * 80 < (layout["weights"] + layout["kv_cache"]) / (layout["tp"] / 2)
    # K and V, 36 layers, 8 KV heads of 64, bf16: 73,728 bytes a token, for 20480 tokens x 64 requests
    assert layout["kv_per_token"] == 2 * 36 * 8 * 64 * 2
    assert layout["kv_cache"] == pytest.approx(73728 * 20480 * 64 / 1e9)
    # fewer requests in flight: a smaller cache, never a larger layout
    recipe.engine = replace(recipe.engine, max_concurrency=8)
    assert serving_layout(GPT_OSS_120B, recipe)["tp"] <= layout["tp"]
    tiny = dict(model_type="gpt_oss", hidden_size=64, num_hidden_layers=4, num_attention_heads=4,
                num_key_value_heads=2, head_dim=16, vocab_size=512, intermediate_size=64, num_local_experts=4,
                num_experts_per_tok=2, attention_bias=True, max_position_embeddings=1024)
    small = serving_layout(tiny, load_recipe(R7))
    assert small["tp"] == 1 and small["at_once"] == 8


def test_a_tensor_parallel_size_too_small_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A candidate vLLM cannot load is found by the plan, not hours into the round after training."""
    two = variant(tmp_path, tensor_parallel_size="2")
    assert main([str(two), "--dry-run"]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "[engine] tensor_parallel_size = 2" in line and "the smallest that fits is 8" in line


def test_preflight_on_a_node_checks_each_rank_card(monkeypatch: pytest.MonkeyPatch) -> None:
    """On the GPU box, preflight wants one card per rank with the per-rank figure free (not the 240 GB one device
    would need), and serves the candidate split over the recipe's tensor-parallel GPUs."""
    from character_baker.rounds import preflight

    def node(cards: int) -> list[str]:
        monkeypatch.setattr(preflight, "gpus", lambda: [("NVIDIA H100 80GB HBM3", 79.6, 79.0)] * cards)
        return [p for p in check(R7) if "GPU" in p or "rank" in p or "engine" in p or "gpu_memory" in p]

    assert node(8) == []
    [short] = node(4)
    assert "runs 8 ranks on this machine" in short and "4 of the 4 visible GPUs" in short


R6_MEMORY = ("  memory         ~47.8 GB to train, computed from config.json (20.91B parameters): weights 41.8 + LoRA "
             "and AdamW 0.25 + activations 5.8 at batch 4 x 512 tokens, checkpointing on\n"
             "  disk           ~125.5 GB for 3 merged candidates in runs/rounds/r6")


def test_r6_plan_is_unchanged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A single-process recipe keeps its plan: no per-rank or layout lines, no shipped config for GPT-OSS-20B, and,
    from a config-only folder, the single-process memory line (figures of the H200 calibration)."""
    from tests.test_rounds import GPT_OSS_20B

    lines = plan(load_recipe(ROOT / "rounds" / "r6.toml")).splitlines()
    labels = [line.split()[0] for line in lines[1:]]
    assert labels == ["base", "baker", "candidates", "scoring", "board", "output", "memory", "engine", "scoring",
                      "recipe"]
    assert "(base config not found: computed when the weights are present)" in "\n".join(lines)
    folder = tmp_path / "gpt-oss-20b"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(GPT_OSS_20B))
    monkeypatch.setenv("R6_BASE", str(folder))
    text = plan(load_recipe(ROOT / "rounds" / "r6.toml"))
    assert R6_MEMORY in text and "per rank" not in text and "vllm layout" not in text


@pytest.mark.timeout(120)  # ~4 s on the 2-core CPU machine
def test_the_profile_scales_to_36_layers_of_128_experts() -> None:
    """GPT-OSS-120B's shape in small (36 layers, 128 experts, top-4, tiny widths): the monitored layers are 2, 4, ...,
    34 and the routing counts every one of the 128 experts there, 4 picks per assistant token."""
    import torch
    from transformers import GptOssConfig, GptOssForCausalLM

    from character_baker.bakers.architectures import GPT_OSS
    from character_baker.bakers.experts import expert_effects
    from character_baker.bakers.profile import profile_model
    from character_baker.bakers.recipe import ProfileConfig
    from character_baker.harness.character import load_character
    from character_baker.rounds.tiny_models import train_tokenizer

    torch.manual_seed(0)
    tok = train_tokenizer(harmony=True)
    hidden = 32
    config = GptOssConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=hidden, num_hidden_layers=36,
                          num_attention_heads=4, num_key_value_heads=2, head_dim=hidden // 4, num_local_experts=128,
                          num_experts_per_tok=4, max_position_embeddings=1024, sliding_window=128,
                          layer_types=["sliding_attention", "full_attention"] * 18,
                          eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    config._attn_implementation = "eager"
    model = GptOssForCausalLM(config)
    with torch.no_grad():  # GPT-OSS-like router spreads, so that the picks depend on the text
        for layer in model.model.layers:
            layer.mlp.router.weight.mul_(20.0)
    pack = load_character("skippy")
    profile = profile_model(model, tok, GPT_OSS, pack.character_pairs[:6], pack.antipole_pairs[:6],
                            ProfileConfig(units=4, batch_size=6, max_length=128), progress=False)
    monitored = list(range(2, 36, 2))
    assert profile.layers == monitored and sorted(profile.push) == monitored
    routing = profile.routing
    assert routing is not None and routing.layers == monitored and routing.top_k == 4 and routing.n_experts == 128
    for which in ("character", "antipole"):
        counts = routing.counts[which]
        assert counts.shape == (6, len(monitored), 128) and routing.tokens[which].gt(0).all()
        # every assistant token is routed to 4 of the 128 experts in every monitored layer
        assert torch.equal(counts.sum(-1), 4 * routing.tokens[which][:, None].expand(-1, len(monitored)))
    assert (routing.counts["character"] + routing.counts["antipole"]).sum((0, 1)).gt(0).sum() > 64
    effects = expert_effects(routing, reps=20)
    assert effects.delta.shape == (len(monitored), 128)


def test_device_groups_score_models_at_once_in_the_plan(tmp_path: Path) -> None:
    """Two groups of four GPUs at tensor parallel 4: the plan names both and the scoring time halves."""
    alone = load_recipe(variant(tmp_path, tensor_parallel_size="4"))
    text = R7.read_text().replace("tensor_parallel_size = 8 ", 'device_groups = ["0,1,2,3", "4,5,6,7"]\n'
                                  "tensor_parallel_size = 4 ")
    (tmp_path / "groups.toml").write_text(text)
    grouped = load_recipe(tmp_path / "groups.toml")
    from character_baker.rounds.plan import wall_time

    a, b = wall_time(alone, 3), wall_time(grouped, 3)
    assert b["at_once"] == 2 and a["at_once"] == 1
    assert b["hours"] == pytest.approx(a["hours"] / 2)
    out = plan(grouped)
    assert "2 models at once, one server per device group ('0,1,2,3', '4,5,6,7')" in out
    assert ", 2 models at once; training not included" in out
