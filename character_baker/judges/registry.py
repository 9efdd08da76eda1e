"""Judges from a `--judge` spec: the embedded classifier, any Inspect model, or several by name."""

from __future__ import annotations

import os
from typing import Any

from ..harness.character import Character
from ..harness.errors import UserError
from .cache import CachedJudge, JudgeCache
from .llm import LLMJudge
from .verdict import Judge


def build_judges(spec: str | None, character: Character, use_cache: bool = True) -> list[Judge]:
    """Judges from a spec: `classifier`, an Inspect model (`openai-api/local/m`), or `name=model,...`.

    `model?logprobs` asks the provider for log-probabilities and scores personality as the
    probability-weighted mean of the score token.

    With no spec, an LLM judge named by CHARACTER_BAKER_JUDGE if set, else the embedded classifier.
    """
    spec = spec or os.environ.get("CHARACTER_BAKER_JUDGE") or "classifier"
    judges: list[Judge] = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        name, _, model = part.partition("=") if "=" in part else ("", "", part)
        model, _, option = model.partition("?")
        if option not in ("", "logprobs"):
            raise UserError(f"--judge: unknown option '?{option}' in '{part}' (known: ?logprobs)")
        judge: Judge
        if model == "classifier":
            from .classifier import ClassifierJudge

            judge = ClassifierJudge.for_character(character, name=name or "classifier")
        elif "/" in model or model == "grader":
            judge = LLMJudge(model, character, name=name or "llm", logprobs=option == "logprobs")
        else:
            raise UserError(f"--judge: '{part}' is neither 'classifier' nor an Inspect model "
                            "like openai-api/NAME/MODEL")
        judges.append(judge)
    names = [j.name for j in judges]
    if len(set(names)) != len(names):
        raise UserError(f"--judge: judge names must be unique, got {names} (name them: llm=MODEL,classifier)")
    if not judges:
        raise UserError("--judge: no judge given")
    if use_cache:
        cache = JudgeCache()
        judges = [CachedJudge(j, cache) for j in judges]
    return judges


def embedded_coherence(character: Character) -> Any:
    """The embedded judge's coherence check: what every task reports as `coherent`, whoever judges persona."""
    from .classifier import ClassifierJudge

    return ClassifierJudge.for_character(character).trained.coherence
