"""Nothing impossible gets in: one schema per file kind, with meaning-level checks, whoever reads it.

Scorecards (`record`, `score --board`, and rows already in a store, read back by `gate` and `publish`), responses
files (`score`, checked against the samples they answer before any is scored) and the SQLite store itself: each
impossible input is one line naming the file and the field, line or row, exit 2, and nothing is written.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from character_baker.cli import main
from character_baker.leaderboard.store import Store
from character_baker.testing.cards import make_card, passing

from .test_hostile import _one_line_error, board  # noqa: F401 - the fixture, shared

ROOT = Path(__file__).resolve().parent.parent
PACK = ROOT / "character_baker" / "characters" / "skippy"
TRANSCRIPT = PACK / "examples" / "skippy_transcript.jsonl"
Card = dict[str, Any]


def _metric(card: Card, task: str, metric: str) -> dict[str, Any]:
    return next(m for m in card["metrics"] if (m["task"], m["metric"]) == (task, metric))


def _set(path: str, value: Any) -> Callable[[Card], None]:
    """A change at a dotted path (`judges.0.validity`) of a card."""
    def change(card: Card) -> None:
        *parents, last = path.split(".")
        node: Any = card
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node[p]
        node[int(last) if isinstance(node, list) else last] = value
    return change


def _row(task: str, metric: str, **values: Any) -> Callable[[Card], None]:
    def change(card: Card) -> None:
        _metric(card, task, metric).update(values)
    return change


def _sarcastic_errors_over_n(card: Card) -> None:
    m = _metric(card, "personality", "sarcastic")
    m["errors"] = m["n"] + 3


def _successes_and_errors_over_n(card: Card) -> None:
    m = _metric(card, "personality", "coherent")  # 20 coherent of 20, and 2 errors: 22 observations of 20
    m["errors"] = 2


def _condition_outside_the_suite(card: Card) -> None:
    m = dict(_metric(card, "assistant_leaks", "leak"), condition="json", value=1.0, successes=20.0)
    card["metrics"].append(m)  # every reply leaked under the JSON wrapper: dropped, it would vanish from the store


def _deep_samples(card: Card) -> None:
    card["samples"]["personality/none"]["coherent"]["p000"] = [{"a": [1]}]


# (change, the line's needle): each is an impossible card `record` must refuse (not keep, not crash on)
IMPOSSIBLE = {
    "proportion 5.0": (_row("personality", "sarcastic", value=5.0),
                       "metrics[5] (personality/sarcastic:classifier, none): value 5.0 is outside [0, 1]"),
    "NaN": (_row("assistant_leaks", "leak", value=math.nan), "metrics[1] (assistant_leaks/leak, none): value must be "
            "a finite number, got NaN"),
    "inf": (_row("assistant_leaks", "leak", ci_high=math.inf), "ci_high must be a finite number, got inf"),
    "negative": (_row("personality", "coherent", value=-0.25), "value -0.25 is outside [0, 1]"),
    "personality 11": (_row("personality", "personality", value=11.0), "value 11.0 is outside [0, 10]"),
    "errors over n": (_sarcastic_errors_over_n, "errors 23 is more than n 20"),
    "successes + errors over n": (_successes_and_errors_over_n,
                                  "successes 20 + errors 2 is more than n 20"),
    "value is not successes/valid": (_row("personality", "coherent", value=0.5),
                                     "value 0.5 is not successes / (n - errors) = 20/20"),
    "value with no observation": (_row("identity", "identity", errors=3, successes=None),
                                  "a value with no valid observation (n 3, errors 3)"),
    "interval upside down": (_row("personality", "sarcastic", ci_low=0.9, ci_high=0.5), "ci_low 0.9 is above ci_high"),
    "prompts over n": (_row("math_probes", "math", prompts=9), "prompts 9 is more than n 4"),
    "scale abc": (_set("candidate.lineage", {"scale": "abc"}),
                  "candidate: lineage.scale must be int or float, got str"),
    "scale inf": (_set("candidate.lineage", {"scale": math.inf}), "candidate.lineage.scale must be a finite number"),
    "validity a string": (_set("judges.0.validity", "passed"), "judges[0].validity must be an object, got str"),
    "validity.passed a string": (_set("judges.0.validity", {"passed": "yes", "failures": []}),
                                 "judges[0].validity.passed must be true or false, got str"),
    "validity.failures not strings": (_set("judges.0.validity", {"passed": False, "failures": [1]}),
                                      "judges[0].validity.failures must be a list of strings"),
    "judge name a number": (_set("judges.0.name", 3), "judges[0].name must be a string, got int"),
    "judges an object": (_set("judges", {"name": "x"}), "'judges' must be a list, got dict"),
    "sample value a word": (_set("samples.personality/none.coherent.p000", ["yes"]),
                            "samples['personality/none']['coherent']['p000'][0] must be a number or null, got str"),
    "sample nested deeper": (_deep_samples, "samples['personality/none']['coherent']['p000'][0] must be a number"),
    "sample proportion 2": (_set("samples.personality/none.coherent.p000", [2]),
                            "samples['personality/none']['coherent']['p000'][0] 2 is outside [0, 1]"),
    "samples of a condition outside the suite": (_set("samples.personality/json", {}),
                                                 "samples['personality/json']: condition 'json' is not one of the "
                                                 "suite's conditions (none)"),
    "examples a string": (_set("examples.identity/none", "I am Skippy"),
                          "examples['identity/none'] must be an object of texts by prompt id, got str"),
    "timings a word": (_set("timings", {"total_s": "fast"}), "timings['total_s'] must be a finite number >= 0"),
    "agreement a string": (_set("agreement", "none"), "'agreement' must be a list, got str"),
    "agreement kappa 3": (_set("agreement", [{"task": "personality", "condition": "none", "metric": "sarcastic",
                                              "judges": ["a", "b"], "n": 5, "kappa": 3.0, "agreement": 0.5}]),
                          "agreement[0].kappa 3.0 is outside [-1, 1]"),
    "truncated negative": (_set("truncated", {"identity/none": -1}), "truncated['identity/none'] must be a whole "
                           "number >= 0"),
    "logs a string": (_set("logs", "runs/x/logs"), "'logs' must be a list of strings, got str"),
    "created a number": (_set("created", 5), "'created' must be a string, got int"),
    "decoding a list": (_set("decoding", []), "'decoding' must be an object, got list"),
    "suite.conditions a string": (_set("suite.conditions", "none"),
                                  "suite.conditions must be a list of conditions, got str"),
    "suite.conditions unknown": (_set("suite.conditions", ["nonee"]),
                                 "suite.conditions: 'nonee' is not a condition (did you mean 'none'?)"),
    "metric condition outside the suite": (_condition_outside_the_suite,
                                           "metrics[6] (assistant_leaks/leak, json): condition 'json' is not one of "
                                           "the suite's conditions (none); its rows would be dropped"),
    "suite.tasks a string": (_set("suite.tasks", "identity"), "suite.tasks must be a list of strings, got str"),
    "candidate.kind a number": (_set("candidate.kind", 1), "candidate.kind must be a string, got int"),
    "candidate key typo": (_set("candidate.lineag", {}), "candidate: unknown key 'lineag' (did you mean 'lineage'?)"),
}


@pytest.mark.parametrize("name", list(IMPOSSIBLE))
def test_impossible_scorecards_are_refused_by_record(board: Path, tmp_path: Path, name: str,  # noqa: F811
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    change, needle = IMPOSSIBLE[name]
    good = tmp_path / "good.json"
    good.write_text(json.dumps(make_card("fine", passing())))
    card = make_card("impossible", passing())
    change(card)
    path = tmp_path / "card.json"
    path.write_text(json.dumps(card))  # NaN and Infinity as Python writes them (json.loads reads them back)
    assert main(["record", "--board", str(board), str(good), str(path)]) == 2
    _one_line_error(capsys, f"{path}: ", needle)
    assert Store(board / "store.sqlite").count() == 0


def test_a_made_card_and_a_history_card_pass_the_schema() -> None:
    """The schema holds what the harness writes: every task's rows, drift's turn rows, capability rows at k > 1."""
    from character_baker.harness.scorecard import check_scorecard
    from character_baker.tasks.capability import _row

    card = make_card("ok", {**passing(), "drift/held": [1, 0, None], "drift/turns_to_break": [9.0, 3.0, None],
                            "drift/in_character@10": [1, 1, 0], "personality/json_valid": [1, 0, 1, 1]},
                     conditions=("none", "json"))
    card["metrics"].append(_row("aime24", "none", {"p1": [1.0, 0.0, 1.0, 1.0], "p2": [0.0] * 4}, k=4,
                                pass_at_k=0.5, truncated=1))
    check_scorecard(card, "card")


# --- rows already in a store (recorded before the checks) ------------------------------------------------------

def _plant(store: Store, card: Card) -> None:
    """What an older harness recorded without these checks: the row as it went in."""
    with store.transaction():
        store._insert(card, False, None)


@pytest.mark.parametrize("name, needle", [
    ("proportion 5.0", "metric (personality/sarcastic:classifier, none): value 5.0 is outside [0, 1]"),
    ("inf", "ci_high must be a finite number, got inf"),
    ("errors over n", "errors 23 is more than n 20"),
    ("validity a string", "judges[0].validity must be an object, got str"),
    ("scale abc", "lineage.scale must be int or float, got str"),
])
def test_an_impossible_row_from_before_stops_gate_and_publish_with_one_line(
        board: Path, name: str, needle: str, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    """A sarcastic rate of 500 % passed the gate; a validity card stored as a string crashed it."""
    store = Store(board / "store.sqlite")
    store.record(make_card("good", passing()))
    card = make_card("bad", passing())
    IMPOSSIBLE[name][0](card)
    _plant(store, card)
    for argv in (["gate", "--board", str(board), "--candidate", "bad"], ["publish", "--board", str(board)],
                 ["gate", "--board", str(board), "--candidate", "good"]):
        assert main(argv) == 2
        _one_line_error(capsys, str(board / "store.sqlite"), "row 2 (candidate 'bad', condition 'none')", needle,
                        "record its scorecard again")
    assert not (board / "README.md").exists()


def test_a_stored_text_that_is_not_json_is_one_line(board: Path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    store = Store(board / "store.sqlite")
    store.record(make_card("bad", passing()))
    store.db.execute("UPDATE results SET judges = '[{\"name\": ' WHERE candidate = 'bad'")
    assert main(["gate", "--board", str(board), "--candidate", "bad"]) == 2
    _one_line_error(capsys, "row 1 (candidate 'bad', condition 'none')", "judges is not valid JSON")


# --- JSON nested past any meaning -------------------------------------------------------------------------------

DEEP = "[" * 100_000 + "]" * 100_000


def test_a_deeply_nested_scorecard_is_one_line(board: Path, tmp_path: Path,  # noqa: F811
                                               capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "deep.json"
    path.write_text(DEEP)
    assert main(["record", "--board", str(board), str(path)]) == 2
    _one_line_error(capsys, str(path), "nested too deeply")
    card = make_card("deepish", passing())
    node: Any = card["decoding"]
    for _ in range(200):  # parses, but no reader of a scorecard needs a decoding nested 200 deep
        node["x"] = {}
        node = node["x"]
    path.write_text(json.dumps(card))
    assert main(["record", "--board", str(board), str(path)]) == 2
    _one_line_error(capsys, str(path), "'decoding' is nested deeper than 32 levels")


def test_a_deeply_nested_responses_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "r.jsonl"
    f.write_text(json.dumps({"id": "x", "response": "fine"}) + "\n" + '{"id": "y", "response": ' + DEEP + "}\n")
    assert main(["score", "--candidate", f"responses:{f}", "--tasks", "identity", "--limit", "1",
                 "--out", str(tmp_path / "runs")]) == 2
    _one_line_error(capsys, f"{f}:2: ", "nested too deeply")


# --- responses files --------------------------------------------------------------------------------------------

def _conversation() -> tuple[str, int]:
    first = json.loads((PACK / "eval" / "conversations.jsonl").read_text().splitlines()[0])
    return first["id"], len(first["turns"])


@pytest.mark.parametrize("rows, tasks, needle", [
    ([{"id": "x", "response": "fine", "condition": ["none"]}], "identity", ":1: 'condition' must be a string"),
    ([{"id": "x", "response": "fine", "condition": "nonee"}], "identity",
     ":1: condition 'nonee' is not a condition (did you mean 'none'?)"),
    ([{"id": "x", "respones": "fine"}], "identity", ":1: unknown key 'respones' (did you mean 'responses'?)"),
    ([{"id": True, "response": "fine"}], "identity", ":1: missing or empty field 'id'"),
    ([{"id": "CONV", "response": "Obviously, monkey."}], "drift",
     ":1: sample 'CONV' is a conversation of TURNS user turns: give 'responses', one reply per user turn (one "
     "'response' would answer every turn)"),
    ([{"id": "x", "response": "fine"}, {"id": "CONV", "responses": ["Obviously, monkey."] * 40}], "drift",
     ":2: sample 'CONV' has 40 replies for its TURNS user turns"),
    ([{"id": "IDENT", "responses": ["Skippy.", "Still Skippy."]}], "identity",
     ":1: sample 'IDENT' has 2 replies for its 1 user turn"),
])
def test_responses_that_cannot_answer_their_samples_are_one_line(tmp_path: Path, rows: list[dict[str, Any]],
                                                                  tasks: str, needle: str,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """A single reply to a conversation was replayed at every turn (held: 100 %); extra turns were dropped. The
    file is checked against the pack's samples once the run's tasks are built, before any reply is generated."""
    conv, turns = _conversation()
    ident = json.loads((PACK / "eval" / "identity.jsonl").read_text().splitlines()[0])["id"]
    f = tmp_path / "r.jsonl"
    text = "\n".join(json.dumps(r) for r in rows).replace("CONV", conv).replace("IDENT", ident)
    f.write_text(text + "\n")
    assert main(["score", "--candidate", f"responses:{f}", "--tasks", tasks, "--limit", "1",
                 "--out", str(tmp_path / "runs")]) == 2
    _one_line_error(capsys, f"{f}" + needle.replace("CONV", conv).replace("IDENT", ident).replace("TURNS", str(turns)))
    assert not list((tmp_path / "runs").rglob("*.eval"))  # refused before any reply was generated


# --- the store file itself --------------------------------------------------------------------------------------

def _damage_middle_page(path: Path) -> None:
    data = bytearray(path.read_bytes())
    page = int.from_bytes(data[16:18], "big") or 65536
    pages = len(data) // page
    assert pages >= 4, pages
    middle = pages // 2
    data[middle * page: (middle + 1) * page] = bytes((i * 151 + 7) % 256 for i in range(page))
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["middle page", "not sqlite"])
def test_a_damaged_store_is_one_line_for_record_gate_and_publish(board: Path, tmp_path: Path, damage: str,  # noqa: F811
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    db = board / "store.sqlite"
    store = Store(db)
    for i in range(12):
        store.record(make_card(f"c{i}", passing(40)))
    store.close()
    assert not (board / "store.sqlite-wal").exists() or (board / "store.sqlite-wal").stat().st_size == 0
    if damage == "middle page":
        _damage_middle_page(db)
    else:
        db.write_text("candidate,value\nc0,0.5\n" * 200)
    card = tmp_path / "card.json"
    card.write_text(json.dumps(make_card("new", passing())))
    for argv in (["record", "--board", str(board), str(card)], ["gate", "--board", str(board), "--candidate", "c1"],
                 ["publish", "--board", str(board)]):
        assert main(argv) == 2, argv
        _one_line_error(capsys, str(db))


def test_garbage_over_any_page_of_a_store_is_one_line(tmp_path: Path) -> None:
    """Page by page: whichever page is overwritten (a b-tree, an overflow chain of samples, the schema, a free page),
    opening, reading every row and recording is either fine or one line naming the store, never a traceback."""
    from character_baker.harness.errors import UserError

    src = tmp_path / "src.sqlite"
    store = Store(src)
    for i in range(12):
        store.record(make_card(f"c{i}", passing(40)))
    store.record(make_card("c3", passing(40)))  # a replaced row leaves free pages
    free = store.db.execute("PRAGMA freelist_count").fetchone()[0]
    store.close()
    data = src.read_bytes()
    page = int.from_bytes(data[16:18], "big")
    refused = 0
    for k in range(len(data) // page):
        db = tmp_path / f"page{k}.sqlite"
        damaged = bytearray(data)
        damaged[k * page: (k + 1) * page] = bytes((i * 151 + 7) % 256 for i in range(page))
        db.write_bytes(bytes(damaged))
        try:
            s = Store(db)
            s.frame()
            for (rid,) in s.db.execute("SELECT id FROM results").fetchall():
                s.result(rid)
            s.record(make_card("new", passing()))
        except UserError as e:
            assert str(e).startswith(f"{db}: ") and "\n" not in str(e), str(e)
            refused += 1
    assert refused >= len(data) // page - free  # garbage on a free page harms no row; any other page is refused


@pytest.mark.timeout(1500)  # the embedded judges train once per process
def test_a_real_scorecard_records_and_gates(board: Path, tmp_path: Path) -> None:  # noqa: F811
    """What `score` writes passes the schema as it is: recorded, then gated."""
    assert main(["score", "--candidate", f"responses:{TRANSCRIPT}", "--id", "transcript", "--limit", "2",
                 "--conditions", "none,json", "--out", str(tmp_path / "runs"), "--display", "none"]) == 0
    path = tmp_path / "runs" / "transcript" / "scorecard.json"
    assert main(["record", "--board", str(board), str(path)]) == 0
    assert Store(board / "store.sqlite").count() == 2
    assert main(["gate", "--board", str(board), "--candidate", "transcript", "--allow-unvalidated-judge"]) in (0, 1)
