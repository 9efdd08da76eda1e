"""Candidates: what gets scored. A model dir, a base + LoRA adapter at a scale, a responses file, or any Inspect model.

Each gets an id that is unique to its content (so a retrained checkpoint in the same folder is a new
candidate) and is used as its Inspect model name everywhere.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import UserError

# Inspect providers a spec like "openai-api/local/m" may start with. A spec with one slash (owner/name) is a
# Hugging Face model even when its owner is also a provider's name: inspect:openai/gpt-4o says "Inspect" explicitly.
INSPECT_PROVIDERS = {
    "openai", "openai-api", "anthropic", "google", "hf", "vllm", "sglang", "mockllm", "ollama", "together", "groq",
    "mistral", "grok", "bedrock", "azureai", "openrouter", "llama-cpp-python", "fireworks", "perplexity",
    "cloudflare", "litellm-proxy", "deepseek", "moonshot", "sambanova", "cb", "responses",
}
LINEAGE_FILE = "candidate.json"  # bakers write lineage here; see docs/ARCHITECTURE.md


@dataclass
class Candidate:
    id: str
    kind: str  # model | adapter | responses | inspect
    source: str
    model_args: dict[str, Any] = field(default_factory=dict)
    lineage: dict[str, Any] = field(default_factory=dict)
    content: str = ""  # fingerprint of the weights (or responses file) the id stands for

    @property
    def model(self) -> str:
        """The Inspect model name: the candidate id under our providers (with its content fingerprint when the id
        does not already end in it), or the user's own model string. Inspect keys cached generations by this
        name, so a rebuilt model scored under the same id must not get the old model's replies."""
        if self.kind == "inspect":
            return self.source
        provider = "responses" if self.kind == "responses" else "cb"
        suffix = f"-{self.content}" if self.content and not self.id.endswith(self.content) else ""
        return f"{provider}/{self.id}{suffix}"

    def describe(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "source": self.source, "model": self.model,
                "model_args": {k: v for k, v in self.model_args.items() if k != "batch_size"},
                "lineage": self.lineage}


SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def check_id(cid: str, what: str = "--id") -> str:
    """Candidate ids name folders and table rows: a safe character set, no path tricks, no newlines."""
    if not SAFE_ID.fullmatch(cid) or ".." in cid:
        raise UserError(f"{what} {cid!r}: a candidate id may hold letters, digits, '.', '_' and '-' (at most 128, "
                        "not starting with a symbol, no '..')")
    return cid


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-").lower() or "candidate"


def fingerprint(*parts: str | Path, length: int = 8) -> str:
    """Cheap content fingerprint: config-like files by content, weights by name, size and mtime."""
    h = hashlib.sha256()
    for part in parts:
        p = Path(part)
        if p.is_dir():
            for f in sorted(p.iterdir()):
                if f.is_file():
                    st = f.stat()
                    h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
                    if f.suffix == ".json" and st.st_size < 1_000_000:
                        h.update(f.read_bytes())
        elif p.is_file():
            h.update(p.read_bytes())
        else:
            h.update(str(part).encode())
    return h.hexdigest()[:length]


def content_of(spec: str) -> str:
    """The content fingerprint of a model folder or a cached hub model ("" when it is neither)."""
    path = Path(spec).expanduser()
    if path.is_dir():
        return fingerprint(path)
    snapshot = hf_snapshot(spec) if re.fullmatch(r"[\w.-]+/[\w.-]+", spec) else None
    return fingerprint(snapshot) if snapshot else ""


