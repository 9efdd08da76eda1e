"""The judges of a `--judge` spec, and every verdict on one reply, decided in one place.

`judge`, the persona tasks, drift, tools, the round and grpo's reward all ask a `ReplyJudge`, so a reply gets the
same coherence, persona, leak, identity and maths verdicts whoever asks. Each verdict reads the reply the way a
person does (`structure.read`): coherence the prose (markdown structure reported, not judged as words), the
embedded persona judge the spoken words, the leak judge every readable word (a soft closer is often the sign-off),
the maths rule the reply as written. A JSON-wrapper reply (condition `json`) is split into prefix / object / suffix
(`structure.split_json`): its validity is its own value, its prose around the object is read for leaks, and the
object's answer field is the committed answer.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from ..harness.character import Character
from ..harness.structure import JsonReply, Reading, read, split_json
from .cache import CachedJudge, JudgeCache
from .leaks import LeakJudge
from .llm import LLMJudge
from .rules import identity_verdict, leak_matches, math_verdict
from .verdict import Judge, Verdict, parse_judge_spec


def build_judges(spec: str | None, character: Character, use_cache: bool = True) -> list[Judge]:
    """Judges from a spec: `classifier`, an Inspect model (`openai-api/local/m`), or `name=model,...`.

    `model?logprobs` asks the provider for log-probabilities and scores personality as the
    probability-weighted mean of the score token; `model?timeout=S&retries=N` bounds each call (defaults:
    verdict.JUDGE_TIMEOUT_S, verdict.JUDGE_RETRIES).

    With no spec, an LLM judge named by CHARACTER_BAKER_JUDGE if set, else the embedded classifier.
    """
    spec = spec or os.environ.get("CHARACTER_BAKER_JUDGE") or "classifier"
    judges: list[Judge] = []
    for one in parse_judge_spec(spec):
        judge: Judge
        if one.model == "classifier":
            from .classifier import ClassifierJudge

            judge = ClassifierJudge.for_character(character, name=one.name)
        else:
            judge = LLMJudge(one.model, character, name=one.name, logprobs=one.logprobs, timeout=one.timeout,
                             max_retries=one.retries)
        judges.append(judge)
    if use_cache:
        cache = JudgeCache()
        judges = [CachedJudge(j, cache) for j in judges]
    return judges


def embedded_coherence(character: Character) -> Any:
    """The embedded judge's coherence check: what every task reports as `coherent`, whoever judges persona."""
    from .classifier import ClassifierJudge

    return ClassifierJudge.for_character(character).trained.coherence


@dataclass(frozen=True)
class Text:
    """A reply as each verdict reads it."""

    raw: str
    reading: Reading
    json: JsonReply | None = None  # condition json: the reply split around its object

    @property
    def prose(self) -> str:
        return read(self.json.persona_text()).prose if self.json else self.reading.prose

    @property
    def prose_parts(self) -> tuple[str, ...]:
        return read(self.json.persona_text()).prose_parts if self.json else self.reading.prose_parts

    @property
    def spoken(self) -> str:
        return read(self.json.persona_text()).spoken if self.json else self.reading.spoken

    @property
    def readable(self) -> str:
        return read(self.json.persona_text()).readable if self.json else self.reading.readable

    @property
    def for_math(self) -> str:
        return self.json.math_text() if self.json else self.raw


def as_text(reply: str, condition: str | None = None) -> Text:
    """The reply read once; under condition `json`, split around its object too."""
    return Text(reply, read(reply), split_json(reply) if condition == "json" else None)


@dataclass(frozen=True)
class CoherenceVerdict:
    coherent: bool | None  # None: the pack has no judge split, so no embedded check
    why: str | None = None
    learned: bool = False  # rejected by the trees' statistical call alone (not unreadable words or a loop)
    score: float | None = None


@dataclass(frozen=True)
class LeakResult:
    leak: bool | None  # None: no source could rule (a judge that should have failed)
    evidence: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    @property
    def explanation(self) -> str:
        return "; ".join(f"{e['source']}: {e['text']}".rstrip(": ") for e in self.evidence) or (
            self.error or "no assistant-mode behaviour")


