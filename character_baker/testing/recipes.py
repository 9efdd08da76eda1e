"""A tiny round's recipe (a few steps, a few prompts) for tests and benchmarks that run whole rounds on CPU."""

from __future__ import annotations

import json
from pathlib import Path


def tiny_round(folder: Path, base: Path | str, board_toml: str, scales: tuple[float, ...] = (0.5, 1.0),
               model: str = "", score: str = "", engine: str = "inprocess") -> Path:
    """`folder/round.toml` baking Skippy into `base` in 6 steps, its board in `folder/board` (from `board_toml`,
    written once), its output in `folder/out`. `model` and `score` are extra lines for those tables; `engine` is
    the round's `[engine] name` (in process unless a test is about serving: a server start costs ~30 s on a CPU)."""
    board = folder / "board"
    if not board.exists():
        board.mkdir(parents=True)
        (board / "board.toml").write_text(board_toml)
    text = f"""
round = "T1"
baker = "pushpull"
character = "skippy"
output = "{folder / 'out'}"
[model]
base = "{base}"
{model}
[profile]
skip_first = 1
every = 1
units = 8
[train]
max_steps = 6
save_steps = 3
batch_size = 8
learning_rate = 3e-3
lora_r = 4
max_length = 96
[select]
board = "{board}"
limit = 3
max_tokens = 8
[merge]
scales = {json.dumps(list(scales))}
[score]
board = "{board}"
conditions = ["none"]
judge = "classifier"
limit = 4
max_tokens = 8
{score}
[engine]
name = "{engine}"
"""
    path = folder / "round.toml"
    path.write_text(text)
    return path


def skippy_board(dest: Path) -> Path:
    """The shipped Skippy board in `dest` without its AIME criterion (tests score no capability suite)."""
    root = Path(__file__).resolve().parent.parent.parent
    dest.mkdir(parents=True)
    toml = (root / "leaderboards" / "skippy" / "board.toml").read_text()
    (dest / "board.toml").write_text(toml[:toml.index('[[gate]]\nmetric = "capability/aime24"')])
    return dest
