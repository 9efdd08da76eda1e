"""An LLM as the judge: any Inspect provider, temperature 0, a fixed seed, the versioned rubric, a strict parse."""

from __future__ import annotations

import math
import os
import re
from dataclasses import replace
from typing import Any

from ..harness.character import Character
from ..harness.secrets import redact, redact_errors
from .verdict import (
    JUDGE_RETRIES,
    JUDGE_TIMEOUT_S,
    MATH_TEMPLATE,
    RUBRIC_TEMPLATE,
    Verdict,
    parse_math_verdict,
    parse_verdict,
    rubric_version,
)


class LLMJudge:
    """Any Inspect model as the judge: temperature 0, fixed seed, the versioned rubric, a strict parse.

    Each call has a timeout per attempt and a retry budget (the spec's `?timeout=S&retries=N`); what still fails
    becomes an error verdict. Keys come from the provider's environment variables only.
    """

    def __init__(self, model: str, character: Character, name: str = "llm", seed: int = 0,
                 max_connections: int = 16, max_retries: int = JUDGE_RETRIES, timeout: int = JUDGE_TIMEOUT_S,
                 logprobs: bool = False) -> None:
        self.name = name
        self.model = model
        self.gives_leak = True
        self.gives_coherence = True
        self.logprobs = logprobs
        self.id = model + ("?logprobs" if logprobs else "") + _endpoint(model)
        self.character = character
        self.rubric_version = rubric_version(character)
        self.seed = seed
        self.timeout = timeout
        self.retries = max_retries
        # the attempts are ours (`_ask`): Inspect's own retries back off exponentially from 3 s, ~110 s a call on a
        # judge answering 500, and had no attempt timeout, so a judge that never answered held the run forever
        self._config_args = dict(temperature=0.0, seed=seed, max_tokens=400, max_connections=max_connections,
                                 max_retries=0, timeout=timeout, attempt_timeout=timeout)
        if logprobs:
            self._config_args.update(logprobs=True, top_logprobs=20)
        self._model = None
        self._unreachable: str | None = None  # set when a call's whole budget timed out: later calls fail at once

    def _get_model(self):  # type: ignore[no-untyped-def]
        if self._model is None:
            from inspect_ai.model import GenerateConfig, get_model

            from ..harness.providers import client_args

            config = GenerateConfig(**self._config_args)  # type: ignore[arg-type]
            if self.model == "grader":
                model = get_model(role="grader", config=config, memoize=False)
            else:
                model = get_model(self.model, config=config, memoize=False, **client_args(self.model))
            self._model = redact_errors(model)  # a key the judge echoes is masked before Inspect records the call
        return self._model

    def _call_config(self) -> Any:
        """The attempt's own limits, passed with each call: inside an eval Inspect lays the eval's `max_retries` and
        `timeout` over a non-active model's config (a judge with retries=1 made 12 requests a reply under the
        eval's max_retries=5); a call's own config is applied last."""
        from inspect_ai.model import GenerateConfig

        return GenerateConfig(max_retries=0, timeout=self.timeout, attempt_timeout=self.timeout)

    def prompt_for(self, prompt: str, response: str) -> str:
        return RUBRIC_TEMPLATE.format(name=self.character.name, rubric=self.character.rubric, prompt=prompt,
                                      response=response)

    async def _ask(self, text: str) -> Any:
        """The model's output, or an error verdict: a failed call is counted, never a score. Each attempt gets
        `timeout` seconds and a call `retries` more attempts, so a judge that never answers costs about
        timeout x (retries + 1) once; after that the judge counts as unreachable and every later call is an error
        at once, instead of the same wait per reply."""
        import anyio

        error = ""
        timed_out = True
        for attempt in range(self.retries + 1):
            if self._unreachable:
                return Verdict(error=f"judge call failed: {self._unreachable}")
            if attempt:
                await anyio.sleep(min(2.0, 0.5 * attempt))
            try:
                with anyio.fail_after(self.timeout + 5):  # a backstop to Inspect's own attempt timeout
                    output = await self._get_model().generate(text, config=self._call_config())
            except TimeoutError:
                error = f"no answer within {self.timeout} s"
                continue
            except Exception as e:  # noqa: BLE001 - any failure of the call is an error verdict, never a score
                timed_out = timed_out and "timeout" in type(e).__name__.lower() + str(e).lower()
                error = f"{type(e).__name__}: {redact(str(e))[:300]}"
                continue
            if output.error:
                timed_out = False
                error = redact(output.error)[:300]
                continue
            return output
        if timed_out:
            self._unreachable = (f"judge {self.model} unreachable: no answer within {self.timeout} s in "
                                 f"{self.retries + 1} attempts (?timeout=S&retries=N in the judge spec)")
            return Verdict(error=f"judge call failed: {self._unreachable}")
        return Verdict(error=f"judge call failed after {self.retries + 1} attempts: {error}")

    async def judge_math(self, question: str, reference: str, response: str) -> Verdict:
        """Whether the reply's committed final answer is the reference: a second opinion beside the rule."""
        output = await self._ask(MATH_TEMPLATE.format(question=question, reference=reference, response=response))
        return output if isinstance(output, Verdict) else parse_math_verdict(output.completion)

    async def judge(self, prompt: str, response: str) -> Verdict:
        output = await self._ask(self.prompt_for(prompt, response))
        if isinstance(output, Verdict):
            return output
        verdict = parse_verdict(output.completion)
        if verdict.ok and self.logprobs:
            weighted = weighted_score(output)
            if weighted is not None:
                verdict = replace(verdict, personality=weighted)
        return verdict


_SCORE_LEAD = re.compile(r'"personality"\s*:\s*$')


def weighted_score(output: Any) -> float | None:
    """Probability-weighted mean of the personality score's token (0-10), as the persona-vector work does.

    Finds the token right after `"personality":` and averages the integer candidates among its top
    logprobs; None when the provider gave no logprobs or under half the mass is on integers 0-10 (then
    the parsed value stands). Scores tokenised as two tokens ("1", "0") read as their first digit.
    """
    choice = output.choices[0] if output.choices else None
    content = choice.logprobs.content if choice is not None and choice.logprobs is not None else None
    if not content:
        return None
    seen = ""
    for item in content:
        if _SCORE_LEAD.search(seen) and item.token.strip():
            mass = total = 0.0
            for top in item.top_logprobs or []:
                tok = top.token.strip()
                if tok.isdigit() and 0 <= int(tok) <= 10:
                    p = math.exp(top.logprob)
                    mass += p
                    total += p * int(tok)
            return total / mass if mass >= 0.5 else None
        seen += item.token
    return None


def _endpoint(model: str) -> str:
    """`@base-url` for OpenAI-compatible judges: one model name on two servers is two judges (no key in it)."""
    if not model.startswith("openai-api/") or model.count("/") < 2:
        return ""
    url = os.environ.get(model.split("/")[1].upper().replace("-", "_") + "_BASE_URL")
    return f"@{url}" if url else ""

