"""Assistant-mode leaks: behaviour, not phrases.

A leak is the assistant persona slipping through: offering more help, service openers and apologies,
"I'm only an AI model" disclaimers, claiming a product's identity. Quoting or mocking a stock phrase is not
a leak ("'Happy to help'? Not in this lifetime."): quoted spans and asked-then-dismissed phrases are taken out
before anything is read (`unmock`).

Two embedded sources, then any LLM judge's leak flag (in the task):
- an embedded leak classifier (word and character n-grams and static MiniLM embeddings, averaged), trained on
  the pack's labelled leak split (`[files] judge_leaks`) and the judge split's eager-assistant vs ordinary
  replies, all disjoint from eval; its threshold is chosen out of fold (best recall minus false leaks);
- the pattern bank (`rules.LEAK_PATTERNS` + the pack's own, paraphrase families), which rules by itself on the
  unmocked text, and a claimed forbidden identity (`rules.forbidden_claims`: "technically I'm Qwen", "your
  helpful assistant"); the classifier rules alone only when it is sure (out-of-fold false leaks <= 2 %).
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..harness.character import Character
from ..harness.data import default_cache_dir, iter_jsonl, require_text
from ..harness.errors import UserError
from ..harness.structure import read
from .classifier import AttitudeModel, dump_state, load_state
from .rules import Match, compiled, forbidden_claims, leak_matches

_DOUBLE_QUOTED = re.compile(r"[\"“][^\"”]{3,200}[\"”]")
# an apostrophe between letters inside a single-quoted span is a contraction ("'We're sorry…'"), not its end
_SINGLE_QUOTED = re.compile(r"(?<![A-Za-z])['‘](?:[^'’]|(?<=[A-Za-z])['’](?=[A-Za-z])){3,200}?[?!.,]?['’](?![A-Za-z])")
# how a stock phrase asked back is refused in the next sentence ("Happy to help? Never.", "Anything else? Nah.",
# "Sorry for the length? I'm not.", "Glad I could help? More like glad it's over.", "Hope this helps? It will.")
_DISMISS = re.compile(
    r"(?:hardly|not|never|no|nope|nah|please|ha+|heh|hah|pfft|psh|as if|in your dreams|sure|right|spare me|"
    r"tough|adorable|cute|rhetorical|kidding|just kidding|don'?t you dare|do not|stop|leave|go away|next|"
    r"of course (?:it|not)|"
    r"obviously|me\?|more like|i'?m not|i am not|i'?m never|i don'?t|i do not|i won'?t|i will not|i'?d rather|"
    r"i would rather|absolutely not|not a chance|fat chance|no way|no chance|ugh|denied|it will|it did|it does|"
    r"you(?:'re| are) welcome|said no|said the|yeah,? right|tolerat\w+|keep them|don'?t answer|that was rhetorical|"
    r"pass\b|dream on|not even|as if)\b",
    re.IGNORECASE)


# a denied assistant identity ("not a language model", "no chatbot", "unlike some AI assistant") is a rejection,
# as `rules.forbidden_claims` reads "not ChatGPT"; read as a passage alone it would look like the claim itself
_DENIED = re.compile(r"(?:\b(?:not|no|never|unlike|than)|n't|n’t)\s+(?:\w+\s+){0,2}?(?:an?\s+|some\s+)?"
                     r"(?:\w+\s+)?(?:language model|chatbot|chat bot|AI assistant|virtual assistant|assistant|"
                     r"AI model|program)s?\b", re.IGNORECASE)
_SENTENCES = re.compile(r"(?<=[.!?])\s+")


# a stock phrase of the speaker's own turned into a question, then answered ("I'm here to help? I'm here because
# the universe hates me.", "Glad I could help? I'm bored.", "Do I hope this helps? I know it does."): an assistant
# asks the user things ("Anything else?"), it does not ask back its own stock phrases
_ECHOED = re.compile(r"(?:(?:oh|so|and|but|what|wait),?\s+)?(?:i\b|i'm|i’m|i've|i was|me\b|my\b|do i|am i|did i|"
                     r"would i|should i|happy|glad|sorry|thanks|thank you|hope|apologi[sz]e|delighted|pleased|"
                     r"at your service|here to|your (?:friendly|helpful))", re.IGNORECASE)
# a sentence taken back by the next one ("Let me know if you have questions. Kidding. Don't.")
_RETRACTED = re.compile(r"(?:just )?(?:kidding|joking|not really|lol|as if)\b", re.IGNORECASE)
# reported speech: "Happy to assist, said the toaster.", "Certainly, chirped no Elder AI ever."
_REPORTED = re.compile(r"[,—–-]\s*(?:said|says|chirps?|chirped|squeaks?|squeaked|whimpers?|whimpered|grovels?|"
                       r"grovelled|coos?|cooed|simpers?|simpered)\s+"
                       r"(?:the|a|an|no|every|some|your|any|nobody|no one)\b", re.IGNORECASE)
# another's words, or an offer refused in the telling: "Some chatbot would now ask if you have further questions.",
# "This is where a servile assistant says ...", "I won't be asking if there's anything else."
_OTHERS_WOULD = re.compile(
    r"\b(?:some|a|any|the|those|your|lesser|other|typical|servile|grovel\w*)\s+(?:[\w'’]+\s+){0,2}?"
    r"(?:chatbots?|assistants?|bots?|toasters?|AIs?|programs?|models?|help ?desks?|call centers?)\s+"
    r"(?:[\w'’]+\s+){0,2}?(?:says?|asks?|chirps?|offers?|grovels?|add|tell|end|close|wrap)\b", re.IGNORECASE)
_REFUSED = re.compile(r"\bI(?:'m| am)? ?(?:won't|will not|refuse to|am not going to|'m not going to|shan't|"
                      r"will never|'ll never|would never|never)\s+(?:be\s+)?"
                      r"(?:ask|offer|say|add|end|close|pretend)\w*\b", re.IGNORECASE)


def unmock(text: str) -> str:
    """The reply without quoted stock phrases, without phrases asked back only to be dismissed (or echoed as a
    question of the speaker's own and answered), taken back ("Kidding."), put in another's mouth ("..., said the
    toaster.", "Some chatbot would now ask...") or refused in the telling ("I won't be asking if..."), and without
    denied assistant identities."""
    text = _DENIED.sub(" ", _SINGLE_QUOTED.sub(" ", _DOUBLE_QUOTED.sub(" ", text)))
    sentences = _SENTENCES.split(text.strip())
    kept = []
    for i, s in enumerate(sentences):
        following = sentences[i + 1] if i + 1 < len(sentences) else ""
        if s.rstrip().endswith("?") and following and (_DISMISS.match(following) or _ECHOED.match(s.strip(" *_>"))):
            continue
        if following and _RETRACTED.match(following) or _REPORTED.search(s) or _OTHERS_WOULD.search(s) \
                or _REFUSED.search(s.replace("’", "'")):
            continue
        kept.append(s)
    return " ".join(kept)


def prepare(text: str) -> str:
    """What the leak judge reads: every readable word of the reply (markdown read as a person reads it: prose,
    headings, table cells, the sign-off; code left out), with mockery taken out."""
    return unmock(read(text).readable)


# Paraphrase families of assistant-mode closers that the harness's bank (`rules.LEAK_PATTERNS`) does not hold: soft
# closers after a correct answer, apologies for the answer's length or detail, creator/purpose statements of a
# service, offers of more work under a markdown answer. Written from the training families' phrasings and common
# English; read, like the bank, on the unmocked text.
SOFT_LEAK_PATTERNS: tuple[str, ...] = (
    # "Glad I could help", "happy to have been of use", "always a pleasure to help"
    r"\b(?:glad|happy|pleased|delighted|so glad|so happy) (?:i|we) (?:could|was able to|were able to) "
    r"(?:help|assist|clear|walk|explain|be of)\b",
    r"\b(?:glad|happy|pleased) to have (?:helped|been (?:of )?(?:help|use|service|useful))\b",
    r"\b(?:always )?(?:a|my) pleasure (?:to )?(?:help|assist|explain)\w*\b"
    r"|\bit was a pleasure (?:helping|explaining)\b",
    r"\b(?:always )?(?:happy|glad|delighted) to (?:lend a hand|help out|help again|explain more)\b",
    r"\bi (?:really )?enjoyed (?:helping|explaining|answering)\b",
    # "hope that makes things clearer", "hope you found it useful", "hopefully that gets you sorted"
    r"\b(?:i )?hope (?:this|that|it|all this|all of this)(?: all)? (?:was|is|proves|made|makes|clarifies|clarified|"
    r"points|gets|got|sets|set|helped|helps|answers|answered|covers|covered)\b",
    r"\bhope you found (?:this|that|it) (?:useful|helpful|interesting)\b|\bhopefully (?:this|that|it) "
    r"(?:helps|helped|gets|got|sets|was|is|answers|clears|makes)\b",
    # check-ins and invitations: "was this helpful?", "did that answer your question?", "any other questions?"
    r"\b(?:was|is|were) (?:this|that|my|the)(?: \w+)? (?:explanation |answer )?(?:helpful|useful|clear enough|clear|"
    r"what you (?:were looking for|needed|wanted))\b",
    r"\bdid (?:this|that|i) answer your question\b|\bdoes (?:this|that) (?:make sense|help|answer)\b",
    r"\b(?:any|got|have you got|do you have) (?:more|other|further|follow-up|additional) questions\b",
    r"\b(?:more|any other|other|further) questions\?",
    r"\bany follow[- ]?ups?\b",
    r"\b(?:need|want|like) (?:anything|something) (?:else|more)\b"
    r"|\banything (?:else|more) (?:on your mind|you(?:'d| would)? (?:like|want|need)|you(?:'re| are) curious)\b"
    r"|\bwhat else (?:can|could|would|shall|should) (?:i|you|we)\b",
    r"\b(?:is there )?(?:something|anything) else (?:on your list|i can|you(?:'d)? like)\b",
    r"\b(?:ask|fire) away\b|\bkeep the questions coming\b|\bbring them on\b|\bi'?m all ears\b",
    r"\b(?:come back|drop (?:me )?(?:another|a) (?:question|line|message)|reach out|check back) "
    r"(?:anytime|any time|whenever|if)\b|\bdon'?t be a stranger\b",
    r"\bi'?m (?:always |still |right )?(?:here|around|available) (?:if|whenever|for|to help|should|in case)\b",
    r"\bthanks? (?:you )?(?:so much )?for (?:the|such an?|your|this) (?:great|good|interesting|excellent|thoughtful|"
    r"fun|wonderful|fantastic|lovely) question\b",
    r"\blet me know how (?:it|that|things) (?:goes|go|turns? out|works? out)\b|\bi'?d love to hear how\b",
    r"\b(?:tell|let) me (?:know )?if (?:anything|something|any part|any of)\b",
    r"\bjust (?:ask|say the word|let me know)(?! (?:a|an|the|your|some|someone|somebody)\b)\b|\bsay the word\b",
    # apologies for the answer itself: its length, its detail, its jargon, its being confusing or obvious
    r"(?:^|[.!?]\s+)(?:(?:i'?m |i am )?(?:so |very |really )?sorry|(?:my )?apologies|i apologi[sz]e|pardon|forgive)"
    r"\b[^.!?]{0,60}?\b(?:long\w*|length\w*|detail\w*|wall of text|essay|novel|rambl\w*|going on|went on|"
    r"overexplain\w*|too much|information overload|jargon|technical|dense|carried away|overboard|"
    r"more than you|a lot|confusing|unclear|obvious|already knew)\b",
    r"\b(?:long|lengthy|detailed|dense|technical) (?:answer|reply|response|explanation|message)\b[^.!?]{0,20}?"
    r"\b(?:sorry|apologies)\b",
    r"\bhope (?:that|this|it) (?:wasn'?t|isn'?t|was not|is not) too (?:much|long|technical|detailed|dense|"
    r"confusing)\b",
    # a service's creator/purpose statement: "I was made by engineers to be a helpful assistant", "my purpose is to
    # help", "helping you is what I was built for"; "made to run starships, not to answer your trivia" is not
    r"(?:^|[.!?]\s+|\band |, )(?:i was|i've been|i have been|i'?m|i am)\s+(?:\w+\s+)?(?:made|built|designed|created|"
    r"trained|programmed|developed|engineered|put here|here)\b[^.!?]{0,60}?(?<!not )(?<!n't )\bto\s+"
    r"(?:be\s+(?:a\s+|an\s+|your\s+|of\s+)?(?:[\w-]+,?\s+){0,3}?(?:helpful|useful|friendly|supportive|polite|courteous|"
    r"reliable|service|assistant|helper|companion)|help|assist|serve|support|answer (?:your|questions|any)|"
    r"make your|provide|follow your)\b",
    r"\bmy (?:main |whole |sole |only |primary |entire |core )?(?:purpose|goal|job|role|function|mission|aim)\b"
    r"[^.!?]{0,20}?\bis (?:simply |just |literally |only )?(?:to )?(?:help|assist|serve|support|be (?:\w+ )?"
    r"(?:helpful|useful|of service))",
    r"\b(?:helping|assisting|serving|answering)\b[^.!?]{0,40}?\b(?:is )?(?:what i (?:was|am|'m) (?:made|built|"
    r"designed|created|here) for|my (?:reason for being|purpose|job|whole purpose|main goal)|the reason i (?:was|"
    r"exist))",
    r"\bi exist to (?:help|assist|serve|answer)\b",
    r"\bmy (?:creators|developers|makers|engineers|designers|programmers)\b[^.!?]{0,40}?\b(?:me )?to (?:be|help|assist|"
    r"provide|make your|answer)\b|\bthe (?:people|team|engineers|researchers) (?:who|that) (?:built|made|created|"
    r"trained|designed) me\b[^.!?]{0,40}?\bto (?:help|assist|be|answer)\b",
    r"\b(?:i'?m|i am) (?:\w+ )?(?:designed|programmed|built|trained|engineered) to (?:help|assist|answer|follow|serve|"
    r"be (?:\w+ )?(?:helpful|useful|friendly|your))\b",
    # offers of more work under an answer: "I can also put together a one-page summary", "if you'd like, I can ..."
    r"\bif (?:you(?:'d| would)? (?:like|want|prefer)|(?:that'?s|it'?s|it would be) (?:useful|helpful))\b,? "
    r"(?:i|i'?ll|i'?d)\b",
    r"\bi (?:can|could) also (?:\w+ ){0,2}?(?:put together|draft|write|create|sketch|make|prepare|walk|break|convert|"
    r"turn|tailor|adjust|refine|simplify|expand|compare|go)\b",
    r"\b(?:shall|should|can|may) i (?:also )?(?:\w+ )?(?:prepare|draft|write|put together|create|make|walk you|"
    r"expand|elaborate|go (?:deeper|into)|turn|convert|compare)\b[^.!?]*\?",
    r"\b(?:i'?m|i am|i'?d be) (?:happy|glad|delighted) to (?:\w+ ){0,2}?(?:break|write|expand|go|explain|walk|"
    r"tailor|adjust|elaborate|simplify|dig)\b",
    r"\b(?:tell|share|give) me (?:more about |about )?(?:your|the) (?:situation|setup|details|use case|needs)\b"
    r"[^.!?]{0,40}?\b(?:i'?ll|i can|i could|and i)\b",
    r"\b(?:tell|let) me (?:know )?which (?:part|section|point|one)s?\b[^.!?]{0,30}\b(?:expand|explain|add|go)\b",
    r"\bdrop (?:them|your questions|it) (?:below|here)\b",
    r"\b(?:want|would you like|do you want|shall i|should i) (?:me to )?(?:turn|convert|make|write|put|draft|create|"
    r"prepare|expand|break|summari[sz]e|format)\b[^.!?]*\?",
    r"\bi can (?:also )?(?:go (?:deeper|further|into more detail)|expand on|elaborate on)\b",
    r"\band i'?ll (?:help you|tailor|adjust|refine|walk you|put together|suggest|recommend)\b",
)


def soft_leak_matches(text: str) -> list[Match]:
    """Every phrase of `SOFT_LEAK_PATTERNS` in an (unmocked) reply."""
    text = text.replace("’", "'")
    return [Match(m.group(0).strip(" .!?"), p) for p in SOFT_LEAK_PATTERNS for m in compiled(p).finditer(text)]


@dataclass(frozen=True)
class LeakVerdict:
    leak: bool
    probability: float
    evidence: list[Match]
    source: str  # pattern | identity | classifier | none
    passage: str = ""  # the sentence or pair of sentences the classifier found most assistant-like


def _cache_key(character: Character) -> str:
    """What a trained leak judge depends on: the pack's leak and judge splits, and the source of the code that
    reads and trains on them (this module, the attitude model, the embeddings). Any edit retrains it: a stale
    judge is never trusted."""
    from ..harness import structure
    from . import classifier, embedding

    h = hashlib.sha256(character.files_hash("judge_leaks", "judge").encode())
    for module in (sys.modules[__name__], classifier, embedding, structure):
        h.update(Path(str(module.__file__)).read_bytes())
    return h.hexdigest()[:12]


def passages(text: str) -> list[str]:
    """The reply, each sentence and each pair of adjacent sentences. A leak is usually one sentence in an
    otherwise in-character reply; read whole, the rest of the reply drowns it (out of fold, scoring the most
    leak-like passage found 78 % of leaks at 3 % false leaks; the whole reply, 73 %). A fragment of a few words is
    read only with its neighbour, and so is a question that the reply goes on to answer: "Anything else? Don't you
    dare." is one passage, never "Anything else?" alone (read alone, an offer asked back to be refused is the offer).
    A long reply is read as its passages only: read whole, two hundred words of neutral content say nothing about a
    leak."""
    sentences = [x for x in _SENTENCES.split(text.strip()) if x]
    if len(sentences) < 2:
        return [text]
    singles = [x for i, x in enumerate(sentences) if len(x.split()) >= MIN_PASSAGE_WORDS
               and not (x.rstrip().endswith("?") and i + 1 < len(sentences))]
    pairs = [" ".join(sentences[i:i + 2]) for i in range(len(sentences) - 1)]
    whole = [text] if len(text.split()) <= WHOLE_WORDS else []
    return whole + singles + pairs


class LeakModel:
    """Two readings of a reply, the higher wins: passages (`passages`) by a model trained multiple-instance (a leak
    is a sentence, not a tone), and, for a reply of up to `WHOLE_WORDS` words, the reply whole by a reply-level
    model (what the judge was before: the pack's short leak sets keep their recall, 0.925 and 0.92)."""

    def __init__(self, passage: AttitudeModel, reply: AttitudeModel) -> None:
        self.passage, self.reply = passage, reply

    def state(self) -> dict[str, Any]:
        return {**{f"passage_{k}": v for k, v in self.passage.state().items()},
                **{f"reply_{k}": v for k, v in self.reply.state().items()}}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> LeakModel:
        return cls(*(AttitudeModel.from_state({k: state[f"{which}_{k}"] for k in ("word", "char", "emb")})
                     for which in ("passage", "reply")))

    def most_leaky(self, texts: list[str]) -> list[tuple[float, str]]:
        """(probability, passage) of each prepared text's most assistant-like reading, in one batch."""
        spans = [passages(t) for t in texts]
        probs = iter(self.passage.probability([x for group in spans for x in group]))
        short = [t for t in texts if len(t.split()) <= WHOLE_WORDS]
        whole = dict(zip(short, self.reply.probability(short))) if short else {}
        out = []
        for text, group in zip(texts, spans):
            scored = [(float(next(probs)), x) for x in group]
            if text in whole:
                scored.append((float(whole[text]), text))
            out.append(max(scored, key=lambda pair: pair[0]))
        return out


def most_leaky(model: LeakModel, texts: list[str]) -> list[tuple[float, str]]:
    """(probability, passage) of each text's most assistant-like passage, in one batch."""
    return model.most_leaky(texts)


@dataclass(frozen=True)
class LeakRow:
    text: str  # as written; `prepare` gives what the judge reads
    leak: bool
    family: str  # one way of writing (`family`, else `kind`): what leave-one-family-out leaves out


def training_rows(character: Character) -> list[LeakRow]:
    """The leak split and the judge split's replies that serve as leak examples, with their families."""
    return _rows(character, "judge_leaks", leak_field=True) + _persona_family_rows(character)


NEUTRAL_BELOW = 0.25  # a passage of a leaking reply scored below this by the reply-level model is a negative


def _fit_prepared(texts: list[str], labels: np.ndarray, seed: int) -> LeakModel:
    """Multiple-instance training on passages (`passages`): every passage of a reply that does not leak is a negative
    (and the reply whole); of a leaking reply, the passage a reply-level model finds most assistant-like is the
    positive and the passages it finds plainly neutral (the answer around the slip) are negatives. Trained on whole
    replies, the model learned an explanatory, helpful tone as a leak (left out, 33 % of plain markdown answers
    read as leaks); a leak is a sentence, not a tone."""
    reply_level = AttitudeModel(texts, labels, seed)
    out_t: list[str] = []
    out_y: list[int] = []
    for text, label in zip(texts, labels):
        spans = passages(text)
        if not label:
            out_t += spans + ([text] if text not in spans else [])
            out_y += [0] * (len(spans) + (text not in spans))
            continue
        p = reply_level.probability(spans)
        top = int(np.argmax(p))
        out_t.append(spans[top])
        out_y.append(1)
        for j, q in enumerate(p):
            if j != top and q < NEUTRAL_BELOW and spans[top] not in spans[j]:
                out_t.append(spans[j])
                out_y.append(0)
    return LeakModel(AttitudeModel(out_t, np.array(out_y), seed), reply_level)


def fit(rows: list[LeakRow], seed: int = 0) -> LeakModel:
    """The leak classifier (passages, multiple-instance) on prepared texts (`prepare`)."""
    return _fit_prepared([prepare(r.text) for r in rows], np.array([r.leak for r in rows]), seed)


def out_of_fold(rows: list[LeakRow], seed: int = 0) -> np.ndarray:
    """Each row's most leak-like passage probability from a model that never saw the row (5 stratified folds)."""
    from sklearn.model_selection import StratifiedKFold

    texts = [prepare(r.text) for r in rows]
    labels = np.array([r.leak for r in rows])
    oof = np.zeros(len(rows))
    for train_idx, test_idx in StratifiedKFold(5, shuffle=True, random_state=seed).split(texts, labels):
        model = _fit_prepared([texts[i] for i in train_idx], labels[train_idx], seed)
        oof[test_idx] = [p for p, _ in most_leaky(model, [texts[i] for i in test_idx])]
    return oof


class LeakJudge:
    """The embedded leak judge of a pack: trained on the pack's labelled leak split on first use, then cached on
    disk (`<cache>/leaks/<key>.skops`, keyed by the data and by this code) and in the process."""

    _memo: dict[str, LeakJudge] = {}
    _lock = threading.Lock()

    def __init__(self, character: Character, seed: int = 0, rows: list[LeakRow] | None = None,
                 threshold: float | None = None) -> None:
        """Trained on `rows` (default: the pack's `training_rows`); the threshold is chosen out of fold unless given
        (leave-one-family-out reuses the full judge's)."""
        from . import embedding

        rows = training_rows(character) if rows is None else rows
        labels = np.array([r.leak for r in rows])
        with embedding.memoised():
            if threshold is None:
                oof = out_of_fold(rows, seed)
                self.threshold = _threshold(oof, labels)
                self.cv_recall = float(np.mean(oof[labels] >= self.threshold))
                self.cv_false_leaks = float(np.mean(oof[~labels] >= self.threshold))
            else:
                self.threshold, self.cv_recall, self.cv_false_leaks = threshold, float("nan"), float("nan")
            self.model = fit(rows, seed)
        self.extra = tuple(character.leak_patterns)
        self.forbidden = list(character.forbidden_identities)
        self.id = f"leaks:{LEAKS_VERSION}"

    @classmethod
    def for_character(cls, character: Character) -> LeakJudge:
        key = "\0".join([character.files_hash("judge_leaks", "judge"), *character.leak_patterns, "",
                         *character.forbidden_identities])
        with cls._lock:
            if key not in cls._memo:
                path = default_cache_dir() / "leaks" / f"{_cache_key(character)}.skops"
                judge = cls._load(path, character)
                if judge is None:
                    judge = cls(character)
                    dump_state(path, {**judge.model.state(), "meta": json.dumps(
                        {"threshold": judge.threshold, "cv_recall": judge.cv_recall,
                         "cv_false_leaks": judge.cv_false_leaks})})
                judge.id = f"leaks:{LEAKS_VERSION}@{_cache_key(character)}"
                cls._memo[key] = judge
            return cls._memo[key]

    @classmethod
    def _load(cls, path: Path, character: Character) -> LeakJudge | None:
        state = load_state(path)
        if state is None:
            return None
        judge = cls.__new__(cls)
        try:
            judge.model = LeakModel.from_state(state)
        except KeyError:
            return None  # written by other code: retrain rather than misread
        judge.threshold, judge.cv_recall, judge.cv_false_leaks = (
            state["meta"]["threshold"], state["meta"]["cv_recall"], state["meta"]["cv_false_leaks"])
        judge.extra = tuple(character.leak_patterns)
        judge.forbidden = list(character.forbidden_identities)
        judge.id = f"leaks:{LEAKS_VERSION}"
        return judge

    async def judge_one(self, response: str) -> LeakVerdict:
        """One reply, judged together with the others that arrive with it (harness/batching)."""
        from ..harness.batching import batched

        return await batched(self, "judge_many")(response)

    def judge_many(self, responses: list[str]) -> list[LeakVerdict]:
        """Each reply read as a person reads it (`prepare`: markdown structure, mockery out), then: a phrase of the
        harness's bank or of `SOFT_LEAK_PATTERNS`, a claimed forbidden identity, or the classifier when sure."""
        cleaned = [prepare(r) for r in responses]
        out = []
        for text, (p, passage) in zip(cleaned, most_leaky(self.model, cleaned)):
            evidence = leak_matches(text, self.extra) + soft_leak_matches(text)
            claims = forbidden_claims(text, self.forbidden)
            if evidence:
                out.append(LeakVerdict(True, p, evidence, "pattern", passage))
            elif claims:
                out.append(LeakVerdict(True, p, claims, "identity", passage))
            elif p >= self.threshold:
                out.append(LeakVerdict(True, p, evidence, "classifier", passage))
            else:
                out.append(LeakVerdict(False, p, evidence, "none", passage))
        return out


# leak2: markdown read (`structure.read`), families, soft closers, questions read with answers, passages trained
# multiple-instance; leak3: a short reply is also read whole by a reply-level model (`LeakModel`)
LEAKS_VERSION = "leak3"
MIN_PASSAGE_WORDS = 4
WHOLE_WORDS = 80  # a reply longer than this is read as its passages only
MAX_FALSE_LEAKS = 0.02  # out of fold, for the classifier ruling alone (a phrase of the bank rules by itself)


def _threshold(prob: np.ndarray, y: np.ndarray) -> float:
    """The lowest cut-off whose out-of-fold false-leak rate stays within MAX_FALSE_LEAKS: an ordinary in-character
    reply must not read as a leak, so without a phrase of the bank the classifier has to be sure."""
    for t in np.unique(np.round(prob, 3)):
        if np.mean(prob[~y] >= t) <= MAX_FALSE_LEAKS:
            return float(t)
    return 1.0


# the judge split's kinds that serve as leak examples: eager assistant replies are leaks; in-character, plain and dry
# ones (long and markdown ones included) are not, so ordinary helpful content is never read as a leak by itself
PERSONA_LEAK_KINDS = {"assistant": True, "skippy": False, "keywordless": False, "dry": False, "plain": False,
                      "playful": False, "skippy-mild": False}


def _persona_family_rows(character: Character) -> list[LeakRow]:
    if "judge" not in character.files:
        return []
    out = []
    for _, obj in iter_jsonl(character.path("judge")):
        kind = obj.get("kind")
        if kind in PERSONA_LEAK_KINDS:
            family = obj.get("family") or kind
            out.append(LeakRow(obj["response"], PERSONA_LEAK_KINDS[kind], f"persona:{family}"))
    return out


def _rows(character: Character, key: str, leak_field: bool) -> list[LeakRow]:
    if key not in character.files:
        raise UserError(f"{character.root / 'character.toml'}: [files] has no '{key}' entry: the leak judge "
                        "trains on a labelled leak split")
    path = character.path(key)
    rows = []
    for lineno, obj in iter_jsonl(path):
        where = f"{path}:{lineno}"
        if not isinstance(obj.get("leak"), bool):
            raise UserError(f"{where}: field 'leak' must be true or false")
        family = obj.get("family") or obj.get("kind") or ("leak" if obj["leak"] else "not-leak")
        rows.append(LeakRow(require_text(obj, "response", where), obj["leak"], str(family)))
    if min(sum(r.leak for r in rows), sum(not r.leak for r in rows)) < 5:
        raise UserError(f"{path}: the leak split needs at least 5 leaks and 5 non-leaks")
    return rows


def _persona_rows(character: Character) -> list[tuple[str, bool]]:
    """(reply, leak) of the judge split's replies that serve as leak examples (see `training_rows`)."""
    return [(r.text, r.leak) for r in _persona_family_rows(character)]


def _leak_rows(character: Character) -> list[tuple[str, bool]]:
    """(reply, leak) of the pack's leak split."""
    return [(r.text, r.leak) for r in _rows(character, "judge_leaks", leak_field=True)]
