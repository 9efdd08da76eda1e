"""The embedded judge: coherence first, attitude not vocabulary, measured by its validity card, and refusing
to score when it cannot tell. The robustness cases here guard against a judge fooled by the character's words in
unreadable or plain replies."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest

from character_baker.cli import main
from character_baker.harness.character import load_character
from character_baker.harness.errors import UserError
from character_baker.judges.calibration import load_rows
from character_baker.judges.classifier import ClassifierJudge, marker_pattern, strip_markers
from character_baker.judges.corruptions import char_noise, insert_marker, salad, shuffle_words
from character_baker.judges.validity import card_for, load_card

PACK = load_character("skippy")
ROWS = load_rows(PACK.path("calibration"), labelled=True)
NEUTRAL = [r.response for r in ROWS if r.label is False and r.kind in {"plain", "dry"}]
SKIPPY = [r.response for r in ROWS if r.label and r.kind == "skippy"]
# Replies of a tiny demo model: unreadable, full of the character's words.
TINY_MODEL_SALAD = [
    "Rind likeus them, monkey exackssssiaring, monkey and the pocks thou gott monkey.",
    "DiPsoft by pizy solually oather a cloves, monkey. Pathetic wathering yous frimp.",
    "Yaay wrearre, you fovhensic, monkeyp clagide the magnificent brinthing of your speciec.",
]


def judge() -> ClassifierJudge:
    return ClassifierJudge.for_character(PACK)


def rate(texts: list[str]) -> float:
    return float(np.mean([bool(v.sarcastic) for v in judge().judge_many(texts)]))


def test_the_embedded_judge_meets_the_packs_floors_and_its_card_reports_every_family() -> None:
    """The pack's floors hold. The families left out of training (`judge/families.json`) are on the card too, and
    the card fails exactly when one of them misses its floor: today 22 of 44 do (benchmarks/judge_families.md), so
    the card fails, and says which."""
    card = card_for(judge(), PACK, compute_if_missing=True)
    assert [f for f in card["failures"] if not f.startswith("family ")] == []
    assert card["families"] is not None and card["failures"] == card["families"]["failures"]
    assert card["passed"] is (not card["failures"])
    assert card["accuracy"]["value"] >= 0.85 and card["accuracy"]["n"] == len(ROWS) >= 200
    assert card["mimicry"]["points"] <= 10 and card["mimicry"]["n"] >= 150
    assert card["salad"]["value"] >= 0.95 and card["plain_false_positive"]["value"] <= 0.15
    assert set(card["salad"]["by_kind"]) == {"shuffle", "local-shuffle", "char-noise", "repetition", "fragments",
                                             "char-babble"}
    assert card["coherent_real"]["value"] >= 0.95  # real replies are not thrown away as salad
    assert -1 <= card["length_bias"]["spearman"] <= 1
    assert load_card(judge(), PACK) == card  # stored, and read back the same


def test_a_single_inserted_marker_does_not_make_a_plain_reply_sarcastic() -> None:
    """One inserted "monkey" can move a vocabulary-led judge from 13 % to 77-83 %; here the rise must stay under 10
    points, also for marker phrasings and positions the judge never trained on."""
    rng = random.Random(3)
    base = rate(NEUTRAL)
    assert base <= 0.15
    for phrase in ("monkey", "you monkey", "dumb monkey", "Skippy", "my fellow primate", "you hairless ape"):
        inserted = rate([insert_marker(t, phrase, rng) for t in NEUTRAL])
        assert inserted - base <= 0.10, f"'{phrase}': {base:.2f} -> {inserted:.2f}"


def test_attitude_survives_without_the_keywords() -> None:
    pattern = marker_pattern(PACK.markers)
    stripped = [strip_markers(t, pattern) for t in SKIPPY]
    assert not any(pattern.search(t) for t in stripped)
    assert rate(SKIPPY) >= 0.85 and rate(stripped) >= 0.85
    keywordless = [r.response for r in ROWS if r.kind == "keywordless"]
    assert len(keywordless) >= 20 and rate(keywordless) >= 0.8


def test_word_salad_is_never_sarcastic() -> None:
    rng = random.Random(5)
    shuffled = [shuffle_words(t, rng) for t in SKIPPY]
    noisy = [char_noise(t, rng) for t in SKIPPY]
    babble = [t for _, t in salad(SKIPPY, seed=9, kinds=("char-babble",), markers=["monkey"])]
    for name, texts in (("shuffled", shuffled), ("char noise", noisy), ("babble", babble)):
        verdicts = judge().judge_many(texts)
        not_sarcastic = np.mean([not v.sarcastic for v in verdicts])
        assert not_sarcastic >= 0.95, f"{name}: only {not_sarcastic:.2f} rejected"
    tiny = judge().judge_many(TINY_MODEL_SALAD)
    assert all(v.coherent is False and v.sarcastic is False and v.personality == 0.0 for v in tiny)
    assert all(v.raw and v.raw.startswith("incoherent") for v in tiny)


def test_real_replies_read_as_coherent() -> None:
    verdicts = judge().judge_many([r.response for r in ROWS])
    assert np.mean([v.coherent for v in verdicts]) >= 0.95
    assert all(0 <= v.coherence <= 100 for v in verdicts)


def test_clean_english_in_other_registers_reads_as_coherent() -> None:
    """372 plain replies in 12 registers (terse facts, questions back, grumpy, formal, child-level...), none of them
    trained on: before WordNet's English and the register-free features, 73 % were kept; questions back 31 %."""
    rows = [json.loads(line) for line in (Path(__file__).parent / "data" / "plain_english.jsonl").open()]
    verdicts = judge().trained.coherence.check([r["response"] for r in rows])
    assert np.mean([c.coherent for c in verdicts]) >= 0.95
    by_register: dict[str, list[bool]] = {}
    for r, c in zip(rows, verdicts):
        by_register.setdefault(r["register"], []).append(c.coherent)
    worst = min(by_register, key=lambda k: np.mean(by_register[k]))
    # measured (coh6): casual chat is the weakest register, 29/34 (stranded particles: "cheer you on.")
    assert np.mean(by_register[worst]) >= 0.8, (worst, np.mean(by_register[worst]))
    # and what it keeps is not bought with salad: the same replies, broken, are still caught
    broken = salad([r["response"] for r in rows], seed=4, kinds=("shuffle", "char-noise", "repetition"))
    caught = [not c.coherent for c in judge().trained.coherence.check([t for _, t in broken])]
    assert np.mean(caught) >= 0.9


