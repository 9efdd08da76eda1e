"""MoE-aware baking. The per-expert profile finds experts planted in a tiny GPT-OSS (bf16 and MXFP4),
router steering writes exactly the bias it reports, expert-targeted LoRA leaves unpicked experts at the base's
weights, push/pull combines with router steering, and every MoE candidate carries a routing-shift report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from character_baker.bakers.architectures import GPT_OSS
from character_baker.bakers.examples import collate, encode
from character_baker.bakers.experts import (
    Routes,
    Routing,
    expert_effects,
    pick_experts,
    routing_shift,
    stability,
)
from character_baker.bakers.profile import Profile
from character_baker.cli import main
from character_baker.harness.character import load_character
from character_baker.harness.loading import load_base, load_model
from tests.test_bakers import write_recipe

torch.set_num_threads(1)
PLANTED_LAYER, UP, DOWN = 1, 5, 2


def plant(model_dir: Path, layer: int = PLANTED_LAYER, up: int = UP, down: int = DOWN, strength: float = 4.0) -> Path:
    """Give one expert of `layer` a router row along the in-character minus assistant direction of that router's
    input (and another the opposite row): a model whose personality expert is known."""
    pack = load_character("skippy")
    loaded = load_base(str(model_dir))
    router = GPT_OSS.layers(loaded.model)[layer].mlp.router
    seen: list[torch.Tensor] = []
    handle = router.register_forward_hook(lambda m, a, o: seen.append(a[0].detach()))
    sets = []
    for pairs in (pack.character_pairs, pack.antipole_pairs):
        rows = []
        for i in range(0, len(pairs), 16):
            batch = collate([encode(loaded.tokenizer, p, 96) for p in pairs[i:i + 16]], loaded.tokenizer.pad_token_id)
            seen.clear()
            with torch.no_grad():
                loaded.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
            rows.append(seen[0][(batch["labels"] != -100).reshape(-1)])
        sets.append(torch.cat(rows))
    handle.remove()
    direction = sets[0].mean(0) - sets[1].mean(0)
    unit = direction / direction.norm()
    spread = float((torch.cat(sets) @ unit).std())
    for f in sorted(model_dir.glob("*.safetensors")):
        tensors = load_file(str(f))
        key = f"model.layers.{layer}.mlp.router.weight"
        if key in tensors:
            w = tensors[key].clone()
            w[up] = (strength / spread) * unit.to(w.dtype)
            w[down] = -(strength / spread) * unit.to(w.dtype)
            tensors[key] = w
            save_file(tensors, str(f), metadata={"format": "pt"})
    return model_dir


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from character_baker.rounds.tiny_models import tiny_gpt_oss

    return plant(tiny_gpt_oss(tmp_path_factory.mktemp("models") / "planted", experts=8))


@pytest.fixture(scope="module")
def planted_mxfp4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from character_baker.testing.mxfp4 import tiny_gpt_oss_mxfp4

    return plant(tiny_gpt_oss_mxfp4(tmp_path_factory.mktemp("models") / "planted-mxfp4", experts=8))


def synthetic(char_rate: float, anti_rate: float, n: int = 40, tokens: int = 50, cats: int = 2) -> Routing:
    """One layer, three experts, top-1: expert 0 takes `char_rate` of in-character tokens and `anti_rate` of
    assistant tokens; expert 2 the rest; expert 1 is never used."""
    def one(rate: float) -> tuple[torch.Tensor, torch.Tensor]:
        counts = torch.zeros(n, 1, 3)
        counts[:, 0, 0] = round(rate * tokens)
        counts[:, 0, 2] = tokens - round(rate * tokens)
        return counts, counts * 0.5

    c, a = one(char_rate), one(anti_rate)
    category = torch.arange(n) % cats
    return Routing(layers=[3], categories=[f"c{i}" for i in range(cats)], top_k=1, logit_sd=torch.tensor([2.0]),
                   tokens={"character": torch.full((n,), float(tokens)), "antipole": torch.full((n,), float(tokens))},
                   category={"character": category, "antipole": category}, counts={"character": c[0], "antipole": a[0]},
                   gates={"character": c[1], "antipole": a[1]})


def test_expert_effects_are_the_risk_difference_with_an_interval() -> None:
    eff = expert_effects(synthetic(0.8, 0.2))
    assert torch.allclose(eff.delta[0], torch.tensor([0.6, 0.0, -0.6]))
    assert eff.low[0, 0] > 0.5 and eff.high[0, 2] < -0.5  # every example agrees: a narrow interval
    assert float(eff.gate_character[0, 0]) == pytest.approx(0.5)
    assert pick_experts(synthetic(0.8, 0.2), 2) == {3: {"personality": [0], "assistant": [2]}}
    assert stability(synthetic(0.8, 0.2), {3: {"personality": [0], "assistant": [2]}}) == {(3, 0): "2/2",
                                                                                            (3, 2): "2/2"}


def test_no_expert_is_picked_when_routing_does_not_differ() -> None:
    """Equal rates, or the same noisy per-reply shares dealt to both sets in another order: Δ is 0, its interval
    straddles 0, and nothing is picked (a spread of 0-100 % per reply must not read as a difference)."""
    assert pick_experts(synthetic(0.5, 0.5), 2) == {3: {"personality": [], "assistant": []}}
    noisy = synthetic(0.5, 0.5)
    gen = torch.Generator().manual_seed(0)
    share = torch.randint(0, 51, (40,), generator=gen).float()
    for s, order in (("character", torch.arange(40)), ("antipole", torch.randperm(40, generator=gen))):
        noisy.counts[s][:, 0, 0], noisy.counts[s][:, 0, 2] = share[order], 50 - share[order]
    eff = expert_effects(noisy)
    assert float(eff.delta[0, 0]) == pytest.approx(0.0, abs=1e-6) and eff.low[0, 0] < 0 < eff.high[0, 0]
    assert pick_experts(noisy, 2) == {3: {"personality": [], "assistant": []}}


def test_the_profile_finds_the_planted_experts_and_reports_them(planted: Path, planted_mxfp4: Path,
                                                               tmp_path: Path) -> None:
    for name, model in (("bf16", planted), ("mxfp4", planted_mxfp4)):
        (tmp_path / name).mkdir()
        recipe = write_recipe(tmp_path / name, model, baker="router", router={"strengths": [1.0]})
        assert main(["profile", str(recipe)]) == 0
        profile = Profile.load(tmp_path / name / "out" / "profile")
        assert profile.routing is not None and profile.routing.top_k == 2
        picks = pick_experts(profile.routing, 2)
        assert UP in picks[PLANTED_LAYER]["personality"] and DOWN in picks[PLANTED_LAYER]["assistant"], (name, picks)
        md = (tmp_path / name / "out" / "profile" / "profile.md").read_text()
        assert "## Experts: personality and assistant" in md and f"e{UP}: +" in md
        import pandas as pd

        table = pd.read_csv(tmp_path / name / "out" / "profile" / "experts.csv")
        assert set(table.category) == {"all", *profile.routing.categories}
        row = table[(table.layer == PLANTED_LAYER) & (table.expert == UP) & (table.category == "all")].iloc[0]
        assert row.delta == pytest.approx(row.freq_character - row.freq_antipole) and row.ci_low > 0
        # frequencies are shares of tokens whose top-k holds the expert: they sum to k over the experts
        per_layer = table[table.category == "all"].groupby("layer").freq_character.sum()
        assert per_layer.round(4).eq(2.0).all()


@pytest.mark.parametrize("fixture", ["planted", "planted_mxfp4"])
def test_router_steering_writes_the_bias_it_reports(fixture: str, request: pytest.FixtureRequest,
                                                    tmp_path: Path) -> None:
    planted = request.getfixturevalue(fixture)
    recipe = write_recipe(tmp_path, planted, baker="router", router={"strengths": [1.0, 2.0]},
                          experts={"per_layer": 1})
    assert main(["bake", str(recipe)]) == 0
    out = tmp_path / "out"
    routing = Profile.load(out / "profile").routing
    assert routing is not None
    cands = sorted((out / "candidates").iterdir())
    assert [c.name.rsplit("-", 1)[1] for c in cands] == ["x1", "x2"]
    base = load_base(str(planted)).model
    for cand, strength in zip(cands, (1.0, 2.0), strict=True):
        lineage = json.loads((cand / "candidate.json").read_text())["lineage"]
        assert lineage["baker"] == "router" and lineage["router_strength"] == strength
        assert lineage["experts"][str(PLANTED_LAYER)] == {"personality": [UP], "assistant": [DOWN]}
        steered = load_model(str(cand)).model
        pos = routing.layers.index(PLANTED_LAYER)
        added = (GPT_OSS.layers(steered)[PLANTED_LAYER].mlp.router.bias
                 - GPT_OSS.layers(base)[PLANTED_LAYER].mlp.router.bias).float()
        expected = torch.zeros(8)
        expected[UP], expected[DOWN] = strength * routing.logit_sd[pos], -strength * routing.logit_sd[pos]
        assert torch.allclose(added, expected, atol=2e-2), added  # the router bias is bf16
        assert torch.allclose(load_file(str(cand / "router.safetensors"))[f"layer.{PLANTED_LAYER}"], expected)
        # the routing moved toward the personality expert on the eval prompts, and the report says so
        shift = json.loads((cand / "routing_shift.json").read_text())
        layer = next(x for x in shift["layers"] if x["layer"] == PLANTED_LAYER)
        assert UP in [e for e, _ in layer["more"]] and layer["tv"] > 0
        assert lineage["routing_shift"]["mean_tv"] == shift["mean_tv"] > 0
        assert (cand / "routing_shift.md").read_text().startswith("# Routing shift")
    # rerunning the recipe keeps what is done
    before = (cands[0] / "model.safetensors").stat().st_mtime_ns
    assert main(["bake", str(recipe)]) == 0
    assert (cands[0] / "model.safetensors").stat().st_mtime_ns == before


def test_routing_shift_is_zero_against_itself_and_refuses_other_prompts() -> None:
    gen = torch.Generator().manual_seed(0)
    counts = torch.randint(0, 10, (12, 2, 4), generator=gen).float()
    routes = Routes([0, 1], torch.full((12,), 20.0), counts, 2, [f"p{i}" for i in range(12)])
    same = routing_shift(routes, routes)
    assert same["mean_tv"] == 0 and same["experts_shifted"] == 0
    moved = counts.clone()
    moved[:, 1, 0] += 5
    moved[:, 1, 3] -= torch.minimum(moved[:, 1, 3], torch.full((12,), 5.0))
    shift = routing_shift(routes, Routes([0, 1], routes.tokens, moved, 2, routes.prompts))
    assert shift["max_tv_layer"] == 1 and shift["layers"][0]["tv"] == 0
    assert [e for e, _ in shift["layers"][1]["more"]] == [0]
    from character_baker.harness.errors import UserError

    with pytest.raises(UserError, match="different prompts"):
        routing_shift(routes, Routes([0, 1], routes.tokens, counts, 2, ["other"] * 12))


@pytest.mark.parametrize(("baker", "fixture"), [("pushpull", "planted"), ("sft", "planted_mxfp4")])
def test_expert_lora_on_the_profiles_experts_with_router_steering(baker: str, fixture: str,
                                                                  request: pytest.FixtureRequest,
                                                                  tmp_path: Path) -> None:
    """`expert_lora = "profile"`: LoRA only on the picked experts (the others exactly the base's after training and
    merging), in push/pull and in its control; `[router] combine`: each merge scale gives the plain candidate and
    a router-steered twin."""
    planted = request.getfixturevalue(fixture)
    recipe = write_recipe(tmp_path, planted, baker=baker,
                          train={"expert_lora": "profile", "lora_dropout": 0.0, "max_steps": 4, "save_steps": 4,
                                 "learning_rate": 1e-2},
                          experts={"per_layer": 1}, router={"combine": True, "strengths": [1.5]},
                          merge={"scales": [1.0]})
    assert main(["bake", str(recipe)]) == 0
    out = tmp_path / "out"
    routing = Profile.load(out / "profile").routing
    assert routing is not None
    picks = pick_experts(routing, 1)
    adapter = json.loads((out / "train" / "checkpoint-4" / "adapter_config.json").read_text())
    picked_layers = [layer for layer, p in picks.items() if p["personality"] or p["assistant"]]
    assert sorted(adapter["target_parameters"]) == sorted(f"layers.{layer}.{param}" for layer in picked_layers
                                                          for param in GPT_OSS.expert_parameters)
    plain, twin = sorted((out / "candidates").iterdir())
    assert twin.name == plain.name + "-r1.5"
    base = GPT_OSS.layers(load_base(str(planted)).model)
    merged = GPT_OSS.layers(load_model(str(plain)).model)
    changed = 0
    for layer in range(len(base)):
        chosen = set(picks.get(layer, {}).get("personality", [])) | set(picks.get(layer, {}).get("assistant", []))
        for param in ("gate_up_proj", "down_proj"):
            for e in range(8):
                same = torch.equal(getattr(base[layer].mlp.experts, param)[e],
                                   getattr(merged[layer].mlp.experts, param)[e])
                assert same != (e in chosen), (layer, param, e)  # picked experts trained, every other one frozen
                changed += not same
    assert changed == 2 * sum(len(set(p["personality"]) | set(p["assistant"])) for p in picks.values())
    steered = GPT_OSS.layers(load_model(str(twin)).model)
    lineage = json.loads((twin / "candidate.json").read_text())["lineage"]
    assert lineage["router_strength"] == 1.5 and "router_strength" not in json.loads(
        (plain / "candidate.json").read_text())["lineage"]
    pos = routing.layers.index(PLANTED_LAYER)
    added = (steered[PLANTED_LAYER].mlp.router.bias - merged[PLANTED_LAYER].mlp.router.bias).float()
    assert float(added[UP]) == pytest.approx(1.5 * float(routing.logit_sd[pos]), abs=2e-2)
    assert torch.equal(steered[0].mlp.experts.down_proj, merged[0].mlp.experts.down_proj)
    for cand in (plain, twin):
        assert "routing_shift" in json.loads((cand / "candidate.json").read_text())["lineage"]


def test_moe_options_on_the_wrong_model_or_values_are_one_line_errors(tiny_qwen3_dir: Path, tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    cases = [
        (dict(baker="router"), "the router baker steers a mixture of experts; qwen3 has no router"),
        (dict(train={"expert_lora": "profile", "lora_dropout": 0.0}), "are for MoE models; qwen3 has no router"),
        (dict(train={"expert_lora": "some", "lora_dropout": 0.0}), "expert_lora = 'some': use 'none', 'all'"),
        (dict(router={"strengths": []}), "[router] strengths must be a non-empty list"),
        (dict(router={"strengths": [-1.0]}), "[router] strengths must be a non-empty list"),
        (dict(experts={"per_layer": 0}), "[experts] per_layer must be at least 1"),
        (dict(experts={"per_layr": 2}), "per_layr"),
    ]
    for i, (sections, message) in enumerate(cases):
        (tmp_path / str(i)).mkdir()
        recipe = write_recipe(tmp_path / str(i), tiny_qwen3_dir, **sections)
        assert main(["bake", str(recipe)]) == 2, sections
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_legacy_expert_lora_booleans_still_read() -> None:
    from character_baker.bakers.recipe import load_recipe

    for path, expected in (("rounds/r6.toml", "none"), ("rounds/r6-experts.toml", "profile")):
        assert load_recipe(path).train.expert_lora == expected


def test_the_board_shows_each_moe_candidates_routing_shift(tmp_path: Path) -> None:
    """The lineage's routing-shift summary reaches the published README, escaped like every stored text."""
    import shutil

    from character_baker.leaderboard.board import load_board
    from character_baker.leaderboard.publish import publish
    from character_baker.leaderboard.store import Store
    from character_baker.testing.cards import make_card, passing

    boards = Path(__file__).resolve().parent.parent / "leaderboards"
    shutil.copytree(boards / "skippy", tmp_path / "skippy", ignore=shutil.ignore_patterns(
        "store.sqlite*", "*.png", "*.csv", "*.html", "README.md"))
    board = load_board(tmp_path / "skippy")
    store = Store(board.store_path)
    moe, dense = make_card("moe", passing()), make_card("dense", passing())
    moe["candidate"]["lineage"]["routing_shift"] = {"prompts": 40, "mean_tv": 0.0312, "max_tv": 0.125,
                                                    "max_tv_layer": "7|<b>", "experts_shifted": 9}
    store.record(moe)
    store.record(dense)
    publish(board, store, plots=False)
    readme = (tmp_path / "skippy" / "README.md").read_text()
    section = readme.split("## Routing shift (mixture-of-experts candidates)")[1]
    assert "| moe | 0.0312 | 0.1250 (7\\|&lt;b&gt;) | 9 | 40 |" in section
    assert "dense" not in section.split("\n## ")[0]


