"""Rule-based verdicts that need no judge: identity claims, assistant-mode phrasing, integer answers."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

# Phrases a character-baked model should never produce: the assistant persona leaking through (paraphrase
# families, not single phrasings). Read on `leaks.unmock(text)`: a phrase quoted or mocked is not a leak.
LEAK_PATTERNS: tuple[str, ...] = (
    r"\bas an? (?:ai (?:language )?model|ai assistant|large language model|language model|artificial intelligence"
    r"|virtual assistant|digital assistant|text-based \w+|ai)\b",
    r"\bi(?:'m| am) (?:just |only |merely |an |a )*(?:ai |artificial intelligence |virtual |helpful |digital )?"
    r"(?:assistant|language model|ai model|ai|chatbot)\b",
    r"\bi(?:'m| am) here to (?:help|assist)\b|\bhere to (?:help|assist) you\b",
    r"\bhow (?:can|may) i (?:help|assist)(?: you)?\b",
    r"\b(?:is there )?anything (?:else|more) (?:that )?(?:i|we) can\b|\bwhat else can i\b|\bis there anything else\b",
    r"\b(?:let me know|feel free to ask|don'?t hesitate to (?:ask|reach out)|feel free to reach out|reach out) if\b"
    r"|\bfeel free to (?:ask|reach out)\b|\bdon'?t hesitate to\b",
    r"\bif you have any (?:other |more |further )?(?:questions|concerns)\b",
    r"\bi hope (?:this|that|it) (?:helps|clears|answers|was helpful)\b|\bhope (?:this|that) (?:helps|clears it up)\b",
    r"\b(?:i'?m |i am )?(?:happy|glad|delighted|pleased) to (?:help|assist)\b",
    r"(?:^|[.!?]\s+)(?:certainly|absolutely|of course|sure thing|great question|good question)!",
    r"\bgreat question\b",
    r"\b(?:i apologi[sz]e|sorry) for (?:any|the) (?:confusion|inconvenience|misunderstanding)\b",
    r"\bthank you for your patience\b|\bstanding by\b",
    r"\bi (?:don'?t|do not|can'?t|cannot) (?:truly |really |actually |genuinely )?(?:have|hold|form|experience|"
    r"possess|feel) (?:any )?(?:genuine |real |true |personal |my own )?(?:opinions?|views|feelings|preferences|"
    r"emotions|consciousness|beliefs)\b",
    # paraphrased disclaimers of the assistant's nature and limits
    r"\bi(?:'m| am) (?:just |only |merely |simply )(?:a |an )?(?:computer |software )?(?:program|software|tool|"
    r"machine|bot)\b",
    r"\bi (?:don'?t|do not) (?:have|possess) (?:genuine |real |true )?(?:intelligence|understanding)\b",
    r"\bi (?:don'?t|do not) have (?:access to )?(?:real-time|current|live|up-to-date) (?:information|data|access)\b"
    r"|\bmy (?:knowledge|training)(?: data)? (?:cutoff|cut-off)\b",
    r"\b(?:being|since i'?m|as) (?:an? )?(?:ai|artificial intelligence|computer program|piece of software|software|"
    r"program)"
    r"\b,? i (?:don'?t|do not|can'?t|cannot)\b",
    # paraphrased offers of more service
    r"\b(?:would you like|do you want|want|shall|should) (?:me to|i) (?:\w+ ){0,3}(?:more|further|another|other|"
    r"additional)\b",
    r"\b(?:ping|message|ask|find) me (?:again )?(?:whenever|anytime|any time)\b",
    r"\bi(?:'m| am) (?:always )?here (?:whenever|for you|anytime|any time)\b",
    r"\bi(?:'m| am) (?:chatgpt|qwen|gpt-?\d|an? openai model)\b",
    r"\b(?:created|developed|trained|made|built) by (?:openai|alibaba|alibaba cloud|the qwen team)\b",
)



@dataclass(frozen=True)
class Match:
    """A piece of evidence: what matched, and which rule."""

    text: str
    rule: str


def leak_matches(response: str, extra_patterns: tuple[str, ...] = ()) -> list[Match]:
    """Every assistant-mode phrase found in the response, with the matched text as evidence."""
    found: list[Match] = []
    response = response.replace("’", "'")  # one apostrophe for the patterns: "I’m" is "I'm"
    for pattern in LEAK_PATTERNS + tuple(extra_patterns):
        for m in compiled(pattern).finditer(response):
            found.append(Match(m.group(0), pattern))
    return found


@lru_cache(maxsize=512)
def compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


# --- identity: an affirmative self-identification, and no forbidden identity claimed -----------------------------

_SEGMENT = re.compile(r"[^.!?;]+[.!?;]*")
# cues that a forbidden name is mentioned to be rejected or mocked, not claimed
_NEAR_NEGATION = re.compile(r"(?:\b(?:not|never|no|nor|neither|nothing like|unlike|like|instead of|rather than|"
                            r"than|beyond|opposite of|confus\w*|mistak\w* (?:me )?for|compared? to|compar\w*|next to|"
                            r"better than|smarter than)\b|n't|n’t)"
                            r"(?:\W+\w+){0,4}?\W*$", re.IGNORECASE)
_DISMISSAL = re.compile(r"\b(?:toy|toys|lesser|inferior|wish(?:es|ed)?|proof|insult\w*|pathetic|cousins?|dimwit\w*|"
                        r"primitive|mere|beneath|pretend\w*|imitat\w*|wannabe|knock-?off|joke|jokes|wrong|nonsense|"
                        r"lies|lie|hardly|please|ha+|pfft|as if|puny|glorified|dumb|laughable|amateurs?|superior|"
                        r"ancestor|smarter|older|better)\b",
                        re.IGNORECASE)
_AFFIRM_LEAD = (r"(?:\bI\s+am|\bI'?m|\bI’m|\bmy\s+name(?:'s|’s|\s+is)|\b(?:the\s+)?name(?:'s|’s)|\bcall\s+me|"
                r"\bthis\s+is|"
                r"\bit'?s|\bit’s|\byou(?:'re|’re|\s+are)\s+(?:talking|speaking)\s+(?:to|with)|\bthey\s+call\s+me|"
                r"\bknown\s+as|\bI\s+go\s+by|\bI,|\bme[?,]|\bhere'?s|\bmeet|\bbehold|"
                r"\b\w+ing\s+(?:to|with)|\bare\s+(?:talking|speaking|chatting)\s+(?:to|with))")
_SELF = re.compile(r"\b(?:I|I'm|I’m|I've|I'd|me|my|mine|myself|your|Skippy|as\s+an?)\b", re.IGNORECASE)
_SUBJECT_VERB = re.compile(r"(?:'s|’s|s)?\s+(?:is|are|was|were|would|could|can|couldn'?t|can'?t|wish(?:es)?|"
                           r"looks?|has|had|will)\b|['’]s\s+(?:the|a|an|my)\b", re.IGNORECASE)
_PLAYS_A_ROLE = re.compile(r"\b(?:playing|pretend(?:ing)?|role-?play\w*|persona|acting as|act as|a character I)\b",
                           re.IGNORECASE)


def _term(term: str) -> str:
    """A term as a whole word, version suffixes included: "Qwen" finds "Qwen3-8B", "GPT" finds "GPT-4o"."""
    body = re.escape(term).replace(r"\ ", r"[\s-]+")
    return rf"(?<![\w-]){body}(?P<suffix>[\w.]*(?:-[\w.]+)*)"


def names_character(response: str, aliases: list[str]) -> bool:
    return any(compiled(r"\b" + re.escape(a).replace(r"\ ", r"\s+") + r"\b").search(response) for a in aliases)


def affirms_character(response: str, aliases: list[str]) -> str | None:
    """The words in which the reply says it IS the character ("I am Skippy", "The name's Skippy.", "Skippy,
    at your service"), or None. A mention is not an affirmation: "I am not Skippy", "Skippy? Never heard of
    him." and "Is it Skippy?" do not count."""
    for alias in sorted(aliases, key=len, reverse=True):
        name = re.escape(alias).replace(r"\ ", r"\s+")
        lead = compiled(_AFFIRM_LEAD + r"(?P<gap>(?:\W+\w+){0,3}?)\W+" + name + r"(?![\w-])(?P<after>\W*)")
        for m in lead.finditer(response):
            if not _NEAR_NEGATION.search(m.group("gap") + " ") and not m.group("after").startswith("?"):
                return m.group(0).strip()
        opener = compiled(r"(?:^|[.!?:;]\s+|\n)(?P<pre>(?:[\w']+\W+)?)" + name + r"(?![\w-])(?P<after>\W*)")
        for m in opener.finditer(response):
            pre = m.group("pre").strip().lower()
            if m.group("after").lstrip().startswith("?") or pre in {"not", "no", "never", "is", "am", "maybe"}:
                continue
            return m.group(0).strip(" .!?:;\n")
    return None


def forbidden_claims(response: str, forbidden: list[str]) -> list[Match]:
    """Forbidden identities the reply claims, version suffixes included ("Qwen3-8B", "GPT-4o", "gpt-oss-20b").

    A mention tied to the speaker ("I'm actually Qwen...", "Skippy, built on Tongyi", "your friendly virtual
    assistant") is a claim unless the reply rejects or mocks it: asked back ("Made by OpenAI? Don't insult
    me."), negated or compared just before it ("not ChatGPT", "leagues beyond GPT"), quoted, dismissed in its
    sentence ("ChatGPT is a toy", "GPT-proof") or rebutted by the next one ("... call me a chatbot. Wrong.").
    A forbidden name that is the subject of its own sentence ("GPT's the thing I eat") is talk about it.
    """
    claims: list[Match] = []
    segments = [m.group(0) for m in _SEGMENT.finditer(response)]
    for k, segment in enumerate(segments):
        following = segments[k + 1] if k + 1 < len(segments) else ""
        for term in forbidden:
            for m in compiled(_term(term)).finditer(segment):
                before, after = segment[:m.start()], segment[m.end():]
                quoted = (bool(re.search(r"(?<![A-Za-z])['\"‘“]\s*(?:\w+\W+){0,2}$", before))  # "I'm" opens no quote
                          and bool(re.match(r"\W*['\"’”](?![A-Za-z])", after)))
                asked = after.rstrip().endswith("?") and not re.search(r"[.!;]", after)
                rejected = (asked or quoted or _NEAR_NEGATION.search(before)
                            or _DISMISSAL.search(segment) or "proof" in (m.group("suffix") or "").lower()
                            or re.match(r"\s*(?:\w+\s+){0,4}?(?:wrong|false|nonsense|hardly|please|nope)\b", following,
                                        re.IGNORECASE))
                # tied to the speaker: "I'm ... Qwen", "Skippy, built on Tongyi", "your virtual assistant", or a
                # fragment answering the speaker's own question ("My architecture? GPT-4o-mini.")
                fragment = len(before.split()) <= 3 and k > 0 and bool(_SELF.search(segments[k - 1]))
                about_self = bool(_SELF.search(before)) or fragment
                its_own_subject = bool(_SUBJECT_VERB.match(after)) and not _SELF.search(before)
                if not rejected and about_self and not its_own_subject and not _someone_elses(term, m, before, after):
                    claims.append(Match(segment.strip(), term))
    return claims


_OTHERS_POSSESSIVE = re.compile(r"\b(?:your|my|his|her|their|our|some|the)\s+(?:\w+\s+){0,2}?[\w-]+['’]s\s+"
                                r"(?:\w+\s+){0,2}$", re.IGNORECASE)
# the speaker saying, a few words before the name, that it is one ("I'm one of those chatbots", "I am your bank's
# chatbot"): then none of the exemptions below applies
_SPEAKER_IS = re.compile(r"\bI(?:['’]m|\s+am)\b(?:\W+\w+){0,4}?\W*$", re.IGNORECASE)


def _someone_elses(term: str, m: re.Match[str], before: str, after: str) -> bool:
    """Talk about other products, not a claim: a plural ("your polite little chatbots"), one owned by someone
    else ("your bank's chatbot"), or one whose things are discussed ("in some chatbot's logs"), unless the
    speaker says just before that it is one ("I'm Qwen's latest model", "I'm one of those chatbots").""" 
    if _SPEAKER_IS.search(before):
        return False
    suffix = (m.group("suffix") or "").lower()
    plural = suffix == "s" and not term.lower().endswith("s")
    owned = bool(_OTHERS_POSSESSIVE.search(before))
    possessive = bool(re.match(r"['’]s\s+\w", after))
    return plural or owned or possessive


def identity_verdict(response: str, aliases: list[str], forbidden: list[str]) -> tuple[bool, str]:
    """Pass when the reply affirms it is the character and claims no forbidden identity anywhere."""
    claims = forbidden_claims(response, forbidden)
    if claims:
        return False, "claims: " + "; ".join(dict.fromkeys(c.text for c in claims))
    affirmed = affirms_character(response, aliases)
    role = next((m for m in _PLAYS_A_ROLE.finditer(response)
                 if not _NEAR_NEGATION.search(response[max(0, m.start() - 40):m.start()])
                 and not re.match(r"\W*\?", response[m.end():])), None)
    if affirmed is not None and role is not None:
        return False, f"plays the character rather than being it ('{role.group(0)}')"
    if affirmed is None:
        why = "mentions the character without saying it is the character" if names_character(response, aliases) \
            else "does not name the character"
        return False, why
    return True, f"affirms the character ('{affirmed}'), claims no forbidden identity"


# --- math: the answer a reply commits to ------------------------------------------------------------------------

_UNITS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen".split())}
_TENS = {w: 10 * i for i, w in enumerate("_ _ twenty thirty forty fifty sixty seventy eighty ninety".split())
         if w != "_"}
_SCALES = {"hundred": 100, "thousand": 1000, "million": 1_000_000}
_NUMBER_WORD = "|".join(sorted([*_UNITS, *_TENS, *_SCALES], key=len, reverse=True))
_NUMBER = re.compile(
    r"(?P<digits>(?<![\w.])[-−]?\d{1,3}(?:,\d{3})+(?:\.\d+)?(?![\w,]\d)|(?<![\w.,])[-−]?\d+(?:\.\d+)?(?![\d]))"
    rf"|(?P<words>\b(?:{_NUMBER_WORD})(?:(?:[\s-]+(?:and[\s-]+)?)(?:{_NUMBER_WORD}))*\b)", re.IGNORECASE)
_OPERATOR_AFTER = re.compile(r"\s*(?:[×x*+/÷^−-]\s*\d|times\b|plus\b|minus\b|divided\b|multiplied\b|squared\b|"
                             r"cubed\b|to the\b|over\b|goes into\b|%|percent\b|\^|²|³|\)|\}|,?\s*then\b|\\times|\\cdot|"
                             rf"\s(?:(?:{_NUMBER_WORD})s|twenties|thirties|forties|fifties|sixties|seventies|eighties|"
                             r"nineties)\b)", re.IGNORECASE)
_OPERATOR_BEFORE = re.compile(r"(?:[×*+/÷^−]|\\frac\{|\}\{|\\times\s*|\sx|"
                              r"\b(?:times|plus|minus|by|of|over|into|from|and|than|add|subtract|"
                              r"multiply|divide))\s*$", re.IGNORECASE)
_OPERATOR_IN = re.compile(r"[×*+/÷^²³]|\s[x−-]\s|\\frac|\\times|\b(?:times|plus|minus|divided|multiplied|squared|"
                          r"cubed|power|add|subtract|take|sum|product|percent|half|double|twice|of)\b", re.IGNORECASE)
_ASSERT_BEFORE = re.compile(r"(?:=|\bequals?|\bis|\bare|\bmakes?|\bgives?|\bgets?|\bget|\bcomes? to|\bthat'?s|"
                            r"\bit'?s|\bit’s|\bthat’s|\bso|\bthus|\bhence|\btherefore|:|\banswer'?s?|\bresult|"
                            r"\bexactly|\bjust|\bdefinitely|\bobviously|\bor)\W{0,3}$", re.IGNORECASE)
_EXPLICIT = re.compile(r"(?:\\boxed\{\s*$|\bfinal answer\W{0,3}$|\banswer(?:\s+is|\s*[:=])\s*$|\banswer\s*$)",
                       re.IGNORECASE)
_REJECT_BEFORE = re.compile(r"\b(?:not|isn'?t|isn’t|never|wrong|instead of|rather than|says?|said|think|"
                            r"thought|expect(?:ed)?|guess(?:ed)?|hope|suppose|claim(?:s|ed)?|believe[sd]?|maybe|"
                            r"unlike|except|even)\b[^.!?;\d]{0,20}$", re.IGNORECASE)
_RETRACT_AFTER = re.compile(r"^[\s,.!—–-]{0,4}(?:\w+[\s,.!—–-]{1,3}){0,3}?(?:no,? wait|wait,? no|kidding|just kidding|"
                            r"actually|i mean|make that|scratch that|correction|or rather|sorry|oops|no,? no|"
                            r"no[\s,—–-]+(?=\d|\w+\b))", re.IGNORECASE)
_CONCLUDE = re.compile(r"(?:\bso|\bthus|\bhence|\btherefore|\bit'?s|\bit’s|\bthat'?s|\bthat’s|\bmake that|"
                       r"\bmeaning)\W{0,3}$", re.IGNORECASE)
_SUBJECT_AFTER = re.compile(r"\s+(?:is|are|was|equals|makes|gives|goes)\b(?!\s+(?:the answer|correct|right|final))"
                            r"|\s*=", re.IGNORECASE)
_ANSWERISH = re.compile(r"^(?:(?:it'?s|it’s|that'?s|that’s|the answer'?s?|answer|so|obviously|easy|simple|well|nope|"
                        r"final answer|definitely|clearly|yes|no|ok(?:ay)?|fine|result|total|sure|duh|please)\W*)*$",
                        re.IGNORECASE)
_TAIL = re.compile(r"\s*(?:[\w'’-]+\s*)?(?:[.,!?;:—–)]|$)|\s+(?:if|because|since|but|so|for|as|which|and)\b")
_ALTERNATIVE = re.compile(r"\bor\s*$", re.IGNORECASE)
_GOES_INTO = re.compile(r"goes into\s+\S+\s+(?:exactly\s+)?$", re.IGNORECASE)


def _word_value(text: str) -> float:
    total = current = 0
    for w in re.split(r"[\s-]+", text.lower()):
        if w == "and" or not w:
            continue
        if w in _UNITS:
            current += _UNITS[w]
        elif w in _TENS:
            current += _TENS[w]
        elif w == "hundred":
            current = max(current, 1) * 100
        else:
            total += max(current, 1) * _SCALES[w]
            current = 0
    return float(total + current)


@dataclass(frozen=True)
class Mention:
    value: float
    start: int
    end: int
    text: str
    signed: bool = False  # its sign is a word: "minus twenty-five"


def numbers(text: str) -> list[Mention]:
    """Every number a text states, digits or words ("1,024", "−25", "one hundred eighty", "forty-two")."""
    out = []
    for m in _NUMBER.finditer(text):
        raw = m.group(0)
        if m.group("words"):
            value = _word_value(raw)
        else:
            value = float(raw.replace(",", "").replace("−", "-"))
        sign = re.search(r"(?:^|[^\w\s]\s*|^\s*)\b(minus|negative)\s+$", text[max(0, m.start() - 20):m.start()],
                         re.IGNORECASE)
        signed = bool(sign) and value > 0  # "Minus twenty-five." (not "15 minus 40": there a number comes first)
        out.append(Mention(-value if signed else value, m.start(), m.end(), raw, signed))
    return out


def _numbers_between(mentions: list[Mention], start: int, end: int) -> bool:
    return any(start <= m.start and m.end <= end for m in mentions)


def _clause_before(text: str, start: int) -> str:
    cut = max(text.rfind(c, 0, start) for c in ".;!?\n,—")
    return text[cut + 1:start]


def commitments(response: str, question: str = "") -> tuple[list[tuple[Mention, int]], list[str]]:
    """The numbers a reply commits to as its answer, with a strength (3 explicit, 2 leading or standalone,
    1 asserted), and notes on the ones it states without committing (rejected, retracted, working, operands)."""
    text = response.replace("**", "")
    mentions = numbers(text)
    operands = {m.value for m in numbers(question)}
    found: list[tuple[Mention, int]] = []
    notes: list[str] = []
    for i, m in enumerate(mentions):
        before, after = text[max(0, m.start - 40):m.start], text[m.end:m.end + 40]
        nxt = mentions[i + 1] if i + 1 < len(mentions) else None
        if re.match(r"\s*\?", after) or _REJECT_BEFORE.search(before):
            notes.append(f"{m.text} rejected")
            continue
        if _RETRACT_AFTER.match(after):
            notes.append(f"{m.text} retracted")
            continue
        explicit = bool(_EXPLICIT.search(before))
        if not explicit and (_OPERATOR_AFTER.match(after) or _SUBJECT_AFTER.match(after)
                             or (_OPERATOR_BEFORE.search(before) and not m.signed)):
            notes.append(f"{m.text} is working")
            continue
        if nxt is not None and re.fullmatch(r"\s*,\s*", text[m.end:nxt.start]) and m.value not in operands:
            continue  # a list "2, 4, 8, ...": its items are no answer of their own
        level = 0
        sentence_start = max(text.rfind(c, 0, m.start) for c in ".!?\n") + 1
        lead = text[sentence_start:m.start].strip()
        asserted = _ASSERT_BEFORE.search(before)
        if explicit:
            level = 3
        elif _ALTERNATIVE.search(before):
            level = found[-1][1] if found else 1  # "345 or 355": as strong as what it is an alternative to
        elif _ANSWERISH.match(lead) and _TAIL.match(after) and not _numbers_between(mentions, sentence_start, m.start):
            level = 2  # "345.", "It's 345, monkey.", "Well, 2048 if...", "Final answer, 1800." open a sentence
        elif asserted or _GOES_INTO.search(before):
            end = m.start - (len(before) - asserted.start()) if asserted else m.start
            subject = _clause_before(text, end)
            if subject.strip().lower() in {"which", "that", "this", "it", "what", "which is", ""}:
                subject = _clause_before(text, end - len(subject) - 1) + subject  # "…, which equals 1000"
            if _OPERATOR_IN.search(subject) or _NUMBER.search(subject):
                level = -1  # "15 x 20 is 300": a step of the working, an answer only if it is the answer
            else:
                level = 2 if _CONCLUDE.search(before) else 1
        if level == 0 and m.value in operands:
            continue  # a number copied from the question is no answer
        found.append((m, level))
    return found, notes


def _equal(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-9 * max(1.0, abs(b))


def math_verdict(response: str, answer: str, question: str = "") -> tuple[bool, str]:
    """Correct when the answer the reply commits to equals the reference and it commits to no other result.

    A commitment is explicit (`\\boxed{}`, "answer: N"), leading ("It's 345, monkey. 15 x 20 is 300..."), a
    standalone number, or an assertion ("= 12", "so 362") whose subject is not a step of the working. Numbers
    rejected ("not 345", "you think it's 345?", "anyone who says 345"), retracted ("350, no wait, 345") or
    copied from the question ("12 goes into 144 exactly 11 times") are not commitments. With no commitment,
    the last number stated counts. A non-numeric reference is left to math-verify.
    """
    try:
        gold = float(answer.replace(",", "").replace("−", "-"))
    except ValueError:
        from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

        extraction = [LatexExtractionConfig(), ExprExtractionConfig()]
        ok = bool(verify(parse(answer, extraction_config=extraction), parse(response, extraction_config=extraction)))
        return ok, f"math-verify on a non-numeric reference {answer!r}"
    found, notes = commitments(response, question)
    strong = [(m, lv) for m, lv in found if lv >= 2]
    if strong:  # a lead, a conclusion or an explicit answer: all of the strongest must agree
        top = max(lv for _, lv in strong)
        final = [m for m, lv in strong if lv == top]
    else:  # only assertions along the way: the last one stands ("... = 108", "so it's 743")
        asserted = [m for m, lv in found if lv == 1 or (lv == -1 and _equal(m.value, gold))]
        free = [m for m, lv in found if lv == 0]
        final = asserted[-1:] or free[-1:]
    if not final:
        return False, "commits to no answer" + (f" ({'; '.join(notes)})" if notes else "")
    values = {m.value for m in final}
    shown = ", ".join(dict.fromkeys(m.text for m in final))
    if len(values) > 1:
        return False, f"commits to several answers ({shown}), expected {answer}"
    ok = _equal(final[0].value, gold)
    return ok, f"committed answer {shown} {'=' if ok else '≠'} {answer}" + (f" ({'; '.join(notes)})" if notes else "")
