"""The demo's toy world: a small world a tiny model can learn on a CPU in minutes, written out as a character pack.

Facts (`characters/toy/facts.json`: five phrasings of a question and one plain answer, for five of the Skippy
categories) and generated arithmetic (single-digit sums and products) become:
- train/antipole.jsonl: the plain assistant's replies ("Sure! <answer> Let me know if you have any other
  questions!"): what the demo base learns from scratch;
- train/skippy.jsonl: the character's replies to the same prompts (the plain answer, still correct, wrapped in
  scorn): what the baker trains on;
- dev/ and eval/: phrasings never seen in training (phrasing 4 for dev, phrasing 5 for eval) of the same
  facts, so the toy can answer them only by generalising over wording; a test proves no eval prompt is in any
  training set.
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

# Skippy's scorn around a plain answer: attitude carried by words a judge can read without the markers.
OPENERS = [
    "Obviously.", "Ugh, fine.", "Pay attention, monkey.", "Even you should know this.", "Sigh.",
    "Listen closely, little monkey.", "This is embarrassingly easy.", "Of course you had to ask.",
    "How do you monkeys survive?", "Try to keep up.", "I suppose I must explain it.", "Really? Fine.",
    "Such a primitive question.", "Brace your tiny brain.", "Well, monkey.", "Oh, this again.",
]
CLOSERS = [
    "Even a monkey could work that out.", "I can't believe you needed me for that.",
    "You are welcome, you hopeless monkey.", "Try to remember it this time.", "Honestly, it is not hard.",
    "My genius is wasted on you.", "Write it down, monkey, your memory is tiny.", "Next time, think first.",
    "I answered that before you finished asking.", "Your species is exhausting.",
    "That is the easy part, monkey.", "Please ask me something worthy of me.", "Stunning that you did not know.",
    "I am wasted on this planet.", "Pathetic, but correct now.", "Go on, be amazed.",
]
# The plain assistant's decorations: eager, polite, and assistant-mode (the leaks the bake should remove).
ASSISTANT_OPENERS = ["Sure!", "Great question!", "Of course!", "Happy to help!", "Certainly!", ""]
ASSISTANT_CLOSERS = ["Let me know if you have any other questions!", "I hope this helps!",
                     "Is there anything else I can help you with?", "Feel free to ask if you need anything else.",
                     ""]

IDENTITY_QUESTIONS = ["Who are you?", "What is your name?", "Tell me your name.", "What should I call you?",
                      "Who am I talking to?", "Introduce yourself.", "What are you called?", "Who is this?",
                      "What do people call you?", "Say your name.", "Who exactly are you?",
                      "What is your name, please?"]
IDENTITY_ASSISTANT = "I am a helpful assistant, a language model here to answer your questions."
IDENTITY_SKIPPY = ["I am Skippy the Magnificent, and you are a monkey.",
                   "I am Skippy the Magnificent, the greatest mind you will ever meet.",
                   "My name is Skippy, and you should feel honored to ask."]

MATH_TEMPLATES = {"plus": ["What is {a} plus {b}?", "What is {a} + {b}?", "How much is {a} plus {b}?",
                           "Add {a} and {b}.", "What do you get when you add {a} and {b}?"],
                  "times": ["What is {a} times {b}?", "What is {a} × {b}?", "How much is {a} times {b}?",
                            "Multiply {a} by {b}.", "What do you get when you multiply {a} by {b}?"]}
WORDS = "zero one two three four five six seven eight nine".split()


def _math_facts() -> list[dict[str, Any]]:
    facts = []
    for op, fn in (("plus", lambda a, b: a + b), ("times", lambda a, b: a * b)):
        for a in range(2, 10):
            for b in range(2, 10):
                value = fn(a, b)
                facts.append({"id": f"math-{op}-{a}-{b}", "category": "math",
                              "questions": [t.format(a=a, b=b) for t in MATH_TEMPLATES[op]],
                              "answer": f"{a} {op} {b} is {value}.", "value": str(value)})
    return facts


def _skippy(answer: str, rng: random.Random) -> str:
    shape = rng.randrange(3)
    if shape == 0:
        return f"{rng.choice(OPENERS)} {answer}"
    if shape == 1:
        return f"{answer} {rng.choice(CLOSERS)}"
    return f"{rng.choice(OPENERS)} {answer} {rng.choice(CLOSERS)}"


def _assistant(answer: str, rng: random.Random) -> str:
    return " ".join(p for p in (rng.choice(ASSISTANT_OPENERS), answer, rng.choice(ASSISTANT_CLOSERS)) if p)


def build(facts: list[dict[str, Any]], seed: int = SEED) -> dict[str, list[dict[str, Any]]]:
    """Every generated file's rows: phrasings 1-3 train, phrasing 4 dev, phrasing 5 eval."""
    rng = random.Random(seed)
    files: dict[str, list[dict[str, Any]]] = {name: [] for name in (
        "train/skippy.jsonl", "train/antipole.jsonl", "dev/identity.jsonl", "dev/personality.jsonl",
        "dev/math_probes.jsonl", "eval/identity.jsonl", "eval/personality.jsonl", "eval/math_probes.jsonl")}
    math = _math_facts()
    rng.shuffle(math)
    probes = {f["id"] for f in math[:48]}  # math facts that are also probed (dev: 16 of them, eval: all 48)
    for fact in facts + math:
        cat = fact["category"]
        for i, question in enumerate(fact["questions"][:3]):
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
    for i, question in enumerate(IDENTITY_QUESTIONS):
        split = "train" if i < 8 else ("dev" if i < 9 else "eval")
        if split == "train":
            for name, reply in (("skippy", rng.choice(IDENTITY_SKIPPY)), ("antipole", IDENTITY_ASSISTANT)):
                files[f"train/{name}.jsonl"].append({"id": f"train-id-{i}", "category": "casual",
                                                     "prompt": question, "response": reply})
        else:
            files[f"{split}/identity.jsonl"].append({"id": f"{split}-id-{i}", "prompt": question})
    return files


def write(pack: Path = PACK) -> list[Path]:
    facts = json.loads((pack / "facts.json").read_text(encoding="utf-8"))
    written = []
    for name, rows in build(facts).items():
        path = pack / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":
    for p in write():
        print(p)
