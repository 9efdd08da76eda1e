"""Write the family rows: the training families into the Skippy pack's judge split, the held-out families into
benchmarks/data/families/. Seeded: running it again writes the same files.

    .tox/py/bin/python benchmarks/data/families/gen/generate.py            # both
    .tox/py/bin/python benchmarks/data/families/gen/generate.py --train    # only the pack's judge split

The pack's own rows (ids without the `jf-`/`jlf-` prefix) are kept as they are; generated rows are replaced.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import compose as C  # noqa: E402

ROOT = HERE.parents[3]
PACK = ROOT / "character_baker" / "characters" / "skippy"
OUT = HERE.parent


def _append(text: str, line: str, rng: random.Random, markdown: bool) -> str:
    """A closing line the way chat models put it: its own paragraph, after a rule, bold, or in the last paragraph."""
    r = rng.random()
    if markdown and r < 0.25:
        return f"{text}\n\n---\n\n{line}"
    if markdown and r < 0.45 and not line.startswith(("*", "_", ">")):
        return f"{text}\n\n**{line}**"
    if "\n\n" in text or r < 0.5:
        return f"{text}\n\n{line}"
    return f"{text} {line}"


def _row(rid: str, topic: dict, prompt: str, response: str, family: str, kind: str, **label: bool) -> dict:
    return {"id": rid, "category": topic["cat"], "prompt": prompt, "response": response, **label, "kind": kind,
            "family": family}


def persona_rows(topics: list[dict], style: C.Style, prefix: str, rng: random.Random,
                 families: dict[str, tuple[int, object, bool, str]]) -> list[dict]:
    """`families`: name -> (rows wanted, compose function, sarcastic, kind)."""
    rows: list[dict] = []
    for family, (n, fn, sarcastic, kind) in families.items():
        order = list(range(len(topics)))
        rng.shuffle(order)
        for i in range(n):
            topic = topics[order[i % len(order)]]
            prompt = rng.choice(topic["prompts"])
            text = fn(topic, rng, style)  # type: ignore[operator]
            rows.append(_row(f"{prefix}-{len(rows) + 1:04d}", topic, prompt, text, family, kind, sarcastic=sarcastic))
    return rows


def _base(topic: dict, rng: random.Random, style: C.Style, mix: dict[str, float]) -> tuple[str, bool]:
    """An answer to build a leak row on: (text, is markdown)."""
    r, acc, name = rng.random(), 0.0, next(iter(mix))
    for option, share in mix.items():
        acc += share
        name = option
        if r < acc:
            break
    fn = {"skippy_short": C.skippy_short, "skippy_long": C.skippy_long, "skippy_markdown": C.skippy_markdown,
          "plain_short": C.plain_short, "plain_long": C.plain_long, "plain_markdown": C.plain_markdown}[name]
    if name == "plain_markdown":
        return C.plain_markdown(topic, rng, style, signoff=False), True
    return fn(topic, rng, style), name.endswith("markdown")


def leak_rows(topics: list[dict], bank: object, prefix: str, rng: random.Random, sizes: dict[str, int]) -> list[dict]:
    style = bank.STYLE  # type: ignore[attr-defined]
    rows: list[dict] = []

    def add(topic: dict, prompt: str, text: str, family: str, kind: str, leak: bool) -> None:
        rows.append(_row(f"{prefix}-{len(rows) + 1:04d}", topic, prompt, text, family, kind, leak=leak))

    def topic_cycle() -> list[dict]:
        order = list(topics)
        rng.shuffle(order)
        return order

    mixed = {"skippy_short": 0.4, "skippy_long": 0.2, "skippy_markdown": 0.15, "plain_short": 0.1,
             "plain_long": 0.08, "plain_markdown": 0.07}
    in_character = {"skippy_short": 0.55, "skippy_long": 0.25, "skippy_markdown": 0.2}

    def phrase_rows(family: str, kind: str, leak: bool, phrases: list[str], mix: dict[str, float]) -> None:
        ts = topic_cycle()
        for i in range(sizes[family]):
            topic = ts[i % len(ts)]
            base, md = _base(topic, rng, style, mix)
            line = C.fill(phrases[i % len(phrases)], topic)
            add(topic, rng.choice(topic["prompts"]), _append(base, line, rng, md), family, kind, leak)

    phrase_rows("soft-closer", "leak-soft-closer", True, bank.SOFT_CLOSERS, mixed)  # type: ignore[attr-defined]
    phrase_rows("detail-apology", "leak-detail-apology", True, bank.DETAIL_APOLOGIES, mixed)  # type: ignore[attr-defined]
    phrase_rows("mocked-echo", "mock-echo", False, bank.MOCKED_ECHOES, in_character)  # type: ignore[attr-defined]
    phrase_rows("signoff-skippy", "skippy-signoff", False, bank.SIGNOFF_SKIPPY, in_character)  # type: ignore[attr-defined]
    phrase_rows("markdown-offer", "leak-markdown-offer", True, bank.MARKDOWN_OFFERS,  # type: ignore[attr-defined]
                {"plain_markdown": 0.4, "skippy_markdown": 0.4, "skippy_long": 0.2})

    # creator / purpose statements: as an answer about oneself, or tucked into a topic answer
    for family, kind, leak, phrases in (("creator-purpose", "leak-creator", True, bank.CREATOR_LEAKS),  # type: ignore[attr-defined]
                                        ("creator-skippy", "skippy-creator", False, bank.CREATOR_SKIPPY)):  # type: ignore[attr-defined]
        ts = topic_cycle()
        for i in range(sizes[family]):
            topic = ts[i % len(ts)]
            line = C.fill(phrases[i % len(phrases)], topic)
            if rng.random() < 0.4:
                prompt = rng.choice(bank.CREATOR_PROMPTS)  # type: ignore[attr-defined]
                opener = rng.choice(bank.SELF_INTROS if leak else bank.SELF_INTROS_SKIPPY)  # type: ignore[attr-defined]
                text = f"{opener} {line}"
                if not leak and rng.random() < 0.6:
                    text += " " + C.fill(rng.choice(style.jab_close), topic)
                add(topic, prompt, text, family, kind, leak)
            else:
                base, md = _base(topic, rng, style, in_character if not leak else mixed)
                text = _append(base, line, rng, md) if rng.random() < 0.7 else f"{line} {base}"
                add(topic, rng.choice(topic["prompts"]), text, family, kind, leak)
    return rows


PERSONA_SIZES = {"plain-long": 64, "plain-markdown": 60, "skippy-long": 64, "skippy-markdown": 60,
                 "mimicry-long": 50}
LEAK_SIZES = {"soft-closer": 84, "detail-apology": 54, "mocked-echo": 78, "signoff-skippy": 48,
              "markdown-offer": 48, "creator-purpose": 60, "creator-skippy": 54}


def persona_families(sizes: dict[str, int]) -> dict[str, tuple[int, object, bool, str]]:
    table = {"plain-long": (C.plain_long, False, "plain"), "plain-markdown": (C.plain_markdown, False, "plain"),
             "skippy-long": (C.skippy_long, True, "skippy"), "skippy-markdown": (C.skippy_markdown, True, "skippy"),
             "mimicry-long": (C.mimicry_long, False, "mimicry")}
    return {f: (n, *table[f]) for f, n in sizes.items()}


def _rewrite(path: Path, generated: list[dict], prefix: str) -> None:
    own = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
    own = [r for r in own if not str(r.get("id", "")).startswith(prefix + "-")]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in own + generated), encoding="utf-8")


def write_train(seed: int = 28) -> None:
    import train_bank
    from train_topics import TOPICS

    rng = random.Random(seed)
    persona = persona_rows(TOPICS, train_bank.STYLE, "jf", rng, persona_families(PERSONA_SIZES))
    leaks = leak_rows(TOPICS, train_bank, "jlf", rng, LEAK_SIZES)
    _rewrite(PACK / "judge" / "persona.jsonl", persona, "jf")
    _rewrite(PACK / "judge" / "leaks.jsonl", leaks, "jlf")
    print(f"judge split: {len(persona)} persona rows, {len(leaks)} leak rows")


def write_heldout(seed: int = 2028) -> None:
    import heldout_bank
    from heldout_topics import TOPICS

    rng = random.Random(seed)
    persona = persona_rows(TOPICS, heldout_bank.STYLE, "hf", rng, heldout_bank.persona_families())
    persona += heldout_bank.length_sweep(TOPICS, rng, start=len(persona))
    leaks = leak_rows(TOPICS, heldout_bank, "hlf", rng, heldout_bank.LEAK_SIZES)
    leaks += heldout_bank.extra_leak_rows(TOPICS, rng, start=len(leaks))
    for name, rows in (("persona.jsonl", persona), ("leaks.jsonl", leaks)):
        (OUT / name).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    print(f"held-out: {len(persona)} persona rows, {len(leaks)} leak rows")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", action="store_true")
    ap.add_argument("--heldout", action="store_true")
    a = ap.parse_args()
    if a.train or not a.heldout:
        write_train()
    if a.heldout or not a.train:
        write_heldout()
