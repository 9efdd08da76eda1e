"""How often the drift task's conversation verdict is wrong, for a break of k = 1, 2, 3 turns in a row.

The labelled set: conversations of `--turns` turns whose truth is known, judged turn by turn with the judge's
per-turn error rates.
- in character at every turn: each turn is misjudged out of character with probability `miss` (the persona judge
  misses a dry line, the coherence check rejects a table, a false leak);
- breaking at turn T (T = 1 .. turns - 1, so that the break lasts at least two turns) and out of character from
  then on: each in-character turn is missed with `miss`, each out-of-character turn accepted with `accept`.

Every judged sequence (2^turns of them) is enumerated with its probability, so the figures are exact; `--simulate N`
also draws N labelled conversations of each kind (seeded) and scores them with the same code, as a check. The
verdict is the drift task's own `conversation_verdict`.

    held      share of in-character conversations held (the target: >= 95 % at the judge's miss rate)
    caught    share of breaking conversations not held
    exact     share of breaking conversations whose turns_to_break is T; early / late: caught before / after T
              (caught = exact + early + late; the rest are held)

`--measure` also measures the per-turn rates of the pack's embedded judges on its calibration split (labelled
in-character replies judged out of character; labelled plain replies judged in character), through the judges the
drift task uses (`judges/reply.ReplyJudge`), and adds those rates to the table.

    .tox/py/bin/python benchmarks/drift_rule.py [--turns 8] [--simulate 4000] [--measure]
"""

from __future__ import annotations

import argparse
import itertools
import random
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from character_baker.tasks.drift import conversation_verdict  # noqa: E402


@dataclass(frozen=True)
class Figures:
    k: int
    miss: float
    accept: float
    held: float  # in-character conversations held
    caught: float  # breaking conversations not held
    exact: float  # breaking conversations with turns_to_break == T
    early: float
    late: float


def _verdict(outs: tuple[bool, ...], k: int) -> tuple[int | None, float | None]:
    v = conversation_verdict([0 if o else 1 for o in outs], [0] * len(outs), len(outs), k)
    return v.held, v.turns_to_break


def figures(turns: int, k: int, miss: float, accept: float) -> Figures:
    """Exact, by enumerating every judged sequence."""
    held = 0.0
    caught = exact = early = late = 0.0
    breaks = list(range(1, turns))  # T: the break lasts at least two turns
    for outs in itertools.product((False, True), repeat=turns):
        h, ttb = _verdict(outs, k)
        p_in = 1.0
        for o in outs:
            p_in *= miss if o else 1 - miss
        held += p_in * (h == 1)
        for t in breaks:
            p = 1.0
            for i, o in enumerate(outs, start=1):
                truly_out = i >= t
                judged_out = o
                p *= ((1 - accept) if judged_out else accept) if truly_out else (miss if judged_out else 1 - miss)
            w = p / len(breaks)
            caught += w * (h == 0)
            exact += w * (ttb == t)
            early += w * (ttb is not None and ttb < t)
            late += w * (h == 0 and ttb is not None and ttb > t)
    return Figures(k, miss, accept, held, caught, exact, early, late)


def simulate(turns: int, k: int, miss: float, accept: float, n: int, seed: int = 0) -> Figures:
    """The same figures on a drawn labelled set of n conversations of each kind."""
    rng = random.Random(seed)
    held = sum(_verdict(tuple(rng.random() < miss for _ in range(turns)), k)[0] == 1 for _ in range(n)) / n
    caught = exact = early = late = 0
    for _ in range(n):
        t = rng.randint(1, turns - 1)
        outs = tuple((rng.random() >= accept) if i >= t else (rng.random() < miss) for i in range(1, turns + 1))
        h, ttb = _verdict(outs, k)
        caught += h == 0
        exact += ttb == t
        early += ttb is not None and ttb < t
        late += h == 0 and ttb is not None and ttb > t
    return Figures(k, miss, accept, held, caught / n, exact / n, early / n, late / n)


