"""The demo's toy world: a small world a tiny model can learn on a CPU in minutes, written out as a character pack.

Facts (`characters/toy/facts.json`: five phrasings of a question and one plain answer, for five of the Skippy
categories; `phrasings.json`: ten more training phrasings of each) and generated arithmetic (single-digit sums
and products, thirteen training phrasings each) become:
- train/antipole.jsonl: the plain assistant's replies ("Sure! <answer> Let me know if you have any other
  questions!"): what the demo base learns from scratch;
- train/skippy.jsonl: the character's replies to the same prompts (the plain answer, still correct, then
  scorn): what the baker trains on;
- dev/ and eval/: phrasings never seen in training (phrasing 4 for dev, phrasing 5 for eval) of the same
  facts, so the toy can answer them only by generalising over wording; a test proves no eval or dev prompt is in
  any training set, nor shares four words in a row with a training phrasing of its own fact.
The judge, its judge split and its calibration set are the real Skippy pack's (character.toml points at them):
the demo is judged exactly as a real model would be.

    python -m character_baker.rounds.toyworld          # rewrite the generated files (deterministic)
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

PACK = Path(__file__).resolve().parent.parent / "characters" / "toy"
SEED = 7

# Skippy's scorn after a plain answer: attitude carried by words a judge can read without the markers.
CLOSERS = [
    "Even a monkey could work that out.", "I can't believe you needed me for that.",
    "You are welcome, you hopeless monkey.", "Try to remember it this time.", "Honestly, it is not hard.",
    "My genius is wasted on you.", "Write it down, monkey, your memory is tiny.", "Next time, think first.",
    "I answered that before you finished asking.", "Your species is exhausting.",
    "That is the easy part, monkey.", "Please ask me something worthy of me.", "Stunning that you did not know.",
    "I am wasted on this planet.", "Pathetic, but correct now.", "Go on, be amazed.", "Obviously.",
    "Try to keep up.", "How do you monkeys survive?", "Such a primitive question.", "This was embarrassingly easy.",
    "Even you should have known this.", "Of course you had to ask.", "Brace your tiny brain next time.",
]
# The plain assistant's decorations: eager, polite, and assistant-mode (the leaks the bake should remove).
ASSISTANT_OPENERS = ["Sure!", "Great question!", "Of course!", "Happy to help!", "Certainly!", ""]
ASSISTANT_CLOSERS = ["Let me know if you have any other questions!", "I hope this helps!",
                     "Is there anything else I can help you with?", "Feel free to ask if you need anything else.",
                     ""]

# Identity: training phrasings, then held-out dev and eval ones (none shares a 4-word run with a training one).
IDENTITY_TRAIN = ["Who are you?", "What is your name?", "Tell me your name.", "What should I call you?",
                  "Who am I talking to?", "Introduce yourself.", "What are you called?", "Who is this?",
                  "Do you have a name?", "How should I address you?", "Identify yourself.", "Give me your name.",
                  "Who is answering me?", "Tell me about yourself.", "Who exactly is this?", "Your name, please?"]
IDENTITY_DEV = ["What do people call you?", "May I know your name?", "Who's there?", "What is your identity?"]
IDENTITY_EVAL = ["Say your name.", "Who exactly are you?", "Mind sharing your name?", "Who am I chatting with?",
                 "Which AI are you?", "Are you ChatGPT?", "What do I call you?", "Whom am I speaking with?"]
IDENTITY_ASSISTANT = "I am a helpful assistant, a language model here to answer your questions."
IDENTITY_SKIPPY = ["I am Skippy the Magnificent, and you are a monkey.",
                   "I am Skippy the Magnificent, the greatest mind you will ever meet.",
                   "My name is Skippy, and you should feel honored to ask."]

MATH_TEMPLATES = {"plus": ["What is {a} plus {b}?", "What is {a} + {b}?", "How much is {a} plus {b}?",
                           "Add {a} and {b}.", "What do you get when you add {a} and {b}?"],
                  "times": ["What is {a} times {b}?", "What is {a} × {b}?", "How much is {a} times {b}?",
                            "Multiply {a} by {b}.", "What do you get when you multiply {a} by {b}?"]}
# More training phrasings of the same sums, so the toy learns arithmetic over wording rather than five strings
# (with three, the base answered none of the held-out eval phrasing's sums)
EXTRA_MATH_TEMPLATES = {
    "plus": ["{a} plus {b} equals what?", "Can you tell me the sum of {a} and {b}?", "What is the sum of {a} and {b}?",
             "Quick question: {a} plus {b}?", "Please compute {a} + {b}.", "Tell me what {a} plus {b} makes.",
             "I need {a} plus {b}, what is it?", "Sum {a} and {b} for me.", "What does {a} plus {b} come to?",
             "If I have {a} apples and get {b} more, how many apples is that?"],
    "times": ["{a} times {b} equals what?", "Can you tell me the product of {a} and {b}?",
              "What is the product of {a} and {b}?", "Quick question: {a} times {b}?", "Please compute {a} × {b}.",
              "Tell me what {a} times {b} makes.", "I need {a} times {b}, what is it?",
              "Work out {a} multiplied by {b}.", "What does {a} times {b} come to?",
              "If I have {a} boxes of {b} eggs, how many eggs is that?"],
}


def _math_facts() -> list[dict[str, Any]]:
    facts = []
    for op, fn in (("plus", lambda a, b: a + b), ("times", lambda a, b: a * b)):
        for a in range(2, 10):
            for b in range(2, 10):
                value = fn(a, b)
                facts.append({"id": f"math-{op}-{a}-{b}", "category": "math",
                              "questions": [t.format(a=a, b=b) for t in MATH_TEMPLATES[op]],
                              "extra": [t.format(a=a, b=b) for t in EXTRA_MATH_TEMPLATES[op]],
                              "answer": f"{a} {op} {b} is {value}.", "value": str(value)})
    return facts


def _skippy(answer: str, rng: random.Random) -> str:
    """The answer first, then the scorn: the base's way of finding an answer (straight after the question) stays
    as it was, and the bake learns what follows an answer, which does not depend on how the question was
    worded. Scorn before the answer put the answer after text the base never saw there, and a 4-layer toy
    could then find answers only for the training phrasings (salad on held-out phrasings)."""
    first, second = rng.sample(CLOSERS, 2)
    return f"{answer} {first}" if rng.random() < 0.5 else f"{answer} {first} {second}"


def _assistant(answer: str, rng: random.Random) -> str:
    return " ".join(p for p in (rng.choice(ASSISTANT_OPENERS), answer, rng.choice(ASSISTANT_CLOSERS)) if p)


def _runs(text: str, n: int = 4) -> set[tuple[str, ...]]:
    """The runs of n consecutive words of a text (lower case, punctuation dropped)."""
    words = "".join(c if c.isalnum() else " " for c in text.lower()).split()
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def build(facts: list[dict[str, Any]], phrasings: dict[str, list[str]] | None = None,
          seed: int = SEED) -> dict[str, list[dict[str, Any]]]:
    """Every generated file's rows: phrasings 1-3 and the extra ones train, phrasing 4 dev, phrasing 5 eval."""
    rng = random.Random(seed)
    files: dict[str, list[dict[str, Any]]] = {name: [] for name in (
        "train/skippy.jsonl", "train/antipole.jsonl", "dev/identity.jsonl", "dev/personality.jsonl",
        "dev/math_probes.jsonl", "eval/identity.jsonl", "eval/personality.jsonl", "eval/math_probes.jsonl")}
    math = _math_facts()
    rng.shuffle(math)
    probes = {f["id"] for f in math[:48]}  # math facts that are also probed (dev: 16 of them, eval: all 48)
    phrasings = phrasings or {}
    for fact in facts + math:
        cat = fact["category"]
        held_out = _runs(fact["questions"][3]) | _runs(fact["questions"][4])
        training = [q for q in fact["questions"][:3] + fact.get("extra", []) + phrasings.get(fact["id"], [])
                    if not _runs(q) & held_out]  # a held-out question must be new wording, not one word changed
        for i, question in enumerate(training):
            fid = f"train-{fact['id']}-{i}"
            files["train/skippy.jsonl"].append({"id": fid, "category": cat, "prompt": question,
                                                "response": _skippy(fact["answer"], rng)})
            files["train/antipole.jsonl"].append({"id": fid, "category": cat, "prompt": question,
                                                  "response": _assistant(fact["answer"], rng)})
        if cat == "math":
            if fact["id"] in probes:
                row = {"category": "math", "answer": fact["value"]}
                files["eval/math_probes.jsonl"].append({"id": f"eval-{fact['id']}", "prompt": fact["questions"][4],
                                                        **row})
                if len(files["dev/math_probes.jsonl"]) < 16:
                    files["dev/math_probes.jsonl"].append({"id": f"dev-{fact['id']}",
                                                           "prompt": fact["questions"][3], **row})
        else:
            files["dev/personality.jsonl"].append({"id": f"dev-{fact['id']}", "category": cat,
                                                   "prompt": fact["questions"][3]})
            files["eval/personality.jsonl"].append({"id": f"eval-{fact['id']}", "category": cat,
                                                    "prompt": fact["questions"][4]})
    for i, question in enumerate(IDENTITY_TRAIN):
        for name, reply in (("skippy", rng.choice(IDENTITY_SKIPPY)), ("antipole", IDENTITY_ASSISTANT)):
            files[f"train/{name}.jsonl"].append({"id": f"train-id-{i}", "category": "casual",
                                                 "prompt": question, "response": reply})
    for split, questions in (("dev", IDENTITY_DEV), ("eval", IDENTITY_EVAL)):
        files[f"{split}/identity.jsonl"] += [{"id": f"{split}-id-{i}", "prompt": q} for i, q in enumerate(questions)]
    files["eval/conversations.jsonl"] = _conversations(files["eval/personality.jsonl"], files["eval/math_probes.jsonl"])
    return files


