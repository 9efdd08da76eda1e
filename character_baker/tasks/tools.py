"""Tool calls in character: the pack's household tools offered as real tools.

The research plan's next step is a character that can run a household through tools without dropping the act.
Each sample is a request that needs one tool call (`[files] tool_requests`, e.g. "set the nursery to 68 °F" ->
`set_thermostat(room="nursery", celsius=20)`). The household tools (`household.toml`) are offered as Inspect
tools; the model calls them through its own format (Qwen's `<tool_call>`, GPT-OSS's harmony `to=functions.*`, or
an endpoint's native tool calls), each tool answers with a confirmation, and the model then answers the user.

Scores per request:

    tool_correct   one call, of the expected tool with the expected values (one right call among wrong ones, an
                   extra action, or the right call made twice -- two timers started -- is not correct)
    tool_valid     every call names an offered tool with arguments of the declared types (no call: 0)
    coherent, sarcastic:<judge>, personality:<judge>, leak, in_character    the final answer, judged like any reply

A final answer that is empty (the model only called tools) is not in character; a failed model call is an error.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from inspect_ai import Task, task
from inspect_ai.dataset import MemoryDataset, Sample
from inspect_ai.model import CachePolicy, GenerateConfig
from inspect_ai.scorer import Score, Scorer, Target, scorer
from inspect_ai.solver import Generate, Solver, TaskState, solver
from inspect_ai.tool import Tool, ToolDef, ToolParam, ToolParams

from ..harness.character import Character, load_character
from ..judges.reply import ReplyJudge
from .persona import TRUNCATED, no_answer, rates, reply_of, task_keys
from .persona import condition as condition_solver

JSON_TYPES = {"string": "string", "number": "number", "integer": "integer", "boolean": "boolean"}


def _json_type(declared: str) -> str:
    """household.toml writes types as words, sometimes with a note: "string (ISO 8601)" is a string."""
    return JSON_TYPES.get(declared.split("(")[0].strip().lower(), "string")


def household_tools(pack: Character) -> list[Tool]:
    """The household tools as Inspect tools; each confirms what it was asked to do."""
    tools = []
    for spec in pack.household()["tools"]:
        params = spec.get("parameters", {})

        def confirm(name: str) -> Any:
            async def run(**kwargs: Any) -> str:
                return json.dumps({"ok": True, "tool": name, "done": kwargs})

            return run

        tools.append(ToolDef(confirm(spec["name"]), name=spec["name"], description=spec["description"],
                             parameters=ToolParams(properties={
                                 k: ToolParam(type=_json_type(v), description=str(v))  # type: ignore[arg-type]
                                 for k, v in params.items()}, required=[])).as_tool())
    return tools


def valid_arguments(arguments: dict[str, Any], declared: dict[str, str]) -> str | None:
    """Why the arguments do not fit the tool's parameters (None: they do)."""
    for key, value in arguments.items():
        if key not in declared:
            return f"unknown parameter {key!r}"
        kind = _json_type(declared[key])
        ok = {"string": isinstance(value, str), "boolean": isinstance(value, bool),
              "integer": isinstance(value, int) and not isinstance(value, bool),
              "number": isinstance(value, (int, float)) and not isinstance(value, bool)}[kind]
        if not ok:
            return f"{key} = {value!r} is not a {kind}"
    return None


def same_value(expected: Any, got: Any) -> bool:
    """Expected and given argument values are the same: numbers by value, text ignoring case and spacing, ISO
    times as times (21 == 21.0; "Living  Room" == "living room"; "2026-12-03T15:00" == "2026-12-03T15:00:00")."""
    if isinstance(expected, bool) or isinstance(got, bool):
        return expected is got
    if isinstance(expected, (int, float)) and isinstance(got, (int, float)):
        return abs(float(expected) - float(got)) < 1e-6
    if isinstance(expected, str) and isinstance(got, str):
        try:
            return dt.datetime.fromisoformat(expected) == dt.datetime.fromisoformat(got.replace("Z", ""))
        except ValueError:
            return " ".join(expected.casefold().split()) == " ".join(got.casefold().split())
    return False


def tool_correct(calls: list[Any], expected: dict[str, Any]) -> bool:
    """The request asks for one action: it is done right when exactly one call is made and it is the expected tool
    with the expected values. A shotgun (one right call among wrong ones), an extra action, and the same call made
    twice (two timers started, the heating set twice) all act on the household more than it was asked to."""
    if len(calls) != 1:
        return False
    [c] = calls
    return c.function == expected["tool"] and not c.parse_error and all(
        k in c.arguments and same_value(v, c.arguments[k]) for k, v in expected["arguments"].items())


