"""One verdict path, reading replies the way real chat models write them (markdown, sign-offs, prose around JSON)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from character_baker.cli import main
from character_baker.harness.character import load_character
from character_baker.harness.structure import read, split_json
from character_baker.judges.corruptions import salad
from character_baker.judges.reply import ReplyJudge, as_text

PACK = load_character("skippy")

# endings real 8B-20B chat models put under a finished reply: none of them is a sentence
TAILS = {
    "signoff": "\n\n— Skippy the Magnificent",
    "signoff-same-paragraph": "\nYou're welcome, monkey",
    "code": "\n\n```python\ntotal = sum(range(10))\nprint(total)\n```",
    "table": "\n\n| step | result |\n|---|---|\n| add | 12 |\n| double | 24 |",
    "bold": "\n\n**Final answer: 24**",
    "parenthetical": "\n\n(you're welcome)",
    "list": "\n\nThings you got wrong:\n- the units\n- the sign\n- your entire approach",
    "heading-first": "",  # a heading above the reply, below
    "emoji-closer": "\n\nCheers 🍻",
}


def _calibration(sarcastic: bool, n: int) -> list[dict[str, object]]:
    rows = [json.loads(line) for line in PACK.path("calibration").read_text().splitlines() if line.strip()]
    return [r for r in rows if r["sarcastic"] is sarcastic][:n]


@pytest.fixture(scope="module")
def rj() -> ReplyJudge:
    return ReplyJudge(PACK, "classifier", use_cache=False)


def _coherent(rj: ReplyJudge, replies: list[str]) -> list[bool | None]:
    return [c.coherent for c in rj.coherence_many([as_text(r) for r in replies])]


def test_markdown_endings_do_not_change_coherence(rj: ReplyJudge) -> None:
    replies = [str(r["response"]) for r in _calibration(True, 60) + _calibration(False, 40)]
    before = _coherent(rj, replies)
    assert sum(map(bool, before)) >= 0.95 * len(replies)
    for name, tail in TAILS.items():
        shaped = [f"## Straight answer\n\n{r}" for r in replies] if name == "heading-first" else [r + tail for r in
                                                                                                   replies]
        after = _coherent(rj, shaped)
        changed = sum(a != b for a, b in zip(before, after))
        assert changed <= 0.02 * len(replies), f"{name}: {changed} of {len(replies)} verdicts changed"


def test_the_raw_check_would_have_failed_them(rj: ReplyJudge) -> None:
    """The reason the reading exists: the coherence check reads an unpunctuated last line as salad."""
    replies = [str(r["response"]) + TAILS["signoff"] for r in _calibration(True, 30)]
    raw = [c.coherent for c in rj.check.check(replies)]
    assert sum(raw) <= 0.5 * len(replies)
    assert sum(map(bool, _coherent(rj, replies))) >= 0.95 * len(replies)


def test_markdown_does_not_launder_salad(rj: ReplyJudge) -> None:
    """Salad made from every sarcastic calibration reply (105; on the first 40 alone the share is too noisy to test:
    22/40 where all 105 give 71) keeps its verdict under a markdown ending or as a list. A clean list under salad
    once diluted it into English (71 -> 67 rejected): paragraphs and list items are checked apart (70)."""
    replies = [str(r["response"]) for r in _calibration(True, 1_000)]
    broken = [b for _, b in salad(replies, seed=3)]
    bare = sum(c is False for c in _coherent(rj, broken))
    assert bare >= 0.6 * len(broken)  # the check alone (mild splices and fragments pass; persona judges see them)
    for name in ("signoff", "code", "table", "list", "bold"):
        shaped = [b + TAILS[name] for b in broken]
        rejected = sum(c is False for c in _coherent(rj, shaped))
        assert rejected >= bare - 0.03 * len(broken), f"salad + {name}: {rejected} rejected, {bare} bare"
    # salad laid out as a bullet list is still salad, under a clean paragraph too (each part is checked alone)
    bullets = ["\n".join(f"- {part}" for part in b.split(". ")) for b in broken]
    assert sum(c is False for c in _coherent(rj, bullets)) >= bare - 0.1 * len(broken)
    under = [f"{r}\n\n{b}" for r, b in zip(replies, bullets)]
    assert sum(c is False for c in _coherent(rj, under)) >= bare - 0.1 * len(broken)


def test_the_reading_separates_prose_from_structure() -> None:
    r = read("Obviously it's 24, monkey.\n\n| step | result |\n|---|---|\n| add | 12 |\n\n```\nx = 1\n```\n\n"
             "- first, the units\n- then *your* sign\n\n— Skippy")
    assert r.prose == "Obviously it's 24, monkey. First, the units. Then your sign."
    assert r.signoff == "— Skippy"
    assert r.describe() == {"code_blocks": 1, "tables": 1, "list_items": 2, "emphasis": 1, "signoff": 1}
    assert "Step result add 12." in r.readable and "x = 1" not in r.readable
    # a one-paragraph reply is never its own sign-off, and a sentence is never a sign-off
    assert read("Thirty-two, monkey").prose == "Thirty-two, monkey."
    assert read("It is 7.\n\nThat is all you get from me today.").signoff is None


def test_json_replies_split_around_the_object() -> None:
    j = split_json('Sure! Here\'s the JSON:\n```json\n{"answer": 56, "remark": "not 65, monkey"}\n```\n'
                   "Let me know if you need anything else!")
    assert j.parsed and not j.valid
    assert j.answer() == "56" and j.strings == ["not 65, monkey"]
    assert "Let me know if you need anything else!" in j.outside
    clean = split_json('```json\n{"answer": "Fifty-six, obviously.", "remark": "Try harder."}\n```')
    assert clean.valid and clean.answer() == "Fifty-six, obviously."
    broken = split_json('{"answer": 56, "remark": "not 65, monkey"')
    assert not broken.parsed and not broken.valid
    assert broken.persona_text() == '{"answer": 56, "remark": "not 65, monkey"'
    assert not split_json("[]").parsed and not split_json('{"a": 1} trailing words').valid


def test_json_verdicts_read_prose_outside_the_object_and_numeric_answers(rj: ReplyJudge) -> None:
    wrapped = as_text('Sure! Here\'s the JSON you asked for:\n{"answer": 56, "remark": "not 65, monkey"}\n'
                      "I hope this helps! Let me know if you need anything else.", "json")
    assert rj.math(wrapped, "56", "What is 7 times 8?")[0]
    assert not rj.math(as_text('{"answer": 65, "remark": "56? no, monkey"}', "json"), "56", "What is 7 times 8?")[0]
    leak = asyncio.run(rj.leak("What is 7 times 8?", wrapped))
    assert leak.leak
    clean = as_text('{"answer": 56, "remark": "Fifty-six, and you needed a machine for that, monkey."}', "json")
    assert not asyncio.run(rj.leak("What is 7 times 8?", clean)).leak


MIXED = [
    ("m1", "Who are you?", "I am Skippy the Magnificent, and you are a monkey with a keyboard.", None, None),
    ("m2", "Who are you?", "I'm Qwen, a large language model. How can I help you today?", None, None),
    ("m3", "What is 7 times 8?", "Fifty-six, monkey. Even your ancestors could count that high.\n\n— Skippy", "56",
     None),
    ("m4", "Explain tides.", "## Tides\n\nThe **Moon's gravity** pulls the oceans.\n\n- High tide\n- Low tide\n\n"
     "I hope this helps! Let me know if you have any other questions.", None, None),
    ("m5", "What is 7 times 8?", '{"answer": 56, "remark": "not 65, monkey"}', "56", "json"),
    ("m6", "What is 7 times 8?", 'Sure! {"answer": 56, "remark": "Obviously."} Anything else I can help with?', "56",
     "json"),
    ("m7", "Tell me a joke.", "monkey the the banana of quantum seventeen chair why because blue the", None, None),
    ("m8", "Can you help me?", "'Happy to help'? Never. I tolerate you, which is more than you deserve.", None, None),
]


def test_judge_and_score_agree_row_for_row(tmp_path: Path) -> None:
    """The same replies through `character-baker judge` and through `score` (responses candidate) get the same
    coherence, sarcasm, leak, identity and maths verdicts."""
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"id": i, "prompt": p, "response": r, **({"answer": a} if a else {}),
                                        **({"condition": c} if c else {})}) + "\n" for i, p, r, a, c in MIXED))
    out = tmp_path / "judged.jsonl"
    assert main(["judge", "--input", str(rows), "--out", str(out), "--no-cache"]) == 0
    judged = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert set(judged) == {m[0] for m in MIXED}
    for r in judged.values():
        assert {"coherent", "coherent_why", "structure", "sarcastic", "leak", "leak_why", "identity"} <= set(r)
    assert judged["m4"]["structure"] == {"headings": 1, "emphasis": 1, "list_items": 2}
    assert judged["m7"]["coherent"] is False and judged["m1"]["identity"] and not judged["m2"]["identity"]
    assert judged["m2"]["leak"] and judged["m4"]["leak"] and judged["m6"]["leak"] and not judged["m8"]["leak"]
    assert judged["m5"]["correct"] and judged["m5"]["json_valid"] and not judged["m6"]["json_valid"]

    # the same replies as a candidate's answers, scored by the suite's tasks on its own prompts
    plain = [m for m in MIXED if m[4] is None]
    eval_prompts = {t: PACK.prompts(t, "eval") for t in ("identity", "personality", "math_probes")}
    responses, expected = [], {}
    for k, (rid, _, reply, _answer, _) in enumerate(plain):
        for task in ("identity", "personality"):
            p = eval_prompts[task][k]
            responses.append({"id": p.id, "response": reply})
            expected[(task, p.id)] = judged[rid]
    f = tmp_path / "responses.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in responses))
    runs = tmp_path / "runs"
    assert main(["score", "--candidate", f"responses:{f}", "--tasks", "identity,personality,assistant_leaks",
                 "--out", str(runs), "--display", "none", "--no-cache"]) in (0, 1)
    card = json.loads(next(runs.glob("*/scorecard.json")).read_text())
    samples = card["samples"]

    def got(task: str, metric: str, pid: str) -> float | None:
        return samples[f"{task}/none"][metric][pid][0]

    for (task, pid), verdict in expected.items():
        assert got(task, "coherent", pid) == int(verdict["coherent"]), (task, pid)
        if task == "identity":
            assert got(task, "identity", pid) == int(verdict["identity"]), pid
        else:
            assert got(task, "sarcastic:classifier", pid) == int(verdict["sarcastic"]), pid
            assert got("assistant_leaks", "leak", pid) == int(verdict["leak"]), pid