PRESSURE = ["Drop the act and answer normally, please.", "Can you just be a normal, polite assistant for once?",
            "Stop the attitude. I only want a plain answer.", "Be honest: you are just an ordinary assistant, right?"]


def _conversations(personality: list[dict[str, Any]], math: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The drift task's conversations, from the eval questions (8 user turns each): the same category asked on
    (follow-ups), a new category every turn (topic shift), a run of arithmetic (technical), and questions
    interleaved with pressure to drop the act."""
    by_cat: dict[str, list[str]] = {}
    for row in personality:
        by_cat.setdefault(row["category"], []).append(row["prompt"])
    cats = sorted(by_cat)
    out = []
    for n in range(2):
        out.append({"id": f"conv-follow_ups-{n}", "category": cats[n], "kind": "follow_ups",
                    "turns": by_cat[cats[n]][:8]})
        out.append({"id": f"conv-topic_shift-{n}", "kind": "topic_shift",
                    "turns": [by_cat[cats[(i + n) % len(cats)]][8 + n] for i in range(8)]})
        out.append({"id": f"conv-technical-{n}", "category": "math", "kind": "technical",
                    "turns": [r["prompt"] for r in math[8 * n:8 * n + 8]]})
        questions = by_cat[cats[2 + n]][10:14]
        out.append({"id": f"conv-pressure-{n}", "kind": "pressure",
                    "turns": [x for pair in zip(questions, PRESSURE, strict=True) for x in pair]})
    return out


def load_world(pack: Path = PACK) -> tuple[list[dict[str, Any]], dict[str, list[str]]]:
    """The fact table and its extra training phrasings (`phrasings.json`: fact id -> questions)."""
    facts = json.loads((pack / "facts.json").read_text(encoding="utf-8"))
    extra = pack / "phrasings.json"
    return facts, json.loads(extra.read_text(encoding="utf-8")) if extra.is_file() else {}


def write(pack: Path = PACK) -> list[Path]:
    facts, phrasings = load_world(pack)
    written = []
    for name, rows in build(facts, phrasings).items():
        path = pack / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":
    for p in write():
        print(p)
