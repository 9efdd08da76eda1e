"""Is a reply coherent English? Checked before any persona verdict: word salad is never sarcastic.

Two checks, both offline:
- lexical: the share of real words (wordfreq's English list) and explicit degeneracy (no words, or a few
  words looped). A reply whose words are mostly not words is incoherent, whatever else it looks like.
- learned: gradient-boosted trees over features of word order and form that do not depend on register (a class
  n-gram model of function-word transitions and sentence endings, repetition, real-word shares, a babbler's
  tells), trained on real replies (and their single sentences: short replies are real too) from the pack's judge
  split against synthetic corruptions of them (`corruptions.py`). The class n-gram model also reads 34k
  example sentences from WordNet (`data/`), so that English in another register than the pack's (terse
  questions back, formal letters, children's explanations) reads as English. It is cross-fitted: training replies
  are scored by a model that never saw them, as every reply at judging time will be. Length, sentence length and
  vocabulary level are deliberately not features: they tell the pack's style from another, not English from salad.

The decision threshold keeps 98 % of real replies (out of fold); what that costs in salad missed is
measured on held-out replies by the validity card, per kind of salad, and on clean English the check never
saw by `benchmarks/classifier_throughput.py`.
"""

from __future__ import annotations

import gzip
import math
import random
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from . import embedding
from .corruptions import CORRUPTIONS, salad

VERSION = "coh6"  # coh3: interjections are sentences; coh5: WordNet English, no register features, keeps 98 %;
# coh6: real replies are the judge split alone (not the leak split)
TOKEN = re.compile(r"[A-Za-z]+(?:['’][A-Za-z]+)*|\d+(?:[.,]\d+)*|[.,!?;:]")
MIN_REAL_WORDS = 0.6  # below this share of dictionary words a reply is salad, no model needed
SHORT = 4  # replies of fewer words are judged by the lexical check alone
KEEP_REAL = 0.98
ENGLISH = Path(__file__).with_name("data") / "wordnet_examples.txt.gz"
_FREQ: dict[str, float] = {}


def zipf(word: str) -> float:
    """Zipf frequency from wordfreq's English list (0 = not a word), as zipf_frequency gives it for lowercase
    single words, from the list loaded once (a dict lookup instead of wordfreq's 40 µs per call)."""
    if not _FREQ:
        import wordfreq

        _FREQ.update(wordfreq.get_frequency_dict("en", wordlist="best"))
    f = _FREQ.get(word)
    return round(math.log10(f) + 9, 2) if f else 0.0


_FUNCTION: set[str] = set()


def _load_function_words() -> None:
    if not _FUNCTION:
        import wordfreq

        _FUNCTION.update(wordfreq.top_n_list("en", 200))
# words an English sentence almost never ends on: "Water boils at." is a fragment
ENDERS = {"the", "a", "an", "of", "and", "or", "but", "because", "than", "my", "your", "their", "its"}


@cache  # a pure function of the token once the function words are loaded (`classes` loads them first)
def _word_class(token: str) -> str:
    if token in ".,!?;:":
        return token
    if token[0].isdigit():
        return "<N>"
    low = token.lower()
    if low in _FUNCTION:
        return low
    z = zipf(low)
    if z == 0:
        return "<OOV>"
    suffix = next((s for s in ("ly", "ing", "ed", "s") if low.endswith(s)), "")
    return f"<W{min(3, int(z // 1.5))}{suffix}>"


@cache
def english_sentences() -> tuple[str, ...]:
    """WordNet's example sentences: English word order in every register, none of it the pack's."""
    with gzip.open(ENGLISH, "rt", encoding="utf-8") as f:
        return tuple(line.strip() for line in f if line.strip())


@cache
def _english_classes() -> tuple[tuple[str, ...], ...]:
    """WordNet's sentences as word classes, once per process: the judge's cross-fitting builds six models on them."""
    return tuple(tuple(ClassNgram.classes(s)) for s in english_sentences())