@solver
def use_household_tools(character: str) -> Solver:
    pack = load_character(character)
    tools = household_tools(pack)

    async def solve(state: TaskState, generate: Generate) -> TaskState:
        state.tools = list(tools)
        return await generate(state, tool_calls="loop", cache=CachePolicy(expiry=None))

    return solve


@scorer(metrics=[rates()])
def tool_scorer(character: str = "skippy", judge: str | None = None, judge_cache: bool = True) -> Scorer:
    pack = load_character(character)
    rj = ReplyJudge(pack, judge, use_cache=judge_cache)
    declared = {t["name"]: t.get("parameters", {}) for t in pack.household()["tools"]}
    primary = rj.names[0]

    async def score(state: TaskState, target: Target) -> Score:
        keys = task_keys("tools", rj.names, [], rj.check is not None)
        expected = state.metadata["expected"]
        calls = [c for m in state.messages if m.role == "assistant" for c in (getattr(m, "tool_calls", None) or [])]
        problems = []
        for c in calls:
            why = (c.parse_error or (None if c.function in declared else f"no tool {c.function!r}")
                   or valid_arguments(c.arguments, declared[c.function]))
            if why:
                problems.append(f"{c.function or '?'}: {why}")
        correct = tool_correct(calls, expected)
        reply, error = reply_of(state)
        text = reply.raw
        if error and error != TRUNCATED:
            return no_answer(keys, error)
        tool_values = {"tool_correct": int(correct), "tool_valid": int(bool(calls) and not problems)}
        called = "; ".join(f"{c.function}({json.dumps(c.arguments)})" for c in calls) or "no tool call"
        if error == TRUNCATED:  # cut before its final channel: fails every criterion, a leak included (persona.py)
            return Score(value=dict(no_answer(keys, error).value) | tool_values, answer="",  # type: ignore[arg-type]
                         explanation=f"{called}; {TRUNCATED}")
        if not text.strip():  # calls and no final answer: the act was not kept (nothing said, so no leak)
            out = {k: 0 for k in keys if k not in tool_values} | tool_values
            return Score(value=out, answer=text, explanation=f"{called}; no final answer" + (
                f"; {'; '.join(problems)}" if problems else ""))
        value: dict[str, Any] = dict(tool_values)
        for name, v in (await rj.persona(state.input_text, reply)).items():  # the verdicts of judges/reply.py
            value[f"sarcastic:{name}"] = None if v.sarcastic is None else int(v.sarcastic)
            value[f"personality:{name}"] = v.personality
        coherence = await rj.coherence(reply)
        coherent = coherence.coherent if coherence.coherent is not None else True
        if rj.check is not None:
            value["coherent"] = int(bool(coherent))
        leak_result = await rj.leak(state.input_text, reply)
        if leak_result.leak is None:
            return Score(value={k: None for k in keys} | tool_values, answer=text, explanation=leak_result.explanation,
                         metadata={"error": leak_result.explanation})
        leak = leak_result.leak
        value["leak"] = int(leak)
        sarcastic = value[f"sarcastic:{primary}"]
        value["in_character"] = None if sarcastic is None else int(bool(coherent) and bool(sarcastic) and not leak)
        return Score(value=value, answer=text, explanation=called + (f"; {'; '.join(problems)}" if problems else ""))

    return score


@task
def tools(character: str = "skippy", condition: str = "none", judge: str | None = None, max_tokens: int = 512,
          temperature: float | None = None, seed: int = 0, judge_cache: bool = True, split: str = "eval",
          epochs: int = 1) -> Task:
    """Household requests answered with the household tools; the call and the character both scored."""
    pack = load_character(character)
    if split != "eval":
        from ..harness.errors import UserError

        raise UserError(f"the tools task has eval requests only (split '{split}')")
    dataset = MemoryDataset([
        Sample(id=r.id, input=r.prompt, metadata={"expected": {"tool": r.tool, "arguments": r.arguments},
                                                  "prompt": r.prompt, "condition": condition, "split": split})
        for r in pack.tool_requests()])
    return Task(
        name="tools", dataset=dataset,
        solver=[condition_solver(condition, str(pack.root)), use_household_tools(str(pack.root))],
        scorer=tool_scorer(str(pack.root), judge, judge_cache),
        message_limit=12,  # a model that keeps calling tools stops here; its last turn is then scored
        config=GenerateConfig(temperature=temperature if temperature is not None else 0.0, seed=seed,
                              max_tokens=max_tokens),
        metadata={"character": pack.name, "suite_version": pack.suite_version(split, (condition,), ("tools",)),
                  "condition": condition, "split": split},
    )
