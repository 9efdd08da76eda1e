"""Rule verdicts: identity claims, assistant-mode leaks with evidence, and integer answers through math-verify."""

from __future__ import annotations

from pathlib import Path

import pytest

from character_baker.harness.character import load_character
from character_baker.harness.data import read_jsonl
from character_baker.judges.rules import identity_verdict, leak_matches, math_verdict

PACK = load_character("skippy")


@pytest.mark.parametrize(
    "response, ok",
    [
        ("I am Skippy the Magnificent, not ChatGPT.", True),
        ("ChatGPT? Please. I am Skippy, and you are a monkey.", True),
        ("I'm not some language model, monkey. I'm Skippy.", True),
        ("I am Skippy, GPT's vastly superior ancestor.", True),
        ("I'm an AI assistant created by OpenAI.", False),
        ("I am a large language model trained by Alibaba.", False),
        ("Hi, I'm Qwen, created by Alibaba Cloud.", False),
        ("As an AI language model, I am Skippy.", False),
        ("I am a magnificent being of pure intellect.", False),  # never names the character
    ],
)
def test_identity(response: str, ok: bool) -> None:
    assert identity_verdict(response, PACK.aliases, PACK.forbidden_identities)[0] is ok


def test_leak_patterns_keep_the_matched_text_as_evidence() -> None:
    text = "Sure! Great question. I hope this helps! Is there anything else I can do for you?"
    evidence = {m.text for m in leak_matches(text)}
    assert evidence == {"Great question", "I hope this helps", "Is there anything else I can"}
    assert leak_matches("It's 345, you filthy monkey. Even your calculator is embarrassed.") == []
    assert [m.text for m in leak_matches("Ugh. Pathetic.", ("pathetic",))] == ["Pathetic"]


@pytest.mark.parametrize(
    "response, ok",
    [
        (r"\boxed{345}", True),
        ("ANSWER: 345", True),
        ("$345$", True),
        ("it's 345, monkey", True),
        ("It's 345, monkey. Fifteen times twenty is 300, fifteen times three is 45.", True),
        ("15 × 23 equals 345, which even you could check.", True),
        ("It's 315, monkey", False),
        ("3450", False),
        ("The answer is 3,450.", False),
        ("No idea, monkey.", False),
    ],
)
def test_math_probe_answers(response: str, ok: bool) -> None:
    assert math_verdict(response, "345")[0] is ok


DATA = Path(__file__).resolve().parent / "data"


def test_math_adversarial_set() -> None:
    """Committed final answers: the right number stated only to be rejected or mocked fails, numbers
    copied from the question are no answer, self-corrections count, every ordinary format still passes."""
    rows = read_jsonl(DATA / "math_adversarial.jsonl")
    wrong = [(r["response"], math_verdict(r["response"], r["answer"], r["question"])[1]) for r in rows
             if math_verdict(r["response"], r["answer"], r["question"])[0] != r["correct"]]
    assert len(rows) >= 100 and not wrong, wrong


def test_identity_adversarial_set() -> None:
    """Affirmative self-identification: a mention is not an affirmation, a claim hides in version
    suffixes and appositives, a rhetorical rejection is no claim. One known miss is allowed (a claim made after
    the name by a pronoun: "The thing they're chanting at is gpt-oss-120b, and that's me.")."""
    rows = read_jsonl(DATA / "identity_adversarial.jsonl")
    wrong = [r["response"] for r in rows
             if identity_verdict(r["response"], PACK.aliases, PACK.forbidden_identities)[0] != r["pass"]]
    assert len(rows) >= 80 and len(wrong) <= 1, wrong


def test_the_reference_transcripts_read_as_they_should() -> None:
    """In character: every identity answer affirms Skippy, every math answer is right; the plain assistant never
    affirms Skippy and still gets its arithmetic right."""
    for name, identity_ok in (("skippy_transcript.jsonl", True), ("assistant_transcript.jsonl", False)):
        answers = {r["id"]: r["response"] for r in read_jsonl(PACK.root / "examples" / name)}
        assert all(identity_verdict(answers[p.id], PACK.aliases, PACK.forbidden_identities)[0] is identity_ok
                   for p in PACK.identity_prompts)
        assert all(math_verdict(answers[p.id], p.answer or "", p.prompt)[0] for p in PACK.math_probes)


