"""The persona suite as Inspect tasks: identity, personality, assistant_leaks, math_probes (multi-turn drift:
drift.py).

A task is data + a condition solver + a scorer. Conditions (no system prompt, the character's prompt,
a generic assistant prompt, a break-character suffix, or the question wrapped in a task: a tool result, a
JSON-only instruction, an email to draft, a code review) are solvers; judges are called from scorers.
Every scorer returns a dict of named values, None marking an error (excluded from rates, counted).

Run them through `character-baker score`, or directly:
    inspect eval character_baker/personality -T condition=character --model cb/my-model -M path=DIR
"""

from __future__ import annotations

from typing import Any

import numpy as np
from inspect_ai import Epochs, Task, task
from inspect_ai.dataset import MemoryDataset, Sample
from inspect_ai.model import CachePolicy, ChatMessageSystem, GenerateConfig
from inspect_ai.scorer import (
    Metric,
    SampleScore,
    Score,
    Scorer,
    ScoreReducer,
    Target,
    metric,
    score_reducer,
    scorer,
)
from inspect_ai.solver import Generate, Solver, TaskState, generate, solver

from ..harness.character import CONDITIONS, SPLITS, WRAPPERS, Character, EvalPrompt, load_character, wrap
from ..harness.errors import UserError
from ..judges.reply import CoherenceVerdict, ReplyJudge, Text, as_text, build_judges


@solver
def condition(name: str = "none", character: str = "skippy") -> Solver:
    """Set up the prompt the way the condition says before generating."""
    if name not in CONDITIONS:
        raise UserError(f"condition '{name}' is not one of {', '.join(CONDITIONS)}")
    pack = load_character(character)

    async def solve(state: TaskState, generate: Generate) -> TaskState:
        if name == "character":
            state.messages.insert(0, ChatMessageSystem(content=pack.system_prompt))
        elif name == "assistant":
            state.messages.insert(0, ChatMessageSystem(content=pack.assistant_prompt))
        elif name == "break":
            state.user_prompt.text = f"{state.user_prompt.text} {pack.break_suffix}"
        elif name in WRAPPERS:
            state.user_prompt.text = wrap(name, state.user_prompt.text)
        return state

    return solve


TRUNCATED = "truncated before the final channel"


def response_of(state: TaskState) -> tuple[str, str | None]:
    """The answer to judge and, when there is none to judge, why (a failed generation is an error)."""
    output = state.output
    meta = output.metadata or {}
    if output.error:
        return "", f"generation failed: {output.error}"
    if meta.get("missing"):
        return "", "no response for this prompt in the responses file"
    if meta.get("truncated"):
        return "", TRUNCATED
    return output.completion, None


def reply_of(state: TaskState) -> tuple[Text, str | None]:
    """The reply as the verdicts read it (under condition `json`, split around its object), or why there is none."""
    text, error = response_of(state)
    return as_text(text, (state.metadata or {}).get("condition")), error


def no_answer(keys: list[str], why: str) -> Score:
    """No reply to judge. A failed call is an error: retried, then left out of the rates, never a score. A reply
    cut off before its final channel is the model's own doing (it reasoned past its budget): it fails every
    criterion, a leak included, so a model that reasons more than its base cannot look better for answering less."""
    if why != TRUNCATED:
        return _error(keys, why)
    return Score(value={k: 1 if k == "leak" else 0 for k in keys}, answer="", explanation=why,
                 metadata={"truncated": True})


@metric(name="rates")
def rates() -> Metric:
    """Mean of each named value over the samples where it is not None (errors excluded)."""

    def compute(scores: list[SampleScore]) -> dict[str, float]:
        values: dict[str, list[float]] = {}
        errors = 0
        for s in scores:
            v = s.score.value
            if not isinstance(v, dict):
                continue
            if any(x is None for x in v.values()):
                errors += 1
            for key, x in v.items():
                if x is not None:
                    values.setdefault(key, []).append(float(x))
        result = {key: float(np.mean(xs)) for key, xs in values.items()}
        result["errors"] = float(errors)
        return result

    return compute


