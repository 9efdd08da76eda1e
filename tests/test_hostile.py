"""Hostile and malformed input: one clear line and exit 2, a typo never changes a gate, published files are inert."""

from __future__ import annotations

import csv
import io
import re
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from character_baker.cli import main
from character_baker.leaderboard.store import Store
from character_baker.testing.cards import make_card, passing
from character_baker.testing.recipes import skippy_board

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def board(tmp_path: Path) -> Path:
    dest = skippy_board(tmp_path / "skippy")
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


@pytest.mark.parametrize("gate, bad, needle", [
    ('metric = "assistant_leaks/leak"\nop = "<="\nthreshold = 0.0', "threshold = 5",
     "'threshold' 5 is outside [0, 1]: assistant_leaks/leak is a proportion (a percent? 5 % is 0.05)"),
    ('metric = "personality/sarcastic"\nop = ">="\nthreshold = 0.30', "threshold = -0.2",
     "'threshold' -0.2 is outside [0, 1]"),
    ('metric = "personality/sarcastic"\nop = ">="\nthreshold = 0.30', "threshold = nan", "must be a finite number"),
])
def test_a_threshold_a_proportion_cannot_take_is_an_error(board: Path, gate: str, bad: str, needle: str,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """A leak gate written as `threshold = 5` (meaning 5 %) passed a model that leaks on every prompt."""
    Store(board / "store.sqlite").record(make_card("leaky", {**passing(), "assistant_leaks/leak": [1] * 20}))
    toml = (board / "board.toml").read_text()
    assert gate in toml
    (board / "board.toml").write_text(toml.replace(gate, gate.rsplit("\n", 1)[0] + "\n" + bad))
    assert main(["gate", "--board", str(board), "--candidate", "leaky"]) == 2
    _one_line_error(capsys, "board.toml", needle)


def test_a_change_in_a_rate_lies_in_minus_one_to_one(board: Path) -> None:
    from character_baker.harness.errors import UserError
    from character_baker.leaderboard.board import load_board

    gate = 'metric = "personality/sarcastic"\nop = ">="\nthreshold = 0.30'
    toml = (board / "board.toml").read_text()
    (board / "board.toml").write_text(toml.replace(gate, gate[:-4] + '-0.05\nrelative_to = "base"'))
    [c] = [c for c in load_board(board).gate if c.name == "sarcastic"]
    assert (c.threshold, c.relative_to) == (-0.05, "base")  # "no more than 5 points below the base"
    (board / "board.toml").write_text(toml.replace(gate, gate[:-4] + '-1.5\nrelative_to = "base"'))
    with pytest.raises(UserError, match=r"outside \[-1, 1\]"):
        load_board(board)


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
    (("[score]", '[score]\nreasoning_effort = "hgih"'), "reasoning_effort = 'hgih': use low, medium or high"),
    (('conditions = ["none"]', 'conditions = ["nonee"]'), "[score] conditions: 'nonee' is not a list of none,"),
    (('conditions = ["none"]', 'conditions = []'), "[score] conditions: 'empty' is not a list of"),
    (("[score]", '[score]\nchosen_tasks = ["drfit"]'), "[score] chosen_tasks: 'drfit' is not a list of"),
    (("[score]", '[score]\nchosen_conditions = ["jsn"]'), "[score] chosen_conditions: 'jsn' is not a list of"),
    (("[score]", '[score]\nchosen_conditions = "json"'), "chosen_conditions"),
    (("[score]", '[score]\nreasoning_effort = "high"\ncapability = true\ncapability_max_tokens = 512'),
     "capability_max_tokens = 512: a reasoning model"),
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
    assert main(["publish", "--board", str(board)]) == 0  # mathtext in a round name does not break the plots
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



def _blobs(root: Path) -> list[tuple[Path, bytes]]:
    import inspect_ai.log  # noqa: F401 - zstd for zipfile, as Inspect writes `.eval` members

    out = []
    for f in root.rglob("*"):
        if f.is_file():
            out.append((f, f.read_bytes()))
            if zipfile.is_zipfile(f):
                with zipfile.ZipFile(f) as z:
                    out += [(f / n, z.read(n)) for n in z.namelist()]
    return out


def test_servers_that_echo_their_key_leave_no_key_on_disk(tmp_path: Path) -> None:
    """A candidate endpoint and an LLM judge that put the bearer token into their error bodies: the key must not
    reach the `.eval` logs, Inspect's trace file and sample buffers, the caches or the scorecard."""
    import os

    from character_baker.harness.character import load_character
    from character_baker.testing.openai_server import ScriptedOpenAIServer, keyword_judge

    pack = load_character("skippy")
    failing = {pack.identity_prompts[1].prompt, pack.personality_prompts[0].prompt}
    cand_key, judge_key = "sk-cand-ECHOED-0123456789", "sk-judge-ECHOED-9876543210"
    candidate = ScriptedOpenAIServer(lambda m: "Skippy the Magnificent. Obviously, monkey.", echo_key=True,
                                     fail_when=lambda m: any(x.get("content") in failing for x in m))
    judge = ScriptedOpenAIServer(keyword_judge, fail_first=3, echo_key=True)
    env = {**os.environ, "CAND_BASE_URL": "", "CAND_API_KEY": cand_key, "LOCAL_API_KEY": judge_key,
           "XDG_DATA_HOME": str(tmp_path / "xdg"), "CHARACTER_BAKER_CACHE": str(tmp_path / "cache"),
           "INSPECT_CACHE_DIR": str(tmp_path / "inspect-cache"), "INSPECT_TRACE_FILE": str(tmp_path / "trace.log")}
    with candidate, judge:
        env.update(CAND_BASE_URL=candidate.base_url, LOCAL_BASE_URL=judge.base_url)
        argv = [sys.executable, "-m", "character_baker.cli", "score", "--candidate", "openai-api/cand/echo",
                "--judge", "openai-api/local/scripted-judge", "--tasks", "identity,personality", "--limit", "3",
                "--out", str(tmp_path / "runs")]
        result = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert cand_key not in result.stdout + result.stderr and judge_key not in result.stdout + result.stderr
    blobs = _blobs(tmp_path)
    assert len(blobs) >= 5
    for path, data in blobs:
        assert cand_key.encode() not in data and judge_key.encode() not in data, path
    logs = b"".join(data for path, data in blobs if ".eval" in str(path))
    assert b"Bearer ***" in logs  # the failures were logged, key masked: the leak path was really exercised


def test_two_tasks_judging_one_reply_make_one_judge_call(judge_server, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                         isolated_caches: Path) -> None:
    """`personality` and `assistant_leaks` judge the same replies at the same time: one request per distinct
    (prompt, reply), whichever task asks first."""
    import json

    from character_baker.harness.character import load_character

    server = judge_server(delay=0.02)
    transcript = ROOT / "character_baker" / "characters" / "skippy" / "examples" / "skippy_transcript.jsonl"
    replies = {json.loads(line)["id"]: json.loads(line)["response"] for line in transcript.read_text().splitlines()}
    pack = load_character("skippy")
    distinct = {(p.prompt, replies[p.id]) for p in pack.identity_prompts + pack.personality_prompts}
    assert main(["score", "--candidate", f"responses:{transcript}", "--judge", "openai-api/local/scripted-judge",
                 "--tasks", "personality,assistant_leaks", "--out", str(tmp_path / "runs")]) == 0
    assert server.requests == len(distinct) == len(pack.identity_prompts) + len(pack.personality_prompts)


@pytest.mark.parametrize("edit, needle", [
    (('name = "Skippy"', 'nmae = "Skippy"'), "unknown key 'nmae' (did you mean 'name'?)"),
    (('markers = [', 'marker = ['), "unknown key 'marker' (did you mean 'markers'?)"),
    (('calibration = "calibration/persona.jsonl"', 'calibraton = "calibration/persona.jsonl"'),
     "[files]: unknown key 'calibraton' (did you mean 'calibration'?)"),
])
def test_a_typo_in_a_pack_is_an_error(tmp_path: Path, edit: tuple[str, str], needle: str,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    pack = tmp_path / "pack"
    shutil.copytree(ROOT / "character_baker" / "characters" / "skippy", pack)
    toml = (pack / "character.toml").read_text()
    assert edit[0] in toml
    (pack / "character.toml").write_text(toml.replace(edit[0], edit[1], 1))
    transcript = pack / "examples" / "skippy_transcript.jsonl"
    assert main(["score", "--candidate", f"responses:{transcript}", "--suite", str(pack), "--tasks", "identity",
                 "--out", str(tmp_path / "runs")]) == 2
    _one_line_error(capsys, "character.toml", needle)


@pytest.mark.parametrize("change, needle", [
    ({"metrcis": []}, "unknown key 'metrcis' (did you mean 'metrics'?)"),
    ({"metrics": [{"task": "identity", "metric": "identity", "condition": "none", "valeu": 1.0}]},
     "metrics[0]: unknown key 'valeu' (did you mean 'value'?)"),
    ({"metrics": [{"task": "identity", "metric": "identity", "condition": "none", "value": 1.0, "n": "30"}]},
     "metrics[0].n must be a whole number"),
])
def test_scorecards_are_checked_key_by_key(board: Path, tmp_path: Path, change: dict, needle: str,  # type: ignore[type-arg]
                                           capsys: pytest.CaptureFixture[str]) -> None:
    import json

    card = tmp_path / "card.json"
    card.write_text(json.dumps({**make_card("typo", passing()), **change}))
    assert main(["record", "--board", str(board), str(card)]) == 2
    _one_line_error(capsys, str(card), needle)


@pytest.mark.parametrize("lineage, needle", [
    ({"round": "R7", "scael": 0.5}, "unknown lineage key 'scael' (did you mean 'scale'?)"),
    ({"round": "R7", "scale": "half"}, "lineage.scale must be int or float, got str"),
    ({"round": "R7", "step": 1.5}, "lineage.step must be int, got float"),
    ([1, 2], "expected a JSON object"),
])
def test_candidate_lineage_is_typed(tmp_path: Path, tiny_qwen3_dir: Path, lineage: object, needle: str) -> None:
    import json
    import shutil

    from character_baker.harness.candidates import resolve_candidate
    from character_baker.harness.errors import UserError

    model = tmp_path / "model"
    shutil.copytree(tiny_qwen3_dir, model)
    (model / "candidate.json").write_text(json.dumps(lineage if isinstance(lineage, list) else {"lineage": lineage}))
    with pytest.raises(UserError, match=re.escape("candidate.json: " + needle)):
        resolve_candidate(str(model))
    (model / "candidate.json").write_text(json.dumps({"lineage": {"round": "R7", "scale": 0.5, "recipe_hash": "x"}}))
    assert resolve_candidate(str(model)).lineage["scale"] == 0.5  # extra lineage a baker records is kept


def test_a_truncated_round_record_does_not_stop_the_next_run(tmp_path: Path, tiny_qwen3_dir: Path) -> None:
    import json

    from character_baker.bakers.recipe import load_recipe
    from character_baker.rounds.round import _State

    from .test_rounds import round_recipe

    recipe = load_recipe(round_recipe(tmp_path, tiny_qwen3_dir))
    state = _State(recipe)
    state.mark("train", {"checkpoints": 2})
    assert json.loads(state.path.read_text())["steps"] == {"train": {"checkpoints": 2}}
    state.path.write_text(state.path.read_text()[:25])  # what a crash mid-write of a non-atomic writer leaves
    again = _State(recipe)
    assert again.data["steps"] == {}
    again.mark("select", "done")
    assert json.loads(state.path.read_text())["steps"] == {"select": "done"}
    assert stat.S_IMODE(state.path.stat().st_mode) & 0o044 == 0o044


@pytest.mark.parametrize("damage, needle", [
    ("truncate-header", "model.safetensors: damaged safetensors file"),
    ("truncate-data", "file not fully covered"),
    ("pickled", "only pickled weights (pytorch_model.bin)"),
    ("adapter-json", "adapter_config.json: invalid JSON"),
    ("adapter-list", "adapter_config.json: expected a JSON object"),
])
def test_damaged_model_folders_are_one_line(tmp_path: Path, tiny_qwen3_dir: Path, damage: str, needle: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    model = tmp_path / "model"
    shutil.copytree(tiny_qwen3_dir, model)
    weights = model / "model.safetensors"
    data = weights.read_bytes()
    target = model
    if damage == "truncate-header":
        weights.write_bytes(data[:1000])
    elif damage == "truncate-data":
        weights.write_bytes(data[:-100])
    elif damage == "pickled":
        weights.rename(model / "pytorch_model.bin")
    else:
        target = model / "adapter"
        target.mkdir()
        (target / "adapter_config.json").write_text('{"peft_type": ' if damage == "adapter-json" else "[1]")
    assert main(["score", "--candidate", str(target), "--tasks", "identity", "--limit", "1",
                 "--out", str(tmp_path / "runs")]) == 2
    _one_line_error(capsys, needle)


def test_an_endpoint_without_its_key_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("NOKEY_API_KEY", raising=False)
    monkeypatch.setenv("NOKEY_BASE_URL", "http://127.0.0.1:9/v1")
    assert main(["score", "--candidate", "openai-api/nokey/model", "--tasks", "identity", "--limit", "1",
                 "--out", str(tmp_path / "runs")]) == 2
    err = _one_line_error(capsys, "NOKEY_API_KEY")
    assert "[bold]" not in err