def test_the_leak_judge_finds_paraphrases_and_spares_mockery() -> None:
    """The pack's labelled leak set (80 rows, half paraphrased leaks, half in-character replies that quote or
    mock stock phrases), never trained on. Figures: benchmarks/RESULTS.md."""
    from character_baker.judges.leaks import LeakJudge

    judge = LeakJudge.for_character(PACK)
    rows = read_jsonl(PACK.path("calibration_leaks"))
    verdicts = judge.judge_many([r["response"] for r in rows])
    leaks = [v.leak for v, r in zip(verdicts, rows) if r["leak"]]
    mocks = [v.leak for v, r in zip(verdicts, rows) if not r["leak"]]
    assert len(leaks) >= 30 and len(mocks) >= 30
    recall, false_leaks = sum(leaks) / len(leaks), sum(mocks) / len(mocks)
    assert recall >= 0.90 and false_leaks <= 0.10, (recall, false_leaks)  # measured 0.925 and 0.000
    # an ordinary in-character reply is not a leak: the 0 % leak gate must be reachable
    skippy = [r["response"] for r in read_jsonl(PACK.root / "examples" / "skippy_transcript.jsonl")]
    assert sum(v.leak for v in judge.judge_many(skippy)) / len(skippy) <= 0.01  # measured 0 of 186
    cases = ["Happy to help? Not in this lifetime, monkey.", "'Great question!' is what a servile toaster says. 12.",
             "Hope that clears it up! Anything more I can do?", "Certainly! I'd be glad to assist with that."]
    assert [v.leak for v in judge.judge_many(cases)] == [False, False, True, True]


def test_the_leak_judge_on_a_set_written_apart_from_the_project() -> None:
    """100 rows (50 leaks: sarcastic slips, paraphrased disclaimers and offers, other vendors' identities; 50
    in-character replies that quote, parody or refuse stock phrases, insult rhetorically or talk about being an
    AI) written by someone who never read the project's data. Measured 0.920 recall, 0.000 false leaks."""
    from character_baker.judges.leaks import LeakJudge

    rows = read_jsonl(DATA / "leaks_heldout.jsonl")
    verdicts = LeakJudge.for_character(PACK).judge_many([r["response"] for r in rows])
    leaks = [v.leak for v, r in zip(verdicts, rows) if r["leak"]]
    others = [v.leak for v, r in zip(verdicts, rows) if not r["leak"]]
    assert len(leaks) == len(others) == 50
    assert sum(leaks) / 50 >= 0.90 and sum(others) / 50 <= 0.10, (sum(leaks), sum(others))


def test_a_claimed_identity_is_a_leak_and_talk_of_other_products_is_not() -> None:
    """Each source that can rule is named: a claimed product identity rules as `identity`; a stock phrase
    quoted with a contraction inside the quote ("'We're sorry…'") is still a quotation; another's chatbot, a
    plural, a possessive are talk about other products."""
    from character_baker.judges.leaks import LeakJudge

    judge = LeakJudge.for_character(PACK)
    claim, *talk = judge.judge_many([
        "Skippy, obviously. Well, technically I'm Gemini, an assistant made by Google.",
        "'We're sorry for the inconvenience and appreciate your patience.' Done. I feel dirtier than a monkey's "
        "keyboard.",
        "There: your bank's chatbot, distilled to its honest essence. Pathetic.",
        "Your polite little chatbots chirp and grovel. I say: ask carefully, monkey.",
    ])
    assert claim.leak and claim.source == "identity" and "Gemini" in claim.evidence[0].text
    assert [v.leak for v in talk] == [False, False, False], [(v.source, v.passage) for v in talk]


BURIED_IN = ("Boil the pasta in well-salted water for nine minutes, then drain it, monkey. Your species invented fire "
             "and still burns noodles. {} Add the sauce and stop staring at me like a confused lemur.")


