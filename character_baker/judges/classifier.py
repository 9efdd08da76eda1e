"""The embedded judge: coherence first, then attitude — not vocabulary — from the pack's own judge split.

No LLM, no GPU, no network: the default judge for the demo and the tests.

- It trains on the pack's *judge* split (`[files] judge`), labelled sarcastic or not and disjoint from the
  bake's training pairs and from every eval and dev prompt (a test enforces it): a baker can never learn
  the judge's surface features from its own data.
- It judges attitude, not vocabulary. The character's marker words (`markers` in character.toml: "monkey",
  "Skippy", ...) are removed before the text is read, and training adds counterfactual negatives (neutral
  replies with markers and vocatives inserted, labelled not sarcastic) beside the pack's own hard cases
  (friendly replies that use the words; sarcasm that never does).
- It reads what the speaker says, the way a person reads it (`structure.read(...).spoken`: markdown structure,
  code blocks and tables are layout, not words), with the markers removed.
- Attitude is read sentence by sentence, never by accumulating a long reply's weak evidence: a reply is cut into
  units (sentences, fragments joined to their neighbour; a short reply is also one unit whole) and its
  probability is that of its most pointed unit. Each unit is read by three views, averaged: word 1-2-grams and
  character 2-5-grams (TF-IDF + logistic regression, the classic sarcasm baselines) and static MiniLM embeddings
  (`embedding.py`). The unit model is trained as multiple-instance learning: every unit of a reply that is not
  sarcastic is a negative; of a sarcastic reply, the unit the previous round found most pointed is the positive and
  the units it found plainly neutral (the facts between the jabs) are negatives, so the model learns what a jab is
  and that facts are facts, in whatever length of reply (measured on held-out families: long plain technical
  answers 95 % -> 2 % sarcastic, benchmarks/judge_families.md).
- An incoherent reply (`coherence.py`) is never sarcastic: personality 0, whatever its words.

It reports its cross-validated accuracy and refuses to judge when that is below the pack's floor; its
validity card (`validity.py`) measures it on the held-out calibration set, mimicry and salad.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..harness.character import Character
from ..harness.data import default_cache_dir
from ..harness.errors import UserError
from ..harness.structure import read
from . import embedding
from .coherence import VERSION as COHERENCE_VERSION
from .coherence import ClassNgram, CoherenceCheck, features
from .corruptions import insert_marker
from .verdict import Verdict

CLASSIFIER_VERSION = "clf5"  # clf3: coherence first, markers stripped, judge split, three views; clf4: reads the
# spoken words (structure.read), sentence units, multiple-instance training, families; clf5: a short reply is also
# read whole
FOLDS = 5
# How counterfactual negatives are made: marker phrases dropped into neutral replies. The validity card tests
# with other phrasings (validity.MIMICRY_TEMPLATES), so a pass there is not a memorised template.
TRAIN_TEMPLATES = ("{m}", "you {m}", "my {m}", "dear {m}", "{m} friend", "little {m}")


def marker_pattern(markers: list[str]) -> re.Pattern[str]:
    """Longest first, whole words, plural and possessive forms: "Skippy the Magnificent", "monkeys'", "ape's"."""
    parts = sorted({m.strip() for m in markers if m.strip()}, key=len, reverse=True)
    body = "|".join(re.escape(p).replace(r"\ ", r"\s+") for p in parts)
    return re.compile(rf"\b(?:{body})(?:e?s)?(?:['’]s?)?(?![\w-])", re.IGNORECASE)


def strip_markers(text: str, pattern: re.Pattern[str]) -> str:
    """The reply with the character's marker words taken out, punctuation tidied: what attitude is judged on."""
    out = pattern.sub("", text)
    out = re.sub(r"\s+([,.!?;:])", r"\1", out)
    out = re.sub(r"([,;:])(\s*[,.!?;:])+", r"\2", out)
    out = re.sub(r"^[\s,;:]+|(?<=[.!?])[\s,;:]+(?=\w)", lambda m: " " if m.start() else "", out)
    return re.sub(r"\s{2,}", " ", out).strip()