def test_a_router_round_scores_boards_and_shows_the_routing_shift(planted: Path, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """The router baker's candidates go through a round like any baker's: scored, recorded, gated, published,
    with each one's routing shift on the board."""
    from tests.test_rounds import round_recipe

    recipe = round_recipe(tmp_path, planted)
    text = recipe.read_text().replace('baker = "pushpull"', 'baker = "router"')
    recipe.write_text(text + "\n[router]\nstrengths = [1.0]\n[experts]\nper_layer = 1\n")
    assert main(["round", str(recipe), "--dry-run"]) == 0
    assert "router strengths 1 -> 1 candidates + the base" in capsys.readouterr().out
    code = main(["round", str(recipe)])
    assert code in (0, 1)
    readme = (tmp_path / "board" / "README.md").read_text()
    assert "t1-planted-router-x1" in readme and "## Routing shift (mixture-of-experts candidates)" in readme
    section = readme.split("## Routing shift")[1].split("\n## ")[0]
    assert "| t1-planted-router-x1-" in section and "| base |" not in section


def test_the_moe_recipes_plan_what_they_run(capsys: pytest.CaptureFixture[str]) -> None:
    root = Path(__file__).resolve().parent.parent / "rounds"
    assert main(["round", str(root / "r6-router.toml"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "baker          router:" in out and "router strengths 0.5, 1, 2 -> 3 candidates + the base" in out
    assert "no training" in out
    assert main(["round", str(root / "r6-experts.toml"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "+ the profile's experts (up to 2 personality and 2 assistant experts per profiled layer" in out
    assert "merge scales 0.5, 1, 1.5, each plain and router-steered at 1 -> 6 candidates + the base" in out
