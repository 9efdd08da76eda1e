"""The bake-off on a tiny model: several bakers on one recipe, one board, each baker's candidate chosen on dev
among its own, compared with the control prompt by prompt; a bad bake-off file is one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from character_baker.cli import main
from character_baker.leaderboard.board import Measurements, load_board
from character_baker.leaderboard.store import Store
from character_baker.testing.recipes import tiny_round

ROOT = Path(__file__).resolve().parent.parent


def _bakeoff(folder: Path, base: Path, text: str, score: str = "") -> Path:
    board = (ROOT / "leaderboards" / "bakeoff" / "board.toml").read_text().replace('suite = "toy"', 'suite = "skippy"')
    tiny_round(folder, base, board, scales=(1.0,), score=score)
    path = folder / "bakeoff.toml"
    path.write_text(f'recipe = "round.toml"\noutput = "{folder / "bo"}"\nboard = "{folder / "board"}"\n' + text)
    return path


def test_bakers_meet_on_one_board_and_are_compared_with_the_control(tiny_qwen3_dir: Path, tmp_path: Path) -> None:
    # the shared recipe's [score] tasks are what the bake-off scores (the leak task left out here)
    path = _bakeoff(tmp_path, tiny_qwen3_dir, 'bakers = ["sft", "pushpull", "steer"]\ncontrol = "sft"\n'
                                              '[override.steer.merge]\nscales = [1.0, 3.0]\n',
                    score='tasks = ["identity", "personality", "math_probes"]')
    assert main(["bakeoff", str(path)]) == 0
    board = load_board(tmp_path / "board")
    frame = Store(board.store_path).frame()
    assert set(frame.task) == {"identity", "personality", "math_probes"}
    rounds = frame.drop_duplicates("candidate").set_index("candidate")["round"].to_dict()
    # the base once, one candidate each for sft and push/pull, steering's two coefficients
    assert sorted(rounds.values()) == ["bakeoff", "bakeoff-pushpull", "bakeoff-sft", "bakeoff-steer",
                                       "bakeoff-steer"]
    lineages = {b: json.loads(next((tmp_path / "bo" / b / "candidates").glob("*/candidate.json")).read_text())[
        "lineage"] for b in ("sft", "pushpull", "steer")}
    assert {lin["baker"] for lin in lineages.values()} == {"sft", "pushpull", "steer"}
    assert len({lin["data_hash"] for lin in lineages.values()}) == 1  # the same data for every baker
    result = json.loads((tmp_path / "bo" / "bakeoff.json").read_text())
    assert set(result["chosen"]) == {"sft", "pushpull", "steer"}
    # steering had two candidates: its reported one is chosen on the dev prompts, as a round chooses
    from character_baker.leaderboard.select import choose

    dev = Measurements(Store(tmp_path / "bo" / "dev" / "store.sqlite").frame())
    steer_ids = [c for c, r in rounds.items() if r == "bakeoff-steer"]
    assert result["chosen"]["steer"] == choose(board, dev, steer_ids).chosen
    # each baker against the control, one line per metric measured on the same prompts by both
    assert set(result["comparisons"]) == {"pushpull", "steer"}
    for lines in result["comparisons"].values():
        assert lines and all(line.split()[0] in ("better", "worse", "same") for line in lines)
        assert any("personality/sarcastic" in line for line in lines)
    report = (tmp_path / "board" / "bakeoff.md").read_text()
    assert all(f"| {b} |" in report for b in ("base", "sft", "pushpull", "steer"))
    # a candidate whose judges' card fails is marked, as a round would not count it (the embedded card fails today)
    from character_baker.leaderboard.board import unvalidated

    store = Store(board.store_path)
    doubted = {b for b, cid in result["chosen"].items() if unvalidated(board, store, cid)}
    marked = {line.split("|")[1].strip() for line in report.splitlines()
              if line.startswith("| ") and line.rstrip(" |").endswith("‡")}
    assert marked == doubted and ("‡ judge not validated" in report) == bool(doubted)
    for name in ("README.md", "pareto.png", "scales.png"):
        assert (tmp_path / "board" / name).stat().st_size > 0


@pytest.mark.parametrize(("text", "needle"), [
    ('bakers = ["sft", "nosuch"]\n', "bakers: unknown baker 'nosuch' (installed:"),
    ('bakers = ["sft", "sft"]\n', "a baker is named twice"),
    ('bakers = ["pushpull"]\n', "control = 'sft' is not among the bakers ['pushpull']"),
    ('bakers = ["sft"]\n[override.dpo.loss]\nbeta = 0.2\n', "[override.<baker>] tables must name bakers"),
    ('bakers = ["sft", "steer"]\n[override.steer.merge]\nscales = [9.0]\n', "[merge] scales must be"),
    ('bakers = []\n', "bakers must be a non-empty list"),
])
def test_a_bad_bakeoff_file_is_one_line(tiny_qwen3_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        text: str, needle: str) -> None:
    assert main(["bakeoff", str(_bakeoff(tmp_path, tiny_qwen3_dir, text))]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err