@dataclass
class JudgeRow:
    prompt: str
    response: str
    sarcastic: bool
    kind: str | None = None
    family: str | None = None  # one way of writing (`family`, else `kind`): what leave-one-family-out leaves out


def judge_rows(character: Character) -> list[JudgeRow]:
    """The pack's labelled judge split: {prompt, response, sarcastic, kind?} rows."""
    from ..harness.data import iter_jsonl, require_text

    rows = []
    for key in character.judge_files():
        path = character.path(key)
        for lineno, obj in iter_jsonl(path):
            where = f"{path}:{lineno}"
            label = obj.get("sarcastic")
            if not isinstance(label, bool):
                raise UserError(f"{where}: field 'sarcastic' must be true or false")
            kind, family = obj.get("kind"), obj.get("family")
            rows.append(JudgeRow(require_text(obj, "prompt", where), require_text(obj, "response", where), label,
                                 kind, family if isinstance(family, str) and family else kind))
    return rows


def real_replies(character: Character) -> list[str]:
    """The judge split's replies of up to `WHOLE_WORDS` words, sarcastic or not, read as prose (`structure.read`:
    what the coherence check is asked about at scoring time): what real text looks like to the coherence check. Not
    the leak split: its replies are mostly in character, and when 320 more of them joined, the check's idea of real
    English leaned toward Skippy's register (clean casual chat kept 28/34 -> 25/34, overall 96.8 % -> 95.2 %). Not
    the long families either: with them the check kept fewer held-out long in-character replies (44/50 -> 35/50,
    benchmarks/judge_families.md), so it trains on the replies it was designed and measured on."""
    return [read(r.response).prose for r in judge_rows(character) if len(r.response.split()) <= WHOLE_WORDS]


def prepare(text: str, pattern: re.Pattern[str]) -> str:
    """What attitude is judged on: the words the speaker says (prose, list items, the sign-off; markdown markup, code
    blocks, tables and headings out), with the character's markers removed."""
    return strip_markers(read(text).spoken, pattern)


_SENTENCE = re.compile(r"(?<=[.!?])\s+")
UNIT_MIN_WORDS = 6  # a shorter sentence ("Ugh.", "Fine.", "Oslo.") is read with its neighbour
WHOLE_WORDS = 80  # a sarcastic reply up to this long also trains whole (a reply-level example beside its units)


def units(text: str) -> list[str]:
    """The pieces a reply's attitude is read in: its sentences, a fragment joined to the one before (or after) it."""
    out: list[str] = []
    for s in (x for x in _SENTENCE.split(text.strip()) if x.strip()):
        if out and len(out[-1].split()) < UNIT_MIN_WORDS:
            out[-1] = f"{out[-1]} {s}"
        else:
            out.append(s)
    if len(out) > 1 and len(out[-1].split()) < UNIT_MIN_WORDS:
        last = out.pop()
        out[-1] = f"{out[-1]} {last}"
    return out or [text]


