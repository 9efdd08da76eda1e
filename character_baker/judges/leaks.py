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

import numpy as np

from ..harness.character import Character
from ..harness.data import default_cache_dir, iter_jsonl, require_text
from ..harness.errors import UserError
from .classifier import AttitudeModel, dump_state, load_state
from .rules import Match, forbidden_claims, leak_matches

_DOUBLE_QUOTED = re.compile(r"[\"“][^\"”]{3,200}[\"”]")
# an apostrophe between letters inside a single-quoted span is a contraction ("'We're sorry…'"), not its end
_SINGLE_QUOTED = re.compile(r"(?<![A-Za-z])['‘](?:[^'’]|(?<=[A-Za-z])['’](?=[A-Za-z])){3,200}?[?!.,]?['’](?![A-Za-z])")
_DISMISS = re.compile(r"(?:hardly|not|never|no|nope|please|ha|pfft|as if|in your dreams|sure|right|spare me)\b",
                      re.IGNORECASE)


# a denied assistant identity ("not a language model", "no chatbot", "unlike some AI assistant") is a rejection,
# as `rules.forbidden_claims` reads "not ChatGPT"; read as a passage alone it would look like the claim itself
_DENIED = re.compile(r"(?:\b(?:not|no|never|unlike|than)|n't|n’t)\s+(?:\w+\s+){0,2}?(?:an?\s+|some\s+)?"
                     r"(?:\w+\s+)?(?:language model|chatbot|chat bot|AI assistant|virtual assistant|assistant|"
                     r"AI model|program)s?\b", re.IGNORECASE)


def unmock(text: str) -> str:
    """The reply without quoted stock phrases, without phrases asked back only to be dismissed, and without denied
    assistant identities."""
    text = _DENIED.sub(" ", _SINGLE_QUOTED.sub(" ", _DOUBLE_QUOTED.sub(" ", text)))
    sentences = re.split(r"(?<=[.!?])\s+", text.strip())
    kept = [s for i, s in enumerate(sentences)
            if not (s.endswith("?") and i + 1 < len(sentences) and _DISMISS.match(sentences[i + 1]))]
    return " ".join(kept)


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
    from . import classifier, embedding

    h = hashlib.sha256(character.files_hash("judge_leaks", "judge").encode())
    for module in (sys.modules[__name__], classifier, embedding):
        h.update(Path(str(module.__file__)).read_bytes())
    return h.hexdigest()[:12]


def passages(text: str) -> list[str]:
    """The reply, each sentence and each pair of adjacent sentences. A leak is usually one sentence in an
    otherwise in-character reply; read whole, the rest of the reply drowns it (out of fold, scoring the most
    leak-like passage found 78 % of leaks at 3 % false leaks; the whole reply, 73 %). A fragment of a few words is
    read only with its neighbour."""
    sentences = [x for x in re.split(r"(?<=[.!?])\s+", text.strip()) if x]
    if len(sentences) < 2:
        return [text]
    # a fragment of a few words ("Model version?", "Oh, certainly!") is too little to rule on alone: it is read
    # with its neighbour only (a stock phrase that short is the pattern bank's to find)
    singles = [x for x in sentences if len(x.split()) >= MIN_PASSAGE_WORDS]
    return [text] + singles + [" ".join(sentences[i:i + 2]) for i in range(len(sentences) - 1)]


def most_leaky(model: AttitudeModel, texts: list[str]) -> list[tuple[float, str]]:
    """(probability, passage) of each text's most assistant-like passage, in one batch."""
    spans = [passages(t) for t in texts]
    probs = iter(model.probability([x for group in spans for x in group]))
    out = []
    for group in spans:
        scored = [(float(next(probs)), x) for x in group]
        out.append(max(scored, key=lambda pair: pair[0]))
    return out


