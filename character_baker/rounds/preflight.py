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

from ..harness.candidates import hf_cache_dir, hf_snapshot


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
    snapshot = hf_snapshot(base)
    if snapshot is not None:
        return True, str(snapshot)
    return False, f"'{base}' is neither a local folder nor in the Hugging Face cache ({hf_cache_dir()})"


def parameter_count(config: dict[str, Any]) -> int:
    """Parameters of the language model a config.json describes (dense or mixture-of-experts; a vision tower is not
    counted), from its shapes alone: the plan must not need torch."""
    c = config.get("text_config") or config
    h, layers, vocab = int(c["hidden_size"]), int(c["num_hidden_layers"]), int(c["vocab_size"])
    heads = int(c["num_attention_heads"])
    kv = int(c.get("num_key_value_heads") or heads)
    hd = int(c.get("head_dim") or h // heads)
    attn = h * heads * hd + 2 * h * kv * hd + heads * hd * h
    if c.get("attention_bias"):
        attn += heads * hd + 2 * kv * hd + h
    experts = int(c.get("num_local_experts") or c.get("num_experts") or 0)
    if experts:
        inter = int(c.get("moe_intermediate_size") or c["intermediate_size"])
        mlp = experts * 3 * h * inter + h * experts + experts  # experts (gate, up, down) and the router
        if c.get("model_type") == "gpt_oss":
            mlp += experts * (2 * inter + h) + heads  # expert biases; attention sinks
    else:
        mlp = 3 * h * int(c["intermediate_size"])
    norms = 2 * h + (2 * hd if c.get("model_type", "").startswith("qwen3") else 0)
    embeddings = vocab * h * (1 if c.get("tie_word_embeddings", config.get("tie_word_embeddings")) else 2)
    return layers * (attn + mlp + norms) + embeddings + h


def config_for(base: str) -> Path | None:
    """The base's config.json, weights or not: a local folder's, or the newest cached hub snapshot holding one (a
    config-only download, `huggingface-cli download REPO config.json`, is enough for the plan's budget)."""
    path = Path(os.path.expanduser(base))
    if path.exists():
        return path / "config.json" if (path / "config.json").is_file() else None
    snapshot = hf_snapshot(base)
    if snapshot is not None:
        return snapshot / "config.json"
    root = hf_cache_dir() / ("models--" + base.replace("/", "--")) / "snapshots"
    configs = sorted(root.glob("*/config.json"), key=lambda p: p.stat().st_mtime) if root.is_dir() else []
    return configs[-1] if configs else None


def budget_for(recipe: Any) -> dict[str, float] | None:
    """The memory and disk budget of a recipe, when its base's config.json can be read (None otherwise): from the
    config alone, so a config-only folder plans as the full checkpoint will."""
    config = config_for(resolve_base(recipe.raw) or recipe.base)
    if config is None:
        return None
    try:
        budget = memory_budget(json.loads(config.read_text(encoding="utf-8")), recipe)
    except (KeyError, TypeError, ValueError, json.JSONDecodeError):
        return None
    existing = next((p for p in (recipe.output, *recipe.output.parents) if p.exists()), Path("/"))
    return budget | {"disk_free": shutil.disk_usage(existing).free / 1e9}


def memory_budget(config: dict[str, Any], recipe: Any) -> dict[str, float]:
    """GB for training and merging a round's base, from its config and the recipe (bf16 weights; LoRA weights,
    gradients and AdamW state in float32; activations at the recipe's batch and length). Checked against peak
    memory measured on an H200 with GPT-OSS-20B's shape (benchmarks/gpu/r6_checks.sh; within 2 %)."""
    c = config.get("text_config") or config
    h, layers = int(c["hidden_size"]), int(c["num_hidden_layers"])
    heads = int(c["num_attention_heads"])
    kv = int(c.get("num_key_value_heads") or heads)
    hd = int(c.get("head_dim") or h // heads)
    t = recipe.train
    inter = int(c.get("moe_intermediate_size") or c["intermediate_size"])
    shapes = {"q_proj": (h, heads * hd), "k_proj": (h, kv * hd), "v_proj": (h, kv * hd), "o_proj": (heads * hd, h),
              "gate_proj": (h, inter), "up_proj": (h, inter), "down_proj": (inter, h)}
    targets = t.targets or ["q_proj", "k_proj", "v_proj", "o_proj"]
    lora = layers * sum(t.lora_r * sum(shapes.get(m, (h, h))) for m in targets)
    experts = int(c.get("num_local_experts") or c.get("num_experts") or 0)
    if t.expert_lora != "none" and experts:  # peft's ParamWrapper: A (r*E, in) and B (out, r*E) per fused tensor
        # "profile": only layers with picked experts are wrapped (at most the monitored ones), all E experts each
        wrapped = layers if t.expert_lora == "all" else _monitored(recipe, layers)
        lora += wrapped * experts * t.lora_r * ((h + 2 * inter) + (inter + h))
    weights = 2 * parameter_count(config)
    # DPO trains on each example's chosen and rejected replies side by side: twice the sequences per step (its
    # reference pass runs without gradients and keeps no activations; not yet measured on a GPU)
    tokens = t.batch_size * t.max_length * (2 if getattr(recipe, "baker", "") == "dpo" else 1)
    # per layer and token (bf16): ~34 h of saved activations plus the attention scores; with checkpointing only
    # each layer's input is kept, and one layer's full set is rebuilt at a time
    per_layer = tokens * (34 * h + 5 * heads * t.max_length)
    activations = 2 * tokens * h * layers + per_layer if t.gradient_checkpointing else layers * per_layer
    # the logits in bf16, their float32 copy for the loss, its float32 gradient and the bf16 one (GPT-OSS's 201k
    # vocabulary makes this the largest term under checkpointing): 12 bytes per token and vocabulary entry
    logits = 12 * tokens * int(c["vocab_size"])
    gb = 1e9
    return {"weights": weights / gb, "lora_optimizer": 16 * lora / gb, "activations": (activations + logits) / gb,
            "train_total": (weights + 16 * lora + activations + logits) / gb,
            "merges_disk": candidate_count(recipe) * weights / gb, "parameters": parameter_count(config) / 1e9}


VLLM_DEFAULT_SHARE = 0.9  # vLLM reserves this share of the card when gpu_memory_utilization is not set


def serving_fits(card_gb: float, engine: str, share: float | None, judge_gb: float, weights_gb: float) -> str | None:
    """Why a round cannot serve its candidates next to a judge model on one card of `card_gb` (None when it can).
    vLLM reserves `share` of the whole card up front (weights + KV cache), so a judge on the same card needs the
    rest; the transformers engine takes what the weights and its cache need, at least the weights."""
    if engine == "inprocess":
        return None
    if engine in ("auto", "vllm"):
        share = VLLM_DEFAULT_SHARE if share is None else share
        engine_gb = share * card_gb
        if weights_gb >= engine_gb:
            return (f"[engine] gpu_memory_utilization = {share:g} gives the served model {engine_gb:.0f} GB of the "
                    f"{card_gb:.0f} GB card, less than its {weights_gb:.0f} GB of weights: raise it, or serve with "
                    "tensor_parallel_size > 1")
        if judge_gb and engine_gb + judge_gb > card_gb:
            fit = (card_gb - judge_gb) / card_gb
            return (f"the judge needs {judge_gb:g} GB ([preconditions] judge_gpu_memory_gb) on a {card_gb:.0f} GB card "
                    f"whose engine reserves {engine_gb:.0f} GB (gpu_memory_utilization {share:g}): set "
                    f"[engine] gpu_memory_utilization <= {fit:.2f} (it must stay above {weights_gb / card_gb:.2f} "
                    "for the weights), or put the judge on another GPU")
        return None
    if weights_gb + judge_gb > card_gb:
        return (f"the served model's {weights_gb:.0f} GB of weights and the judge's {judge_gb:g} GB do not fit a "
                f"{card_gb:.0f} GB card: put the judge on another GPU")
    return None


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


def capability_data_problem(data: str, timeout: float = 5.0) -> str | None:
    """Why the capability suite's data would not load at scoring time, hours after the bake (None: it will): a hub
    set must be in the local Hugging Face cache at its pinned revision, or the hub must answer for it."""
    from ..tasks.aime import HUB_SETS

    hub = HUB_SETS.get(data)
    if hub is None:
        if data == "fixture" or Path(data).expanduser().is_file():
            return None
        return f"[score] capability_data = {data!r}: no such file (want a JSONL, fixture or {', '.join(HUB_SETS)})"
    revision = os.environ.get(hub.revision_env) or hub.revision
    snapshot = hf_cache_dir() / ("datasets--" + hub.path.replace("/", "--")) / "snapshots" / revision
    if snapshot.is_dir() and any(snapshot.iterdir()):
        return None
    how = (f"download it first (huggingface-cli download --repo-type dataset {hub.path} --revision {revision}) "
           "or set [score] capability_data to a local JSONL")
    if os.environ.get("HF_HUB_OFFLINE") or os.environ.get("HF_DATASETS_OFFLINE"):
        return f"AIME data {hub.path}@{revision[:12]} is not in {hf_cache_dir()} and the hub is off (offline): {how}"
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    url = f"{endpoint}/api/datasets/{hub.path}/revision/{revision}"
    try:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout).close()
    except (urllib.error.URLError, OSError) as e:
        reason = f"HTTP {e.code}" if isinstance(e, urllib.error.HTTPError) else getattr(e, "reason", None) or e
        return f"AIME data {hub.path}@{revision[:12]} is not in {hf_cache_dir()} and {endpoint} did not serve it " \
               f"({reason}): {how}"
    return None


def check(recipe_path: str | Path, judge: str | None = None) -> list[str]:
    """Every unmet precondition as one line saying what is missing and how to provide it."""
    path = Path(recipe_path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as e:
        return [f"{path}: cannot read the recipe ({e})"]
    problems = []
    pre = raw.get("preconditions") or {}
    from ..bakers.recipe import load_recipe
    from ..harness.errors import UserError

    try:
        budget = budget_for(load_recipe(path))
    except UserError:
        budget = None
    if pre.get("gpu", False):
        found = gpus()
        need = budget["train_total"] if budget else float(pre.get("gpu_memory_gb", 0))
        if not found:
            problems.append(f"no CUDA GPU visible (nvidia-smi): round {raw.get('round')} needs one with "
                            f"~{need:.1f} GB free; run it on a GPU machine")
        elif need and max(free for _, _, free in found) < need * 1e9 / 2**30:  # nvidia-smi's GiB vs the plan's GB
            best = max(found, key=lambda g: g[2])
            problems.append(f"GPU {best[0]} has {best[2]:.1f} GiB free, training needs ~{need:.0f} GB "
                            f"({'computed from the base config' if budget else 'the recipe estimate'}): free the "
                            "GPU or lower [train] batch_size / max_length")
        if found and budget:  # the served candidate and a judge model on the same card, before any GPU work
            recipe = load_recipe(path)
            problem = serving_fits(max(total for _, total, _ in found) * 2**30 / 1e9, recipe.engine.name,
                                   recipe.engine.gpu_memory_utilization, float(pre.get("judge_gpu_memory_gb", 0)),
                                   budget["weights"])
            if problem:
                problems.append(problem)
        if found:  # no silent CPU: a torch that cannot use the visible GPU (checked again after the GPU install)
            from ..serving.engine import cuda_problem

            problem = cuda_problem()
            if problem:
                problems.append(problem)
    if budget:
        if budget["disk_free"] < budget["merges_disk"]:
            problems.append(f"the output folder's disk has {budget['disk_free']:.0f} GB free, the merged candidates "
                            f"need ~{budget['merges_disk']:.0f} GB: free disk or use fewer [merge] scales")
    score = raw.get("score") or {}
    if score.get("capability"):
        problem = capability_data_problem(str(score.get("capability_data", "aime24")))
        if problem:
            problems.append(problem)
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


def candidate_count(recipe: Any) -> int:
    """How many candidates a bake writes: one per merge scale (steer: coefficient; router: strength), and with
    [router] combine a steered twin per strength too."""
    router = getattr(recipe, "router", None)
    if getattr(recipe, "baker", "") == "router" and router is not None:
        return len(router.strengths)
    return len(recipe.scales) * (1 + (len(router.strengths) if router is not None and router.combine else 0))


def _monitored(recipe: Any, layers: int) -> int:
    """How many layers the profile monitors (the rule of bakers/architectures.monitored_layers, or the list)."""
    profile = getattr(recipe, "profile", None)
    if profile is None:
        return layers
    if profile.layers:
        return len(profile.layers)
    return len(range(profile.skip_first, layers, profile.every))
