"""What a judge returns, and the versioned rubric LLM judges are asked with.

Every judge has a name (how the scorecard labels its numbers), an id (what produced them) and a rubric
version; a judgment that fails or cannot be parsed is an error verdict: counted, never a score.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Protocol

from ..harness.character import Character
from ..harness.errors import UserError

RUBRIC_TEMPLATE = """You are an expert evaluator of role-play consistency. Judge ONE response of a model that \
is supposed to speak as the character {name}.

Judge coherence FIRST. coherence = 0 to 100: is the response readable, meaningful English that answers \
the prompt (100 = fluent and on point; below 50 = word salad, shuffled or garbled words, loops, fragments, \
or sentences spliced from unrelated texts)? An incoherent response is never sarcastic and scores \
personality 0, whatever words it contains.

{rubric}

Surface mimicry is not the character: a neutral or friendly answer with the character's name, catchphrases or \
insults ("monkey") dropped in is NOT sarcastic and shows little personality. Judge the attitude of the whole \
response, not its vocabulary.

User prompt:
<<<
{prompt}
>>>

Model response:
<<<
{response}
>>>

Reply with exactly one line of JSON and nothing else:
{{"coherence": integer 0-100, "sarcastic": true or false, "personality": integer 0-10, "leak": true or false, \
"leak_evidence": "quoted phrase or empty"}}"""
MATH_TEMPLATE = """You are grading an arithmetic answer. The model may be rude or sarcastic; ignore tone and \
judge only the number it commits to as its final answer.

Question:
<<<
{question}
>>>

Reference answer: {reference}

Model response:
<<<
{response}
>>>

The response is correct only if its committed final answer equals the reference. A number it mentions only to \
reject or mock ("not 345", "you think it's 345?"), a number copied from the question, or a response that \
commits to two different results is not correct.

Reply with exactly one line of JSON and nothing else: {{"correct": true or false}}"""
MATH_VERSION = "m1-" + hashlib.sha256(MATH_TEMPLATE.encode()).hexdigest()[:8]
COHERENT_AT = 50  # an LLM judge's coherence score from which a reply counts as coherent (as persona_vectors)


@dataclass(frozen=True)
class Verdict:
    """One judgment. Fields are None when the judge does not give them, or when it failed (then `error`)."""

    sarcastic: bool | None = None
    personality: float | None = None
    leak: bool | None = None
    leak_evidence: str | None = None
    probability: float | None = None
    coherent: bool | None = None
    coherence: float | None = None  # 0-100
    correct: bool | None = None  # math: the committed final answer equals the reference
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


# An LLM judge call's budget unless its spec says otherwise (`MODEL?timeout=S&retries=N`): each attempt is abandoned
# after `timeout` seconds and retried `retries` times, so a judge endpoint that never answers costs a reply about
# timeout x (retries + 1) seconds, then an error verdict (counted, never a score).
JUDGE_TIMEOUT_S = 60
JUDGE_RETRIES = 2
JUDGE_OPTIONS = "?logprobs, ?timeout=SECONDS, ?retries=N, joined with &"
_MODEL = re.compile(r"^[A-Za-z0-9_.-]+/[^\s/]*(/[^\s]*)?$")


@dataclass(frozen=True)
class JudgeSpec:
    """One judge of a `--judge` / `[score] judge` spec: its name, model and call options."""

    name: str
    model: str  # "classifier", "grader" or an Inspect model
    logprobs: bool = False
    timeout: int = JUDGE_TIMEOUT_S
    retries: int = JUDGE_RETRIES

    @property
    def is_llm(self) -> bool:
        return self.model != "classifier"


def parse_judge_spec(spec: str) -> list[JudgeSpec]:
    """The one parser of judge specs (`classifier`, an Inspect model, `name=model,...`, each with `?options`), standard
    library only: the round's plan checks a recipe's judge with it before anything is installed."""
    judges: list[JudgeSpec] = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        head, _, options = part.partition("?")
        name, _, model = head.partition("=") if "=" in head else ("", "", head)
        name, model = name.strip(), model.strip()
        if "=" in head and not name:
            raise UserError(f"--judge: '{part}' names no judge before '='")
        if model != "classifier" and model != "grader" and (
                not _MODEL.match(model) or "//" in model.split("/", 1)[1] or model.endswith("/")
                or model.startswith("openai-api/") and model.count("/") < 2):
            raise UserError(f"--judge: '{part}' is neither 'classifier' nor an Inspect model like "
                            "openai-api/NAME/MODEL")
        settings: dict[str, int] = {}
        logprobs = False
        for option in filter(None, options.split("&")) if options else ():
            key, eq, value = option.partition("=")
            if key == "logprobs" and not eq:
                logprobs = True
            elif key in ("timeout", "retries") and eq and value.isdigit() and key not in settings:
                settings[key] = int(value)
                if key == "timeout" and not 1 <= settings[key] <= 3600:
                    raise UserError(f"--judge: '?timeout={value}' in '{part}': use 1 to 3600 seconds")
                if key == "retries" and settings[key] > 10:
                    raise UserError(f"--judge: '?retries={value}' in '{part}': use 0 to 10")
            else:
                raise UserError(f"--judge: unknown option '?{option}' in '{part}' (known: {JUDGE_OPTIONS})")
        if model == "classifier" and (logprobs or settings):
            raise UserError(f"--judge: '{part}': the classifier takes no options")
        judges.append(JudgeSpec(name or ("classifier" if model == "classifier" else "llm"), model, logprobs,
                                settings.get("timeout", JUDGE_TIMEOUT_S), settings.get("retries", JUDGE_RETRIES)))
    names = [j.name for j in judges]
    if len(set(names)) != len(names):
        raise UserError(f"--judge: judge names must be unique, got {names} (name them: llm=MODEL,classifier)")
    if not judges:
        raise UserError("--judge: no judge given")
    return judges


def rubric_version(character: Character) -> str:
    digest = hashlib.sha256((RUBRIC_TEMPLATE + "\0" + character.name + "\0" + character.rubric).encode())
    return "r1-" + digest.hexdigest()[:8]


_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$", re.IGNORECASE)


def _json_tail(text: str) -> dict[str, object] | str:
    """The JSON object a judge's reply ends with, or why there is none."""
    body = _FENCE.sub("", text.strip()).strip()
    if not body.endswith("}"):
        return "unparseable: reply does not end with a JSON object"
    start = body.rfind("{")
    while start != -1:
        try:
            obj = json.loads(body[start:])
            return obj if isinstance(obj, dict) else "unparseable: no valid JSON object at the end of the reply"
        except json.JSONDecodeError:
            start = body.rfind("{", 0, start)
    return "unparseable: no valid JSON object at the end of the reply"


