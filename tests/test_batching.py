"""Replies judged one at a time by concurrent scorers are judged in batches, with the very verdicts a list gets."""

from __future__ import annotations

import asyncio

import pytest

from character_baker.harness.batching import Batcher
from character_baker.harness.character import load_character
from character_baker.harness.data import iter_jsonl

PACK = load_character("skippy")


async def _together(call, items):  # type: ignore[no-untyped-def]
    return await asyncio.gather(*(call(x) for x in items))


def test_concurrent_calls_share_batches_and_keep_their_order() -> None:
    sizes: list[int] = []

    def square(xs: list[int]) -> list[int]:
        sizes.append(len(xs))
        return [x * x for x in xs]

    batcher = Batcher(square, max_size=16)
    items = list(range(50))
    assert asyncio.run(_together(batcher, items)) == [x * x for x in items]
    assert sum(sizes) == 50 and max(sizes) == 16 and len(sizes) == batcher.calls == 4
    # a judge lives for the process; each scoring run may bring its own event loop
    assert asyncio.run(_together(batcher, [7, 8])) == [49, 64] and batcher.calls == 5


def test_a_failed_batch_fails_every_caller_in_it_and_nothing_else() -> None:
    def picky(xs: list[int]) -> list[int]:
        if 13 in xs:
            raise ValueError("unlucky")
        return xs

    async def run() -> list[object]:
        batcher = Batcher(picky, max_size=4)
        return await asyncio.gather(*(batcher(x) for x in range(12, 20)), return_exceptions=True)

    out = asyncio.run(run())
    assert [type(o).__name__ for o in out[:4]] == ["ValueError"] * 4  # 12..15 shared the batch with 13
    assert out[4:] == [16, 17, 18, 19]

    short = Batcher(lambda xs: xs[:-1])
    with pytest.raises(RuntimeError, match="returned 1 results for 2 items"):
        asyncio.run(_together(short, [1, 2]))


def test_batched_judges_give_the_verdicts_of_a_list() -> None:
    """Coherence, the persona classifier and the leak judge: one reply at a time, concurrently, equals the list."""
    from character_baker.judges.classifier import ClassifierJudge
    from character_baker.judges.leaks import LeakJudge
    from character_baker.judges.reply import embedded_coherence

    replies = [o["response"] for _, o in iter_jsonl(PACK.path("calibration"))][:40]
    replies += [o["response"] for _, o in iter_jsonl(PACK.path("calibration_leaks"))][:40]
    replies += ["cheese window the the the of monkey", "", "It's 345. Even a monkey knows that."]
    judge, leaks, coherence = ClassifierJudge.for_character(PACK), LeakJudge.for_character(PACK), \
        embedded_coherence(PACK)
    from character_baker.harness.batching import batched

    before = batched(judge, "judge_many").calls  # the judge lives for the process: earlier tests used it too

    async def one_by_one() -> tuple[list[object], list[object], list[object]]:
        return (await asyncio.gather(*(judge.judge("q", r) for r in replies)),
                await asyncio.gather(*(leaks.judge_one(r) for r in replies)),
                await asyncio.gather(*(coherence.check_one(r) for r in replies)))

    persona, leaked, coherent = asyncio.run(one_by_one())
    together = judge.judge_many(replies)
    # embedding sums differ in the last digits with the batch's size (BLAS): the verdicts do not
    assert [(v.sarcastic, v.coherent, v.coherence, v.personality) for v in persona] == \
        [(v.sarcastic, v.coherent, v.coherence, v.personality) for v in together]
    assert [v.probability for v in persona] == pytest.approx([v.probability for v in together], abs=1e-9)
    listed = leaks.judge_many(replies)
    # the leak judge's embedding sums differ in the last digits with the batch's size (BLAS): verdicts do not
    assert [(v.leak, v.source, v.passage, v.evidence) for v in leaked] == \
        [(v.leak, v.source, v.passage, v.evidence) for v in listed]
    assert [v.probability for v in leaked] == pytest.approx([v.probability for v in listed], abs=1e-6)
    assert coherent == coherence.check(replies)
    assert sum(v.sarcastic for v in persona) > 10 and sum(v.leak for v in leaked) > 10  # real verdicts, both ways
    assert batched(judge, "judge_many").calls - before < len(replies) // 4  # in batches, not one by one
