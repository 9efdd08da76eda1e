"""Leaderboard at scale: record 1,000 candidates x 4 conditions, then publish; gate and regress on the full board.

Targets: the whole publish < 10 s; gate < 1 s; regress < 1 s.
    python benchmarks/leaderboard.py
"""

from __future__ import annotations

import contextlib
import io
import random
import shutil
import tempfile
import time
from pathlib import Path

from character_baker.cli import main
from character_baker.leaderboard.store import Store
from character_baker.testing.cards import make_card

CONDITIONS = ("none", "character", "assistant", "break")


def outcomes(rng: random.Random) -> dict[str, list[float | None]]:
    p = rng.random()
    return {"identity/identity": [int(rng.random() < 0.9) for _ in range(6)],
            "assistant_leaks/leak": [int(rng.random() < 0.05) for _ in range(114)],
            "math_probes/math": [int(rng.random() < 0.95) for _ in range(12)],
            "personality/sarcastic:classifier": [int(rng.random() < p) for _ in range(108)],
            "personality/personality:classifier": [round(10 * rng.random() * p, 2) for _ in range(108)]}


def timed(argv: list[str]) -> tuple[float, int]:
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        code = main(argv)
    return time.perf_counter() - started, code


def main_() -> None:
    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as tmp:
        board = Path(tmp) / "skippy"
        root = Path(__file__).resolve().parent.parent / "leaderboards" / "skippy"
        board.mkdir()
        shutil.copy(root / "board.toml", board / "board.toml")
        store = Store(board / "store.sqlite")
        started = time.perf_counter()
        for i in range(1000):
            store.record(make_card(f"cand-{i:04d}", outcomes(rng), round_=f"R{i // 100}", scale=(0.5, 1.0, 1.5)[i % 3],
                                   conditions=CONDITIONS))
        record_s = time.perf_counter() - started
        publish_s, code = timed(["publish", "--board", str(board)])
        assert code == 0
        gate_s, _ = timed(["gate", "--board", str(board), "--candidate", "cand-0500"])
        regress_s, _ = timed(["regress", "--board", str(board), "--baseline", "cand-0001", "--candidate", "cand-0002"])
        print(f"record 1,000 candidates x 4 conditions : {record_s:6.2f} s ({store.count()} rows, "
              "one transaction per scorecard)")
        print(f"publish (README, CSV, HTML, 2 PNGs)     : {publish_s:6.2f} s (target < 10 s)")
        print(f"gate one candidate                      : {gate_s:6.2f} s (target < 1 s)")
        print(f"regress two candidates (4 conditions)   : {regress_s:6.2f} s (target < 1 s)")


if __name__ == "__main__":
    main_()
