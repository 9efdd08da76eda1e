"""The judge-free activation monitor: the projection is the one the docs state, the AUROC is
Mann-Whitney's, and `score --monitor` puts both on the scorecard (agreement with the judge, drift meter)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from character_baker.cli import main
from character_baker.tasks.monitor import Direction, auroc, load_direction, project

torch.set_num_threads(1)


def test_auroc_is_mann_whitney_with_an_interval() -> None:
    assert auroc([3.0, 2.0, 1.0, 0.0], [True, True, False, False])["auroc"] == 1.0
    assert auroc([3.0, 2.0, 1.0, 0.0], [False, False, True, True])["auroc"] == 0.0
    assert auroc([1.0, 1.0, 1.0, 1.0], [True, False, True, False])["auroc"] == 0.5  # ties count half
    gen = torch.Generator().manual_seed(0)
    scores = torch.randn(60, generator=gen).tolist()
    labels = [bool(i % 3) for i in range(60)]
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    brute = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg) / (len(pos) * len(neg))
    got = auroc(scores, labels)
    assert got["auroc"] == pytest.approx(brute) and got["ci_low"] < brute < got["ci_high"]
    assert (got["n_positive"], got["n_negative"]) == (40, 20)
    assert auroc([1.0, 2.0], [True, True])["auroc"] is None  # one class: no AUROC, not a made-up 0.5
    assert auroc([float("nan"), 1.0, 0.0], [True, True, False])["n_positive"] == 1  # an empty reply is skipped


def test_the_projection_is_the_mean_over_reply_tokens(tiny_qwen3_dir: Path) -> None:
    """s = mean over the reply's tokens of (h - midpoint) . u, h the layer's output (hidden_states[L + 1])."""
    from character_baker.harness.loading import load_base

    loaded = load_base(str(tiny_qwen3_dir))
    hidden = loaded.model.config.hidden_size
    gen = torch.Generator().manual_seed(1)
    unit = torch.randn(hidden, generator=gen)
    direction = Direction(1, torch.randn(hidden, generator=gen), unit / unit.norm(), "test")
    messages = [{"role": "user", "content": "How many legs does a spider have?"},
                {"role": "assistant", "content": "Eight, monkey. Count them yourself."}]
    [s] = project(loaded, direction, [messages])
    tok = loaded.tokenizer
    prefix = tok.apply_chat_template(messages[:1], tokenize=False, add_generation_prompt=True)
    ids = tok(prefix + messages[1]["content"], return_tensors="pt", add_special_tokens=False)["input_ids"]
    n_prefix = len(tok(prefix, add_special_tokens=False)["input_ids"])
    with torch.no_grad():
        h = loaded.model(input_ids=ids, output_hidden_states=True).hidden_states[2][0, n_prefix:]
    assert s == pytest.approx(float(((h - direction.midpoint) @ direction.unit).mean()), rel=1e-4)


def test_score_with_the_monitor_reports_agreement_and_a_drift_meter(tiny_qwen3_dir: Path, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from tests.test_bakers import write_recipe

    recipe = write_recipe(tmp_path, tiny_qwen3_dir)
    assert main(["profile", str(recipe)]) == 0
    profile = tmp_path / "out" / "profile"
    capsys.readouterr()
    assert main(["score", "--candidate", str(tiny_qwen3_dir), "--tasks", "personality,drift", "--limit", "3",
                 "--max-tokens", "6", "--monitor", str(profile), "--out", str(tmp_path / "runs"),
                 "--display", "none"]) == 0
    out = capsys.readouterr().out
    card = json.loads(next((tmp_path / "runs").glob("*/scorecard.json")).read_text())
    monitor = card["monitor"]
    assert monitor["layer"] == load_direction(profile).layer and monitor["judge"] == "classifier"
    agreement = monitor["agreement"]["none"]
    assert agreement["n_positive"] + agreement["n_negative"] == 3
    assert sorted(int(t) for t in monitor["drift"]["none"]) == list(range(1, 11))[: len(monitor["drift"]["none"])]
    assert "monitor (none): layer" in out and "monitor drift meter (none)" in out


@pytest.mark.parametrize(("args", "message"), [
    (["--monitor", "nowhere"], "--monitor nowhere: no profile.safetensors there"),
    (["--monitor", "PROFILE", "--monitor-layer", "99"], "--monitor-layer 99: the profile measured layers"),
    (["--monitor", "PROFILE", "--tasks", "identity"], "score the personality or drift task too"),
])
def test_monitor_misuse_is_a_one_line_error_before_any_generation(args: list[str], message: str, tmp_path: Path,
                                                                   tiny_qwen3_dir: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from safetensors.torch import save_file

    (tmp_path / "p").mkdir()
    save_file({f"{k}.{layer}": torch.randn(8) for k in ("mean_character", "mean_antipole", "sd") for layer in (1, 2)},
              str(tmp_path / "p" / "profile.safetensors"))
    args = [str(tmp_path / "p") if a == "PROFILE" else a for a in args]
    assert main(["score", "--candidate", str(tiny_qwen3_dir), "--out", str(tmp_path / "runs"), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()  # refused before anything ran
    responses = tmp_path / "r.jsonl"
    responses.write_text('{"id": "x", "response": "y"}\n')
    assert main(["score", "--candidate", f"responses:{responses}", "--monitor", str(tmp_path / "p"),
                 "--out", str(tmp_path / "runs")]) == 2
    assert "is not a local model" in capsys.readouterr().err