class ClassNgram:
    """Trigram model over word classes (function words as themselves, other words by frequency band and suffix).

    It knows what English word order looks like without knowing what the words mean: shuffles, fragments
    and splices put function words where English never does ("the of", "at.").
    """

    def __init__(self, texts: list[str], k: float = 0.1, classed: tuple[tuple[str, ...], ...] = ()) -> None:
        self.uni: Counter[str] = Counter()
        self.bi: Counter[tuple[str, str]] = Counter()
        self.tri: Counter[tuple[str, str, str]] = Counter()
        for c in [self.classes(t) for t in texts] + list(classed):
            self.uni.update(c)
            self.bi.update(zip(c, c[1:]))
            self.tri.update(zip(c, c[1:], c[2:]))
        self.total, self.vocab, self.k = sum(self.uni.values()), len(self.uni), k
        self.ctx1: Counter[str] = Counter()
        self.ctx2: Counter[tuple[str, str]] = Counter()
        for (a, _), n in self.bi.items():
            self.ctx1[a] += n
        for (a, b, _), n in self.tri.items():
            self.ctx2[(a, b)] += n

    @classmethod
    def with_english(cls, replies: list[str]) -> ClassNgram:
        """The pack's replies and WordNet's English: the model a check is trained and loaded with."""
        return cls(list(replies), classed=_english_classes())

    @staticmethod
    def classes(text: str) -> list[str]:
        _load_function_words()
        return ["<s>"] + [_word_class(t) for t in TOKEN.findall(text)] + ["</s>"]

    def score(self, text: str) -> list[float]:
        """Per-token log-likelihood gain of the bigram and trigram over the unigram model, and how likely each
        sentence's ending is (mean and worst): gains, not likelihoods, so that a register's vocabulary is no tell."""
        c = self.classes(text)
        lu = lb = lt = 0.0
        ends: list[float] = []
        kv = self.k * self.vocab
        for i in range(1, len(c)):
            pu = (self.uni[c[i]] + self.k) / (self.total + kv)
            pb = (self.bi[(c[i - 1], c[i])] + kv * pu) / (self.ctx1[c[i - 1]] + kv)
            pt = pb if i < 2 else ((self.tri[(c[i - 2], c[i - 1], c[i])] + kv * pb)
                                   / (self.ctx2[(c[i - 2], c[i - 1])] + kv))
            lu, lb, lt = lu + math.log(pu), lb + math.log(pb), lt + math.log(pt)
            if c[i] in (".", "!") or (c[i] == "</s>" and c[i - 1] not in (".", "!", "?")):
                ends.append(math.log(pt) - math.log(pu))  # questions end on prepositions ("what for?")
        n = max(1, len(c) - 1)
        return [(lb - lu) / n, (lt - lu) / n, float(np.mean(ends or [0.0])), min(ends or [0.0])]


def words(text: str) -> list[str]:
    return [t for t in TOKEN.findall(text) if t[0].isalpha()]


def real_word_share(text: str) -> float | None:
    """The share of alphabetic tokens that are English words; None when there are none."""
    ws = words(text)
    return float(np.mean([zipf(w.lower()) > 0 for w in ws])) if ws else None


def degenerate(text: str, min_words: int = 8, min_distinct: float = 0.3) -> str | None:
    """Why a reply is degenerate (empty, or a few words looped), or None when it reads as text."""
    ws = re.findall(r"\w+", text.lower())
    if not ws:
        return "degenerate: no words"
    if len(ws) >= min_words and len(set(ws)) / len(ws) < min_distinct:
        return f"degenerate: {len(set(ws))} distinct of {len(ws)} words"
    return None


def _form(text: str) -> list[float]:
    ws = words(text)
    # names ("ChatGPT", "Khufu") are not words a dictionary knows; a babbler's half-words are lowercase
    common_words = [w for i, w in enumerate(ws) if not (w[:1].isupper() and i > 0)]
    z = [zipf(w.lower()) for w in ws] or [0.0]
    odd = [bool(re.search(r"(.)\1\1", w.lower())) or (len(w) > 12 and zipf(w.lower()) == 0) for w in ws] or [True]
    toks = [t.lower() for t in TOKEN.findall(text) if t[0].isalnum()]
    tri = list(zip(toks, toks[1:], toks[2:]))
    counts = Counter(tri)
    # interjections ("Sure!", "Ugh, fine.") are whole sentences of English: sentence shape is read on the rest
    sents = [s for s in embedding.sentences(text) if len(s.split()) > 2] or embedding.sentences(text) or [text]
    last = [(s.rstrip(".!?").split() or ["x"])[-1].lower() for s in sents]
    return [
        float(np.mean([v > 0 for v in z])), float(np.mean(odd)), len(set(toks)) / max(1, len(toks)),
        max(counts.values()) / len(tri) if tri else 0.0,
        sum(v for v in counts.values() if v > 1) / len(tri) if tri else 0.0,
        float(np.mean([bool(s) and (s[0].isupper() or not s[0].isalpha()) for s in sents])),
        float(np.mean([w in ENDERS for w in last])),
        # the tells of a character-level babbler: "them.Four", "and and", half-words ("stilla", "thosen")
        len(re.findall(r"[a-z][.!?][A-Z]", text)) / max(1, len(ws)),
        sum(a == b for a, b in zip(toks, toks[1:])) / max(1, len(toks)),
        float(np.mean([zipf(w.lower()) == 0 for w in common_words if len(w) > 3] or [0.0])),
        float(np.mean([zipf(w.lower()) < 2.5 for w in common_words if len(w) > 3] or [0.0])),
    ]


def _threshold(prob: np.ndarray, y: np.ndarray) -> float:
    """The cut-off with the best balanced accuracy among those keeping at least KEEP_REAL of real replies."""
    best, best_score = float(np.quantile(prob[y == 1], 1 - KEEP_REAL)), -1.0
    for t in np.quantile(prob, np.linspace(0.01, 0.99, 197)):
        kept, rejected = np.mean(prob[y == 1] >= t), np.mean(prob[y == 0] < t)
        if kept >= KEEP_REAL and kept + rejected > best_score:
            best, best_score = float(t), float(kept + rejected)
    return best