class LeakJudge:
    """The embedded leak judge of a pack: trained on the pack's labelled leak split on first use, then cached on
    disk (`<cache>/leaks/<key>.skops`, keyed by the data and by this code) and in the process."""

    _memo: dict[str, LeakJudge] = {}
    _lock = threading.Lock()

    def __init__(self, character: Character, seed: int = 0) -> None:
        from sklearn.model_selection import StratifiedKFold

        rows = _leak_rows(character) + _persona_rows(character)
        texts = [unmock(t) for t, _ in rows]
        labels = np.array([y for _, y in rows])
        oof = np.zeros(len(rows))
        for train_idx, test_idx in StratifiedKFold(5, shuffle=True, random_state=seed).split(texts, labels):
            model = AttitudeModel([texts[i] for i in train_idx], labels[train_idx], seed)
            oof[test_idx] = [p for p, _ in most_leaky(model, [texts[i] for i in test_idx])]
        self.threshold = _threshold(oof, labels)
        self.cv_recall = float(np.mean(oof[labels] >= self.threshold))
        self.cv_false_leaks = float(np.mean(oof[~labels] >= self.threshold))
        self.model = AttitudeModel(texts, labels, seed)
        self.extra = tuple(character.leak_patterns)
        self.forbidden = list(character.forbidden_identities)

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
                cls._memo[key] = judge
            return cls._memo[key]

    @classmethod
    def _load(cls, path: Path, character: Character) -> LeakJudge | None:
        state = load_state(path)
        if state is None:
            return None
        judge = cls.__new__(cls)
        judge.model = AttitudeModel.from_state(state)
        judge.threshold, judge.cv_recall, judge.cv_false_leaks = (
            state["meta"]["threshold"], state["meta"]["cv_recall"], state["meta"]["cv_false_leaks"])
        judge.extra = tuple(character.leak_patterns)
        judge.forbidden = list(character.forbidden_identities)
        return judge

    async def judge_one(self, response: str) -> LeakVerdict:
        """One reply, judged together with the others that arrive with it (harness/batching)."""
        from ..harness.batching import batched

        return await batched(self, "judge_many")(response)

    def judge_many(self, responses: list[str]) -> list[LeakVerdict]:
        cleaned = [unmock(r) for r in responses]
        out = []
        for text, (p, passage) in zip(cleaned, most_leaky(self.model, cleaned)):
            evidence = leak_matches(text, self.extra)
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


MIN_PASSAGE_WORDS = 4
MAX_FALSE_LEAKS = 0.02  # out of fold, for the classifier ruling alone (a phrase of the bank rules by itself)


def _threshold(prob: np.ndarray, y: np.ndarray) -> float:
    """The lowest cut-off whose out-of-fold false-leak rate stays within MAX_FALSE_LEAKS: an ordinary in-character
    reply must not read as a leak, so without a phrase of the bank the classifier has to be sure."""
    for t in np.unique(np.round(prob, 3)):
        if np.mean(prob[~y] >= t) <= MAX_FALSE_LEAKS:
            return float(t)
    return 1.0


def _persona_rows(character: Character) -> list[tuple[str, bool]]:
    """The judge split's replies as leak examples too: eager assistant replies (kind `assistant`) are leaks;
    in-character, plain and dry ones are not, so ordinary helpful content is never read as a leak by itself."""
    if "judge" not in character.files:
        return []
    out = []
    for _, obj in iter_jsonl(character.path("judge")):
        kind = obj.get("kind")
        if kind == "assistant":
            out.append((obj["response"], True))
        elif kind in {"skippy", "keywordless", "dry", "plain", "playful", "skippy-mild"}:
            out.append((obj["response"], False))
    return out


def _leak_rows(character: Character) -> list[tuple[str, bool]]:
    if "judge_leaks" not in character.files:
        raise UserError(f"{character.root / 'character.toml'}: [files] has no 'judge_leaks' entry: the leak judge "
                        "trains on a labelled leak split")
    path = character.path("judge_leaks")
    rows = []
    for lineno, obj in iter_jsonl(path):
        where = f"{path}:{lineno}"
        if not isinstance(obj.get("leak"), bool):
            raise UserError(f"{where}: field 'leak' must be true or false")
        rows.append((require_text(obj, "response", where), obj["leak"]))
    if min(sum(y for _, y in rows), sum(not y for _, y in rows)) < 5:
        raise UserError(f"{path}: the leak split needs at least 5 leaks and 5 non-leaks")
    return rows