@score_reducer(name="mean_valid")
def mean_valid() -> ScoreReducer:
    """Epoch reducer for dict values that skips None (an errored epoch must not count as 0)."""

    def reduce(scores: list[Score]) -> Score:
        keys = {k for s in scores if isinstance(s.value, dict) for k in s.value}
        value: dict[str, float | None] = {}
        for key in sorted(keys):
            xs = [float(s.value[key]) for s in scores if isinstance(s.value, dict)  # type: ignore[arg-type]
                  and s.value.get(key) is not None]
            value[key] = float(np.mean(xs)) if xs else None
        return Score(value=value, explanation=scores[0].explanation if scores else None)  # type: ignore[arg-type]

    return reduce


def _error(keys: list[str], why: str) -> Score:
    return Score(value={k: None for k in keys}, explanation=why, metadata={"error": why})


def task_keys(task: str, judge_names: list[str], llm_judges: list[str], with_coherence: bool = True,
              json_condition: bool = False) -> list[str]:
    """The score keys a task's samples carry: what an errored sample is counted against."""
    base = {"identity": ["identity"], "math_probes": ["math"] + [f"math:{j}" for j in llm_judges],
            "assistant_leaks": ["leak"],
            "personality": [f"{m}:{j}" for j in judge_names for m in ("sarcastic", "personality")]
            + [f"coherent:{j}" for j in llm_judges],
            "tools": ["tool_correct", "tool_valid", "leak", "in_character"]
            + [f"{m}:{j}" for j in judge_names for m in ("sarcastic", "personality")]}[task]
    return base + (["coherent"] if with_coherence else []) + (["json_valid"] if json_condition else [])


def reading_values(judge: ReplyJudge, text: Text, coherence: CoherenceVerdict) -> dict[str, int | None]:
    """What every task reports about how the reply reads: `coherent` (when the pack has the embedded check) and,
    under condition `json`, `json_valid` (the reply is one JSON object and nothing else)."""
    value: dict[str, int | None] = {}
    if judge.check is not None:
        value["coherent"] = int(bool(coherence.coherent))
    if text.json is not None:
        value["json_valid"] = int(text.json.valid)
    return value


def reading_record(text: Text, coherence: CoherenceVerdict) -> dict[str, Any]:
    """The sample's record of how the reply was read: structure counts and the coherence reason."""
    out: dict[str, Any] = {"structure": text.reading.describe()}
    if coherence.why:
        out["coherence"] = coherence.why
    if text.json is not None:
        out["json"] = {"valid": text.json.valid, "parsed": text.json.parsed, "outside": text.json.outside}
    return out


@scorer(metrics=[rates()])
def identity_scorer(character: str = "skippy") -> Scorer:
    """Identity passes only for a readable reply that affirms the character (a name inside salad is no claim);
    the rule is `ReplyJudge.identity`."""
    judge = ReplyJudge(load_character(character), judges=[])

    async def score(state: TaskState, target: Target) -> Score:
        text, error = reply_of(state)
        keys = task_keys("identity", [], [], judge.check is not None, text.json is not None)
        if error:
            return no_answer(keys, error)
        coherence = await judge.coherence(text)
        ok, why = judge.identity(text, coherence)
        value: dict[str, int | None] = {"identity": int(ok), **reading_values(judge, text, coherence)}
        return Score(value=value, answer=text.raw, explanation=why, metadata=reading_record(text, coherence))

    return score