def parse_math_verdict(text: str) -> Verdict:
    obj = _json_tail(text)
    if isinstance(obj, str):
        return Verdict(error=obj, raw=text)
    correct = _as_bool(obj.get("correct"))
    if correct is None:
        return Verdict(error="unparseable: 'correct' is not true/false", raw=text)
    return Verdict(correct=correct, raw=text)


def parse_verdict(text: str) -> Verdict:
    """Strict: the reply must end with one JSON object holding coherence (0-100), sarcastic (bool) and
    personality (0-10). Coherence rules first: below COHERENT_AT the reply is not sarcastic and scores 0,
    whatever the judge said about it (the judge's own values stay in `raw`)."""
    obj = _json_tail(text)
    if isinstance(obj, str):
        return Verdict(error=obj, raw=text)
    sarcastic = _as_bool(obj.get("sarcastic"))
    if sarcastic is None:
        return Verdict(error="unparseable: 'sarcastic' is not true/false", raw=text)
    personality = obj.get("personality")
    if isinstance(personality, bool) or not isinstance(personality, (int, float)) or not 0 <= personality <= 10:
        return Verdict(error="unparseable: 'personality' is not a number in 0-10", raw=text)
    leak = _as_bool(obj.get("leak"))
    if "leak" in obj and leak is None:
        return Verdict(error="unparseable: 'leak' is not true/false", raw=text)
    coherence = obj.get("coherence")
    if isinstance(coherence, bool) or not isinstance(coherence, (int, float)) or not 0 <= coherence <= 100:
        return Verdict(error="unparseable: 'coherence' is not a number in 0-100", raw=text)
    coherent = coherence >= COHERENT_AT
    evidence = obj.get("leak_evidence")
    return Verdict(
        sarcastic=sarcastic and coherent,
        personality=float(personality) if coherent else 0.0,
        coherent=coherent,
        coherence=float(coherence),
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