def _lineage(directory: Path) -> dict[str, Any]:
    f = directory / LINEAGE_FILE
    if not f.is_file():
        return {}
    try:
        data = json.loads(f.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{f}: invalid JSON ({e})") from None
    if not isinstance(data, dict):
        raise UserError(f"{f}: expected a JSON object")
    lineage = data.get("lineage", data)
    if not isinstance(lineage, dict):
        raise UserError(f"{f}: 'lineage' must be a JSON object")
    check_lineage(lineage, str(f))
    return lineage


# What the leaderboard reads from a candidate's lineage, by type; bakers may record more (recipe_hash, role, ...)
LINEAGE_TYPES: dict[str, tuple[type, ...]] = {"round": (str,), "baker": (str,), "base": (str,), "parent": (str,),
                                             "data_hash": (str,), "scale": (int, float), "step": (int,)}


def check_lineage(lineage: dict[str, Any], where: str) -> None:
    """Known fields have their type; an unknown key that is one typo from a known one is an error, since the
    board would silently lose the field (a `scael` would leave the candidate without its merge scale)."""
    import difflib

    for key, value in lineage.items():
        types = LINEAGE_TYPES.get(key)
        if types is None:
            near = difflib.get_close_matches(str(key), list(LINEAGE_TYPES), n=1, cutoff=0.75)
            if near:
                raise UserError(f"{where}: unknown lineage key '{key}' (did you mean '{near[0]}'?)")
        elif value is not None and (isinstance(value, bool) or not isinstance(value, types)):
            raise UserError(f"{where}: lineage.{key} must be {' or '.join(t.__name__ for t in types)}, "
                            f"got {type(value).__name__}")


def hf_cache_dir() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface"))
    return home / "hub"


def hf_snapshot(repo: str) -> Path | None:
    """The cached snapshot of a hub model that holds a config and safetensors weights (the one `refs/main` names
    when it is such a snapshot, else the newest), or None: scoring never downloads."""
    root = hf_cache_dir() / ("models--" + repo.replace("/", "--"))
    usable = [s for s in (root / "snapshots").glob("*")
              if (s / "config.json").is_file() and any(s.glob("*.safetensors"))]
    ref = root / "refs" / "main"
    if ref.is_file():
        named = root / "snapshots" / ref.read_text().strip()
        if named in usable:
            return named
    return max(usable, key=lambda s: s.stat().st_mtime) if usable else None


def check_weights(folder: Path, stem: str) -> None:
    """Damaged, missing or pickled weights are found before any run starts, naming the file (a truncated
    download otherwise surfaces as a 50-line traceback from deep inside the loader)."""
    from safetensors import SafetensorError, safe_open

    files = sorted(folder.glob("*.safetensors"))
    if not files:
        pickled = sorted(p.name for p in folder.iterdir() if p.suffix in (".bin", ".pt", ".pth"))
        what = f"only pickled weights ({', '.join(pickled)}); convert them to safetensors" if pickled else \
            "no *.safetensors weights"
        raise UserError(f"{folder}: {what} (character-baker loads safetensors only)")
    index = folder / f"{stem}.safetensors.index.json"
    if index.is_file():
        try:
            shards = set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as e:
            raise UserError(f"{index}: not a safetensors index ({type(e).__name__}: {e})") from None
        missing = sorted(str(s) for s in shards if not (folder / str(s)).is_file())
        if missing:
            raise UserError(f"{index}: names shards that are missing: {', '.join(missing[:3])}")
    for f in files:
        try:
            with safe_open(str(f), framework="numpy"):
                pass
        except (SafetensorError, OSError) as e:
            raise UserError(f"{f}: damaged safetensors file ({e}); download or save it again") from None


def resolve_candidate(spec: str, *, base: str | None = None, scale: float = 1.0, candidate_id: str | None = None,
                      batch_size: int = 8, trust_remote_code: bool = False) -> Candidate:
    """Turn a --candidate spec into a Candidate; errors name the spec and what is wrong."""
    if candidate_id is not None:
        check_id(candidate_id)
    if spec.startswith("responses:"):
        file = Path(spec.removeprefix("responses:")).expanduser()
        if not file.is_file():
            raise UserError(f"--candidate {spec}: no such responses file")
        content = fingerprint(file)
        cid = candidate_id or f"{slug(file.stem)}-{content}"
        return Candidate(cid, "responses", spec, {"file": str(file.resolve())}, content=content)

    path = Path(spec).expanduser()
    common = {"batch_size": batch_size, "trust_remote_code": trust_remote_code}
    if path.is_dir() and (path / "adapter_config.json").is_file():
        try:
            adapter_cfg = json.loads((path / "adapter_config.json").read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise UserError(f"{path / 'adapter_config.json'}: invalid JSON ({e})") from None
        if not isinstance(adapter_cfg, dict):
            raise UserError(f"{path / 'adapter_config.json'}: expected a JSON object")
        check_weights(path, "adapter_model")
        base_path = base or adapter_cfg.get("base_model_name_or_path")
        if not base_path:
            raise UserError(f"{path}: adapter has no base_model_name_or_path; pass --base")
        # a base folder is fingerprinted by its files; a hub base by its cached snapshot
        content = fingerprint(path, base_path if Path(base_path).is_dir() else content_of(str(base_path)) or base_path)
        cid = candidate_id or f"{slug(path.name)}-s{scale:g}-{content}"
        lineage = {"base": str(base_path), "scale": scale, **_lineage(path)}
        return Candidate(cid, "adapter", str(path.resolve()),
                         {"path": str(base_path), "adapter": str(path.resolve()), "scale": scale, **common}, lineage,
                         content)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise UserError(f"--candidate {spec}: folder has neither config.json (a model) nor adapter_config.json")
        check_weights(path, "model")
        content = fingerprint(path)
        cid = candidate_id or f"{slug(path.name)}-{content}"
        return Candidate(cid, "model", str(path.resolve()), {"path": str(path.resolve()), **common}, _lineage(path),
                         content)

    if spec.startswith("inspect:"):  # explicitly an Inspect model, e.g. inspect:openai/gpt-4o
        model = spec.removeprefix("inspect:")
        if "/" not in model:
            raise UserError(f"--candidate {spec}: an Inspect model is PROVIDER/MODEL, e.g. inspect:openai/gpt-4o")
        return Candidate(candidate_id or slug(model), "inspect", model)
    head = spec.split("/", 1)[0]
    hub_like = re.fullmatch(r"[\w.-]+/[\w.-]+", spec) is not None
    if hub_like:  # owner/name is a Hugging Face model (openai/gpt-oss-20b is weights, not the OpenAI API)
        snapshot = hf_snapshot(spec)
        if snapshot is None:
            hint = f"; for Inspect's '{head}' provider write inspect:{spec}" if head in INSPECT_PROVIDERS else ""
            raise UserError(f"--candidate {spec}: not in the Hugging Face cache ({hf_cache_dir()}); download it "
                            f"first or pass a local folder{hint}")
        check_weights(snapshot, "model")
        cid = candidate_id or slug(spec.replace("/", "--"))
        return Candidate(cid, "model", spec, {"path": str(snapshot), **common}, _lineage(snapshot),
                         fingerprint(snapshot))
    if head in INSPECT_PROVIDERS and "/" in spec:  # provider/.../model with two or more slashes: unambiguous
        return Candidate(candidate_id or slug(spec), "inspect", spec)
    raise UserError(f"--candidate {spec}: not a model folder, an adapter folder, responses:FILE, a hub id "
                    "or an Inspect model")