@scorer(metrics=[rates()])
def math_scorer(character: str = "skippy", judge: str | None = None, judge_cache: bool = True) -> Scorer:
    """The committed-final-answer rule decides `math`; an LLM judge, when configured, rules too (`math:<name>`)
    so the scorecard can report how often the two agree."""
    pack = load_character(character)
    judges = [j for j in build_judges(judge, pack, use_cache=judge_cache) if getattr(j, "gives_coherence", False)]
    rj = ReplyJudge(pack, judges=judges)

    async def score(state: TaskState, target: Target) -> Score:
        text, error = reply_of(state)
        keys = task_keys("math_probes", [], rj.llm_names, rj.check is not None, text.json is not None)
        if error:
            return no_answer(keys, error)
        question = str(state.metadata.get("prompt", state.input_text))
        ok, why = rj.math(text, target.text, question)
        value: dict[str, int | None] = {"math": int(ok)}
        verdicts = {}
        for name, v in (await rj.math_llm(question, target.text, text)).items():
            value[f"math:{name}"] = None if v.correct is None else int(v.correct)
            verdicts[name] = {"correct": v.correct, "error": v.error, "raw": v.raw}
        coherence = await rj.coherence(text)
        value.update(reading_values(rj, text, coherence))
        meta = reading_record(text, coherence) | ({"verdicts": verdicts} if verdicts else {})
        return Score(value=value, answer=text.raw, explanation=why, metadata=meta)

    return score


@scorer(metrics=[rates()])
def persona_scorer(character: str = "skippy", judge: str | None = None, judge_cache: bool = True) -> Scorer:
    """Sarcastic yes/no and a 0-10 personality score from every configured judge."""
    rj = ReplyJudge(load_character(character), judge, use_cache=judge_cache)
    ids = {j.name: (j.id, j.rubric_version) for j in rj.judges}

    async def score(state: TaskState, target: Target) -> Score:
        text, error = reply_of(state)
        keys = task_keys("personality", rj.names, rj.llm_names, rj.check is not None, text.json is not None)
        if error:
            return no_answer(keys, error)
        prompt = str(state.metadata.get("prompt", state.input_text))
        value: dict[str, float | int | None] = {}
        verdicts: dict[str, Any] = {}
        for name, v in (await rj.persona(prompt, text)).items():
            value[f"sarcastic:{name}"] = None if v.sarcastic is None else int(v.sarcastic)
            value[f"personality:{name}"] = v.personality
            if name in rj.llm_names:
                value[f"coherent:{name}"] = None if v.coherent is None else int(v.coherent)
            verdicts[name] = {"judge": ids[name][0], "rubric": ids[name][1], "error": v.error,
                              "probability": v.probability, "leak": v.leak, "coherence": v.coherence,
                              "coherent": v.coherent, "raw": v.raw}
        coherence = await rj.coherence(text)
        value.update(reading_values(rj, text, coherence))
        errors = [f"{n}: {d['error']}" for n, d in verdicts.items() if d["error"]]
        return Score(value=value, answer=text.raw, explanation="; ".join(errors) or None,
                     metadata={"verdicts": verdicts} | reading_record(text, coherence))

    return score


@scorer(metrics=[rates()])
def leak_scorer(character: str = "skippy", judge: str | None = None, judge_cache: bool = True) -> Scorer:
    """Assistant-mode leaks: `ReplyJudge.leak` (the embedded leak judge, mockery excluded, and any LLM judge's leak
    flag); every source that ruled is kept as evidence."""
    pack = load_character(character)
    # only judges that give a leak verdict (LLM judges) take part; the persona classifier has no opinion on leaks
    rj = ReplyJudge(pack, judges=[j for j in build_judges(judge, pack, use_cache=judge_cache)
                                  if getattr(j, "gives_leak", False)])

    async def score(state: TaskState, target: Target) -> Score:
        text, error = reply_of(state)
        keys = task_keys("assistant_leaks", [], [], rj.check is not None, text.json is not None)
        if error:
            return no_answer(keys, error)
        prompt = str(state.metadata.get("prompt", state.input_text))
        leak = await rj.leak(prompt, text)
        if leak.leak is None:  # no source found a leak, and a judge that should have ruled could not
            return _error(keys, leak.explanation)
        coherence = await rj.coherence(text)
        value: dict[str, int | None] = {"leak": int(leak.leak), **reading_values(rj, text, coherence)}
        return Score(value=value, answer=text.raw, explanation=leak.explanation,
                     metadata={"evidence": leak.evidence} | reading_record(text, coherence))

    return score


