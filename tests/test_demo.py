"""The demo's toy world and its honest gate: held-out phrasings, the real judge, coherence and math in the gate."""

from __future__ import annotations

from pathlib import Path

from character_baker.harness.character import load_character
from character_baker.harness.data import read_jsonl
from character_baker.leaderboard.board import load_board
from character_baker.rounds import toyworld

ROOT = Path(__file__).resolve().parent.parent
TOY = load_character("toy")


def _norm(text: str) -> str:
    return "".join(c for c in text.lower() if c.isalnum())


def test_the_generated_pack_is_what_the_generator_writes() -> None:
    facts, phrasings = toyworld.load_world()
    for name, rows in toyworld.build(facts, phrasings).items():
        assert read_jsonl(TOY.root / name) == rows, f"{name} is stale: run python -m character_baker.rounds.toyworld"


def test_no_eval_or_dev_prompt_is_in_any_training_set() -> None:
    train = {_norm(p.prompt) for p in TOY.character_pairs + TOY.antipole_pairs}
    for split in ("eval", "dev"):
        for kind in ("identity", "personality", "math_probes"):
            prompts = TOY.prompts(kind, split)
            assert prompts and not {_norm(p.prompt) for p in prompts} & train, (split, kind)
    evals = {_norm(p.prompt) for k in ("identity", "personality", "math_probes") for p in TOY.prompts(k)}
    devs = {_norm(p.prompt) for k in ("identity", "personality", "math_probes") for p in TOY.prompts(k, "dev")}
    assert not evals & devs
    assert len(TOY.personality_prompts) >= 80 and len(TOY.math_probes) >= 40


def _runs(text: str, n: int = 4) -> set[tuple[str, ...]]:
    words = "".join(c if c.isalnum() else " " for c in text.lower()).split()
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def test_held_out_phrasings_share_no_four_words_in_a_row_with_their_training_phrasings() -> None:
    """A held-out question must be new wording, not a training question with a word changed: no dev or eval
    prompt shares a run of four words with a training prompt of the same fact (identity: with any)."""
    def fact(row_id: str) -> str:
        return row_id.split("-", 1)[1].rsplit("-", 1)[0] if row_id.startswith("train-") else row_id.split("-", 1)[1]

    train: dict[str, set[tuple[str, ...]]] = {}
    for p in TOY.character_pairs:
        key = "id" if p.id.startswith("train-id-") else fact(p.id)
        train.setdefault(key, set()).update(_runs(p.prompt))
    checked = 0
    for split in ("dev", "eval"):
        for kind in ("identity", "personality", "math_probes"):
            for p in TOY.prompts(kind, split):
                key = "id" if kind == "identity" else fact(p.id)
                assert key in train, p.id
                shared = _runs(p.prompt) & train[key]
                assert not shared, (p.id, p.prompt, shared)
                checked += 1
    assert checked >= 300
    assert len(TOY.prompts("identity")) >= 8


def test_the_toy_is_judged_by_the_real_judge() -> None:
    """The toy pack's judge and calibration splits are the Skippy pack's own files: nothing tuned to the demo."""
    skippy = load_character("skippy")
    for key in ("judge", "judge_leaks", "calibration", "calibration_leaks"):
        assert TOY.path(key).resolve() == skippy.path(key).resolve()
    assert TOY.markers == skippy.markers and TOY.judge_floors == skippy.judge_floors


def test_the_demo_gate_requires_coherence_and_holds_math_and_leaks_against_the_base() -> None:
    board = load_board(ROOT / "leaderboards" / "demo")
    gate = {(c.metric, c.bound, c.relative_to, c.op, c.threshold) for c in board.gate}
    assert ("personality/coherent", "point", None, ">=", 0.95) in gate
    assert ("personality/sarcastic", "point", "base", ">=", 0.15) in gate
    assert ("personality/sarcastic", "lower", "base", ">=", 0.0) in gate
    assert ("assistant_leaks/leak", "lower", "base", "<=", 0.0) in gate
    assert ("math_probes/math", "upper", "base", ">=", 0.0) in gate


def test_the_toy_base_is_cached_for_the_next_run_and_the_next_clone(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Built once (here 2 steps instead of 600), then found in the run's folder, then copied from the user cache
    into another folder (a fresh clone's `runs/`) with the same weights; other build settings are another base."""
    import torch
    from safetensors.torch import load_file

    from character_baker.rounds.demo import build_tiny_assistant

    torch.set_num_threads(1)
    monkeypatch.setenv("CHARACTER_BAKER_CACHE", str(tmp_path / "cache"))
    assert build_tiny_assistant(tmp_path / "a", steps=2, progress=False) == "trained"
    assert build_tiny_assistant(tmp_path / "a", steps=2, progress=False) == f"cached in {tmp_path / 'a'}"
    how = build_tiny_assistant(tmp_path / "b", steps=2, progress=False)
    assert how.startswith("copied from ") and how.endswith(str(tmp_path / "cache" / "toy-base" / how.split("/")[-1]))
    a, b = load_file(tmp_path / "a" / "model.safetensors"), load_file(tmp_path / "b" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert build_tiny_assistant(tmp_path / "c", steps=3, progress=False) == "trained"
    assert not list((tmp_path / "cache" / "toy-base").glob("*.partial"))


def test_packed_batches_train_exactly_like_padded_ones(tiny_qwen3_dir: Path) -> None:
    """The toy base trains on packed rows (less padding): the loss and every gradient must be those of the same
    batch padded one example per row, or the packing leaks attention or loss across examples."""
    import pytest
    import torch

    from character_baker.bakers.examples import Encoded, collate, encode, pack_batch
    from character_baker.harness.loading import load_base

    torch.set_num_threads(1)
    loaded = load_base(str(tiny_qwen3_dir))
    model, pad = loaded.model.float(), loaded.tokenizer.pad_token_id
    batch = [encode(loaded.tokenizer, p, 96) for p in TOY.antipole_pairs[:13]]
    packed = pack_batch(batch, pad, width=max(len(e.input_ids) for e in batch) * 2)
    assert packed["input_ids"].shape[0] < len(batch)  # several examples share a row
    assert (packed["labels"] != -100).sum() == (collate(batch, pad)["labels"] != -100).sum()

    def loss_and_grads(inputs: dict) -> tuple[float, torch.Tensor]:  # type: ignore[type-arg]
        model.zero_grad()
        loss = model(**inputs).loss
        loss.backward()
        return loss.item(), torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])

    (a, ga), (b, gb) = loss_and_grads(collate(batch, pad)), loss_and_grads(packed)
    assert abs(a - b) < 1e-5 and (ga - gb).norm() / ga.norm() < 1e-4
    # a cache would hide the packing from the attention mask: the batch says so itself
    assert packed["use_cache"] is False
    with pytest.raises(ValueError, match="masked"):  # a first token with a label would be predicted across rows
        pack_batch([Encoded([5, 6], [5, 6], None)], pad)
