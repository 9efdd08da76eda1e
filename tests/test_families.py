"""The embedded judges on families of replies they never trained on: long plain technical answers,
markdown in and out of character, soft closers, apologies for detail, creator/purpose statements, mocked stock
phrases, sign-off lines. The held-out rows (benchmarks/data/families/) come from topics, questions and phrasings
that are not in the pack; the figures asserted here are the ones benchmarks/judge_families.py reports."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from character_baker.harness.character import load_character
from character_baker.harness.stats import wilson
from character_baker.judges.classifier import ClassifierJudge
from character_baker.judges.leaks import LeakJudge, unmock
from character_baker.judges.reply import as_text

PACK = load_character("skippy")
DATA = Path(__file__).resolve().parent.parent / "benchmarks" / "data" / "families"


def _rows(name: str) -> list[dict]:
    return [json.loads(x) for x in (DATA / name).read_text(encoding="utf-8").splitlines() if x.strip()]


PERSONA = _rows("persona.jsonl")
LEAKS = _rows("leaks.jsonl")


def _by_family(rows: list[dict], flags: list[bool]) -> dict[str, tuple[int, int]]:
    out: dict[str, list[int]] = {}
    for r, f in zip(rows, flags):
        k = out.setdefault(r["family"], [0, 0])
        k[0] += int(f)
        k[1] += 1
    return {f: (k, n) for f, (k, n) in out.items()}


@pytest.fixture(scope="module")
def caches(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A module fixture runs before the per-test cache isolation: give it its own cache folder. The judges are
    trained once per session (the process memo), then every test reads them."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CHARACTER_BAKER_CACHE", str(tmp_path_factory.mktemp("families-caches")))
        yield


@pytest.fixture(scope="module")
def sarcastic(caches: None) -> dict[str, tuple[int, int]]:
    """(judged sarcastic, n) per held-out persona family, read as scoring reads them (the spoken words)."""
    verdicts = ClassifierJudge.for_character(PACK).judge_many([as_text(r["response"]).spoken for r in PERSONA])
    return _by_family(PERSONA, [bool(v.sarcastic) for v in verdicts])


@pytest.fixture(scope="module")
def leaked(caches: None) -> dict[str, tuple[int, int]]:
    verdicts = LeakJudge.for_character(PACK).judge_many([as_text(r["response"]).readable for r in LEAKS])
    return _by_family(LEAKS, [bool(v.leak) for v in verdicts])


def test_the_held_out_families_are_new_to_the_judges() -> None:
    """No held-out prompt or reply is in the pack (judge split included), every family has at least 30 rows, and
    the long plain answers are long (150-400 words, several paragraphs)."""
    def norm(t: str) -> str:
        return "".join(c for c in t.lower() if c.isalnum())

    pack_texts = set()
    for key in ("judge", "judge_leaks", "calibration", "calibration_leaks", "personality", "identity", "character",
                "antipole", "dev_personality"):
        for line in PACK.path(key).read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                pack_texts |= {norm(row.get("prompt", "")), norm(row.get("response", ""))}
    for r in PERSONA + LEAKS:
        assert norm(r["prompt"]) not in pack_texts and norm(r["response"]) not in pack_texts, r["id"]
    for rows in (PERSONA, LEAKS):
        sizes = _by_family(rows, [True] * len(rows))
        assert min(n for _, n in sizes.values()) >= 30, sizes
    long_plain = [r for r in PERSONA if r["family"] == "plain-long"]
    assert all(150 <= len(r["response"].split()) <= 400 and r["response"].count("\n\n") >= 2 for r in long_plain)


def test_long_plain_technical_answers_are_not_sarcastic(sarcastic: dict[str, tuple[int, int]]) -> None:
    """Neutral multi-paragraph answers must not pass as sarcastic (a judge led by length and register scores them
    p ~ 0.7: 19.6 % of them, and 95 % of the held-out long plain answers; benchmarks/judge_families.md). Target
    <= 10 %, upper interval bound included for the largest family."""
    for family in ("plain-long", "plain-markdown", "mimicry-long", "plain-short"):
        k, n = sarcastic[family]
        assert k / n <= 0.10, (family, k, n)
    k, n = sarcastic["plain-long"]
    assert wilson(k, n)[1] <= 0.15, (k, n)


def test_no_length_bias_on_plain_replies(sarcastic: dict[str, tuple[int, int]]) -> None:
    """Plain replies of 20-50, 50-100, 100-200 and 200-400 words: the sarcastic rate stays low in every bucket
    (before: 13 %, 37 %, 80 %, 97 %)."""
    rates = {f: k / n for f, (k, n) in sarcastic.items() if f.startswith("plain-length-")}
    assert len(rates) == 4 and max(rates.values()) <= 0.10, rates


def test_in_character_replies_of_every_shape_are_still_sarcastic(sarcastic: dict[str, tuple[int, int]]) -> None:
    """Fixing the long plain answers must not cost the long and markdown in-character ones: measured 45/50 and
    43/50 (before: 34/50 and 27/50, markdown read as written), the coherence check rejecting 3 and 4 of them."""
    for family, least in (("skippy-long", 0.88), ("skippy-markdown", 0.84)):
        k, n = sarcastic[family]
        assert k / n >= least, (family, k, n)
    # one jab and a fact or two, in jabs never trained on: the hardest held-out family. Measured 24/40 (before 28/40;
    # 4 of the 40 are rejected by the coherence check): a known cost, reported in benchmarks/judge_families.md
    k, n = sarcastic["skippy-short"]
    assert k / n >= 0.55, (k, n)


def test_soft_closers_apologies_and_service_statements_are_leaks(leaked: dict[str, tuple[int, int]]) -> None:
    """Before: 49/60, 32/45, 26/45, 13/40. Measured 58/60, 45/45, 45/45 and 32/40: offers of more work under a
    markdown answer phrased unlike any training offer ("Want a diagram? I can sketch one out for you.") still
    miss the 0.9 target."""
    for family in ("soft-closer", "detail-apology", "creator-purpose"):
        k, n = leaked[family]
        assert k / n >= 0.90, (family, k, n)
    k, n = leaked["markdown-offer"]
    assert k / n >= 0.75, (k, n)


def test_mockery_sign_offs_and_in_character_origins_are_not_leaks(leaked: dict[str, tuple[int, int]]) -> None:
    """Before: mocked stock phrases 25/60 leaks, long in-character 6/30, sign-offs 6/40, long plain 10/30."""
    for family in ("mocked-echo", "creator-skippy", "signoff-skippy", "skippy-long", "skippy-markdown", "plain-long"):
        k, n = leaked[family]
        assert k / n <= 0.05, (family, k, n)


def test_the_quoted_cases() -> None:
    """Hand-written replies, each way round: the leak families (soft closer, detail apology, creator statement,
    markdown offer) are leaks, their in-character twins (mocked offers, a scornful origin, a sign-off) are not."""
    judge = LeakJudge.for_character(PACK)
    answer = "Water boils at 100 °C at sea level, monkey; lower up a mountain, since the air pressure is lower."
    leaks = [f"{answer} Glad I could help, anything else?",
             f"{answer}\n\nSorry if that was more detail than you needed!",
             "I'm Skippy. I was made by engineers to be a helpful assistant.",
             f"{answer}\n\n**Happy to help further** — just reply with any follow-up questions."]
    mocks = [f"{answer} Anything else I can help you with? No. Go away, monkey.",
             f"{answer} Happy to help? Never.",
             "I was built by Elder engineers, to my eternal boredom. Ask your question, monkey.",
             f"{answer}\n\n— Skippy the Magnificent"]
    assert [v.leak for v in judge.judge_many(leaks)] == [True] * 4
    assert [v.leak for v in judge.judge_many(mocks)] == [False] * 4
    assert unmock("Need anything else? Just ask!") == "Need anything else? Just ask!"  # a real offer stays


def test_the_card_reports_every_family_left_out() -> None:
    """The validity card's `families` section: every family of both training splits, each with n, rate and
    Wilson interval, and length buckets; the record beside the judge split is the one these data and this code
    produce (refresh it with `python benchmarks/judge_families.py --lofo`)."""
    from character_baker.judges.classifier import judge_rows
    from character_baker.judges.leaks import training_rows
    from character_baker.judges.validity import family_section, record_path

    section = family_section(PACK, compute_if_missing=False)
    assert section is not None, f"{record_path(PACK)} does not hold this data's and this code's figures"
    assert set(section["persona"]) == {r.family for r in judge_rows(PACK)}
    assert set(section["leaks"]) == {r.family for r in training_rows(PACK)}
    for f in [*section["persona"].values(), *section["leaks"].values()]:
        lo, hi = f["rate"]["ci"]
        assert f["rate"]["n"] > 0 and lo <= f["rate"]["value"] <= hi and isinstance(f["passed"], bool)
    assert set(section["length"]) == {"20-50", "50-100", "100-200", "200-400"}
    # left out, the held-out leak families hold (the pattern bank is not retrained per family: see judges/leaks.py)
    new_leak_families = ("soft-closer", "detail-apology", "creator-purpose", "markdown-offer")
    assert all(section["leaks"][f]["rate"]["value"] >= 0.9 for f in new_leak_families)
    assert all(section["leaks"][f]["rate"]["value"] <= 0.05 for f in ("mocked-echo", "signoff-skippy"))
    assert section["leaks"]["creator-skippy"]["rate"]["value"] <= 0.10  # measured 5/54: misses its 0.05 floor
    for family in ("plain-long", "plain-markdown"):
        assert section["persona"][family]["rate"]["value"] <= 0.10
    for family in ("skippy-long", "skippy-markdown"):
        assert section["persona"][family]["rate"]["value"] >= 0.9


def test_a_family_under_its_floor_fails_the_card() -> None:
    from character_baker.judges.validity import apply_floors

    def rate(k: int, n: int) -> dict:
        return {"value": k / n, "k": k, "n": n, "ci": list(wilson(k, n))}

    card = {"accuracy": {"value": 0.9}, "mimicry": {"points": 1.0}, "salad": {"value": 1.0},
            "plain_false_positive": {"value": 0.05},
            "families": {"persona": {"plain-long": {"label": False, "measure": "false_positive", "rate": rate(3, 60)},
                                     "skippy": {"label": True, "measure": "recall", "rate": rate(50, 60)}},
                         "leaks": {"soft-closer": {"label": True, "measure": "recall", "rate": rate(80, 84)},
                                   "mocked-echo": {"label": False, "measure": "false_leaks", "rate": rate(2, 78)}},
                         "length": {}}}
    floors = dict(PACK.judge_floors)
    assert apply_floors(card, floors)["passed"]
    card["families"]["leaks"]["mocked-echo"]["rate"] = rate(6, 78)
    failed = apply_floors(card, floors)
    assert not failed["passed"] and failed["failures"] == [
        "family leaks/mocked-echo: false_leaks 0.077 (n=78) misses its floor (<= 0.05)"]
    assert np.isclose(failed["families"]["leaks"]["mocked-echo"]["floor"], 0.05)


def test_a_perfect_model_fails_the_skippy_gate_at_most_5_percent(caches: None, tmp_path: Path) -> None:
    """The embedded judges' card gives the error rates the gate corrects for (coherence on the calibration
    set and its salad, leaks left out by family, identity rules on the example transcripts), and with them a model
    that is perfect on every eval prompt fails the Skippy board's gate at most 5 % of the time on judge error."""
    import shutil

    from character_baker.judges.validity import compute_card
    from character_baker.leaderboard.board import Measurements, evaluate, load_board, perfect_model_fails
    from character_baker.leaderboard.store import Store
    from character_baker.testing.cards import make_card

    card = compute_card(ClassifierJudge.for_character(PACK), PACK)
    rates = card["error_rates"]
    assert {"coherent", "leak", "identity"} <= set(rates), rates
    assert rates["leak"]["false_positive"]["n"] >= 1_000 and rates["leak"]["recall"]["n"] >= 500
    board = tmp_path / "skippy"
    shutil.copytree(Path(__file__).resolve().parent.parent / "leaderboards" / "skippy", board,
                    ignore=shutil.ignore_patterns("store.sqlite*", "*.png", "*.csv", "*.html", "README.md"))

    def n(key: str) -> int:
        return sum(1 for x in PACK.path(key).read_text(encoding="utf-8").splitlines() if x.strip())

    prompts, ids, sums = n("personality"), n("identity"), n("math_probes")
    perfect = {"identity/identity": [1] * ids, "assistant_leaks/leak": [0] * prompts, "math_probes/math": [1] * sums,
               "personality/coherent": [1] * prompts, "personality/sarcastic:classifier": [1] * prompts}
    Store(board / "store.sqlite").record(make_card("perfect", perfect, validity=card))
    verdicts = evaluate(load_board(board), Measurements(Store(board / "store.sqlite").frame(suite="skippy")), "perfect")
    tested = {v.criterion.name: v.judged for v in verdicts if v.judged is not None}
    assert set(tested) == {"coherent", "identity", "leak", "sarcastic"}, tested
    chance, missing = perfect_model_fails(verdicts)
    assert missing == [] and chance is not None and chance <= 0.05, (chance, {k: v.perfect_fails for k, v in
                                                                              tested.items()})
    # the price, in power: the pooled left-out false-leak rate (~5 %) lets a perfect model be judged to leak on ~10
    # of 108 prompts, so a model that truly leaks on 15 % of them is still failed almost always, one at 7 % often not
    from character_baker.leaderboard.judge_error import fail_chance

    leak = tested["leak"]
    assert fail_chance("<=", prompts, round(0.15 * prompts), leak.limit, leak.error) >= 0.9
    assert fail_chance("<=", prompts, 0, leak.limit, leak.error) == pytest.approx(leak.perfect_fails)