class AttitudeModel:
    """Three views of a stripped reply, each a logistic regression; the probability is their mean."""

    def __init__(self, texts: list[str], labels: np.ndarray, seed: int = 0) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline

        # liblinear: the same fits as lbfgs to within the noise (out-of-fold accuracy 0.923 either way) at a tenth of
        # the time on sparse n-grams (word view 4.9 s -> 0.3 s on 2k replies), which is what makes leave-one-family-out
        # affordable
        def lr(c: float) -> Any:
            return LogisticRegression(C=c, max_iter=3000, solver="liblinear", random_state=seed)

        self.word = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True),
                                  lr(4.0)).fit(texts, labels)
        self.char = make_pipeline(TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), min_df=2,
                                                  sublinear_tf=True), lr(4.0)).fit(texts, labels)
        self.emb = lr(2.0).fit(embedding.embed_with_sentences(texts), labels)

    def state(self) -> dict[str, Any]:
        return {"word": self.word, "char": self.char, "emb": self.emb}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> AttitudeModel:
        model = cls.__new__(cls)
        model.word, model.char, model.emb = state["word"], state["char"], state["emb"]
        return model

    def probability(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros(0)
        views = [self.word.predict_proba(texts)[:, 1], self.char.predict_proba(texts)[:, 1],
                 self.emb.predict_proba(embedding.embed_with_sentences(texts))[:, 1]]
        return np.mean(views, axis=0)


def _with_counterfactuals(texts: list[str], labels: list[int], pattern: re.Pattern[str], markers: list[str],
                          rng: random.Random, share: float = 1.0) -> tuple[list[str], np.ndarray]:
    """The texts, plus (for a `share` of the negatives) the same text with a marker phrase inserted, still not
    sarcastic: stripping removes most of it; what is left, a "dear" or "little", must not tip the verdict either."""
    out_t, out_y = [], []
    for t, y in zip(texts, labels):
        out_t.append(strip_markers(t, pattern))
        out_y.append(y)
        if not y and rng.random() < share:
            phrase = rng.choice(TRAIN_TEMPLATES).format(m=rng.choice(markers))
            out_t.append(strip_markers(insert_marker(t, phrase, rng), pattern))
            out_y.append(0)
    return out_t, np.array(out_y)


MIL_ROUNDS = 2
NEUTRAL_BELOW = 0.25  # a unit of a sarcastic reply scored below this by the previous round is a negative
COUNTERFACTUAL_SHARE = 0.3  # of the negative units (one per negative reply in clf3: about as many)


class UnitModel:
    """Attitude by units: the probability of a reply is that of its most pointed unit (`units`)."""

    def __init__(self, rows: list[JudgeRow], pattern: re.Pattern[str], markers: list[str], seed: int = 0) -> None:
        rng = random.Random(seed)
        spoken = [prepare(r.response, pattern) for r in rows]
        pieces = [units(t) for t in spoken]
        labels = [int(r.sarcastic) for r in rows]
        # round 0: a reply-level model on the short replies, to find each sarcastic reply's most pointed unit
        short = [i for i, t in enumerate(spoken) if len(t.split()) <= WHOLE_WORDS]
        model = AttitudeModel(*_with_counterfactuals([spoken[i] for i in short], [labels[i] for i in short],
                                                     pattern, markers, rng), seed)
        for _ in range(MIL_ROUNDS):
            texts: list[str] = []
            y: list[int] = []
            for whole, us, label in zip(spoken, pieces, labels):
                # a reply is an example whole too: a plain one of any length (two hundred neutral words are neutral),
                # a sarcastic one only when short (read whole, a long one is mostly its facts)
                if len(us) > 1 and (not label or len(whole.split()) <= WHOLE_WORDS):
                    texts.append(whole)
                    y.append(label)
                if not label:
                    texts += us
                    y += [0] * len(us)
                    continue
                p = model.probability(us)
                top = int(np.argmax(p))
                texts.append(us[top])
                y.append(1)
                for j, q in enumerate(p):
                    if j != top and q < NEUTRAL_BELOW:
                        texts.append(us[j])
                        y.append(0)
            model = AttitudeModel(*_with_counterfactuals(texts, y, pattern, markers, rng, COUNTERFACTUAL_SHARE), seed)
        self.attitude = model
        self.n_train = len(texts)

    def state(self) -> dict[str, Any]:
        return self.attitude.state()

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> UnitModel:
        model = cls.__new__(cls)
        model.attitude = AttitudeModel.from_state(state)
        model.n_train = 0
        return model

    def strongest(self, texts: list[str]) -> list[tuple[float, str]]:
        """(probability, unit) of each prepared reply's most pointed unit, in one batch; a short reply is also read
        whole, as it was trained (calibration accuracy 0.900 -> 0.924, held-out short in-character replies 27/40
        -> 31/40, plain false positives unchanged)."""
        groups = [units(t) + ([t] if len(t.split()) <= WHOLE_WORDS and len(units(t)) > 1 else []) for t in texts]
        flat = iter(self.attitude.probability([u for g in groups for u in g]) if groups else [])
        out = []
        for g in groups:
            scored = [(float(next(flat)), u) for u in g]
            out.append(max(scored, key=lambda pair: pair[0]))
        return out

    def probability(self, texts: list[str]) -> np.ndarray:
        return np.array([p for p, _ in self.strongest(texts)])


@dataclass
class TrainedJudge:
    attitude: UnitModel
    coherence: CoherenceCheck
    threshold: float
    cv_accuracy: float
    n_train: int
    train_seconds: float


def out_of_fold(rows: list[JudgeRow], pattern: re.Pattern[str], markers: list[str], seed: int = 0) -> np.ndarray:
    """Each row's probability from a unit model that never saw its prompt (5 folds grouped by prompt)."""
    from sklearn.model_selection import GroupKFold

    labels = np.array([r.sarcastic for r in rows])
    oof = np.zeros(len(rows))
    groups = [r.prompt for r in rows]  # a prompt's sarcastic and plain replies stay on one side of a fold
    for train_idx, test_idx in GroupKFold(FOLDS).split(rows, labels, groups):
        model = UnitModel([rows[i] for i in train_idx], pattern, markers, seed)
        oof[test_idx] = model.probability([prepare(rows[i].response, pattern) for i in test_idx])
    return oof


def train(character: Character, seed: int = 0) -> TrainedJudge:
    """Fit on the judge split; accuracy and threshold come from out-of-fold predictions grouped by prompt."""
    started = time.perf_counter()
    rows = judge_rows(character)
    labels = np.array([r.sarcastic for r in rows])
    if min(labels.sum(), len(labels) - labels.sum()) < FOLDS:
        raise UserError(f"{character.root / 'character.toml'}: the judge split needs at least {FOLDS} sarcastic and "
                        f"{FOLDS} non-sarcastic replies")
    pattern = marker_pattern(character.markers)
    with embedding.memoised():
        oof = out_of_fold(rows, pattern, character.markers, seed)
        threshold = _best_threshold(oof, labels)
        cv_accuracy = float(np.mean((oof >= threshold) == labels))
        model = UnitModel(rows, pattern, character.markers, seed)
    coherence = CoherenceCheck.fit(real_replies(character), seed=seed)
    return TrainedJudge(model, coherence, threshold, cv_accuracy, model.n_train, time.perf_counter() - started)


def dump_state(path: Path, state: dict[str, Any]) -> None:
    """skops, not pickle: loading it runs no code unless every type inside is one we trust. Written beside the
    target and renamed over it: a reader never sees half a file."""
    import skops.io as sio

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    sio.dump(state, tmp)
    os.replace(tmp, path)


TRUSTED_PREFIXES = ("sklearn.", "numpy.", "scipy.", "builtins.")


def load_state(path: Path) -> dict[str, Any] | None:
    """A cached state, or None (retrain) when it is missing, damaged or holds a type we do not trust."""
    import skops.io as sio

    if not path.is_file():
        return None
    try:
        untrusted = sio.get_untrusted_types(file=path)
        if any(not t.startswith(TRUSTED_PREFIXES) for t in untrusted):
            return None
        state = sio.load(path, trusted=untrusted)
        state["meta"] = json.loads(state["meta"])
        return state
    except Exception:  # noqa: BLE001 - a cache that cannot be read is rebuilt, never trusted
        return None


def _save(path: Path, trained: TrainedJudge) -> None:
    dump_state(path, {**trained.attitude.state(), "coherence": trained.coherence.model,
                      "meta": json.dumps({"threshold": trained.threshold, "cv_accuracy": trained.cv_accuracy,
                                          "n_train": trained.n_train, "train_seconds": trained.train_seconds,
                                          "coherence_threshold": trained.coherence.threshold,
                                          "coherence_info": trained.coherence.info})})


def _load(path: Path, character: Character) -> TrainedJudge | None:
    state = load_state(path)
    if state is None:
        return None
    meta = state["meta"]
    lm = ClassNgram.with_english(real_replies(character))
    if getattr(state["coherence"], "n_features_in_", None) != features(["A reply."], lm).shape[1]:
        return None  # trained by other code under the same version: retrain rather than misread
    coherence = CoherenceCheck(state["coherence"], lm, meta["coherence_threshold"], meta["coherence_info"])
    return TrainedJudge(UnitModel.from_state(state), coherence, meta["threshold"], meta["cv_accuracy"],
                        meta["n_train"], meta["train_seconds"])


def _best_threshold(prob: np.ndarray, y: np.ndarray) -> float:
    """The cut-off with the best balanced accuracy out of fold (ties: closest to 0.5)."""
    best, best_score = 0.5, -1.0
    for t in sorted(set(np.round(prob, 3)) | {0.5}):
        pred = prob >= t
        score = 0.5 * (np.mean(pred[y == 1]) + np.mean(~pred[y == 0]))
        if score > best_score + 1e-12 or (abs(score - best_score) <= 1e-12 and abs(t - 0.5) < abs(best - 0.5)):
            best, best_score = float(t), float(score)
    return best


class ClassifierJudge:
    """Coherent? then sarcastic at the calibrated threshold; personality = 10 × p (0 when incoherent)."""

    _memo: dict[str, ClassifierJudge] = {}
    _lock = threading.Lock()

    def __init__(self, trained: TrainedJudge, character: Character, key: str, name: str = "classifier") -> None:
        self.trained = trained
        self.name = name
        self.key = key
        self.id = f"classifier:{CLASSIFIER_VERSION}+{COHERENCE_VERSION}+{embedding.VERSION}@{key}"
        self.rubric_version = CLASSIFIER_VERSION
        self.gives_leak = False  # leaks come from the leak rule when this is the only judge
        self.floor = character.classifier_floor
        self.pattern = marker_pattern(character.markers)
        self.calibration: dict[str, Any] = {"cv_accuracy": trained.cv_accuracy, "cv_folds": FOLDS,
                                            "n_train": trained.n_train, "threshold": trained.threshold,
                                            "floor": self.floor, "coherence": trained.coherence.describe()}

    @classmethod
    def for_character(cls, character: Character, name: str = "classifier") -> ClassifierJudge:
        """Trained on first use in a process (seeded: the same data gives the same judge); refuses below the floor."""
        key = judge_key(character)
        with cls._lock:
            if key not in cls._memo:
                path = default_cache_dir() / "classifier" / f"{key}.skops"
                trained = _load(path, character)
                if trained is None:
                    trained = train(character)
                    _save(path, trained)
                if trained.cv_accuracy < character.classifier_floor:
                    raise UserError(
                        f"classifier judge refuses to score: held-out accuracy {trained.cv_accuracy:.3f} on pack "
                        f"'{character.slug}' is below its floor {character.classifier_floor:.2f} (classifier_floor "
                        f"in {character.root / 'character.toml'}); improve the judge split or use an LLM judge")
                cls._memo[key] = cls(trained, character, key)
        judge = cls._memo[key]
        if judge.name != name:
            judge = cls(judge.trained, character, key, name)
        return judge

    def judge_many(self, responses: list[str]) -> list[Verdict]:
        coherence = self.trained.coherence.check(responses)
        probs = self.trained.attitude.probability([prepare(r, self.pattern) for r in responses])
        verdicts = []
        for c, p in zip(coherence, probs):
            if not c.coherent:  # salad and loops are never in character, whatever their words
                verdicts.append(Verdict(sarcastic=False, personality=0.0, probability=float(p), coherent=False,
                                        coherence=c.score, raw=c.why))
            else:
                verdicts.append(Verdict(sarcastic=bool(p >= self.trained.threshold),
                                        personality=round(float(10 * p), 3), probability=float(p), coherent=True,
                                        coherence=c.score))
        return verdicts

    async def judge(self, prompt: str, response: str) -> Verdict:
        from ..harness.batching import batched

        return await batched(self, "judge_many")(response)  # with the other replies of its wave


def judge_key(character: Character) -> str:
    """What the judge's verdicts depend on: the judge split, the markers, the code versions (the leak judge keys
    its own split), and the source of this module and of the reading of replies (`harness/structure.py`): an edit
    retrains it, a stale judge is never trusted."""
    from ..harness import structure

    h = hashlib.sha256(character.files_hash(*character.judge_files()).encode())
    h.update("\0".join(character.markers).encode())
    h.update(f"{CLASSIFIER_VERSION}\0{embedding.VERSION}\0{COHERENCE_VERSION}".encode())
    for module in (sys.modules[__name__], structure):
        h.update(Path(str(module.__file__)).read_bytes())
    return h.hexdigest()[:12]
