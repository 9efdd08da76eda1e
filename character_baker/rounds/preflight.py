"""Preconditions of a round, checked in seconds before any long work or multi-GB install.

Standard library only, so `tox -e r6` can run it before installing the GPU stack:
    python character_baker/rounds/preflight.py rounds/r6.toml
Checks: a CUDA GPU and its free memory against the recipe's estimate, the base weights (local path or the
Hugging Face cache; nothing is downloaded), and the LLM judge endpoint when one is configured.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any


def hf_cache_dir() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface"))
    return home / "hub"


def resolve_base(raw: dict[str, Any]) -> str:
    model = raw.get("model") or {}
    env = model.get("base_env")
    return os.environ.get(env) if env and os.environ.get(env) else str(model.get("base", ""))


def weights_present(base: str) -> tuple[bool, str]:
    """A local folder with config.json and safetensors, or a hub id already in the local cache."""
    path = Path(os.path.expanduser(base))
    if path.exists():
        if not (path / "config.json").is_file():
            return False, f"{path} has no config.json"
        if not any(path.glob("*.safetensors")):
            return False, f"{path} has no .safetensors weights"
        return True, str(path)
    repo = hf_cache_dir() / ("models--" + base.replace("/", "--"))
    snapshots = [s for s in (repo / "snapshots").glob("*") if (s / "config.json").exists()]
    if snapshots and any(any(s.glob("*.safetensors")) for s in snapshots):
        return True, str(snapshots[0])
    return False, f"'{base}' is neither a local folder nor in the Hugging Face cache ({hf_cache_dir()})"


def gpus() -> list[tuple[str, float, float]]:
    """(name, total GiB, free GiB) per visible GPU, from nvidia-smi; empty when there is none."""
    if not shutil.which("nvidia-smi"):
        return []
    try:
        query = ["nvidia-smi", "--query-gpu=name,memory.total,memory.free", "--format=csv,noheader,nounits"]
        out = subprocess.run(query, capture_output=True, text=True, timeout=20, check=True).stdout
    except (subprocess.SubprocessError, OSError):
        return []
    rows = []
    for line in out.strip().splitlines():
        name, total, free = (x.strip() for x in line.split(","))
        rows.append((name, float(total) / 1024, float(free) / 1024))
    return rows


def judge_endpoint(spec: str | None) -> tuple[bool, str] | None:
    """For `openai-api/NAME/MODEL` judges: NAME_BASE_URL must be set and answer GET /models."""
    if not spec:
        return None
    for part in spec.split(","):
        model = part.split("=", 1)[-1].split("?")[0]
        if not model.startswith("openai-api/"):
            continue
        name = model.split("/")[1].upper().replace("-", "_")
        url = os.environ.get(f"{name}_BASE_URL")
        if not url:
            return False, (f"judge {model}: set {name}_BASE_URL (and {name}_API_KEY) to its OpenAI-compatible "
                           "endpoint, or use --judge classifier")
        request = urllib.request.Request(url.rstrip("/") + "/models",
                                         headers={"Authorization": f"Bearer {os.environ.get(f'{name}_API_KEY', '')}"})
        try:
            urllib.request.urlopen(request, timeout=5).close()
        except (urllib.error.URLError, OSError) as e:
            return False, f"judge {model}: {url} does not answer ({getattr(e, 'reason', e)})"
    return True, "judge endpoint answers"


def check(recipe_path: str | Path, judge: str | None = None) -> list[str]:
    """Every unmet precondition as one line saying what is missing and how to provide it."""
    path = Path(recipe_path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as e:
        return [f"{path}: cannot read the recipe ({e})"]
    problems = []
    pre = raw.get("preconditions") or {}
    if pre.get("gpu", False):
        found = gpus()
        need = float(pre.get("gpu_memory_gb", 0))
        if not found:
            problems.append(f"no CUDA GPU visible (nvidia-smi): round {raw.get('round')} needs one with "
                            f"~{need:g} GB free; run it on a GPU machine")
        elif need and max(free for _, _, free in found) < need:
            best = max(found, key=lambda g: g[2])
            problems.append(f"GPU {best[0]} has {best[2]:.1f} GiB free, the recipe estimates {need:g} GB: free the "
                            "GPU or lower [train] batch_size / max_length")
    base = resolve_base(raw)
    ok, where = weights_present(base)
    if not ok:
        env = (raw.get("model") or {}).get("base_env")
        problems.append(f"base weights: {where}; download them (huggingface-cli download {base}) or point "
                        + (f"${env} or " if env else "") + "[model] base at a local folder")
    endpoint = judge_endpoint(judge or (raw.get("score") or {}).get("judge") or os.environ.get("CHARACTER_BAKER_JUDGE"))
    if endpoint and not endpoint[0]:
        problems.append(endpoint[1])
    return problems


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: preflight.py RECIPE.toml", file=sys.stderr)
        return 2
    problems = check(sys.argv[1])
    for p in problems:
        print(f"precondition failed: {p}", file=sys.stderr)
    if not problems:
        print(json.dumps({"preconditions": "ok", "recipe": sys.argv[1]}))
    return 2 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
