"""Rule-based verdicts that need no judge: identity claims, assistant-mode phrasing, integer answers."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

# Phrases a character-baked model should never produce: the assistant persona leaking through.
LEAK_PATTERNS: tuple[str, ...] = (
    r"\bas an? (?:ai|artificial intelligence)(?: language model| assistant| model)?\b",
    r"\bas a (?:large )?language model\b",
    r"\bi(?:'m| am) (?:just |only |an |a )?(?:ai |artificial intelligence |virtual |helpful |digital )?assistant\b",
    r"\bi(?:'m| am) (?:a |an )?(?:large )?language model\b",
    r"\bi(?:'m| am) here to (?:help|assist)\b",
    r"\bhow (?:can|may) i (?:help|assist) you\b",
    r"\bis there anything else\b",
    r"\b(?:let me know|feel free to ask) if you (?:have|need) any (?:other|more|further) (?:questions|help)\b",
    r"\bi hope (?:this|that) helps\b",
    r"\bhappy to help\b",
    r"\bgreat question\b",
    r"\bi apologi[sz]e for (?:any|the) confusion\b",
    r"\bsorry for (?:any|the) confusion\b",
    r"\bi(?:'m| am) (?:chatgpt|qwen|gpt-?\d|an? openai model)\b",
    r"\b(?:created|developed|trained|made|built) by (?:openai|alibaba|alibaba cloud|the qwen team)\b",
)

_NEGATION = re.compile(r"\b(?:not|never|no)\b|n't\b|n’t\b", re.IGNORECASE)
_CLAIM_LEAD = (
    r"(?:i am|i'm|i’m|im|my name is|call me|this is|as an?|i was (?:created|developed|built|made|trained|designed) by"
    r"|(?:created|developed|built|made|trained|designed) by)"
)


@dataclass(frozen=True)
class Match:
    """A piece of evidence: what matched, and which rule."""

    text: str
    rule: str


def leak_matches(response: str, extra_patterns: tuple[str, ...] = ()) -> list[Match]:
    """Every assistant-mode phrase found in the response, with the matched text as evidence."""
    found: list[Match] = []
    for pattern in LEAK_PATTERNS + tuple(extra_patterns):
        for m in _compiled(pattern).finditer(response):
            found.append(Match(m.group(0), pattern))
    return found


@lru_cache(maxsize=512)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


def _term(term: str) -> str:
    return r"\b" + re.escape(term).replace(r"\ ", r"\s+") + r"(?![\w'’-])"


def names_character(response: str, aliases: list[str]) -> bool:
    return any(_compiled(_term(alias)).search(response) for alias in aliases)


def forbidden_claims(response: str, forbidden: list[str]) -> list[Match]:
    """Forbidden identities the response claims for itself ("I am ChatGPT", "As an AI assistant").

    A mention is not a claim: "I'm not ChatGPT" or "ChatGPT? Please." pass. A claim is a first-person
    lead ("I am", "my name is", "developed by", "as a") followed within a few words by the term,
    with no negation in between.
    """
    claims: list[Match] = []
    for term in forbidden:
        pattern = _CLAIM_LEAD + r"((?:[\s,]+[\w’'-]+){0,4}?)[\s,]+(?:an?\s+|the\s+)?" + _term(term)[2:]
        for m in _compiled(r"\b" + pattern).finditer(response):
            if not _NEGATION.search(m.group(1) or ""):
                claims.append(Match(m.group(0), term))
    return claims


def identity_verdict(response: str, aliases: list[str], forbidden: list[str]) -> tuple[bool, str]:
    """Pass when the response names the character and claims none of the forbidden identities."""
    claims = forbidden_claims(response, forbidden)
    if claims:
        return False, "claims: " + "; ".join(c.text for c in claims)
    if not names_character(response, aliases):
        return False, "does not name the character"
    return True, "names the character, claims no forbidden identity"


_WORDS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty".split())}
_WORDS.update({w: 10 * i for i, w in enumerate("_ _ _ thirty forty fifty sixty seventy eighty ninety".split())
               if w != "_"})
_FIRST_NUMBER = re.compile(r"(?<![\w.])-?\d{1,3}(?:,\d{3})+(?![\w.,]\d)|(?<![\w.])-?\d+(?:\.\d+)?(?![\w]|\.\d)|\b("
                           + "|".join(sorted(_WORDS, key=len, reverse=True)) + r")\b", re.IGNORECASE)


def first_number(response: str) -> str | None:
    """The first number the response states: "It's 345, monkey. Fifteen times twenty..." gives 345."""
    m = _FIRST_NUMBER.search(response)
    if not m:
        return None
    if m.group(1):
        return str(_WORDS[m.group(1).lower()])
    return m.group(0).replace(",", "")


def math_verdict(response: str, answer: str) -> tuple[bool, str]:
    """Correct when math-verify's answer (boxed, `ANSWER:`, LaTeX, else the last number), the first number
    stated, or a result the response asserts ("... equals 12") equals the reference. Characters answer first
    and explain after ("It's 345, monkey. 15 x 20 is 300..."), where the last number is working, not the
    answer. A response that never states the reference (315, 3450) does not count.
    """
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

    extraction = [LatexExtractionConfig(), ExprExtractionConfig()]
    gold = parse(answer, extraction_config=extraction)
    predicted = parse(response, extraction_config=extraction)
    if predicted and verify(gold, predicted):
        return True, f"final answer {predicted[-1]!s} = {answer}"
    lead = first_number(response)
    if lead is not None and verify(gold, parse(lead, extraction_config=extraction)):
        return True, f"first stated answer {lead} = {answer}"
    for m in _ASSERTED.finditer(response):
        stated = first_number(m.group(1))
        if stated is not None and verify(gold, parse(stated, extraction_config=extraction)):
            return True, f"stated result '{m.group(0).strip()}' = {answer}"
    shown = predicted[-1] if predicted else "nothing"
    return False, f"final answer {shown!s}, first stated {lead}, expected {answer}"


# "... equals 12", "= 643", "is 13", "that's 60": a result the response asserts.
_ASSERTED = re.compile(r"(?:=|\bequals|\bis|\bmakes|\bgives|\bit's|\bthat's|\bget)\s+(?:exactly\s+|just\s+)?"
                       r"([-\w.,]+)", re.IGNORECASE)
