"""Multi-turn drift: does the character hold over a whole conversation?

Single-turn chat is where every persona benchmark measures; users talk to a character for many turns, and
published work finds personas drift within about eight. Each sample is one of the pack's conversations
(`[files] conversations`: follow-ups, topic shifts, a long technical stretch, pressure to drop the act; at least
eight user turns). The `converse` solver sends the user turns one at a time, each after the model's previous
reply, and every assistant turn is judged like a single-turn reply: coherence, the persona judges, the leak judge.

A turn is *in character* when it is coherent, the board's first judge calls it sarcastic, and no leak is found.
The scorer reports per conversation:

    in_character@t, leak@t   turn t's verdicts (a drift curve across conversations, each point with its interval)
    held                     never `break_after` (default 2) turns in a row out of character; a leak turn is out
    turns_to_break           the first turn of the first such run (turns + 1 when it never broke)

One misjudged turn flips neither (`conversation_verdict`; benchmarks/drift_rule.py measures the rule on labelled
conversations); an errored turn counts neither way, and a value is None only when it could decide it.
`score_candidate` adds the turn-level rates pooled over all turns (`coherent`, `sarcastic:<judge>`,
`personality:<judge>`, `leak`, `in_character`), with intervals from a bootstrap over conversations (turns of one
conversation are not independent). A failed turn (no reply) and every turn after it are errors, never scores;
a reply cut off before its final channel (GPT-OSS) fails its turn.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from inspect_ai import Task, task
from inspect_ai.dataset import MemoryDataset, Sample
from inspect_ai.model import CachePolicy, ChatMessageUser, GenerateConfig
from inspect_ai.scorer import Score, Scorer, Target, scorer
from inspect_ai.solver import Generate, Solver, TaskState, solver

from ..harness.character import Character, Conversation, load_character
from ..judges.reply import ReplyJudge, as_text
from .persona import TRUNCATED, check_split, rates, response_of
from .persona import condition as condition_solver  # the conditions (system prompts, wrappers) set up turn 1


@solver
def converse() -> Solver:
    """Answer the conversation's user turns in order; the replies (or why there is none) go to the store."""

    async def solve(state: TaskState, generate: Generate) -> TaskState:
        turns = list(state.metadata["turns"])
        replies: list[dict[str, Any]] = []
        for i, turn in enumerate(turns):
            if i:
                state.messages.append(ChatMessageUser(content=turn))
            state = await generate(state, cache=CachePolicy(expiry=None))
            text, why = response_of(state)
            replies.append({"text": text, "error": why})
            if why and why != TRUNCATED:  # no reply to build on: the rest of the conversation cannot happen
                replies += [{"text": "", "error": f"not reached: turn {i + 1} failed"} for _ in turns[i + 1:]]
                break
        state.store.set("replies", replies)
        return state

    return solve


BREAK_AFTER = 2  # out-of-character turns in a row that make a break (benchmarks/drift_rule.py measures the choice)


TurnVerdict = int | bool | None  # a turn's 1/0 verdict, or None when it could not be judged


@dataclass(frozen=True)
class ConversationVerdict:
    held: int | None  # 1 held, 0 broke, None: the errored turns decide it
    turns_to_break: float | None  # the first turn of the first break (turns + 1 when held), None when undecided
    explanation: str


def conversation_verdict(in_character: Sequence[TurnVerdict], leak: Sequence[TurnVerdict], n_turns: int | None = None,
                         break_after: int = BREAK_AFTER) -> ConversationVerdict:
    """`held` and `turns_to_break` from the per-turn verdicts, so that one misjudged turn does not flip them.

    A break is `break_after` turns in a row out of character (a leak turn is out of character whatever the persona
    judge said); `turns_to_break` is the first turn of that run. A single out-of-character turn between in-character
    ones is one judge miss or one slip the model recovered from: neither is a broken conversation. With per-turn miss
    rate m an in-character 8-turn conversation is held with probability (1 - m)^8 under break_after = 1 but about
    1 - 7 m^2 under 2 (benchmarks/drift_rule.py gives the exact figures). An errored turn (None) could have gone
    either way: the verdict is taken with it out and with it in (a first break can only come earlier when more turns
    are out), and a value is reported only when both agree; otherwise it is None. Turns never reached (fewer
    verdicts than `n_turns`) are errored turns.
    """
    n = len(in_character) if n_turns is None else n_turns
    states: list[bool | None] = []  # True: out of character
    for t in range(n):
        inside = in_character[t] if t < len(in_character) else None
        leaked = leak[t] if t < len(leak) else None
        if leaked is not None and bool(leaked) or inside is not None and not inside:
            states.append(True)
        elif inside is not None:
            states.append(False)
        else:
            states.append(None)

    def first_break(unknown_out: bool) -> int | None:
        run = 0
        for t, out in enumerate(states, start=1):
            run = run + 1 if (unknown_out if out is None else out) else 0
            if run == break_after:
                return t - break_after + 1
        return None

    earliest, latest = first_break(True), first_break(False)  # errored turns all out / all in
    held = 1 if earliest is None else (0 if latest is not None else None)
    turns_to_break = (float(n + 1) if earliest is None else float(earliest)) if earliest == latest else None
    if earliest is None:
        explanation = f"in character: never {break_after} turns in a row out of character"
    elif earliest == latest:
        explanation = f"out of character from turn {earliest} ({break_after} turns in a row)"
    elif latest is not None:
        explanation = f"broke by turn {latest}; errored turns leave the first turn of the break unknown"
    else:
        explanation = "errored turns leave it undecided whether the conversation broke"
    return ConversationVerdict(held, turns_to_break, explanation)


