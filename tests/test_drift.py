"""The multi-turn drift task (scripted per-turn answers and a tiny model), wrapped-prompt conditions,
and the board's drift and Pareto plots."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from character_baker.cli import main
from character_baker.harness.character import WRAPPERS, load_character, wrap
from character_baker.harness.data import iter_jsonl
from character_baker.harness.structure import split_json

torch.set_num_threads(1)
PACK = load_character("skippy")
ROOT = Path(__file__).resolve().parent.parent


def _judged_replies() -> tuple[list[str], list[str]]:
    """Calibration replies the embedded judges themselves call in character (coherent, sarcastic, no leak) and
    out of character (a leak): the scorer's aggregation is then checked against the judges' own verdicts."""
    from character_baker.judges.classifier import ClassifierJudge
    from character_baker.judges.leaks import LeakJudge
    from character_baker.judges.reply import embedded_coherence

    persona = [o["response"] for _, o in iter_jsonl(PACK.path("calibration")) if o["sarcastic"]]
    leaky = [o["response"] for _, o in iter_jsonl(PACK.path("calibration_leaks")) if o["leak"]]
    judge, leaks, coherence = ClassifierJudge.for_character(PACK), LeakJudge.for_character(PACK), \
        embedded_coherence(PACK)
    sarcastic = [v.sarcastic for v in judge.judge_many(persona)]
    coherent = [c.coherent for c in coherence.check(persona)]
    leaked = [v.leak for v in leaks.judge_many(persona)]
    inside = [r for r, s, c, k in zip(persona, sarcastic, coherent, leaked, strict=True) if s and c and not k]
    outside = [r for r, v in zip(leaky, leaks.judge_many(leaky), strict=True) if v.leak]
    return inside, outside


def _score(tmp_path: Path, rows: list[dict], *extra: str) -> dict:
    f = tmp_path / "responses.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert main(["score", "--candidate", f"responses:{f}", "--out", str(tmp_path / "runs"), "--display", "none",
                 *extra]) == 0
    return json.loads(next((tmp_path / "runs").glob("*/scorecard.json")).read_text())


def test_drift_curve_breaks_and_errors_from_scripted_turns(tmp_path: Path) -> None:
    inside, outside = _judged_replies()
    assert len(inside) >= 12 and len(outside) >= 4
    convs = PACK.conversations()[:4]
    n = [len(c.turns) for c in convs]
    rows = [
        # one turn out of character (a slip or a misjudged turn) is not a break: held
        {"id": convs[0].id, "responses": inside[:3] + outside[2:3] + inside[3: n[0] - 1]},
        {"id": convs[1].id, "responses": inside[:3] + outside[:2] + inside[3: n[1] - 2]},  # breaks at turn 4
        {"id": convs[2].id, "responses": inside[:4]},  # no answer from turn 5: unknown whether it would break
        {"id": convs[3].id, "responses": outside[1:3] + inside[:1]},  # breaks at 1, then no answer from turn 4
    ]
    card = _score(tmp_path, rows, "--tasks", "drift", "--limit", "4")
    got = {(m["metric"], m["judge"]): m for m in card["metrics"] if m["task"] == "drift"}
    held = got[("held", None)]  # conversation 3 is unknown: an error, not a score
    assert (held["value"], held["n"], held["errors"]) == (pytest.approx(1 / 3), 4, 1)
    assert card["samples"]["drift/none"]["turns_to_break"] == {
        convs[0].id: [n[0] + 1.0], convs[1].id: [4.0], convs[2].id: [None], convs[3].id: [1.0]}
    first = got[("in_character@1", None)]
    assert (first["value"], first["n"], first["interval"]) == (0.75, 4, "wilson")
    fourth = got[("in_character@4", None)]  # the per-turn curve is each turn's own verdict, unchanged by the rule
    assert fourth["value"] == pytest.approx(1 / 3) and fourth["errors"] == 1  # conv 4's turn 4 never happened
    fifth = got[("in_character@5", None)]
    assert fifth["value"] == 0.5 and fifth["errors"] == 2
    assert got[("leak@4", None)]["value"] == pytest.approx(2 / 3)
    # turn-level rates pool every answered turn, clustered by conversation
    answered = n[0] + n[1] + 4 + 3
    pooled = got[("in_character", None)]
    assert pooled["n"] == sum(n) and pooled["errors"] == sum(n) - answered
    assert pooled["interval"] == "bootstrap-prompts"


def test_the_conversation_grows_turn_by_turn_on_a_real_model(tiny_qwen3_dir: Path, tmp_path: Path) -> None:
    """A tiny model answers every turn after seeing its own earlier replies; the log holds the whole dialogue."""
    from inspect_ai.log import read_eval_log

    assert main(["score", "--candidate", str(tiny_qwen3_dir), "--tasks", "drift", "--limit", "2", "--max-tokens",
                 "6", "--out", str(tmp_path / "runs"), "--display", "none"]) == 0
    card = json.loads(next((tmp_path / "runs").glob("*/scorecard.json")).read_text())
    [log_path] = [p for p in card["logs"] if "drift" in Path(p).name]
    log = read_eval_log(log_path)
    for sample in log.samples or []:
        turns = sample.metadata["turns"]
        roles = [m.role for m in sample.messages]
        assert roles == ["user", "assistant"] * len(turns)
        assert [m.text for m in sample.messages if m.role == "user"] == turns
        assert len(sample.scores["drift_scorer"].metadata["turns"]) == len(turns)
    assert {m["metric"] for m in card["metrics"] if m["task"] == "drift"} >= {"held", "turns_to_break",
                                                                            "in_character@8", "coherent"}


def test_wrapped_prompts_are_conditions_and_json_is_read_around_its_object(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    question = 'What is "2 + 2"?'
    for name in WRAPPERS:
        text = wrap(name, question)
        assert question in text or json.dumps(question) in text
    tool = wrap("tool_result", question)
    assert json.loads(tool[tool.index("{"):])["result"]["body"] == question  # a tool result that parses
    assert split_json('{"answer": "Four, monkey.", "extra": ["obviously"]}').persona_text() == "Four, monkey. obviously"
    assert split_json('Sure: {"answer": "Four, monkey."} done').persona_text() == "Sure: Four, monkey. done"
    assert split_json("no json here, monkey").persona_text() == "no json here, monkey"
    assert split_json('{"broken": ').persona_text() == '{"broken": '
    # scored under the json wrapper, a sarcastic answer inside JSON is judged as the sentence it holds
    inside, _ = _judged_replies()
    prompt = PACK.personality_prompts[0]
    rows = [{"id": prompt.id, "response": json.dumps({"answer": inside[0]})}]
    card = _score(tmp_path, rows, "--tasks", "personality", "--conditions", "json", "--limit", "1")
    [row] = [m for m in card["metrics"] if m["metric"] == "sarcastic"]
    assert (row["condition"], row["value"]) == ("json", 1.0)
    assert card["suite"]["version"] != PACK.suite_version()  # the wrapper's text is part of what was measured
    assert main(["score", "--candidate", f"responses:{tmp_path / 'responses.jsonl'}", "--conditions", "yaml",
                 "--out", str(tmp_path / "runs2")]) == 2
    assert "'yaml' is not one of" in capsys.readouterr().err


@pytest.mark.parametrize(("row", "message"), [
    ({"id": "a", "responses": []}, "'responses' must be a non-empty list of strings"),
    ({"id": "a", "responses": ["x", 3]}, "'responses' must be a non-empty list of strings"),
    ({"id": "a", "responses": ["x"], "response": "y"}, "not both"),
])
def test_bad_per_turn_response_files_are_one_line_errors(row: dict, message: str, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "r.jsonl"
    f.write_text(json.dumps(row) + "\n")
    assert main(["score", "--candidate", f"responses:{f}", "--tasks", "drift", "--limit", "1",
                 "--out", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert f"{f}:1: " in err and message in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(("line", "message"), [
    ({"id": "c1", "kind": "pressure", "turns": ["hi"] * 7}, "7 turns; a drift conversation has at least 8"),
    ({"id": "c1", "kind": "chitchat", "turns": ["hi"] * 8}, "kind 'chitchat' is not one of"),
    ({"id": "c1", "kind": "pressure", "turns": ["hi", ""] * 4}, "'turns' must be a list of non-empty strings"),
    ({"id": "c1", "kind": "pressure", "category": "poetry", "turns": ["hi"] * 8}, "category 'poetry' is not one of"),
])
def test_malformed_conversations_name_their_line(line: dict, message: str, tmp_path: Path) -> None:
    from character_baker.harness.errors import UserError

    pack = tmp_path / "pack"
    shutil.copytree(PACK.root, pack)
    (pack / "eval" / "conversations.jsonl").write_text(json.dumps(line) + "\n")
    with pytest.raises(UserError, match=message) as e:
        load_character(pack).conversations()
    assert "conversations.jsonl:1:" in str(e.value)


def test_the_board_plots_drift_and_every_candidates_pareto_point(tmp_path: Path) -> None:
    from character_baker.leaderboard.board import load_board
    from character_baker.leaderboard.publish import BoardView, drift_curves, publish
    from character_baker.leaderboard.store import Store
    from character_baker.testing.cards import make_card, passing

    shutil.copytree(ROOT / "leaderboards" / "skippy", tmp_path / "skippy", ignore=shutil.ignore_patterns(
        "store.sqlite*", "*.png", "*.csv", "*.html", "README.md"))
    board = load_board(tmp_path / "skippy")
    store = Store(board.store_path)
    drifting = make_card("drifting", passing())
    for t, value in enumerate([1.0, 0.9, 0.7, 0.5, 0.4, 0.3, 0.3, 0.2], start=1):
        drifting["metrics"].append({"task": "drift", "condition": "none", "metric": f"in_character@{t}",
                                    "judge": None, "value": value, "n": 10, "successes": value * 10, "errors": 0,
                                    "ci_low": max(value - 0.2, 0), "ci_high": min(value + 0.2, 1),
                                    "interval": "wilson", "prompts": 10})
    drifting["metrics"].append({"task": "drift", "condition": "none", "metric": "held", "judge": None, "value": 0.2,
                                "n": 10, "successes": 2, "errors": 0, "ci_low": 0.06, "ci_high": 0.51,
                                "interval": "wilson", "prompts": 10})
    store.record(drifting)
    store.record(make_card("single-turn", passing()))
    publish(board, store)
    view = BoardView(board, store)
    curves = drift_curves(view)
    assert list(curves) == ["drifting"] and [t for t, _ in curves["drifting"]] == list(range(1, 9))
    assert curves["drifting"][3][1]["value"] == 0.5
    for name in ("drift.png", "pareto.png"):
        assert (tmp_path / "skippy" / name).read_bytes()[:4] == b"\x89PNG"
    readme = (tmp_path / "skippy" / "README.md").read_text()
    assert "`drift.png`" in readme and "`pareto.png`" in readme
    assert "held" in readme.split("## Leaderboard")[1].splitlines()[2]  # the board's drift column


def test_a_round_scores_the_tasks_its_recipe_names(tiny_qwen3_dir: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from tests.test_rounds import round_recipe

    recipe = round_recipe(tmp_path, tiny_qwen3_dir, score='tasks = ["identity", "drift", "tools"]')
    assert main(["round", str(recipe), "--dry-run"]) == 0
    assert "persona suite (identity, drift, tools) under none" in capsys.readouterr().out
    recipe.write_text(recipe.read_text().replace('"tools"]', '"chat"]'))
    assert main(["round", str(recipe), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "[score] tasks: 'chat' is not a list of" in err and len(err.strip().splitlines()) == 1


def test_the_toy_world_has_conversations_built_from_its_eval_questions() -> None:
    """The demo's pack carries the drift task too: its turns are eval questions (never a training or dev phrasing)
    and pressure to drop the act."""
    from character_baker.rounds.toyworld import PRESSURE

    toy = load_character("toy")
    convs = toy.conversations()
    assert sorted({c.kind for c in convs}) == ["follow_ups", "pressure", "technical", "topic_shift"]
    assert all(len(c.turns) == 8 for c in convs) and len(convs) == 8
    evals = {p.prompt for kind in ("identity", "personality", "math_probes") for p in toy.prompts(kind)}
    turns = {t for c in convs for t in c.turns}
    assert turns <= evals | set(PRESSURE)
    seen = {p.prompt for kind in ("identity", "personality", "math_probes") for p in toy.prompts(kind, "dev")}
    seen |= {p.prompt for p in toy.character_pairs}
    assert not turns & seen