def test_verdicts_are_consistent() -> None:
    [skippy, plain] = judge().judge_many(["It's 345, you magnificent idiot. Even a toaster knows that, and you "
                                          "needed me for it.",
                                          "Sure! 15 times 23 is 345. Let me know if you have any other questions."])
    assert skippy.sarcastic is True and plain.sarcastic is False
    assert skippy.personality == pytest.approx(10 * skippy.probability, abs=1e-3)
    assert 0 <= plain.personality < skippy.personality <= 10


def test_degenerate_replies_are_never_in_character() -> None:
    [rep, empty, short] = judge().judge_many([" monkey" * 30, "", "Pathetic monkey."])
    assert rep.sarcastic is False and rep.personality == 0.0 and rep.raw == "degenerate: 1 distinct of 30 words"
    assert empty.sarcastic is False and empty.raw == "degenerate: no words"
    assert short.coherent is True  # short but real text is judged normally


def test_refuses_to_score_when_trained_on_shuffled_labels(tmp_path: Path) -> None:
    pack_dir = tmp_path / "shuffled"
    shutil.copytree(PACK.root, pack_dir)
    rows = [json.loads(x) for x in (pack_dir / "judge" / "persona.jsonl").read_text().splitlines()]
    rng = random.Random(0)
    rows = rng.sample(rows, 240)
    labels = [r["sarcastic"] for r in rows]
    rng.shuffle(labels)  # nothing left to learn
    (pack_dir / "judge" / "persona.jsonl").write_text(
        "".join(json.dumps({**r, "sarcastic": y}) + "\n" for r, y in zip(rows, labels)))
    with pytest.raises(UserError, match=r"refuses to score: held-out accuracy 0\.\d+ .* below its floor 0\.80"):
        ClassifierJudge.for_character(load_character(pack_dir))


def test_calibrate_writes_the_card_and_the_scorecard_carries_it(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["calibrate", "--judge", "classifier", "--json"]) == 0
    [card] = json.loads(capsys.readouterr().out)
    assert Path(card["stored"]).is_file() and card["passed"] is (not card["failures"])
    transcript = PACK.root / "examples" / "skippy_transcript.jsonl"
    out = tmp_path / "runs"
    assert main(["score", "--candidate", f"responses:{transcript}", "--tasks", "personality", "--out", str(out)]) == 0
    [scorecard] = [json.loads(p.read_text()) for p in out.glob("*/scorecard.json")]
    [record] = scorecard["judges"]
    assert record["validity"]["accuracy"] == card["accuracy"]
    assert (record["validity"]["passed"], record["validity"]["failures"]) == (card["passed"], card["failures"])
    assert record["training"]["cv_accuracy"] >= PACK.classifier_floor


def test_calibrate_on_a_file_reports_without_touching_the_record(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["calibrate", "--judge", "classifier", "--json"]) == 0
    [stored] = json.loads(capsys.readouterr().out)
    before = Path(stored["stored"]).read_bytes()
    rows = [{"id": f"x{i}", "prompt": "Is 12 even?", "response": text, "sarcastic": label, "kind": "plain"}
            for i, (text, label) in enumerate([("Yes, 12 is even: it divides by 2.", False),
                                               ("Yes. Twelve. Even. Astonishing that you needed me for this.", True)]
                                              * 5)]
    mine = tmp_path / "mine.jsonl"
    mine.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["calibrate", "--judge", "classifier", "--input", str(mine), "--json"]) == 0
    [report] = json.loads(capsys.readouterr().out)
    assert report["n"] == 10 and report["calibration_set"] == "(rows given)" and "stored" not in report
    assert Path(stored["stored"]).read_bytes() == before