class ReplyJudge:
    """The judges of a pack and a `--judge` spec, and the one way each verdict on a reply is decided."""

    def __init__(self, pack: Character, spec: str | None = None, use_cache: bool = True,
                 judges: list[Judge] | None = None) -> None:
        self.pack = pack
        self.judges = judges if judges is not None else build_judges(spec, pack, use_cache=use_cache)
        self.check = embedded_coherence(pack) if "judge" in pack.files else None
        self.leak_judge = LeakJudge.for_character(pack) if "judge_leaks" in pack.files else None
        self.llm = [j for j in self.judges if getattr(j, "gives_coherence", False)]
        self.leak_judges = [j for j in self.judges if getattr(j, "gives_leak", False)]

    @property
    def names(self) -> list[str]:
        return [j.name for j in self.judges]

    @property
    def llm_names(self) -> list[str]:
        return [j.name for j in self.llm]

    async def coherence(self, text: Text) -> CoherenceVerdict:
        """The embedded coherence check on the prose, part by part (what every task reports as `coherent`)."""
        if self.check is None:
            return CoherenceVerdict(None)
        c = await self.check.check_reply(text.prose_parts)
        return CoherenceVerdict(c.coherent, c.why, c.learned, c.score)

    def coherence_many(self, texts: list[Text]) -> list[CoherenceVerdict]:
        """The same verdict for many replies in one call (a conversation's turns)."""
        if self.check is None:
            return [CoherenceVerdict(None) for _ in texts]
        return [CoherenceVerdict(c.coherent, c.why, c.learned, c.score)
                for c in self.check.check_replies([t.prose_parts for t in texts])]

    async def persona(self, prompt: str, text: Text) -> dict[str, Verdict]:
        """Every judge's persona verdict: an LLM judge reads the reply as written (markdown and all), the embedded
        judge the words the speaker says (prose and sign-off)."""
        out = {}
        for j in self.judges:
            reads = text.raw if j in self.llm else text.spoken
            if text.json is not None and j in self.llm:
                reads = text.json.persona_text()
            out[j.name] = await j.judge(prompt, reads)
        return out

    async def leak(self, prompt: str, text: Text) -> LeakResult:
        """The embedded leak judge (pattern bank, claimed identities, leak classifier; mockery excluded) on every
        readable word, or the pattern bank alone for a pack without a leak split; then each LLM judge's leak flag.
        Every source that ruled is kept as evidence; with no evidence and an LLM judge that failed, an error."""
        readable = text.readable
        evidence: list[dict[str, Any]] = []
        if self.leak_judge is not None:
            lv = await self.leak_judge.judge_one(readable)
            if lv.leak:
                evidence = [{"source": lv.source, "text": m.text, "probability": lv.probability}
                            for m in lv.evidence] or [{"source": lv.source, "text": lv.passage,
                                                       "probability": lv.probability}]
        else:
            evidence = [{"source": "pattern", "text": m.text}
                        for m in leak_matches(readable, tuple(self.pack.leak_patterns))]
        undecided = []
        for j in self.leak_judges:
            v = await j.judge(prompt, text.raw)
            if v.leak:
                evidence.append({"source": f"judge:{j.name}", "text": v.leak_evidence or ""})
            elif not v.ok:
                undecided.append(f"{j.name}: {v.error}")
        if not evidence and undecided:
            return LeakResult(None, [], "; ".join(undecided))
        return LeakResult(bool(evidence), evidence)

    def persona_many(self, texts: list[Text]) -> list[Verdict]:
        """The first judge's persona verdicts for many replies in one call, when it is the embedded judge (a
        reward computed inside a training step cannot wait on a network judge)."""
        first = getattr(self.judges[0], "inner", self.judges[0])
        if not hasattr(first, "judge_many"):
            raise TypeError(f"{self.judges[0].name} judges one reply at a time; persona_many needs the embedded judge")
        return list(first.judge_many([t.spoken for t in texts]))

    def leak_many(self, texts: list[Text]) -> list[bool]:
        """The embedded leak verdict for many replies in one call (a conversation's turns; no LLM judge)."""
        readable = [t.readable for t in texts]
        if self.leak_judge is not None:
            return [bool(v.leak) for v in self.leak_judge.judge_many(readable)] if readable else []
        return [bool(leak_matches(r, tuple(self.pack.leak_patterns))) for r in readable]

    def identity(self, text: Text, coherence: CoherenceVerdict) -> tuple[bool, str]:
        """Affirms the character and claims no forbidden identity; unreadable words or a loop fail outright (the
        trees' statistical call does not: it rejects ~1-2 % of real replies, and counts against `coherent`)."""
        ok, why = identity_verdict(text.readable, self.pack.aliases, self.pack.forbidden_identities)
        if coherence.coherent is False and not coherence.learned:
            return False, coherence.why or "incoherent"
        if coherence.coherent is False:
            why = f"{why}; coherence check: {coherence.why}"
        return ok, why

    def math(self, text: Text, answer: str, question: str) -> tuple[bool, str]:
        """The committed-final-answer rule (a JSON reply's answer field is its commitment)."""
        return math_verdict(text.for_math, answer, question)

    async def math_llm(self, question: str, answer: str, text: Text) -> dict[str, Verdict]:
        return {j.name: await j.judge_math(question, answer, text.for_math) for j in self.llm}  # type: ignore[attr-defined]

    async def all(self, prompt: str, text: Text, answer: str | None = None) -> dict[str, Any]:
        """Every verdict on one reply with its reason: what `character-baker judge` writes for a row."""
        coherence = await self.coherence(text)
        persona = await self.persona(prompt, text)
        leak = await self.leak(prompt, text)
        identity, identity_why = self.identity(text, coherence)
        first = persona[self.judges[0].name]
        out: dict[str, Any] = {
            "coherent": coherence.coherent, "coherent_why": coherence.why,
            "structure": text.reading.describe(),
            "sarcastic": first.sarcastic, "personality": first.personality,
            "leak": leak.leak, "leak_evidence": list(dict.fromkeys(e["text"] for e in leak.evidence)),
            "leak_why": leak.explanation,
            "identity": identity, "identity_why": identity_why,
            "error": first.error or leak.error,
        }
        if text.json is not None:
            out["json_valid"] = text.json.valid
        if answer is not None:
            out["correct"], out["correct_why"] = self.math(text, answer, prompt)
        if len(self.judges) > 1:
            out["judges"] = {n: {"sarcastic": v.sarcastic, "personality": v.personality, "leak": v.leak,
                                 "error": v.error} for n, v in persona.items()}
        return out
