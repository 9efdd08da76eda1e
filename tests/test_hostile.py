"""Hostile and malformed input: one clear line and exit 2, a typo never changes a gate, published files are inert."""

from __future__ import annotations

import csv
import io
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from character_baker.cli import main
from character_baker.leaderboard.store import Store
from character_baker.testing.cards import make_card, passing

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def board(tmp_path: Path) -> Path:
    dest = tmp_path / "skippy"
    dest.mkdir()
    toml = (ROOT / "leaderboards" / "skippy" / "board.toml").read_text()
    (dest / "board.toml").write_text(toml[:toml.index('[[gate]]\nmetric = "capability/aime24"')])
    return dest


def _one_line_error(capsys: pytest.CaptureFixture[str], *needles: str) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err
    for n in needles:
        assert n in err, err
    return err


@pytest.mark.parametrize("typo, key, near", [
    ('metric = "personality/sarcastic"\nop = ">="\nthreshold = 0.30', "bund", "bound"),
    ('metric = "personality/sarcastic"\nop = ">="\nthreshold = 0.30', "relative_too", "relative_to"),
])
def test_a_typo_in_a_board_is_an_error_not_a_different_gate(board: Path, typo: str, key: str, near: str,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    Store(board / "store.sqlite").record(make_card("good", passing()))
    toml = (board / "board.toml").read_text()
    (board / "board.toml").write_text(toml.replace(typo, typo + f'\n{key} = "lower"'))
    assert main(["gate", "--board", str(board), "--candidate", "good"]) == 2
    _one_line_error(capsys, "board.toml", f"unknown key '{key}'", f"did you mean '{near}'")


@pytest.mark.parametrize("content, needle", [
    ("[[gaet]]\nmetric = 'x/y'\n", "unknown key 'gaet'"),
    ("columns = 5\n", "'columns' must be an array of tables"),
    (b"name = '\xff\xfe'\n", "not UTF-8"),
])
def test_broken_boards_are_one_line(tmp_path: Path, content: str | bytes, needle: str,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "b").mkdir()
    path = tmp_path / "b" / "board.toml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    assert main(["publish", "--board", str(tmp_path / "b")]) == 2
    _one_line_error(capsys, needle)


@pytest.mark.parametrize("change, needle", [
    (("[model]", "[[model]]"), "[model] must be a table"),
    (("[merge]\nscales = [0.5, 1.0]", "[merge]\nscales = 1.0"), "scales must be a non-empty list"),
    (("[merge]\nscales = [0.5, 1.0]", '[merge]\nscales = ["half"]'), "scales must be a non-empty list"),
    (("[train]", "[train]\nmax_stpes = 3"), "did you mean 'max_steps'"),
    (('round = "T1"', 'round = "T1\\n# injected"'), "a candidate id may hold"),
])
def test_invalid_recipes_fail_the_dry_run_with_one_line(tmp_path: Path, tiny_qwen3_dir: Path, change: tuple[str, str],
                                                        needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    from .test_rounds import round_recipe

    recipe = round_recipe(tmp_path, tiny_qwen3_dir)
    text = recipe.read_text()
    assert change[0] in text
    recipe.write_text(text.replace(change[0], change[1], 1))
    assert main(["round", str(recipe), "--dry-run"]) == 2
    _one_line_error(capsys, needle)


def test_record_is_all_or_nothing(board: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    good = tmp_path / "good.json"
    good.write_text(json.dumps(make_card("fine", passing())))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**make_card("broken", passing()), "metrics": [{"task": "identity"}]}))
    array = tmp_path / "array.json"
    array.write_text("[1, 2]")
    latin = tmp_path / "latin.json"
    latin.write_bytes(b"\xff\xfe{}")
    for other, needle in ((bad, "metrics[0] needs string"), (array, "not a character-baker scorecard"),
                          (latin, "not a readable scorecard")):
        assert main(["record", "--board", str(board), str(good), str(other)]) == 2
        _one_line_error(capsys, str(other), needle)
        assert Store(board / "store.sqlite").count() == 0  # the good card before it was not kept either


def test_published_files_are_inert_and_readable(board: Path) -> None:
    store = Store(board / "store.sqlite")
    hostile = make_card("hostile", passing(), round_="R$\\foo{$", example="<script>alert(1)</script>")
    hostile["candidate"]["source"] = "=cmd|' /C calc'!A0"
    hostile["candidate"]["lineage"]["base"] = "@SUM(1+1)"
    store.record(hostile)
    store.record(make_card("other", passing(), round_="R7\n# Injected heading <b>x</b> | y"))
    assert main(["publish", "--board", str(board)]) == 0  # mathtext in a round name no longer breaks the plots
    readme = (board / "README.md").read_text()
    assert "\n# Injected" not in readme and "<b>" not in readme and "&lt;b&gt;" in readme
    cells = [c for row in csv.reader(io.StringIO((board / "results.csv").read_text())) for c in row]
    assert "'@SUM(1+1)" in cells and not any(c[:1] in "=+@" for c in cells if c)
    assert "&lt;script&gt;" in (board / "index.html").read_text()
    for name in ("README.md", "results.csv", "index.html", "scales.png", "rounds.png"):
        assert stat.S_IMODE((board / name).stat().st_mode) & 0o044 == 0o044, name  # group and others may read


def test_candidate_ids_cannot_escape_the_output_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    transcript = ROOT / "character_baker" / "characters" / "skippy" / "examples" / "skippy_transcript.jsonl"
    for cid in ("../../x", "a\nb", "/abs"):
        assert main(["score", "--candidate", f"responses:{transcript}", "--id", cid, "--out", str(tmp_path)]) == 2
        _one_line_error(capsys, "a candidate id may hold")
    assert list(tmp_path.iterdir()) == []


def test_eight_processes_creating_one_store(tmp_path: Path) -> None:
    """Creation is one transaction: racing creators all open the store and no row is lost."""
    db = tmp_path / "new.sqlite"
    script = ("import sys\nfrom character_baker.testing.cards import make_card, passing\n"
              "from character_baker.leaderboard.store import Store\n"
              "s = Store(sys.argv[1])\nfor i in range(5):\n    s.record(make_card(f'{sys.argv[2]}-{i}', passing()))\n")
    procs = [subprocess.Popen([sys.executable, "-c", script, str(db), f"p{n}"], cwd=ROOT) for n in range(8)]
    assert [p.wait(timeout=300) for p in procs] == [0] * 8
    assert Store(db).count() == 40

