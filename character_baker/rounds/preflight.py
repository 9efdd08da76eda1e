"""Preconditions of a round, checked in seconds before any long work or multi-GB install.

Standard library only, so `tox -e r6` can run it before installing the GPU stack:
    python character_baker/rounds/preflight.py rounds/r6.toml
Checks: a CUDA GPU and its free memory against the recipe's estimate, the GPUs `[engine] device_groups` and
`judge_devices` name, the base weights (local path or the Hugging Face cache; nothing is downloaded), that the
output folder can be written, and the LLM judge endpoint when one is configured.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
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


def layer_parameter_count(config: dict[str, Any]) -> int:
    """Parameters of one decoder layer (attention, MLP or all its experts with the router, norms): the unit FSDP and
    ZeRO-3 gather whole on every rank, and the bulk of the model."""
    c = config.get("text_config") or config
    h = int(c["hidden_size"])
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
    return attn + mlp + norms


def parameter_count(config: dict[str, Any]) -> int:
    """Parameters of the language model a config.json describes (dense or mixture-of-experts; a vision tower is not
    counted), from its shapes alone: the plan must not need torch."""
    c = config.get("text_config") or config
    h, layers, vocab = int(c["hidden_size"]), int(c["num_hidden_layers"]), int(c["vocab_size"])
    embeddings = vocab * h * (1 if c.get("tie_word_embeddings", config.get("tie_word_embeddings")) else 2)
    return layers * layer_parameter_count(config) + embeddings + h


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


# Config-only copies of hub configs, for planning a round whose weights are not on this machine (GPT-OSS-120B's
# 65 GB are not downloaded to print a plan): `<org>--<name>.json`, named as the Hugging Face cache names the repo.
PLANNING_CONFIGS = Path(__file__).resolve().parent / "configs"


def shipped_config(base: str) -> Path | None:
    """The config-only copy shipped for planning the hub id `base` (None: none shipped)."""
    if not base or "/" not in base or Path(os.path.expanduser(base)).exists():
        return None
    path = PLANNING_CONFIGS / (base.replace("/", "--") + ".json")
    return path if path.is_file() else None


def planning_config(recipe: Any) -> Path | None:
    """The config a recipe is planned from: its base's own (a local folder, or the Hugging Face cache, weights or
    not), else the copy shipped for its `[model] base` hub id (`$BASE_ENV` may point at weights not here yet)."""
    found = config_for(resolve_base(recipe.raw) or recipe.base)
    if found is not None:
        return found
    return shipped_config(str((recipe.raw.get("model") or {}).get("base", "")) or recipe.base)


def budget_for(recipe: Any) -> dict[str, float] | None:
    """The memory and disk budget of a recipe, when its base's config.json can be read (None otherwise): from the
    config alone, so a config-only folder (or a shipped planning config) plans as the full checkpoint will."""
    config = planning_config(recipe)
    if config is None:
        return None
    try:
        cfg = json.loads(config.read_text(encoding="utf-8"))
        budget = memory_budget(cfg, recipe)
        distributed = getattr(recipe, "distributed", None)
        if distributed is not None and distributed.processes > 1:  # what each rank holds, not one device's all
            budget["rank_total"] = rank_memory(cfg, recipe)["total"]
    except (KeyError, TypeError, ValueError, json.JSONDecodeError):
        return None
    existing = next((p for p in (recipe.output, *recipe.output.parents) if p.exists()), Path("/"))
    return budget | {"disk_free": shutil.disk_usage(existing).free / 1e9}


BF16_BYTES = 2  # bytes per bf16 value: base weights (MXFP4 experts dequantised), activations, merged safetensors
# bytes per trainable (LoRA) parameter: its float32 weight (4) and gradient (4), and AdamW's two float32 moments (8)
LORA_STATE_BYTES = 16


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
    weights = BF16_BYTES * parameter_count(config)
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
    return {"weights": weights / gb, "lora_optimizer": LORA_STATE_BYTES * lora / gb,
            "activations": (activations + logits) / gb, "logits": logits / gb,
            "train_total": (weights + LORA_STATE_BYTES * lora + activations + logits) / gb,
            "merges_disk": candidate_count(recipe) * weights / gb, "parameters": parameter_count(config) / 1e9}


VLLM_DEFAULT_SHARE = 0.9  # vLLM reserves this share of the card when gpu_memory_utilization is not set
SHARDED = ("fsdp", "zero3")  # strategies that shard weights, gradients and optimizer state over the ranks


def rank_memory(config: dict[str, Any], recipe: Any) -> dict[str, float]:
    """GB one rank of `[distributed]` holds at its peak, from the single-device budget: ddp keeps a full copy of
    everything on every rank; fsdp and zero3 keep 1/N of the bf16 weights and of the LoRA weights, gradients and
    AdamW state, and gather one whole unit at a time (a decoder layer, MoE experts included, or the embedding if
    larger: the largest is counted, as prefetching the next unit is not). Activations and logits are not sharded:
    each rank runs `[train] batch_size` sequences. The base is trained in bf16, its MXFP4 experts dequantised (as
    r6): a figure of torch's allocated peak, as the H200 calibration of `memory_budget` measured."""
    single = memory_budget(config, recipe)
    d = recipe.distributed
    shards = d.processes if d.strategy in SHARDED else 1
    c = config.get("text_config") or config
    unit = max(layer_parameter_count(config), int(c["vocab_size"]) * int(c["hidden_size"])) \
        if d.strategy in SHARDED else 0
    out = {"ranks": float(d.processes), "shards": float(shards), "card": d.gpu_memory_gb,
           "weights": single["weights"] / shards, "lora_optimizer": single["lora_optimizer"] / shards,
           "activations": single["activations"] - single["logits"], "logits": single["logits"],
           "gathered": BF16_BYTES * unit / 1e9, "gathered_parameters": unit / 1e9,
           "full_weights": single["weights"], "merges_disk": single["merges_disk"], "parameters": single["parameters"]}
    out["total"] = out["weights"] + out["lora_optimizer"] + out["activations"] + out["logits"] + out["gathered"]
    return out