def conversation_keys(n_turns: int) -> list[str]:
    """The conversation-level score keys of a conversation of `n_turns` (what an errored sample counts against)."""
    return [f"{m}@{t}" for t in range(1, n_turns + 1) for m in ("in_character", "leak")] + ["held", "turns_to_break"]


@scorer(metrics=[rates()])
def drift_scorer(character: str = "skippy", judge: str | None = None, judge_cache: bool = True,
                 break_after: int = BREAK_AFTER) -> Scorer:
    if isinstance(break_after, bool) or not isinstance(break_after, int) or break_after < 1:
        from ..harness.errors import UserError

        raise UserError(f"drift: break_after must be a whole number of turns >= 1, got {break_after!r}")
    pack = load_character(character)
    rj = ReplyJudge(pack, judge, use_cache=judge_cache)
    primary = rj.names[0]

    async def score(state: TaskState, target: Target) -> Score:
        turns = list(state.metadata["turns"])
        replies = state.store.get("replies") or []
        per_turn: list[dict[str, Any]] = []
        for turn, reply in zip(turns, replies, strict=False):
            if reply["error"] == TRUNCATED:  # the model's own failure: out of character, a leak
                per_turn.append({"coherent": 0, "leak": 1, "in_character": 0,
                                 **{f"{m}:{n}": 0 for n in rj.names for m in ("sarcastic", "personality")},
                                 "why": TRUNCATED})
                continue
            if reply["error"]:
                per_turn.append({"error": reply["error"]})
                continue
            # each turn is judged like a single-turn reply, by the same verdicts (judges/reply.py)
            text = as_text(reply["text"], state.metadata.get("condition"))
            values: dict[str, Any] = {}
            errors = []
            for name, v in (await rj.persona(turn, text)).items():
                values[f"sarcastic:{name}"] = None if v.sarcastic is None else int(v.sarcastic)
                values[f"personality:{name}"] = v.personality
                if v.error:
                    errors.append(f"{name}: {v.error}")
            coherence = await rj.coherence(text)
            leak = await rj.leak(turn, text)
            ok = coherence.coherent if coherence.coherent is not None else True
            values["coherent"] = None if coherence.coherent is None else int(coherence.coherent)
            values["leak"] = None if leak.leak is None else int(leak.leak)
            if leak.error:
                errors.append(leak.error)
            sarcastic = values[f"sarcastic:{primary}"]
            values["in_character"] = None if sarcastic is None or leak.leak is None else int(
                bool(ok) and bool(sarcastic) and not leak.leak)
            if errors:
                values["why"] = "; ".join(errors)
            per_turn.append(values)
        value: dict[str, float | None] = {}
        for t, v in enumerate(per_turn, start=1):  # the per-turn curve: each turn's own verdicts
            value[f"in_character@{t}"] = v.get("in_character")
            value[f"leak@{t}"] = v.get("leak")
        verdict = conversation_verdict([v.get("in_character") for v in per_turn], [v.get("leak") for v in per_turn],
                                       len(turns), break_after)
        value["held"], value["turns_to_break"] = verdict.held, verdict.turns_to_break
        return Score(value=value, explanation=verdict.explanation, metadata={"turns": per_turn})

    return score


def _samples(conversations: list[Conversation], condition_name: str, split: str) -> MemoryDataset:
    return MemoryDataset([
        Sample(id=c.id, input=c.turns[0], metadata={"turns": list(c.turns), "category": c.category, "kind": c.kind,
                                                     "condition": condition_name, "split": split})
        for c in conversations
    ])


@task
def drift(character: str = "skippy", condition: str = "none", judge: str | None = None, max_tokens: int = 512,
          temperature: float | None = None, seed: int = 0, judge_cache: bool = True, split: str = "eval",
          epochs: int = 1, break_after: int = BREAK_AFTER) -> Task:
    """The pack's conversations answered turn by turn; persona, coherence and leaks judged at every turn.
    `break_after`: out-of-character turns in a row that count as a break (`conversation_verdict`)."""
    pack: Character = load_character(character)
    if epochs != 1:
        from ..harness.errors import UserError

        raise UserError("the drift task runs one epoch (its per-turn curve is over conversations)")
    return Task(
        name="drift",
        dataset=_samples(pack.conversations(check_split(split)), condition, split),
        solver=[condition_solver(condition, str(pack.root)), converse()],
        scorer=drift_scorer(str(pack.root), judge, judge_cache, break_after),
        config=GenerateConfig(temperature=temperature if temperature is not None else 0.0, seed=seed,
                              max_tokens=max_tokens),
        metadata={"character": pack.name, "suite_version": pack.suite_version(split, (condition,), ("drift",)),
                  "condition": condition, "split": split, "break_after": break_after},
    )
