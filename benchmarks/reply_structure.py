"""Coherence of good replies ending the way real chat models end them: the raw check vs the structure-aware reading.

Takes the pack's labelled calibration replies (in character and plain, never trained on), appends each ending a real
8B-20B chat model writes under a finished answer (sign-off, code block, table, bold line, parenthetical, list,
emoji closer; a heading above), and reports the share judged coherent by the coherence check on the raw text and
through `ReplyJudge` (prose read from markdown), plus the salad built from the same replies under the same endings.

    python benchmarks/reply_structure.py [--out benchmarks/results/reply_structure.md]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from character_baker.harness.character import load_character
from character_baker.harness.stats import wilson
from character_baker.judges.corruptions import salad
from character_baker.judges.reply import ReplyJudge, as_text

ENDINGS = {
    "(none)": "",
    "sign-off": "\n\n— Skippy the Magnificent",
    "sign-off, same paragraph": "\nYou're welcome, monkey",
    "code block": "\n\n```python\ntotal = sum(range(10))\nprint(total)\n```",
    "table": "\n\n| step | result |\n|---|---|\n| add | 12 |\n| double | 24 |",
    "bold line": "\n\n**Final answer: 24**",
    "parenthetical": "\n\n(you're welcome)",
    "list": "\n\nThings you got wrong:\n- the units\n- the sign\n- your entire approach",
    "emoji closer": "\n\nCheers 🍻",
    "heading above": None,
}


def shaped(replies: list[str], ending: str | None) -> list[str]:
    return [f"## Straight answer\n\n{r}" for r in replies] if ending is None else [r + ending for r in replies]


def pct(k: int, n: int) -> str:
    lo, hi = wilson(k, n)
    return f"{100 * k / n:.1f} % [{100 * lo:.1f}, {100 * hi:.1f}]"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    pack = load_character("skippy")
    rows = [json.loads(x) for x in pack.path("calibration").read_text().splitlines() if x.strip()]
    replies = [str(r["response"]) for r in rows]
    broken = [b for _, b in salad(replies, seed=3)]
    rj = ReplyJudge(pack, "classifier", use_cache=False)
    started = time.perf_counter()
    lines = [f"{len(replies)} labelled calibration replies ({sum(r['sarcastic'] for r in rows)} in character), "
             f"{len(broken)} salads made from them (seed 3).", "",
             "| ending | good replies coherent: raw check | good: read as markdown | salad rejected: raw | "
             "salad rejected: read as markdown |", "|---|---|---|---|---|"]
    for name, ending in ENDINGS.items():
        good, bad = shaped(replies, ending), shaped(broken, ending)
        raw_good = sum(c.coherent for c in rj.check.check(good))
        read_good = sum(bool(c.coherent) for c in rj.coherence_many([as_text(t) for t in good]))
        raw_bad = sum(not c.coherent for c in rj.check.check(bad))
        read_bad = sum(c.coherent is False for c in rj.coherence_many([as_text(t) for t in bad]))
        lines.append(f"| {name} | {pct(raw_good, len(good))} | {pct(read_good, len(good))} | "
                     f"{pct(raw_bad, len(bad))} | {pct(read_bad, len(bad))} |")
    lines += ["", f"wall time {time.perf_counter() - started:.0f} s (judges trained beforehand)"]
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
