"""Peak memory of a tiny round with 1 vs 3 merge scales: one model resident at a time means the peak does not grow
with the number of candidates (on a GPU the same holds for the card).

Each round runs in its own process (build a tiny Qwen3, profile, train 6 steps, select, merge, score every
candidate); the figure is the process's peak RSS.
    python benchmarks/round_memory.py
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from character_baker.testing.recipes import tiny_round

ROOT = Path(__file__).resolve().parent.parent

CHILD = """import resource, sys, torch
torch.set_num_threads(1)
from character_baker.cli import main
status = main(["round", sys.argv[1]])
print("PEAK_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "STATUS", status)
"""


def run(tmp: Path, base: Path, scales: list[float]) -> tuple[float, float]:
    board = (ROOT / "leaderboards" / "demo" / "board.toml").read_text().replace('suite = "toy"', 'suite = "skippy"')
    recipe = tiny_round(tmp / f"x{len(scales)}", base, board, scales=tuple(scales))
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", CHILD, str(recipe)], capture_output=True, text=True, cwd=ROOT)
    elapsed = time.perf_counter() - started
    line = next((x for x in result.stdout.splitlines() if x.startswith("PEAK_KB")), None)
    if line is None:
        sys.exit(f"round with {len(scales)} scales failed:\n{result.stderr[-2000:]}")
    return int(line.split()[1]) / 1024, elapsed


def main() -> None:
    from character_baker.rounds.tiny_models import tiny_qwen3

    with tempfile.TemporaryDirectory() as tmp:
        base = tiny_qwen3(Path(tmp) / "tiny-qwen3", layers=6, hidden=1024)  # ~60M parameters: a copy left behind shows
        one, t1 = run(Path(tmp), base, [1.0])
        three, t3 = run(Path(tmp), base, [0.5, 1.0, 1.5])
    print(f"1 merge scale  : peak RSS {one:7.0f} MiB, {t1:5.1f} s (2 models scored)")
    print(f"3 merge scales : peak RSS {three:7.0f} MiB, {t3:5.1f} s (4 models scored)")
    print(f"ratio          : {three / one:5.2f} (target ~1.0: no model survives its step)")


if __name__ == "__main__":
    main()
