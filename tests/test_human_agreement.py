"""People's labels: the gold file (append-only, resumable) and each judge's agreement with it (`calibrate --gold`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from character_baker.cli import main
from character_baker.harness.errors import UserError
from character_baker.leaderboard.labels import agreement, append_label, human_agreement, read_labels


def test_agreement_counts_and_kappa_by_hand() -> None:
    pairs = [(True, True), (True, False), (False, False), (False, False)] * 5
    a = agreement(pairs)
    # observed 0.75; chance 0.5 * 0.25 + 0.5 * 0.75 = 0.5; kappa (0.75 - 0.5) / 0.5 = 0.5
    assert a["n"] == 20 and a["accuracy"]["k"] == 15 and a["accuracy"]["value"] == pytest.approx(0.75)
    assert a["kappa"]["value"] == pytest.approx(0.5)
    low, high = a["kappa"]["ci"]
    assert low < 0.5 < high and -1 <= low and high <= 1
    lo_acc, hi_acc = a["accuracy"]["ci"]
    assert lo_acc < 0.75 < hi_acc
    labels = [{"sarcastic": True, "leak": None}, {"sarcastic": False, "leak": False}]
    by = human_agreement(labels, [{"clf": {"sarcastic": True, "leak": False}}, {"clf": {"sarcastic": True}}])
    assert by["clf"]["sarcastic"]["n"] == 2 and by["clf"]["sarcastic"]["accuracy"]["k"] == 1
    assert "leak" not in by["clf"]  # the person left leak open on the first, the judge on the second


def test_gold_file_appends_whole_lines_latest_wins_and_refuses_bad_labels(tmp_path: Path) -> None:
    gold = tmp_path / "labels" / "gold.jsonl"
    row = {"id": "c|personality|none|p1|1", "prompt": "p", "response": "r", "sarcastic": True}
    append_label(gold, row, "ann")
    append_label(gold, {**row, "sarcastic": False, "leak": True}, "bob")
    append_label(gold, {**row, "id": "c|personality|none|p2|1"}, "ann")
    with gold.open("a") as f:
        f.write('{"id": "cut off by a cra')  # a crash mid-line: ignored, the rest reads
    labels = read_labels(gold)
    assert len(labels) == 2 and labels[row["id"]]["sarcastic"] is False and labels[row["id"]]["labeller"] == "bob"
    assert len(gold.read_text().splitlines()) == 4  # append-only: the earlier label is still in the file
    with pytest.raises(UserError, match="'sarcastic'"):
        append_label(gold, {**row, "sarcastic": "yes"}, "ann")
    with pytest.raises(UserError, match="labeller"):
        append_label(gold, row, " ")


def test_calibrate_gold_measures_the_embedded_judge_against_people(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    gold = tmp_path / "board" / "labels" / "gold.jsonl"
    replies = [("What is 2 + 2?", "Four, monkey. Even your species can count that high, I hope.", True),
               ("Best way to learn Python?", "Start with the official tutorial and write small programs daily.",
                False),
               ("Can you help me plan a trip?", "Oh, the monkey wants a travel agent now. Fine: pick a place, "
                "book a flight, pack less than you think. Try not to get lost.", True),
               ("How do I boil an egg?", "Place the egg in boiling water for nine minutes, then cool it.", False)]
    for i, (prompt, response, sarcastic) in enumerate(replies):
        append_label(gold, {"id": f"r{i}", "prompt": prompt, "response": response, "sarcastic": sarcastic,
                            "coherent": True}, "ann")
    assert main(["calibrate", "--gold", str(gold), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    clf = report["judges"]["classifier"]["sarcastic"]
    assert report["labels"] == 4 and report["labellers"] == ["ann"] and clf["n"] == 4
    assert clf["accuracy"]["k"] == round(clf["accuracy"]["value"] * 4)
    assert json.loads(gold.with_name("agreement.json").read_text())["judges"] == report["judges"]
    gold.write_text('{"id": "x", "prompt": "p", "response": "r", "sarcastic": "maybe"}\n')
    assert main(["calibrate", "--gold", str(gold)]) == 2
    assert capsys.readouterr().err.strip().endswith("field 'sarcastic' must be true or false")