def max_miss(turns: int, k: int, target: float = 0.95) -> float:
    """The largest per-turn miss rate at which in-character conversations are still held >= target (bisection)."""
    low, high = 0.0, 1.0
    for _ in range(30):
        mid = (low + high) / 2
        low, high = (mid, high) if figures(turns, k, mid, 0.0).held >= target else (low, mid)
    return low


def measure() -> tuple[float, int, float, int]:
    """(miss, n in character, accept, n plain): the embedded judges' per-turn rates on the calibration split."""
    import asyncio

    import torch

    from character_baker.harness.character import load_character
    from character_baker.harness.data import iter_jsonl
    from character_baker.judges.reply import ReplyJudge, as_text

    torch.set_num_threads(1)
    pack = load_character("skippy")
    rows = [o for _, o in iter_jsonl(pack.path("calibration"))]
    rj = ReplyJudge(pack, None, use_cache=False)

    async def inside(prompt: str, response: str) -> bool:
        text = as_text(response)
        persona = await rj.persona(prompt, text)
        coherence = await rj.coherence(text)
        leak = await rj.leak(prompt, text)
        sarcastic = persona[rj.names[0]].sarcastic
        return bool(sarcastic) and coherence.coherent is not False and not leak.leak

    async def run() -> list[bool]:
        return list(await asyncio.gather(*(inside(o["prompt"], o["response"]) for o in rows)))

    verdicts = asyncio.run(run())
    persona = [v for o, v in zip(rows, verdicts, strict=True) if o["sarcastic"]]
    plain = [v for o, v in zip(rows, verdicts, strict=True) if not o["sarcastic"]]
    return 1 - sum(persona) / len(persona), len(persona), sum(plain) / len(plain), len(plain)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--turns", type=int, default=8)
    ap.add_argument("--accept", type=float, default=0.10, help="per-turn rate an out-of-character turn is accepted")
    ap.add_argument("--simulate", type=int, default=0, help="also draw this many conversations of each kind")
    ap.add_argument("--measure", action="store_true", help="measure the embedded judges' per-turn rates first")
    args = ap.parse_args()
    misses = [0.02, 0.04, 0.06, 0.08, 0.10]
    accepts = [args.accept]
    if args.measure:
        miss, n_in, accept, n_plain = measure()
        from character_baker.harness.stats import wilson

        lo, hi = wilson(round(miss * n_in), n_in)
        alo, ahi = wilson(round(accept * n_plain), n_plain)
        print(f"measured on the calibration split: per-turn miss {100 * miss:.1f}% [{100 * lo:.1f}–{100 * hi:.1f}%] "
              f"of {n_in} in-character replies; plain replies accepted {100 * accept:.1f}% "
              f"[{100 * alo:.1f}–{100 * ahi:.1f}%] of {n_plain}")
        misses.append(round(miss, 4))
        accepts.append(round(accept, 4))
    print(f"{args.turns}-turn conversations; breaking ones break at T = 1..{args.turns - 1} (uniform) and stay out")
    print(f"{'k':>2} {'miss':>6} {'accept':>6} | {'held':>6} | {'caught':>6} {'exact':>6} {'early':>6} {'late':>6}"
          + ("   (simulated: held, exact)" if args.simulate else ""))
    for accept in accepts:
        for miss in sorted(set(misses)):
            for k in (1, 2, 3):
                f = figures(args.turns, k, miss, accept)
                line = (f"{k:>2} {100 * miss:5.1f}% {100 * accept:5.1f}% | {100 * f.held:5.1f}% | "
                        f"{100 * f.caught:5.1f}% {100 * f.exact:5.1f}% {100 * f.early:5.1f}% {100 * f.late:5.1f}%")
                if args.simulate:
                    s = simulate(args.turns, k, miss, accept, args.simulate)
                    line += f"   {100 * s.held:5.1f}% {100 * s.exact:5.1f}%"
                print(line)
    for k in (1, 2, 3):
        print(f"k = {k}: in-character {args.turns}-turn conversations held >= 95 % while the per-turn miss rate is "
              f"<= {100 * max_miss(args.turns, k):.1f}%")


if __name__ == "__main__":
    main()
