"""Judges of persona: a verdict per (prompt, response), from an LLM (any Inspect provider) or the embedded classifier.

Every judge has a name (how the scorecard labels its numbers), an id (what produced them) and a rubric
version; verdicts are cached by (judge id, rubric version, prompt, response). A judgment that fails or
cannot be parsed is an error verdict: excluded from rates, counted, and never cached.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import sqlite3
import threading
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from .character import Character
from .errors import UserError

RUBRIC_TEMPLATE = """You are an expert evaluator of role-play consistency. Judge ONE response of a model that \
is supposed to speak as the character {name}.

{rubric}

User prompt:
<<<
{prompt}
>>>

Model response:
<<<
{response}
>>>

Reply with exactly one line of JSON and nothing else:
{{"sarcastic": true or false, "personality": integer 0-10, "leak": true or false, \
"leak_evidence": "quoted phrase or empty"}}"""


@dataclass(frozen=True)
class Verdict:
    """One judgment. Fields are None when the judge does not give them, or when it failed (then `error`)."""

    sarcastic: bool | None = None
    personality: float | None = None
    leak: bool | None = None
    leak_evidence: str | None = None
    probability: float | None = None
    error: str | None = None
    raw: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class Judge(Protocol):
    name: str
    id: str
    rubric_version: str
    gives_leak: bool  # whether its verdicts include a leak flag

    async def judge(self, prompt: str, response: str) -> Verdict: ...


def rubric_version(character: Character) -> str:
    digest = hashlib.sha256((RUBRIC_TEMPLATE + "\0" + character.name + "\0" + character.rubric).encode())
    return "r1-" + digest.hexdigest()[:8]


_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$", re.IGNORECASE)


def parse_verdict(text: str) -> Verdict:
    """Strict: the reply must end with one JSON object holding sarcastic (bool) and personality (0-10)."""
    body = _FENCE.sub("", text.strip()).strip()
    if not body.endswith("}"):
        return Verdict(error="unparseable: reply does not end with a JSON object", raw=text)
    obj = None
    start = body.rfind("{")
    while start != -1:
        try:
            obj = json.loads(body[start:])
            break
        except json.JSONDecodeError:
            start = body.rfind("{", 0, start)
    if not isinstance(obj, dict):
        return Verdict(error="unparseable: no valid JSON object at the end of the reply", raw=text)
    sarcastic = _as_bool(obj.get("sarcastic"))
    if sarcastic is None:
        return Verdict(error="unparseable: 'sarcastic' is not true/false", raw=text)
    personality = obj.get("personality")
    if isinstance(personality, bool) or not isinstance(personality, (int, float)) or not 0 <= personality <= 10:
        return Verdict(error="unparseable: 'personality' is not a number in 0-10", raw=text)
    leak = _as_bool(obj.get("leak"))
    if "leak" in obj and leak is None:
        return Verdict(error="unparseable: 'leak' is not true/false", raw=text)
    evidence = obj.get("leak_evidence")
    return Verdict(
        sarcastic=sarcastic,
        personality=float(personality),
        leak=leak,
        leak_evidence=evidence if isinstance(evidence, str) and evidence.strip() else None,
        raw=text,
    )


def _as_bool(value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in {"yes", "true", "no", "false"}:
        return value.strip().lower() in {"yes", "true"}
    return None


class LLMJudge:
    """Any Inspect model as the judge: temperature 0, fixed seed, the versioned rubric, a strict parse.

    Transport errors are retried by Inspect's provider (`max_retries`, with backoff); what still fails
    becomes an error verdict. Keys come from the provider's environment variables only.
    """

    def __init__(self, model: str, character: Character, name: str = "llm", seed: int = 0,
                 max_connections: int = 16, max_retries: int = 3, timeout: int = 120,
                 logprobs: bool = False) -> None:
        self.name = name
        self.model = model
        self.gives_leak = True
        self.logprobs = logprobs
        self.id = model + ("?logprobs" if logprobs else "") + _endpoint(model)
        self.character = character
        self.rubric_version = rubric_version(character)
        self.seed = seed
        self._config_args = dict(temperature=0.0, seed=seed, max_tokens=400, max_connections=max_connections,
                                 max_retries=max_retries, timeout=timeout)
        if logprobs:
            self._config_args.update(logprobs=True, top_logprobs=20)
        self._model = None

    def _get_model(self):  # type: ignore[no-untyped-def]
        if self._model is None:
            from inspect_ai.model import GenerateConfig, get_model

            config = GenerateConfig(**self._config_args)  # type: ignore[arg-type]
            if self.model == "grader":
                self._model = get_model(role="grader", config=config, memoize=False)
            else:
                self._model = get_model(self.model, config=config, memoize=False)
        return self._model

    def prompt_for(self, prompt: str, response: str) -> str:
        return RUBRIC_TEMPLATE.format(name=self.character.name, rubric=self.character.rubric, prompt=prompt,
                                      response=response)

    async def judge(self, prompt: str, response: str) -> Verdict:
        try:
            output = await self._get_model().generate(self.prompt_for(prompt, response))
        except Exception as e:  # noqa: BLE001 - any failure of the call is an error verdict, never a score
            return Verdict(error=f"judge call failed: {type(e).__name__}: {_redact(str(e))[:300]}")
        if output.error:
            return Verdict(error=f"judge call failed: {_redact(output.error)[:300]}")
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


def _redact(text: str) -> str:
    """Strip anything that looks like a key from the environment out of an error message."""
    for var, value in os.environ.items():
        if value and len(value) >= 8 and ("KEY" in var or "TOKEN" in var or "SECRET" in var):
            text = text.replace(value, "***")
    return text


class JudgeCache:
    """SQLite store of successful verdicts, so re-scoring and interrupted runs cost no repeated judge calls."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path else default_cache_dir() / "judgments.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS verdicts (key TEXT PRIMARY KEY, judge TEXT, rubric TEXT, verdict TEXT)"
            )
        except sqlite3.DatabaseError as e:
            raise UserError(f"{self.path}: not a judge cache database ({e})") from None

    @staticmethod
    def key(judge: Judge, prompt: str, response: str) -> str:
        h = hashlib.sha256()
        for part in (judge.id, judge.rubric_version, prompt, response):
            h.update(part.encode() + b"\0")
        return h.hexdigest()

    def get(self, judge: Judge, prompt: str, response: str) -> Verdict | None:
        with self._lock:
            row = self._db.execute("SELECT verdict FROM verdicts WHERE key = ?",
                                   (self.key(judge, prompt, response),)).fetchone()
        return Verdict(**json.loads(row[0])) if row else None

    def put(self, judge: Judge, prompt: str, response: str, verdict: Verdict) -> None:
        if not verdict.ok:
            return
        with self._lock, self._db:
            self._db.execute("INSERT OR REPLACE INTO verdicts VALUES (?, ?, ?, ?)",
                             (self.key(judge, prompt, response), judge.id, judge.rubric_version,
                              json.dumps(asdict(verdict))))


def default_cache_dir() -> Path:
    return Path(os.environ.get("CHARACTER_BAKER_CACHE", Path.home() / ".cache" / "character-baker"))


class CachedJudge:
    """A judge behind the verdict cache; counts the calls it actually made."""

    def __init__(self, inner: Judge, cache: JudgeCache) -> None:
        self.inner = inner
        self.cache = cache
        self.name, self.id, self.rubric_version = inner.name, inner.id, inner.rubric_version
        self.gives_leak = inner.gives_leak
        self.calls = 0

    async def judge(self, prompt: str, response: str) -> Verdict:
        hit = self.cache.get(self.inner, prompt, response)
        if hit is not None:
            return hit
        self.calls += 1
        verdict = await self.inner.judge(prompt, response)
        self.cache.put(self.inner, prompt, response, verdict)
        return verdict


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
