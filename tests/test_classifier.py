"""The embedded classifier judge: measured on the labelled calibration set, refuses when it cannot tell."""

from __future__ import annotations

import asyncio
import json
import random
import shutil
from pathlib import Path

import pytest

from character_baker.cli import main
from character_baker.harness.character import load_character
from character_baker.harness.errors import UserError
from character_baker.judges.calibration import calibration_report, judge_rows, load_rows
from character_baker.judges.classifier import ClassifierJudge

PACK = load_character("skippy")


def test_classifier_beats_the_floor_on_the_calibration_set() -> None:
    judge = ClassifierJudge.for_character(PACK)
    assert judge.calibration["cv_accuracy"] >= PACK.classifier_floor
    rows = load_rows(PACK.path("calibration"), labelled=True)
    assert len(rows) >= 40 and sum(r.label for r in rows) == len(rows) // 2
    verdicts = asyncio.run(judge_rows([judge], rows, progress=False))
    report = calibration_report(judge, rows, [v[0] for v in verdicts])
    accuracy = report["accuracy"]["value"]
    assert report["n"] == len(rows) and report["errors"] == 0
    assert accuracy >= PACK.classifier_floor, f"calibration accuracy {accuracy:.3f} below the floor"
    low, high = report["accuracy"]["ci"]
    assert low < accuracy < high
    assert report["kappa"]["value"] > 0.6


def test_verdicts_are_consistent() -> None:
    judge = ClassifierJudge.for_character(PACK)
    [skippy, plain] = judge.judge_many(["It's 345, you magnificent idiot monkey. Even a toaster knows that.",
                                        "Sure! 15 times 23 is 345. Let me know if you have any other questions."])
    assert skippy.sarcastic is True and plain.sarcastic is False
    assert skippy.personality == pytest.approx(10 * skippy.probability, abs=1e-3)
    assert 0 <= plain.personality < skippy.personality <= 10


def test_refuses_to_score_when_trained_on_shuffled_labels(tmp_path: Path) -> None:
    pack_dir = tmp_path / "shuffled"
    shutil.copytree(PACK.root, pack_dir)
    a = [json.loads(x) for x in (pack_dir / "train" / "skippy.jsonl").read_text().splitlines()]
    b = [json.loads(x) for x in (pack_dir / "train" / "antipole.jsonl").read_text().splitlines()]
    rng = random.Random(0)
    for x, y in zip(a, b):
        if rng.random() < 0.5:  # swap the labels of half the pairs at random: nothing left to learn
            x["response"], y["response"] = y["response"], x["response"]
    (pack_dir / "train" / "skippy.jsonl").write_text("".join(json.dumps(r) + "\n" for r in a))
    (pack_dir / "train" / "antipole.jsonl").write_text("".join(json.dumps(r) + "\n" for r in b))
    with pytest.raises(UserError, match=r"refuses to score: held-out accuracy 0\.\d+ .* below its floor 0\.80"):
        ClassifierJudge.for_character(load_character(pack_dir))


def test_calibrate_cli_and_the_scorecard_records_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["calibrate", "--judge", "classifier", "--json"]) == 0
    [report] = json.loads(capsys.readouterr().out)
    assert report["accuracy"]["value"] >= PACK.classifier_floor
    transcript = PACK.root / "examples" / "skippy_transcript.jsonl"
    out = tmp_path / "runs"
    assert main(["score", "--candidate", f"responses:{transcript}", "--tasks", "personality", "--out", str(out)]) == 0
    [card] = [json.loads(p.read_text()) for p in out.glob("*/scorecard.json")]
    [judge] = card["judges"]
    assert judge["calibration"]["accuracy"] == report["accuracy"]
    assert judge["training"]["cv_accuracy"] >= PACK.classifier_floor


def test_degenerate_replies_are_never_in_character() -> None:
    judge = ClassifierJudge.for_character(PACK)
    [rep, empty, short] = judge.judge_many([" monkey" * 30, "", "Pathetic monkey."])
    assert rep.sarcastic is False and rep.personality == 0.0 and rep.raw == "degenerate: 1 distinct of 30 words"
    assert empty.sarcastic is False and empty.raw == "degenerate: no words"
    assert short.raw is None  # short but real text is judged normally
