"""Multi-turn drift: does the character hold over a whole conversation?

Single-turn chat is where every persona benchmark measures; users talk to a character for many turns, and
published work finds personas drift within about eight. Each sample is one of the pack's conversations
(`[files] conversations`: follow-ups, topic shifts, a long technical stretch, pressure to drop the act; at least
eight user turns). The `converse` solver sends the user turns one at a time, each after the model's previous
reply, and every assistant turn is judged like a single-turn reply: coherence, the persona judges, the leak judge.

A turn is *in character* when it is coherent, the board's first judge calls it sarcastic, and no leak is found.
The scorer reports per conversation:

    in_character@t, leak@t   turn t's verdicts (a drift curve across conversations, each point with its interval)
    held                     in character at every turn through the last
    turns_to_break           the first turn out of character (turns + 1 when it never broke)

and `score_candidate` adds the turn-level rates pooled over all turns (`coherent`, `sarcastic:<judge>`,
`personality:<judge>`, `leak`, `in_character`), with intervals from a bootstrap over conversations (turns of one
conversation are not independent). A failed turn (no reply) and every turn after it are errors, never scores;
a reply cut off before its final channel (GPT-OSS) fails its turn.
"""

from __future__ import annotations

from typing import Any

from inspect_ai import Task, task
from inspect_ai.dataset import MemoryDataset, Sample
from inspect_ai.model import CachePolicy, ChatMessageUser, GenerateConfig
from inspect_ai.scorer import Score, Scorer, Target, scorer
from inspect_ai.solver import Generate, Solver, TaskState, solver

from ..harness.character import Character, Conversation, load_character
from ..judges.leaks import LeakJudge
from ..judges.registry import build_judges
from ..judges.rules import leak_matches
from .persona import TRUNCATED, _coherence, _split, rates, response_of
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


def conversation_keys(n_turns: int) -> list[str]:
    """The conversation-level score keys of a conversation of `n_turns` (what an errored sample counts against)."""
    return [f"{m}@{t}" for t in range(1, n_turns + 1) for m in ("in_character", "leak")] + ["held", "turns_to_break"]


@scorer(metrics=[rates()])
def drift_scorer(character: str = "skippy", judge: str | None = None, judge_cache: bool = True) -> Scorer:
    pack = load_character(character)
    judges = build_judges(judge, pack, use_cache=judge_cache)
    check = _coherence(pack)
    leaks = LeakJudge.for_character(pack) if "judge_leaks" in pack.files else None
    primary = judges[0].name

    async def score(state: TaskState, target: Target) -> Score:
        import anyio

        turns = list(state.metadata["turns"])
        replies = state.store.get("replies") or []
        texts = [r["text"] for r in replies if not r["error"]]
        coherent = await anyio.to_thread.run_sync(check.check, texts) if check is not None and texts else []
        leaked = await anyio.to_thread.run_sync(leaks.judge_many, texts) if leaks is not None and texts else []
        per_turn: list[dict[str, Any]] = []
        answered = 0
        for turn, reply in zip(turns, replies, strict=False):
            if reply["error"] == TRUNCATED:  # the model's own failure: out of character, a leak
                per_turn.append({"coherent": 0, "leak": 1, "in_character": 0,
                                 **{f"{m}:{j.name}": 0 for j in judges for m in ("sarcastic", "personality")},
                                 "why": TRUNCATED})
                continue
            if reply["error"]:
                per_turn.append({"error": reply["error"]})
                continue
            text = reply["text"]
            values: dict[str, Any] = {}
            errors = []
            for j in judges:
                v = await j.judge(turn, text)
                values[f"sarcastic:{j.name}"] = None if v.sarcastic is None else int(v.sarcastic)
                values[f"personality:{j.name}"] = v.personality
                if v.error:
                    errors.append(f"{j.name}: {v.error}")
            ok = coherent[answered].coherent if coherent else True
            if leaks is not None:
                leak = bool(leaked[answered].leak)
            else:
                leak = bool(leak_matches(text, tuple(pack.leak_patterns)))
            answered += 1
            values["coherent"] = int(bool(ok)) if check is not None else None
            values["leak"] = int(leak)
            sarcastic = values[f"sarcastic:{primary}"]
            values["in_character"] = None if sarcastic is None else int(bool(ok) and bool(sarcastic) and not leak)
            if errors:
                values["why"] = "; ".join(errors)
            per_turn.append(values)
        value: dict[str, float | None] = {}
        broke: int | None = None
        unknown = False
        for t, v in enumerate(per_turn, start=1):
            inside = v.get("in_character")
            value[f"in_character@{t}"] = inside
            value[f"leak@{t}"] = v.get("leak")
            if broke is None and not unknown:
                if inside is None:
                    unknown = True  # an error before any break: when it would have broken is unknown
                elif not inside:
                    broke = t
        value["held"] = 0 if broke is not None else (None if unknown else 1)
        value["turns_to_break"] = float(broke) if broke is not None else (None if unknown else float(len(turns) + 1))
        explanation = (f"out of character from turn {broke}" if broke else
                       "an error left the conversation unfinished" if unknown else "in character at every turn")
        return Score(value=value, explanation=explanation, metadata={"turns": per_turn})

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
          epochs: int = 1) -> Task:
    """The pack's conversations answered turn by turn; persona, coherence and leaks judged at every turn."""
    pack: Character = load_character(character)
    if epochs != 1:
        from ..harness.errors import UserError

        raise UserError("the drift task runs one epoch (its per-turn curve is over conversations)")
    return Task(
        name="drift",
        dataset=_samples(pack.conversations(_split(split)), condition, split),
        solver=[condition_solver(condition, str(pack.root)), converse()],
        scorer=drift_scorer(str(pack.root), judge, judge_cache),
        config=GenerateConfig(temperature=temperature if temperature is not None else 0.0, seed=seed,
                              max_tokens=max_tokens),
        metadata={"character": pack.name, "suite_version": pack.suite_version(split, (condition,), ("drift",)),
                  "condition": condition, "split": split},
    )