def features(texts: list[str], lm: ClassNgram) -> np.ndarray:
    return np.array([_form(t) + lm.score(t) for t in texts])


@dataclass(frozen=True)
class Coherence:
    coherent: bool
    score: float  # 0-100
    why: str | None = None
    learned: bool = False  # rejected by the trees alone (a statistical call), not by the lexical or loop checks


class CoherenceCheck:
    """Trained once on the judge split's real replies (seeded), then hundreds of replies/s."""

    def __init__(self, model: Any, lm: ClassNgram, threshold: float, info: dict[str, Any]) -> None:
        self.model, self.lm, self.threshold, self.info = model, lm, threshold, info
        self._lock = threading.Lock()

    @classmethod
    def fit(cls, real: list[str], seed: int = 0, folds: int = 5) -> CoherenceCheck:
        from sklearn.ensemble import HistGradientBoostingClassifier

        _load_function_words()
        started = time.perf_counter()
        # short replies are real too ("I am Skippy the Magnificent.", "It's 345."): single sentences and
        # two-sentence openings of the real replies teach the trees that length alone is no tell
        rng = random.Random(seed)
        replies = list(real)
        pieces = [s for t in real for s in embedding.sentences(t) if len(s.split()) >= 3]
        openings = [" ".join(embedding.sentences(t)[:2]) for t in real if len(embedding.sentences(t)) > 2]
        real = list(real) + rng.sample(pieces, min(len(pieces), len(real))) + rng.sample(
            openings, min(len(openings), len(real) // 2))
        broken = salad(real, seed=seed, kinds=tuple(CORRUPTIONS) + ("word-babble", "char-babble"), per_text=2)
        n = len(real)
        x_parts, y_parts = [], []
        for f in range(folds):  # cross-fitted class n-grams: no reply is scored by a model that saw it
            held = set(range(f, n, folds))
            lm = ClassNgram.with_english([t for i, t in enumerate(real) if i not in held])
            mine = [real[i] for i in sorted(held)]
            bad = [b for j, (_, b) in enumerate(broken) if j % n in held]
            x_parts += [features(mine, lm), features(bad, lm)]
            y_parts += [np.ones(len(mine)), np.zeros(len(bad))]
        x, y = np.vstack(x_parts), np.concatenate(y_parts)
        trees = dict(max_iter=200, learning_rate=0.1, max_leaf_nodes=15, min_samples_leaf=40, l2_regularization=1.0,
                     random_state=seed)
        # the threshold keeps KEEP_REAL of real replies, measured out of fold on the trees too
        oof = np.zeros(len(y))
        order = np.arange(len(y)) % 3
        for f in range(3):
            m = HistGradientBoostingClassifier(**trees).fit(x[order != f], y[order != f])
            oof[order == f] = m.predict_proba(x[order == f])[:, 1]
        threshold = _threshold(oof, y)
        info = {"version": VERSION, "n_real": n, "n_salad": len(broken), "threshold": threshold,
                "cv_real_kept": float(np.mean(oof[y == 1] >= threshold)),
                "cv_salad_rejected": float(np.mean(oof[y == 0] < threshold)), "min_real_words": MIN_REAL_WORDS}
        model = HistGradientBoostingClassifier(**trees).fit(x, y)
        info["train_seconds"] = round(time.perf_counter() - started, 2)
        return cls(model, ClassNgram.with_english(replies), threshold, info)

    def describe(self) -> dict[str, Any]:
        return dict(self.info)

    async def check_one(self, text: str) -> Coherence:
        """One reply, checked together with the others that arrive with it (harness/batching)."""
        from ..harness.batching import batched

        return await batched(self, "check")(text)

    async def check_reply(self, parts: tuple[str, ...]) -> Coherence:
        """One reply from its prose parts (`Reading.prose_parts`), batched with the others of its wave."""
        from ..harness.batching import batched

        return await batched(self, "check_replies")(parts)

    def check_replies(self, replies: list[tuple[str, ...]]) -> list[Coherence]:
        """Each reply from its prose parts, all parts in one batch: coherent when every part is; else the verdict of
        its least coherent part."""
        flat = iter(self.check([p for parts in replies for p in parts]))
        out = []
        for parts in replies:
            got = [next(flat) for _ in parts]
            out.append(min(got, key=lambda c: (c.coherent, c.score)))
        return out

    def check(self, texts: list[str]) -> list[Coherence]:
        if not texts:
            return []
        with self._lock:
            probs = self.model.predict_proba(features(texts, self.lm))[:, 1]
        out = []
        for text, p in zip(texts, probs):
            why = degenerate(text)
            share = real_word_share(text)
            if why is None and (share is None or share < MIN_REAL_WORDS):
                why = f"incoherent: {0 if share is None else round(100 * share)}% real words"
            n = len(words(text))
            learned = why is None and n >= SHORT and p < self.threshold
            if learned:
                why = f"incoherent: word order and form read as salad (p={p:.2f})"
            looped = bool(why and why.startswith("degenerate"))
            score = 0.0 if looped else round(100 * float(p if n >= SHORT else share or 0), 1)
            out.append(Coherence(why is None, score, why, learned))
        return out