def kv_bytes_per_token(config: dict[str, Any]) -> int:
    """A token's bf16 KV cache: K and V, in every layer, for every KV head. Sliding-window layers (GPT-OSS: every
    other one, 128 tokens) are counted at full length: an upper bound."""
    c = config.get("text_config") or config
    heads = int(c["num_attention_heads"])
    kv = int(c.get("num_key_value_heads") or heads)
    hd = int(c.get("head_dim") or int(c["hidden_size"]) // heads)
    return 2 * int(c["num_hidden_layers"]) * kv * hd * BF16_BYTES


def serving_layout(config: dict[str, Any], recipe: Any) -> dict[str, float]:
    """vLLM's layout for scoring a merged bf16 candidate on one node of `[distributed]`: the smallest tensor-parallel
    size (a power of two dividing the attention and KV heads, at most the node's GPUs) whose per-GPU share of the
    weights and of a KV cache for `max_model_len` x `max_concurrency` tokens fits in gpu_memory_utilization x the
    card; `tp` 0 when none does. Candidates scored at once: the node's GPUs // tp, one engine each."""
    c = config.get("text_config") or config
    e, d = recipe.engine, recipe.distributed
    heads = int(c["num_attention_heads"])
    kv_heads = int(c.get("num_key_value_heads") or heads)
    gpus = d.processes // d.nodes
    share = VLLM_DEFAULT_SHARE if e.gpu_memory_utilization is None else e.gpu_memory_utilization
    length = e.max_model_len or int(c.get("max_position_embeddings") or 0)
    weights = BF16_BYTES * parameter_count(config) / 1e9
    cache = length * e.max_concurrency * kv_bytes_per_token(config) / 1e9
    budget = share * d.gpu_memory_gb
    sizes = [1 << i for i in range(gpus.bit_length()) if heads % (1 << i) == 0 and kv_heads % (1 << i) == 0]
    tp = next((t for t in sizes if (weights + cache) / t <= budget), 0)
    return {"tp": float(tp), "largest_tp": float(sizes[-1]), "gpus": float(gpus), "share": share,
            "budget": budget, "weights": weights, "kv_cache": cache, "tokens": float(length * e.max_concurrency),
            "kv_per_token": float(kv_bytes_per_token(config)), "length": float(length),
            "per_gpu": (weights + cache) / tp if tp else weights + cache, "at_once": float(gpus // tp if tp else 0)}


def scaling_problem(recipe: Any) -> str | None:
    """Why a multi-process recipe cannot run as planned (None: it can, it is single-process, or its base's config
    is unknown): a rank that needs more than its card, or no vLLM layout (or a smaller one than the recipe's) that
    serves a candidate. One line naming the recipe and the numbers."""
    d = recipe.distributed
    config_path = planning_config(recipe) if d.processes > 1 else None
    if config_path is None:
        return None
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
        rank, layout = rank_memory(config, recipe), serving_layout(config, recipe)
    except (KeyError, TypeError, ValueError, json.JSONDecodeError):
        return None
    if rank["total"] > d.gpu_memory_gb:
        shard = "more ranks" if d.strategy in SHARDED else 'strategy = "zero3" or "fsdp" (ddp copies every weight)'
        fixes = [shard, "larger cards"]
        if rank["total"] - rank["activations"] - rank["logits"] <= d.gpu_memory_gb:  # the batch alone tips it over
            fixes.append("a smaller [train] batch_size or max_length")
        gathered = f" + gathered layer {rank['gathered']:.1f}" if rank["gathered"] else ""
        return (f"{recipe.path}: [distributed] {d.processes} ranks x {d.gpu_memory_gb:g} GB: each rank needs "
                f"~{rank['total']:.1f} GB ({d.strategy}: weights {rank['weights']:.1f} + LoRA and AdamW "
                f"{rank['lora_optimizer']:.2f} + activations {rank['activations']:.1f} + logits {rank['logits']:.1f}"
                f"{gathered}): use {', '.join(fixes[:-1])} or {fixes[-1]}")
    e = recipe.engine
    if not layout["tp"]:
        return (f"{recipe.path}: [engine] no tensor-parallel size up to {layout['largest_tp']:.0f} fits a merged "
                f"candidate: {layout['weights']:.1f} GB of bf16 weights + {layout['kv_cache']:.1f} GB of KV cache "
                f"need more than {layout['largest_tp']:.0f} x {layout['budget']:.1f} GB "
                f"({layout['share']:g} x {d.gpu_memory_gb:g} GB): lower max_model_len or max_concurrency")
    if e.tensor_parallel_size < layout["tp"]:
        return (f"{recipe.path}: [engine] tensor_parallel_size = {e.tensor_parallel_size}: a GPU would hold "
                f"{(layout['weights'] + layout['kv_cache']) / e.tensor_parallel_size:.1f} GB of a "
                f"{layout['budget']:.1f} GB share ({layout['share']:g} x {d.gpu_memory_gb:g} GB); the smallest "
                f"that fits is {layout['tp']:.0f}")
    return None


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


def gpu_uuids() -> list[str]:
    """The UUIDs of the visible GPUs (GPU-...), from nvidia-smi; empty when there is none."""
    if not shutil.which("nvidia-smi"):
        return []
    try:
        query = ["nvidia-smi", "--query-gpu=uuid", "--format=csv,noheader"]
        out = subprocess.run(query, capture_output=True, text=True, timeout=20, check=True).stdout
    except (subprocess.SubprocessError, OSError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def device_problems(engine: Any) -> list[str]:
    """The GPUs that `[engine] device_groups` and `judge_devices` name and this machine does not have, one line per
    group: a server pinned to a missing GPU sees none and fails (or runs on the CPU) hours into the round. GPUs are
    numbered as nvidia-smi numbers them (the servers get CUDA_DEVICE_ORDER=PCI_BUS_ID); "cpu" groups need none."""
    from ..serving.engine import device_list

    named = [(f"device_groups: group {g!r}", g) for g in engine.device_groups]
    if engine.judge_devices:
        named.append((f"judge_devices = {engine.judge_devices!r}", engine.judge_devices))
    wanted = [(what, device_list(group, what)) for what, group in named]
    if not any(ids for _, ids in wanted):
        return []  # no group names a GPU: nvidia-smi is not asked
    found = gpus()
    shown = (f"nvidia-smi shows GPU {', '.join(str(i) for i in range(len(found)))}" if found
             else "nvidia-smi shows no GPU")
    fix = 'name GPUs it shows, or "cpu"' if found else 'run the round on a machine with them, or use "cpu" groups'
    uuids: list[str] | None = None
    problems = []
    for what, ids in wanted:
        missing = []
        for gpu in ids:
            if gpu.isdigit():
                present = int(gpu) < len(found)
            elif gpu.startswith("GPU-"):  # CUDA takes a unique prefix of the UUID
                uuids = gpu_uuids() if uuids is None else uuids
                present = any(u.startswith(gpu) for u in uuids)
            else:  # MIG-...: listed by `nvidia-smi -L` only; a machine without a GPU has none
                present = bool(found)
            if not present:
                missing.append(gpu)
        if missing:
            problems.append(f"[engine] {what} names GPU {', '.join(missing)}, which this machine does not have "
                            f"({shown}): {fix}")
    return problems


def judge_endpoint(spec: str | None) -> tuple[bool, str] | None:
    """For `openai-api/NAME/MODEL` judges: NAME_BASE_URL must be set and answer GET /models."""
    if not spec:
        return None
    from ..harness.errors import UserError
    from ..judges.verdict import parse_judge_spec

    try:
        judges = parse_judge_spec(spec)
    except UserError as e:
        return False, str(e)
    for judge in judges:
        model = judge.model
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
    from ..bakers.recipe import load_recipe
    from ..harness.data import read_toml, unwritable
    from ..harness.errors import UserError

    try:
        raw = read_toml(path, "recipe")
    except UserError as e:
        return [str(e)]
    problems = []
    pre = raw.get("preconditions") or {}

    try:
        recipe = load_recipe(path)
    except UserError:
        recipe = None
    budget = budget_for(recipe) if recipe is not None else None
    ranks = recipe.distributed.processes // recipe.distributed.nodes if recipe is not None else 1
    scaling = scaling_problem(recipe) if recipe is not None else None
    if scaling:
        problems.append(scaling)
    if pre.get("gpu", False):
        found = gpus()
        need = (budget.get("rank_total", budget["train_total"]) if budget
                else float(pre.get("gpu_memory_gb", 0)))
        if not found:
            problems.append(f"no CUDA GPU visible (nvidia-smi): round {raw.get('round')} needs "
                            + (f"{ranks} GPUs with ~{need:.1f} GB free each" if ranks > 1 else
                               f"one with ~{need:.1f} GB free") + "; run it on a GPU machine")
        elif ranks > 1:  # one rank per GPU: [distributed] processes / nodes of them on this machine
            enough = [g for g in found if g[2] >= need * 1e9 / 2**30]
            if len(enough) < ranks:
                problems.append(f"round {raw.get('round')} runs {ranks} ranks on this machine, one per GPU, each "
                                f"needing ~{need:.0f} GB: {len(enough)} of the {len(found)} visible GPUs have that "
                                f"free: free them, or run on a machine with {ranks} such GPUs")
        elif need and max(free for _, _, free in found) < need * 1e9 / 2**30:  # nvidia-smi's GiB vs the plan's GB
            best = max(found, key=lambda g: g[2])
            problems.append(f"GPU {best[0]} has {best[2]:.1f} GiB free, training needs ~{need:.0f} GB "
                            f"({'computed from the base config' if budget else 'the recipe estimate'}): free the "
                            "GPU or lower [train] batch_size / max_length")
        if found and budget and recipe is not None:  # the served candidate and a judge on one card, before GPU work
            problem = serving_fits(max(total for _, total, _ in found) * 2**30 / 1e9, recipe.engine.name,
                                   recipe.engine.gpu_memory_utilization, float(pre.get("judge_gpu_memory_gb", 0)),
                                   budget["weights"] / recipe.engine.tensor_parallel_size)
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
    if recipe is not None:
        problems += device_problems(recipe.engine)
        unwritable_output = unwritable(recipe.output)
        if unwritable_output:
            problems.append(f"output folder {recipe.output}: {unwritable_output}; set the recipe's output to a folder "
                            "this user can write")
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



def candidate_count(recipe: Any) -> int:
    """How many candidates a bake writes: one per merge scale (steer: coefficient; router: strength), and with
    [router] combine a steered twin per strength too."""
    from ..bakers.plain.settings import RouterSettings

    router = RouterSettings.of(recipe)
    if recipe.baker == "router":
        return len(router.strengths)
    return len(recipe.scales) * (1 + (len(router.strengths) if router.combine else 0))


def _monitored(recipe: Any, layers: int) -> int:
    """How many layers the profile monitors (the rule of bakers/architectures.monitored_layers, or the list)."""
    profile = getattr(recipe, "profile", None)
    if profile is None:
        return layers
    if profile.layers:
        return len(profile.layers)
    return len(range(profile.skip_first, layers, profile.every))


if __name__ == "__main__":
    sys.exit(main())