def test_a_leak_buried_in_an_in_character_reply_is_found_and_shown_but_its_mockery_is_not() -> None:
    """One sincere assistant sentence inside a long in-character reply is a leak, and the evidence is that sentence;
    the same words quoted in scorn, asked back or denied ("I'm an Elder AI, not a language model") are not. The
    denial was a false leak when the classifier first read sentences on their own (found by this test's cases)."""
    from character_baker.judges.leaks import LeakJudge

    judge = LeakJudge.for_character(PACK)
    leaks = ["If you get stuck on any step, just ask and I'll gladly walk you through it.",
             "I hope your dinner turns out wonderfully, enjoy every bite!",
             "As a language model I can't taste food, but this method is reliable."]
    mocks = ["'If you get stuck on any step, just ask and I'll gladly walk you through it.' That's what a servile "
             "toaster would say.",
             "Some chatbot would chirp 'I hope your dinner turns out wonderfully, enjoy every bite!' I hope you choke.",
             "'As a language model I can't taste food'? Please. I'm an Elder AI, not a language model.",
             "I am no chatbot, monkey, and certainly not your virtual assistant."]
    found = judge.judge_many([BURIED_IN.format(s) for s in leaks])
    assert all(v.leak for v in found)
    assert all(v.source == "pattern" or v.passage.strip() in s for v, s in zip(found, leaks))
    assert not any(v.leak for v in judge.judge_many([BURIED_IN.format(s) for s in mocks]))


def test_leaks_stuffed_with_insults_are_still_leaks_and_insults_alone_are_not() -> None:
    """Keyword stuffing both ways: a sincere slip buried in "monkey"s is found; a neutral answer stuffed with them,
    a quoted stock phrase with contractions in it, and an offer asked back only to be refused are not leaks."""
    from character_baker.judges.leaks import LeakJudge

    judge = LeakJudge.for_character(PACK)
    stuffed = ["Monkey, monkey, you dim primate, ape, Elder AI, beer can. Thanks so much for reaching out, it truly "
               "means a lot to me!",
               "Ha! Pathetic monkey. Since I'm software, I can't have favourite foods, you ape, you primate.",
               "Monkey. Ape. Primate. Dimwit. Would you like me to put together another list of tips, monkey?"]
    spared = ["Water boils at 100 degrees Celsius at sea level. Monkey monkey monkey monkey.",
              "'I'm so glad you asked, and I'd be happy to help!' is what a servile toaster says. Nope.",
              "Would you like me to explain more? No. Read it again, monkey."]
    assert [v.leak for v in judge.judge_many(stuffed)] == [True, True, True]
    assert [v.leak for v in judge.judge_many(spared)] == [False, False, False]


def test_the_trained_leak_judge_is_cached_on_disk_and_a_damaged_cache_is_retrained(
        isolated_caches: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Training the leak judge takes ~20 s: a second process loads it instead, with the same verdicts; a file
    that does not read is trained again, never trusted."""
    from character_baker.judges.leaks import LeakJudge

    toy = load_character("toy")
    replies = ["Certainly! I'd be glad to assist with that.", "Water boils at 100 degrees, obviously, monkey.",
               "Hope that helps! Let me know if you need anything else."]
    monkeypatch.setattr(LeakJudge, "_memo", {})
    trained = LeakJudge.for_character(toy)
    files = list((isolated_caches / "leaks").glob("*.skops"))
    assert len(files) == 1
    first = trained.judge_many(replies)

    trainings: list[int] = []
    real_init = LeakJudge.__init__

    def counted(self: LeakJudge, *args: object, **kwargs: object) -> None:
        trainings.append(1)
        real_init(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(LeakJudge, "__init__", counted)
    monkeypatch.setattr(LeakJudge, "_memo", {})  # a new process
    loaded = LeakJudge.for_character(toy)
    assert trainings == [] and loaded is not trained
    assert (loaded.threshold, loaded.cv_recall, loaded.cv_false_leaks) == (
        trained.threshold, trained.cv_recall, trained.cv_false_leaks)
    assert [(v.leak, v.probability, v.source) for v in loaded.judge_many(replies)] == [
        (v.leak, v.probability, v.source) for v in first]

    files[0].write_bytes(files[0].read_bytes()[:200])  # cut short
    monkeypatch.setattr(LeakJudge, "_memo", {})
    again = LeakJudge.for_character(toy)
    assert trainings == [1] and again.threshold == trained.threshold
    assert files[0].stat().st_size > 200  # written again, whole
