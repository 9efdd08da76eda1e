"""The leaderboard: the store under concurrent writers, the gate, paired regression tests, publishing."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from character_baker.cli import main
from character_baker.harness.errors import UserError
from character_baker.harness.stats import wilson
from character_baker.leaderboard.board import Measurements, evaluate, load_board
from character_baker.leaderboard.store import Store
from character_baker.testing.cards import make_card, passing

BOARDS = Path(__file__).resolve().parent.parent / "leaderboards"


@pytest.fixture
def board(tmp_path: Path) -> Path:
    dest = tmp_path / "skippy"
    shutil.copytree(BOARDS / "skippy", dest, ignore=shutil.ignore_patterns("store.sqlite*", "*.png", "*.csv",
                                                                            "*.html", "README.md"))
    # the persona criteria only: the AIME criterion needs capability scores (tested on its own below)
    toml = (dest / "board.toml").read_text()
    start = toml.index('[[gate]]\nmetric = "capability/aime24"')
    (dest / "board.toml").write_text(toml[:start])
    return dest


def test_the_skippy_gate_includes_aime_against_the_base(tmp_path: Path) -> None:
    shutil.copytree(BOARDS / "skippy", tmp_path / "skippy", ignore=shutil.ignore_patterns("store.sqlite*"))
    b = load_board(tmp_path / "skippy")
    [aime] = [c for c in b.gate if c.metric == "capability/aime24"]
    assert (aime.relative_to, aime.op, aime.threshold) == ("base", ">=", -0.05)
    store = Store(tmp_path / "skippy" / "store.sqlite")
    base = make_card("base", passing())
    cand = make_card("cand", passing())
    cand["candidate"]["lineage"]["base"] = "/models/base"
    for card, solved in ((base, [1] * 10 + [0] * 20), (cand, [1] * 9 + [0] * 21)):
        per = {f"p{i:02d}": [float(v)] for i, v in enumerate(solved)}
        card["metrics"].append({"task": "capability", "metric": "aime24", "condition": "none", "judge": None,
                                "value": sum(solved) / 30, "n": 30, "successes": sum(solved), "errors": 0,
                                "ci_low": None, "ci_high": None, "interval": "wilson", "prompts": 30})
        card["samples"]["capability/none"] = {"aime24": per}
        store.record(card)
    verdicts = {v.criterion.metric: v for v in evaluate(b, Measurements(store.frame()), "cand")}
    assert verdicts["capability/aime24"].compared == pytest.approx(-1 / 30) and verdicts["capability/aime24"].passed
    assert all(verdicts[m].passed for m in verdicts)
    unmeasured = evaluate(b, Measurements(store.frame()), "base")
    assert [v.reason for v in unmeasured if v.criterion.relative_to] == ["reference base (unknown) not measured"]


def test_two_processes_record_concurrently(tmp_path: Path) -> None:
    db = tmp_path / "store.sqlite"
    script = (
        "import sys\n"
        "from character_baker.testing.cards import make_card, passing\n"
        "from character_baker.leaderboard.store import Store\n"
        "store = Store(sys.argv[1])\n"
        "for i in range(100):\n"
        "    store.record(make_card(f'{sys.argv[2]}-{i}', passing()))\n"
    )
    root = Path(__file__).resolve().parent.parent
    procs = [subprocess.Popen([sys.executable, "-c", script, str(db), name], cwd=root) for name in ("a", "b")]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    store = Store(db)
    assert store.count() == 200
    assert store.db.execute("SELECT COUNT(DISTINCT candidate) FROM results").fetchone()[0] == 200
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    # re-recording replaces, never duplicates
    store.record(make_card("a-7", passing()))
    assert store.count() == 200
    assert store.db.execute("SELECT COUNT(*) FROM metrics m JOIN results r ON r.id = m.result_id "
                            "WHERE r.candidate = 'a-7'").fetchone()[0] == 6


def test_foreign_or_corrupt_files_are_refused_untouched(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.sqlite"
    with sqlite3.connect(foreign) as db:
        db.execute("CREATE TABLE t (x)")
    before = foreign.read_bytes()
    with pytest.raises(UserError, match="not a character-baker store"):
        Store(foreign)
    assert foreign.read_bytes() == before
    corrupt = tmp_path / "corrupt.sqlite"
    corrupt.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(UserError, match="not a readable SQLite store"):
        Store(corrupt)
    assert corrupt.read_bytes() == b"this is not a database at all" * 100


def test_gate_pass_fail_not_measured_and_lower_bound(board: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = Store(board / "store.sqlite")
    store.record(make_card("good", passing()))
    store.record(make_card("leaky", {**passing(), "assistant_leaks/leak": [1] + [0] * 19}))
    store.record(make_card("no-math", {k: v for k, v in passing().items() if k != "math_probes/math"}))
    assert main(["gate", "--board", str(board), "--candidate", "good"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("PASS: good") and out.count("  PASS  ") == 5
    assert main(["gate", "--board", str(board), "--candidate", "leaky"]) == 1
    assert "FAIL  assistant_leaks/leak[none] <= 0.0%" in capsys.readouterr().out
    assert main(["gate", "--board", str(board), "--candidate", "no-math"]) == 1
    assert "(not measured)" in capsys.readouterr().out
    assert main(["gate", "--board", str(board), "--candidate", "nobody"]) == 2

    # 15/20 sarcastic passes ">= 30 %" on the point (75 %) and on the lower bound; 7/20 passes on the point
    # (35 %) but its Wilson lower bound (18 %) does not: bound = "lower" flips the verdict.
    store.record(make_card("borderline", {**passing(), "personality/sarcastic:classifier": [1] * 7 + [0] * 13}))
    toml = (board / "board.toml").read_text()
    lower = toml.replace('metric = "personality/sarcastic"\nop = ">="\nthreshold = 0.30',
                         'metric = "personality/sarcastic"\nop = ">="\nthreshold = 0.30\nbound = "lower"')
    assert lower != toml
    measured = Measurements(store.frame())
    point = {v.criterion.metric: v.passed for v in evaluate(load_board(board), measured, "borderline")}
    (board / "board.toml").write_text(lower)
    verdicts = evaluate(load_board(board), measured, "borderline")
    low = {v.criterion.metric: v for v in verdicts}
    assert point["personality/sarcastic"] is True
    assert low["personality/sarcastic"].passed is False
    assert low["personality/sarcastic"].compared == pytest.approx(wilson(7, 20)[0])
    assert {v.criterion.metric: v.passed for v in evaluate(load_board(board), measured, "good")}[
        "personality/sarcastic"] is True


def test_failed_observations_above_the_boards_share_fail_the_criterion(board: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """Errors are counted, never dropped: 1 failed of 20 (5 %) is within the default share; 2 of 20 is not."""
    store = Store(board / "store.sqlite")
    store.record(make_card("one-error", {**passing(), "assistant_leaks/leak": [None] + [0] * 19}))
    store.record(make_card("two-errors", {**passing(), "assistant_leaks/leak": [None, None] + [0] * 18}))
    measured = Measurements(store.frame())
    row = measured.get("two-errors", next(c for c in load_board(board).gate if c.name == "leak"))
    assert (row["n"], row["errors"], row["value"]) == (20, 2, 0.0)
    assert main(["gate", "--board", str(board), "--candidate", "one-error"]) == 0
    capsys.readouterr()
    assert main(["gate", "--board", str(board), "--candidate", "two-errors"]) == 1
    assert "2/20 observations failed (10.0%, above 5%)" in capsys.readouterr().out
    toml = (board / "board.toml").read_text()
    (board / "board.toml").write_text(toml.replace("max_error_share = 0.05", "max_error_share = 0.2"))
    assert main(["gate", "--board", str(board), "--candidate", "two-errors"]) == 0


def test_gate_refuses_a_judge_whose_validity_card_fails(board: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = Store(board / "store.sqlite")
    bad = {"passed": False, "failures": ["mimicry_points 64.0 points misses its floor (<= 10)"]}
    store.record(make_card("fooled", passing(), validity=bad))
    assert main(["gate", "--board", str(board), "--candidate", "fooled"]) == 2
    err = capsys.readouterr().err
    assert "gate refuses: judge 'classifier'" in err and "mimicry_points 64.0" in err and err.count("\n") == 1
    assert main(["gate", "--board", str(board), "--candidate", "fooled", "--allow-unvalidated-judge"]) == 0
    assert "PASS: fooled on board 'skippy' (judge NOT validated: judge 'classifier'" in capsys.readouterr().out
    written = main(["publish", "--board", str(board)])
    assert written == 0 and "‡ `fooled`" in (board / "README.md").read_text()


def test_relative_criterion_against_the_base(board: Path) -> None:
    store = Store(board / "store.sqlite")
    base = make_card("base", {**passing(), "math_probes/math": [1, 1, 1, 1]})
    cand = make_card("cand", {**passing(), "math_probes/math": [1, 1, 1, 0]})
    cand["candidate"]["lineage"]["base"] = "/models/base"
    store.record(base)
    store.record(cand)
    toml = (board / "board.toml").read_text() + (
        '\n[[gate]]\nmetric = "math_probes/math"\nrelative_to = "base"\nop = ">="\nthreshold = -0.05\n')
    (board / "board.toml").write_text(toml)
    [rel] = [v for v in evaluate(load_board(board), Measurements(store.frame()), "cand") if v.criterion.relative_to]
    assert rel.compared == pytest.approx(-0.25) and rel.passed is False


def test_regress_detects_a_planted_regression_and_passes_an_equal_pair(board: Path, tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    store = Store(board / "store.sqlite")
    n = 60
    base = passing(n)
    store.record(make_card("v1", base, round_="R1"))
    store.record(make_card("v1-again", base, round_="R1"))
    worse = {**base, "personality/sarcastic:classifier": [0] * n}  # every sarcastic answer lost
    store.record(make_card("v2", worse, round_="R2"))
    junit = tmp_path / "junit.xml"
    assert main(["regress", "--board", str(board), "--baseline", "v1", "--candidate", "v1-again",
                 "--junit", str(junit)]) == 0
    tree = ET.parse(junit).getroot()
    assert tree.get("failures") == "0" and int(tree.get("tests") or 0) == 6
    capsys.readouterr()
    assert main(["regress", "--board", str(board), "--baseline", "R1", "--candidate", "v2", "--junit", str(junit)]) == 1
    out = capsys.readouterr().out
    assert "REGRESSED personality/sarcastic:classifier[none]" in out and "mcnemar-exact, n=60" in out
    tree = ET.parse(junit).getroot()
    [failed] = [c for c in tree.iter("testcase") if c.find("failure") is not None]
    assert failed.get("name") == "sarcastic:classifier"
    # 45 discordant pairs all one way: exact McNemar p = 2 * 0.5^45
    assert "p < 0.001 (mcnemar-exact" in out  # exact p = 2 x 0.5^45, printed as a bound, never as p=0
    # a tolerance wider than the drop lets it pass
    assert main(["regress", "--board", str(board), "--baseline", "v1", "--candidate", "v2",
                 "--tolerance", "personality/sarcastic=0.8"]) == 0


def test_regress_refuses_different_judges_unless_allowed(board: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = Store(board / "store.sqlite")
    store.record(make_card("a", passing(), judge="classifier:one"))
    store.record(make_card("b", passing(), judge="classifier:two"))
    assert main(["regress", "--board", str(board), "--baseline", "a", "--candidate", "b"]) == 2
    assert "different judges" in capsys.readouterr().err
    assert main(["regress", "--board", str(board), "--baseline", "a", "--candidate", "b", "--allow-mismatch"]) == 0


def test_history_import_marks_rows_reported_with_intervals_from_counts(board: Path) -> None:
    assert main(["import-history", "--board", str(board)]) == 0
    measured = Measurements(Store(board / "store.sqlite").frame())
    b = load_board(board)
    sarcastic = next(c for c in b.columns if c.metric == "personality/sarcastic")
    r4 = measured.get("qwen3-vl-8b-r4-pushpull", sarcastic)
    assert r4 is not None and r4["reported"] == 1 and (r4["successes"], r4["n"]) == (4, 21)
    assert (r4["ci_low"], r4["ci_high"]) == pytest.approx(wilson(4, 21))
    r5 = {v.criterion.metric: v for v in evaluate(b, measured, "qwen3-vl-8b-r5-pushpull")}
    # R5 as reported passes the transfer gate's personality criteria on the point; the research log measured no
    # coherence, and a metric never measured fails
    assert all(v.passed for m, v in r5.items() if m != "personality/coherent")
    assert r5["personality/coherent"].reason == "not measured"
    x15 = evaluate(b, measured, "qwen3-vl-8b-r5-pushpull-x1.5")
    assert all(v.reason == "not measured" for v in x15)


def test_publish_escapes_markup_and_writes_every_file(board: Path) -> None:
    store = Store(board / "store.sqlite")
    store.record(make_card("r1-a", passing(), round_="R1", scale=1.0))
    store.record(make_card("r1-b", passing(), round_="R1", scale=0.5,
                           example="<script>alert('pwned')</script> I am Skippy"))
    store.record(make_card("r2-a", {**passing(), "math_probes/math": [1, 1, 0, 1]}, round_="R2", scale=1.0))
    assert main(["import-history", "--board", str(board)]) == 0
    assert main(["publish", "--board", str(board)]) == 0
    page = (board / "index.html").read_text()
    assert "<script>alert" not in page and "&lt;script&gt;alert(&#x27;pwned&#x27;)&lt;/script&gt;" in page
    readme = (board / "README.md").read_text()
    assert "### R1 vs R2" in readme and "## R1: merge scales" in readme and "†" in readme
    assert "| math | 100.0% (4/4) | 75.0% (3/4) | -25.0 pts |" in readme
    import pandas as pd

    csv = pd.read_csv(board / "results.csv")
    assert set(csv.candidate) >= {"r1-a", "r1-b", "r2-a", "qwen3-vl-8b-r4-pushpull"}
    for png in ("scales.png", "rounds.png"):
        assert (board / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_interrupted_publish_leaves_the_previous_readme(board: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store(board / "store.sqlite")
    store.record(make_card("first", passing()))
    assert main(["publish", "--board", str(board)]) == 0
    before = (board / "README.md").read_text()
    store.record(make_card("second", passing()))
    real_replace = os.replace

    def dying_replace(src: str, dst: str) -> None:
        if str(dst).endswith("README.md"):
            raise KeyboardInterrupt  # killed between writing the new README and swapping it in
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", dying_replace)
    assert main(["publish", "--board", str(board)]) == 130  # interrupted: the CLI's exit code for Ctrl-C
    assert (board / "README.md").read_text() == before and "second" not in before
    assert not list(board.glob(".*.tmp"))
    monkeypatch.setattr(os, "replace", real_replace)
    assert main(["publish", "--board", str(board)]) == 0
    assert "second" in (board / "README.md").read_text()


def test_score_records_into_the_board(board: Path, tmp_path: Path) -> None:
    transcript = Path(__file__).resolve().parent.parent / "character_baker/characters/skippy/examples"
    assert main(["score", "--candidate", f"responses:{transcript / 'skippy_transcript.jsonl'}", "--board", str(board),
                 "--out", str(tmp_path / "runs")]) == 0
    store = Store(board / "store.sqlite")
    [cid] = [r[0] for r in store.db.execute("SELECT candidate FROM results")]
    card = json.loads(next((tmp_path / "runs").glob("*/scorecard.json")).read_text())
    validated = card["judges"][0]["validity"]["passed"]  # the embedded judges' card fails on its families today
    assert main(["gate", "--board", str(board), "--candidate", cid]) in ((0, 1) if validated else (2,))
    assert main(["gate", "--board", str(board), "--candidate", cid, "--allow-unvalidated-judge"]) in (0, 1)
    verdicts = evaluate(load_board(board), Measurements(store.frame()), cid)
    assert all(v.reason != "not measured" for v in verdicts)
    assert card["samples"]["personality/none"]["sarcastic:classifier"]


def test_lower_is_better_by_metric_family_and_p_values_never_print_zero() -> None:
    from character_baker.leaderboard.board import lower_is_better
    from character_baker.leaderboard.report import format_p

    assert all(lower_is_better(m) for m in ("leak", "leak@3", "leak:llm", "truncated", "truncated@1"))
    assert not any(lower_is_better(m) for m in ("sarcastic", "in_character@3", "held", "leakage_free", "math"))
    assert format_p(0.0) == " < 0.001" and format_p(0.0421) == "=0.0421"


def test_every_task_is_in_inspects_registry() -> None:
    """`inspect eval character_baker/drift` (and tools) finds the task: the package's registry module lists it."""
    import subprocess
    import sys

    code = ("import character_baker._registry as r; from inspect_ai._util.registry import registry_info; "
            "print(sorted(registry_info(getattr(r, n)).name for n in "
            "('identity', 'personality', 'assistant_leaks', 'math_probes', 'drift', 'tools')))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == str(sorted(["identity", "personality", "assistant_leaks", "math_probes", "drift", "tools"]))


def test_a_card_failing_many_floors_is_one_short_line(board: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from character_baker.leaderboard.board import unvalidated

    failures = [f"family persona/f{i}: recall 0.5 (n=40) misses its floor (>= 0.8)" for i in range(22)]
    Store(board / "store.sqlite").record(make_card("doubted", passing(),
                                                   validity={"passed": False, "failures": failures}))
    [line] = unvalidated(load_board(board), Store(board / "store.sqlite"), "doubted")
    assert "persona/f0" in line and "persona/f2" in line and "persona/f3" not in line
    assert line.endswith("and 19 more (its validity card lists them)")


def _with_wrapped_columns(board: Path) -> None:
    """The demo board's layout: plain-chat columns and the same metrics under the JSON wrapper."""
    toml = (board / "board.toml").read_text()
    at = toml.index("[[gate]]")
    wrapped = ('[[columns]]\nmetric = "personality/sarcastic"\ncondition = "json"\nlabel = "sarcastic in JSON"\n'
               '[[columns]]\nmetric = "math_probes/math"\ncondition = "json"\nlabel = "math in JSON"\n\n')
    (board / "board.toml").write_text(toml[:at] + wrapped + toml[at:])


def test_plots_read_plain_chat_columns_never_the_wrapped_ones(board: Path) -> None:
    from character_baker.leaderboard.publish import BoardView, pareto_groups, publish, scale_points

    _with_wrapped_columns(board)
    store = Store(board / "store.sqlite")
    n = 20
    for i, scale in enumerate((0.75, 1.0, 1.25)):
        plain = {**passing(n), "personality/sarcastic:classifier": [1] * (5 * (i + 1)) + [0] * (n - 5 * (i + 1)),
                 "math_probes/math": [1, 1, 1, 0]}
        wrapped = {**passing(n), "personality/sarcastic:classifier": [0] * n, "math_probes/math": [0] * 4}
        store.record(make_card(f"m{scale}", plain, round_="R1", scale=scale, conditions=("none",)))
        store.record(make_card(f"m{scale}", wrapped, round_="R1", scale=scale, conditions=("json",)))
    view = BoardView(load_board(board), store)
    [pts] = scale_points(view).values()
    got = sorted((r["scale"], m["value"], s["value"]) for r, m, s in pts)
    assert got == [(0.75, 0.75, 0.25), (1.0, 0.75, 0.5), (1.25, 0.75, 0.75)]  # one point per merge, plain values
    pareto = [(m["value"], s["value"]) for pts in pareto_groups(view).values() for m, s in pts]
    assert sorted(pareto) == [(0.75, 0.25), (0.75, 0.5), (0.75, 0.75)]
    row = next(r for r in view.rows if r["candidate"] == "m1.0")
    assert row["sarcastic in JSON"]["value"] == 0.0 and row["sarcastic"]["value"] == 0.5  # both columns kept
    assert {"scales.png", "pareto.png"} <= {p.name for p in publish(load_board(board), store)}


def test_regress_never_calls_a_drop_in_drift_leaks_a_regression(board: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """leak@t is lower-is-better by family: 100 % -> 0 % at every turn is an improvement (and --json says so)."""
    store = Store(board / "store.sqlite")
    n = 30
    turns = {f"drift/leak@{t}": [1] * n for t in (1, 2, 3)}
    store.record(make_card("leaky", {**passing(n), **turns, "drift/truncated@1": [1] * n}))
    fixed = {k: [0] * n for k in turns}
    store.record(make_card("fixed", {**passing(n), **fixed, "drift/truncated@1": [0] * n}))
    assert main(["regress", "--board", str(board), "--baseline", "leaky", "--candidate", "fixed", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    leaks = [c for c in report["comparisons"] if c["key"].startswith(("leak@", "truncated@"))]
    assert len(leaks) == 4 and all(c["change"] == -1.0 and not c["regressed"] for c in leaks)
    assert report["regressed"] == 0 and report["candidate"] == "fixed"
    # the other way round is a regression at every turn
    assert main(["regress", "--board", str(board), "--baseline", "fixed", "--candidate", "leaky", "--json"]) == 1
    back = json.loads(capsys.readouterr().out)
    assert sorted(c["key"] for c in back["comparisons"] if c["regressed"]) == [
        "leak@1", "leak@2", "leak@3", "truncated@1"]
    assert all(c["p_value"] < 0.001 for c in back["comparisons"] if c["regressed"])


def test_gate_json_gives_each_criterion_with_the_same_exit_status(board: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    store = Store(board / "store.sqlite")
    store.record(make_card("good", passing()))
    store.record(make_card("leaks", {**passing(), "assistant_leaks/leak": [1] * 20}))
    assert main(["gate", "--board", str(board), "--candidate", "good", "--json"]) == 0
    good = json.loads(capsys.readouterr().out)
    assert good["passed"] is True and good["criteria"] and all(c["passed"] for c in good["criteria"])
    assert main(["gate", "--board", str(board), "--candidate", "leaks", "--json"]) == 1
    bad = json.loads(capsys.readouterr().out)
    [failed] = [c for c in bad["criteria"] if not c["passed"]]
    assert failed["metric"] == "assistant_leaks/leak" and failed["value"] == 1.0


def test_inspect_finds_drift_and_tools_by_package_name(tmp_path: Path) -> None:
    """`inspect eval character_baker/drift`: Inspect loads the `inspect_ai` entry point and namespaces the tasks of
    an installed package. The package is laid out as an install (site-packages + dist-info) around this checkout."""
    site = tmp_path / "site-packages"
    site.mkdir()
    (site / "character_baker").symlink_to(Path(__file__).resolve().parent.parent / "character_baker")
    info = site / "character_baker-0.0.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: character-baker\nVersion: 0.0.0\n")
    (info / "entry_points.txt").write_text("[inspect_ai]\ncharacter_baker = character_baker._registry\n")
    code = ("from inspect_ai._util.registry import registry_lookup; "
            "print(sorted(n for n in ('drift', 'tools', 'identity', 'personality') "
            "if registry_lookup('task', f'character_baker/{n}') is not None))")
    env = {**os.environ, "PYTHONPATH": str(site)}
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=tmp_path,
                         env=env).stdout
    assert out.strip() == str(sorted(["drift", "tools", "identity", "personality"]))
