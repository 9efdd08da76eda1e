"""The choice of a checkpoint on the dev prompts: each checkpoint scored with the quick suite in memory as it is
saved (or afterwards from the saved adapters, when ranks trained), recorded into a selection store and judged with
the board's own gate, so "best checkpoint" means what the leaderboard means.

    <output>/selection/step-N.json      which candidate id step N was scored as (a rerun skips it)
    <output>/selection/runs/            the quick suite's scorecards and Inspect logs, one folder per checkpoint
    <output>/selection/selection.sqlite the store the gate reads
    <output>/selection/curve.csv/png    every checkpoint's measurements, the base as step 0, the chosen one marked
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from ...harness.candidates import Candidate
from ...harness.errors import UserError
from ...harness.loading import Loaded
from ..bake import Bake, write_json


class CheckpointSelector(TrainerCallback):
    """At each saved checkpoint, run the quick suite on the dev split with the in-memory model and record it;
    pick by the gate. The dev prompts are disjoint from eval, so the reported numbers are not chosen on them."""

    def __init__(self, bake: Bake, out: Path) -> None:
        from ...leaderboard.board import load_board
        from ...leaderboard.store import Store

        self.recipe = bake.recipe
        self.pack = bake.pack
        self.loaded = bake.loaded
        self.out = out
        self.model: Any = None
        self.board = load_board(self.recipe.board_file("select"))
        out.mkdir(parents=True, exist_ok=True)
        self.store = Store(out / "selection.sqlite")

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step == 0:
            self.evaluate(0, None)  # the base, for the curve

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.evaluate(state.global_step, Path(args.output_dir) / f"checkpoint-{state.global_step}")

    def unscored(self, train_dir: Path) -> list[tuple[int, Path | None]]:
        """The base (step 0) and the saved checkpoints not yet scored on dev, in step order: a bake trained as
        ranks saved them without scoring."""
        saved: list[tuple[int, Path | None]] = [(0, None)]
        saved += sorted((int(p.name.split("-")[1]), p) for p in train_dir.glob("checkpoint-*")
                        if p.name.split("-")[1].isdigit() and (p / "adapter_model.safetensors").is_file())
        return [(step, path) for step, path in saved if not (self.out / f"step-{step}.json").is_file()]

    def evaluate(self, step: int, checkpoint: Path | None) -> None:
        from ...harness.candidates import content_of
        from ...harness.providers import IN_MEMORY
        from ...tasks.score import ScoreOptions, score_candidate

        marker = self.out / f"step-{step}.json"
        if marker.is_file():
            return
        fingerprint = hashlib.sha256(content_of(self.recipe.base).encode())  # a rebuilt base is another model
        if checkpoint is not None:
            for f in sorted(checkpoint.glob("adapter_model*.safetensors")):
                fingerprint.update(f.read_bytes())
        cid = f"{self.recipe.round.lower()}-{self.recipe.hash()}-step{step}-{fingerprint.hexdigest()[:8]}"
        model = self.model
        IN_MEMORY[cid] = Loaded(model=model, tokenizer=self.loaded.tokenizer, model_type=self.loaded.model_type)
        was_training = model.training
        model.eval()
        try:
            # step 0 is the base itself: relative criteria ("sarcastic vs base") compare checkpoints with it
            lineage = {"round": self.recipe.round, "step": step,
                       **({"role": "base"} if checkpoint is None else {"base": self.recipe.base})}
            candidate = Candidate(cid, "model", str(checkpoint or self.recipe.base), {"in_memory": cid}, lineage)
            # the dev split: selection never sees a prompt that is reported (tests/test_bakers.py proves it)
            card, _ = score_candidate(candidate, ScoreOptions.from_recipe(
                self.recipe, self.out / "runs", select=True, character=str(self.pack.root)))
        finally:
            model.train(was_training)
            del IN_MEMORY[cid]
        self.store.record(card.to_json())
        write_json(marker, {"step": step, "candidate": cid, "checkpoint": str(checkpoint) if checkpoint else None})

    def choose(self, history: list[dict[str, Any]]) -> int:
        """The trained checkpoint the gate prefers on the dev prompts (`leaderboard/select.py`; on a tie the fewest
        steps); the curve of every checkpoint, the base as step 0, is saved beside it."""
        from ...leaderboard.board import Measurements, evaluate
        from ...leaderboard.select import choose

        measured = Measurements(self.store.frame())
        markers = sorted(self.out.glob("step-*.json"), key=lambda p: int(re.findall(r"\d+", p.name)[0]))
        infos = [json.loads(marker.read_text()) for marker in markers]
        choice = choose(self.board, measured, [info["candidate"] for info in infos if info["step"] > 0])
        if choice.chosen is None:
            raise UserError(f"no trained checkpoint was evaluated in {self.out}")
        rows = []
        for info in infos:
            cid = info["candidate"]
            verdicts = choice.verdicts.get(cid) or evaluate(self.board, measured, cid)
            row: dict[str, Any] = {"step": info["step"], "candidate": cid,
                                   "criteria_passed": sum(v.passed for v in verdicts), "selected": cid == choice.chosen}
            for col in self.board.columns:
                m = measured.get(info["candidate"], col)
                row[col.label] = None if m is None else m["value"]
            rank = measured.get(info["candidate"], self.board.rank_by)
            row["rank_value"] = None if rank is None else rank["value"]
            losses = [h["loss"] for h in history if "loss" in h and h.get("step", 0) <= info["step"]]
            row["train_loss"] = losses[-1] if losses else None
            rows.append(row)
        _save_curve(rows, self.out, self.board)
        return int(next(r["step"] for r in rows if r["selected"]))


def _save_curve(rows: list[dict[str, Any]], out: Path, board: Any) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    frame = pd.DataFrame(rows)
    frame.to_csv(out / "curve.csv", index=False)
    fig, ax = plt.subplots(figsize=(7, 4))
    for col in board.columns:
        if col.label in frame and frame[col.label].notna().any() and col.name != "personality":
            ax.plot(frame.step, frame[col.label], marker="o", label=col.label)
    best = frame[frame.selected]
    ax.axvline(float(best.step.iloc[0]), color="grey", linestyle="--", label="selected")
    ax.set_xlabel("step")
    ax.set_ylabel("rate (quick suite, no system prompt)")
    if frame.train_loss.notna().any():
        ax2 = ax.twinx()
        ax2.plot(frame.step, frame.train_loss, color="black", alpha=0.4, label="train loss")
        ax2.set_ylabel("train loss")
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title("Checkpoint curve: chosen by the gate, not by loss")
    fig.tight_layout()
    fig.savefig(out / "curve.png", dpi=110)
    plt.close(fig)