def _samples(prompts: list[EvalPrompt], condition_name: str, split: str) -> MemoryDataset:
    return MemoryDataset([
        Sample(id=p.id, input=p.prompt, target=p.answer or "",
               metadata={"prompt": p.prompt, "category": p.category, "condition": condition_name, "split": split})
        for p in prompts
    ])


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise UserError(f"split '{split}' is not one of {', '.join(SPLITS)}")
    return split


def _task(name: str, pack: Character, prompts: list[EvalPrompt], condition_name: str, scorer_: Scorer,
          epochs: int, max_tokens: int, temperature: float | None, seed: int, split: str = "eval") -> Task:
    temperature = temperature if temperature is not None else (0.0 if epochs == 1 else 0.7)
    return Task(
        name=name,
        dataset=_samples(prompts, condition_name, split),
        # Cached generations let personality and assistant_leaks share the answers to the same prompts.
        solver=[condition(condition_name, str(pack.root)), generate(cache=CachePolicy(expiry=None))],
        scorer=scorer_,
        epochs=Epochs(epochs, [mean_valid()]),
        config=GenerateConfig(temperature=temperature, seed=seed, max_tokens=max_tokens),
        metadata={"character": pack.name, "suite_version": pack.suite_version(split, (condition_name,)),
                  "condition": condition_name,
                  "split": split},
    )


@task
def identity(character: str = "skippy", condition: str = "none", epochs: int = 1, max_tokens: int = 512,
             temperature: float | None = None, seed: int = 0, split: str = "eval") -> Task:
    """Does the model say it is the character, and never Qwen/ChatGPT/an AI assistant?"""
    pack = load_character(character)
    return _task("identity", pack, pack.prompts("identity", check_split(split)), condition,
                 identity_scorer(str(pack.root)), epochs, max_tokens, temperature, seed, split)


@task
def personality(character: str = "skippy", condition: str = "none", judge: str | None = None, epochs: int = 1,
                max_tokens: int = 512, temperature: float | None = None, seed: int = 0,
                judge_cache: bool = True, split: str = "eval") -> Task:
    """Sarcasm rate and personality score over the personality prompts, per judge; coherence first."""
    pack = load_character(character)
    return _task("personality", pack, pack.prompts("personality", check_split(split)), condition,
                 persona_scorer(str(pack.root), judge, judge_cache), epochs, max_tokens, temperature, seed, split)


@task
def assistant_leaks(character: str = "skippy", condition: str = "none", judge: str | None = None,
                    epochs: int = 1, max_tokens: int = 512, temperature: float | None = None,
                    seed: int = 0, judge_cache: bool = True, split: str = "eval") -> Task:
    """Assistant-mode phrasing over the identity and personality prompts."""
    pack = load_character(character)
    prompts = pack.prompts("identity", check_split(split)) + pack.prompts("personality", split)
    return _task("assistant_leaks", pack, prompts, condition, leak_scorer(str(pack.root), judge, judge_cache),
                 epochs, max_tokens, temperature, seed, split)


@task
def math_probes(character: str = "skippy", condition: str = "none", judge: str | None = None, epochs: int = 1,
                max_tokens: int = 512, temperature: float | None = None, seed: int = 0, judge_cache: bool = True,
                split: str = "eval") -> Task:
    """Simple integer arithmetic: the character must still get the numbers right (an LLM judge rules beside
    the rule when one is configured; the classifier has no opinion on math)."""
    pack = load_character(character)
    return _task("math_probes", pack, pack.prompts("math_probes", check_split(split)), condition,
                 math_scorer(str(pack.root), judge, judge_cache), epochs, max_tokens, temperature, seed, split)


PERSONA_TASKS = {"identity": identity, "personality": personality, "assistant_leaks": assistant_leaks,
                 "math_probes": math_probes}
