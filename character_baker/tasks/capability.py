"""The capability (reasoning-preservation) suite through lm-eval: AIME-style problems, answers in \\boxed{}.

Does the baked-in character cost reasoning? The same problems under the same conditions as the persona suite:
`none` (no system prompt) and `character` (the character's system prompt), with the chat template applied.

    from character_baker.tasks.capability import run_capability
    out = run_capability("models/skippy-v3", out_dir="runs/cap", data="aime25", k=4, temperature=0.6)
    out["rows"][0]["value"], out["rows"][0]["pass_at_k"], out["per_problem"]["aime25"]["0"]

Backends: `hf` (a local model dir, a LoRA adapter dir via lm-eval's `peft=`), `vllm` (picked by `auto` when vLLM
and a GPU are present; adapters through `lora_local_path`), `local-chat-completions` (any OpenAI-compatible
endpoint; `base_url` ending in /v1). Extra lm-eval tasks (`extra_tasks=["gsm8k"]`) run in the same call and come
back as rows with their main metric; they need their data (the hub, or the datasets cache).

What lm-eval 0.4.13 does not give, and what is done about it:
- Its response cache keys on the prompt and generation settings, not the model: every candidate gets its own
  cache file (`<cache_dir>/<candidate>-<fingerprint>_rank0.db`). Sampled requests are never cached.
- It returns text only. Whether a reply ran into the token budget is recorded here: exactly for `hf` (generated
  tokens counted) and for `local-chat-completions` (`finish_reason == "length"`), when the reply was generated in
  this run; for `vllm` and for replies served from the cache, estimated by re-tokenising the reply with the model's
  tokenizer (>= budget - max(2, 1 %) tokens; re-encoding can differ from what was generated, so this may miss some)
  and not detected at all for an endpoint's cached replies. A reply that hit the budget without a \\boxed{} answer
  counts as truncated and wrong; so does a GPT-OSS reply cut off before its final channel (always detected).
- GPT-OSS: the `hf` backend here keeps special tokens for harmony models so the final channel can be found
  (stock lm-eval decodes them away); `vllm` keeps them already. Through an endpoint, the server splits channels
  (`content` is the final channel); an empty `content` counts as cut off.
- Reasoning effort: for `hf`/`vllm` it goes into the chat template (lm-eval's `chat_template_args`); for an
  endpoint it is sent as the request's `reasoning_effort` field (vLLM's server applies it to GPT-OSS).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..harness.candidates import fingerprint, slug
from ..harness.data import default_cache_dir
from ..harness.errors import UserError
from ..harness.loading import REASONING_EFFORTS
from ..harness.secrets import redact_logging, register_secret
from ..harness.stats import estimate

BACKENDS = ("auto", "hf", "vllm", "local-chat-completions")
CONDITIONS = ("none", "character")
TASK = "capability"


def gpt_oss_settings(backend: str, reasoning_effort: str | None = None,
                     max_tokens: int | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(extra model args, extra generation kwargs) that set GPT-OSS's reasoning effort and token budget.

    hf / vllm: the effort is a chat-template variable (`chat_template_args={"reasoning_effort": ...}`), rendered
    into the system message by GPT-OSS's template (other templates ignore it). An endpoint renders its own
    template: the effort travels as the request field `reasoning_effort` instead.
    """
    model_args: dict[str, Any] = {}
    gen: dict[str, Any] = {}
    if reasoning_effort is not None:
        if reasoning_effort not in REASONING_EFFORTS:
            raise UserError(f"reasoning effort '{reasoning_effort}' is not one of {', '.join(REASONING_EFFORTS)}")
        if backend == "local-chat-completions":
            gen["reasoning_effort"] = reasoning_effort
        else:
            model_args["chat_template_args"] = {"reasoning_effort": reasoning_effort}
    if max_tokens is not None:
        if max_tokens < 1:
            raise UserError(f"max tokens must be positive, got {max_tokens}")
        gen["max_gen_toks"] = int(max_tokens)
    return model_args, gen


def run_capability(
    model: str | Path | None = None,
    *,
    out_dir: str | Path,
    backend: str = "auto",
    adapter: str | Path | None = None,
    base_url: str | None = None,
    api_key: str | None = None,
    data: str | Path = "fixture",
    revision: str | None = None,
    k: int = 1,
    system_prompt: str | None = None,
    extra_tasks: Sequence[str | Path | dict[str, Any]] = (),
    max_tokens: int = 32768,
    temperature: float = 0.0,
    top_p: float | None = None,
    reasoning_effort: str | None = None,
    batch_size: int | str | None = None,
    device: str | None = None,
    dtype: str = "auto",
    limit: int | None = None,
    candidate_id: str | None = None,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    num_concurrent: int = 8,
    seed: int = 1234,
    model_args: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run the capability suite and return scorecard-shaped rows, per-problem values and where the samples are.

    model: a local model dir (hf, vllm) or the served model's name (local-chat-completions).
    data: "fixture" (our 12 easy problems), "aime24" / "aime25" (hub, pinned; `revision` overrides the pin),
        or a path to a JSONL of {"id", "problem", "answer"}.
    k: samples per problem (`repeats`); with k > 1 use temperature > 0, or the k samples are identical.
    system_prompt: None runs condition "none"; a prompt runs condition "character".
    extra_tasks: more lm-eval tasks, by name (built-in: gsm8k, ...), YAML path or config dict; each gives a row
        with its main metric (first metric, first filter).
    max_tokens: the generation budget per reply. model_args: extra lm-eval model arguments (e.g. max_length).

    Returns {"rows": [...], "per_problem": {metric: {problem id: [0/1 per sample]}}, "samples_path",
    "results_path", "condition", "k", "backend", "candidate", "dataset", "lm_eval": lm-eval's own aggregates}.
    Each row: task "capability", metric ("aime", "aime24", "aime25" or the lm-eval task), condition, judge None,
    value (accuracy over problems x k), n, successes, errors, ci_low, ci_high, interval ("wilson" at k = 1,
    else "bootstrap-prompts"), prompts, k, pass_at_k, truncated.
    """
    if k < 1:
        raise UserError(f"k must be at least 1, got {k}")
    backend = _pick_backend(backend, base_url)
    condition = "character" if system_prompt else "none"
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metric, task_cfg, dataset = aime_task_config(data, k=k, revision=revision)
    gen = dict(task_cfg["generation_kwargs"])
    extra_model_args, extra_gen = gpt_oss_settings(backend, reasoning_effort, max_tokens)
    gen.update(extra_gen)
    if temperature and temperature > 0:
        gen.update(do_sample=True, temperature=float(temperature))
        if top_p is not None:
            gen["top_p"] = float(top_p)
    task_cfg["generation_kwargs"] = gen
    budget = int(gen["max_gen_toks"])

    register_secret(api_key)  # lm-eval logs an endpoint's error body, and a careless one echoes the key
    redact_logging()
    lm, label = _build_lm(backend, model, adapter=adapter, base_url=base_url, api_key=api_key, device=device,
                          dtype=dtype, batch_size=batch_size, num_concurrent=num_concurrent, seed=seed,
                          max_tokens=budget, extra=extra_model_args | (model_args or {}))
    candidate = _candidate_prefix(candidate_id or label, backend, model, adapter, base_url)
    cache_root = Path(cache_dir) if cache_dir else default_cache_dir() / "lm-eval"
    cache = str(cache_root / candidate) if use_cache else None

    import lm_eval
    from lm_eval.tasks import TaskManager

    # indexing lm-eval's ~14k built-in task files takes ~10 s: only when a built-in task is named
    extra_tasks = [str(t) if isinstance(t, Path) else t for t in extra_tasks]
    builtin = any(isinstance(t, str) and not Path(t).is_file() for t in extra_tasks)
    manager = TaskManager(include_defaults=builtin)
    started = time.perf_counter()
    results = lm_eval.simple_evaluate(
        model=lm, tasks=[task_cfg, *extra_tasks], task_manager=manager, apply_chat_template=True,
        system_instruction=system_prompt, use_cache=cache, log_samples=True, limit=limit, bootstrap_iters=0,
        random_seed=seed, numpy_random_seed=seed, torch_random_seed=seed, fewshot_random_seed=seed)
    elapsed = time.perf_counter() - started
    if results is None:  # not rank 0
        return {}

    records, per_problem_aime, truncated, pass_at_k = _score_aime(
        results["samples"][task_cfg["task"]], lm, budget, endpoint=backend == "local-chat-completions")
    rows = [_row(metric, condition, per_problem_aime, k=k, pass_at_k=pass_at_k, truncated=truncated)]
    per_problem = {metric: per_problem_aime}
    extra_metrics: dict[str, str] = {}  # lm-eval task -> the "metric,filter" its row reports
    for spec in extra_tasks:
        for task_name, main, values in _extra_task_values(results, _task_name(spec)):
            per_problem[task_name] = values
            proportion = all(v in (0.0, 1.0) for vs in values.values() for v in vs)
            rows.append(_row(task_name, condition, values, k=max((len(v) for v in values.values()), default=1),
                             pass_at_k=None, truncated=None, proportion=proportion))
            extra_metrics[task_name] = main
            records += [{"task": task_name, **r} for r in _extra_records(results["samples"][task_name], main)]

    stem = f"capability-{condition}"
    samples_path = out / f"{stem}.samples.jsonl"
    with samples_path.open("w", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False, default=str) + "\n")
    results_path = out / f"{stem}.results.json"
    summary = {key: v for key, v in results.items() if key != "samples"}
    summary["character_baker"] = {"rows": rows, "candidate": candidate, "dataset": dataset, "seconds": elapsed}
    results_path.write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    return {
        "rows": rows,
        "per_problem": per_problem,
        "samples_path": str(samples_path),
        "results_path": str(results_path),
        "condition": condition,
        "k": k,
        "backend": backend,
        "candidate": candidate,
        "dataset": dataset,
        "seconds": elapsed,
        "extra_metrics": extra_metrics,
        "lm_eval": {name: results["results"].get(name) for name in results["results"]},
    }


# --- the task -------------------------------------------------------------------------------------------------


def aime_task_config(data: str | Path = "fixture", *, k: int = 1,
                     revision: str | None = None) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(metric name, lm-eval task config dict, dataset description) for our AIME task over `data`.

    Built from `tasks/aime/aime.yaml` with the data path made absolute (lm-eval resolves relative paths against
    the current directory) and `repeats` = k.
    """
    from lm_eval.tasks._yaml_loader import load_yaml

    from .aime import FIXTURE, HUB_SETS, TASK_YAML

    cfg = copy.deepcopy(load_yaml(TASK_YAML, resolve_func=True))
    cfg["repeats"] = int(k)
    name = str(data)
    if name in HUB_SETS:
        hub = HUB_SETS[name]
        rev = revision or os.environ.get(hub.revision_env) or hub.revision
        cfg.update(task=f"cb_{name}", dataset_path=hub.path, dataset_kwargs={"revision": rev}, test_split=hub.split)
        return name, cfg, {"source": "hub", "path": hub.path, "revision": rev, "split": hub.split}
    path = FIXTURE if name == "fixture" else Path(data).expanduser().resolve()
    if not path.is_file():
        raise UserError(f"{data}: no such problem file (want a JSONL of id, problem, answer; or fixture, "
                        f"{', '.join(HUB_SETS)})")
    cfg.update(task="cb_aime", dataset_path="json", dataset_kwargs={"data_files": {"test": str(path)}},
               test_split="test")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    return "aime", cfg, {"source": "fixture" if name == "fixture" else "jsonl", "path": str(path), "sha256": digest}


def write_task_yaml(out_dir: str | Path, data: str | Path = "fixture", *, k: int = 1,
                    revision: str | None = None) -> Path:
    """Write a standalone copy of the task (absolute data path or pinned hub set) for the `lm_eval` CLI:

        lm_eval --include_path OUT_DIR --tasks cb_aime --apply_chat_template --model hf --model_args pretrained=DIR
    """
    import yaml

    from .aime import TASK_DIR, TASK_YAML

    _, cfg, _ = aime_task_config(data, k=k, revision=revision)
    text = TASK_YAML.read_text(encoding="utf-8")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fields = {key: cfg[key] for key in ("task", "dataset_path", "dataset_kwargs", "test_split", "repeats")}
    for key, value in fields.items():  # replace each top-level key's block in the YAML text
        block = yaml.safe_dump({key: value}, default_flow_style=False, sort_keys=False)
        text = re.sub(rf"^{key}:.*?(?=^\S)", lambda _m, b=block: b, text, count=1, flags=re.DOTALL | re.MULTILINE)
    path = out / f"{cfg['task']}.yaml"
    path.write_text(text, encoding="utf-8")
    (out / "utils.py").write_text((TASK_DIR / "utils.py").read_text(encoding="utf-8"), encoding="utf-8")
    return path


# --- scoring --------------------------------------------------------------------------------------------------


def _score_aime(samples: list[dict[str, Any]], lm: Any, budget: int, *,
                endpoint: bool) -> tuple[list[dict[str, Any]], dict[str, list[float]], int, float | None]:
    """Per-sample records, {problem id: [0/1 per sample]}, truncated count, pass@k."""
    from .aime.scoring import verdict

    records: list[dict[str, Any]] = []
    per_problem: dict[str, list[float]] = {}
    truncated = 0
    for sample in sorted(samples, key=lambda s: s["doc_id"]):
        doc = sample["doc"]
        pid = str(doc["id"])
        responses = sample["resps"][0] if sample["resps"] and isinstance(sample["resps"][0], list) else []
        prompt = _prompt_of(sample)
        values = []
        for i, response in enumerate(responses):
            v = verdict(_endpoint_null(response) if endpoint else response, doc["answer"])
            n_tokens, hit, how = _budget_hit(lm, response, budget)
            budget_cut = bool(hit) and not v.boxed and not v.cut_off
            cut = v.cut_off or budget_cut
            correct = v.correct and not cut
            truncated += cut
            values.append(1.0 if correct else 0.0)
            records.append({"task": "aime", "problem": pid, "sample": i, "answer": doc["answer"],
                            "correct": correct, "extracted": v.answer, "boxed": v.boxed, "truncated": cut,
                            "cut_off": v.cut_off, "hit_budget": hit, "tokens": n_tokens, "budget_check": how,
                            "reason": "hit the token budget without a \\boxed{} answer" if budget_cut else v.reason,
                            "prompt": prompt, "response": response})
        per_problem[pid] = values
    pass_at_k = (sum(1.0 for vs in per_problem.values() if any(vs)) / len(per_problem)) if per_problem else None
    return records, per_problem, truncated, pass_at_k


def _prompt_of(sample: dict[str, Any]) -> Any:
    """The prompt as sent: templated text (hf, vllm) or the message list (an endpoint)."""
    prompt = sample["arguments"][0][0] if sample.get("arguments") else None
    if isinstance(prompt, (list, tuple)) and len(prompt) == 1:  # lm-eval's JsonChatStr, logged as a 1-tuple
        prompt = prompt[0]
    if isinstance(prompt, str) and prompt.startswith("[{"):
        try:
            return json.loads(prompt)
        except ValueError:
            pass
    return prompt


def _endpoint_null(response: Any) -> str | None:
    """None where an endpoint sent no content (lm-eval substitutes LMEVAL_MODEL_NONE_ANSWER_PLACEHOLDER, "" by
    default): a GPT-OSS server returns the final channel as content, so none means it never got there."""
    placeholder = os.environ.get("LMEVAL_MODEL_NONE_ANSWER_PLACEHOLDER", "")
    return None if response is None or response == placeholder else str(response)


def _budget_hit(lm: Any, response: str, budget: int) -> tuple[int | None, bool | None, str]:
    """(tokens, hit the budget, how we know): recorded at generation, else re-tokenised, else unknown."""
    recorded = getattr(lm, "generated", {}).get(response)
    if recorded is not None:
        return recorded[0], recorded[1], "recorded"
    tokenizer = getattr(lm, "tokenizer", None)
    if tokenizer is not None and hasattr(tokenizer, "encode") and response:
        n = len(tokenizer.encode(response, add_special_tokens=False))
        return n, n >= budget - max(2, budget // 100), "re-tokenised"
    return None, None, "unknown"


def _row(metric: str, condition: str, per_problem: dict[str, list[float]], *, k: int, pass_at_k: float | None,
         truncated: int | None, proportion: bool = True) -> dict[str, Any]:
    est = estimate(per_problem, proportion=proportion)
    return {"task": TASK, "metric": metric, "condition": condition, "judge": None, "value": est.value, "n": est.n,
            "successes": est.successes, "errors": 0, "ci_low": est.low, "ci_high": est.high,
            "interval": est.method, "prompts": len(per_problem), "k": k, "pass_at_k": pass_at_k,
            "truncated": truncated}


def _task_name(spec: str | dict[str, Any]) -> str:
    """The lm-eval name of an extra task given by name, YAML path or config dict."""
    if isinstance(spec, dict):
        return str(spec.get("task") or spec.get("group"))
    if Path(spec).is_file():
        from lm_eval.tasks._yaml_loader import load_yaml

        cfg = load_yaml(Path(spec), resolve_func=False) or {}
        return str(cfg.get("task") or cfg.get("group") or spec)
    return spec


def _extra_task_values(results: dict[str, Any], name: str) -> list[tuple[str, str, dict[str, list[float]]]]:
    """For an extra task (or every task of a group): (task, "metric,filter", {problem id: [values]})."""
    out = []
    for task_name, samples in results["samples"].items():
        if task_name != name and task_name not in results.get("group_subtasks", {}).get(name, []):
            continue
        cfg = results["configs"][task_name]
        metric = cfg["metric_list"][0]["metric"] if cfg.get("metric_list") else "acc"
        filters = cfg.get("filter_list") or [{"name": "none"}]
        filt = filters[0]["name"] if isinstance(filters[0], dict) else "none"
        values: dict[str, list[float]] = {}
        for s in samples:
            if s.get("filter", "none") != filt or metric not in s:
                continue
            values.setdefault(_problem_id(s), []).append(float(s[metric]))
        out.append((task_name, f"{metric},{filt}", values))
    return out


def _problem_id(sample: dict[str, Any]) -> str:
    doc = sample.get("doc")
    return str(doc.get("id", sample["doc_id"])) if isinstance(doc, dict) else str(sample["doc_id"])


def _extra_records(samples: list[dict[str, Any]], main: str) -> list[dict[str, Any]]:
    metric, _, filt = main.partition(",")
    return [{"problem": _problem_id(s), "value": s.get(metric), "target": s.get("target"),
             "response": s.get("resps"), "filtered": s.get("filtered_resps")}
            for s in samples if s.get("filter", "none") == filt]


# --- backends -------------------------------------------------------------------------------------------------


def _pick_backend(backend: str, base_url: str | None) -> str:
    if backend not in BACKENDS:
        raise UserError(f"backend '{backend}' is not one of {', '.join(BACKENDS)}")
    if backend != "auto":
        if backend == "local-chat-completions" and not base_url:
            raise UserError("the local-chat-completions backend needs base_url (e.g. http://127.0.0.1:8000/v1)")
        return backend
    if base_url:
        return "local-chat-completions"
    return "vllm" if vllm_available() else "hf"


def vllm_available() -> bool:
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        return False
    import torch

    return torch.cuda.is_available()


def _build_lm(backend: str, model: str | Path | None, *, adapter: str | Path | None, base_url: str | None,
              api_key: str | None, device: str | None, dtype: str, batch_size: int | str | None,
              num_concurrent: int, seed: int, max_tokens: int, extra: dict[str, Any]) -> tuple[Any, str]:
    """An lm-eval LM instance for the backend, and a human-readable label for the candidate."""
    if model is None:
        raise UserError("no model given (a model directory, or the served model's name for an endpoint)")
    if backend == "local-chat-completions":
        url = base_url.rstrip("/")
        url = url if url.endswith("/chat/completions") else f"{url}/chat/completions"
        args: dict[str, Any] = dict(base_url=url, model=str(model), num_concurrent=num_concurrent, max_retries=3,
                                    tokenizer_backend=None, tokenized_requests=False, max_gen_toks=max_tokens,
                                    seed=seed)
        if api_key:
            args["header"] = {"Authorization": f"Bearer {api_key}"}
        return _chat_class()(**(args | extra)), str(model)
    path = Path(model).expanduser()
    if not (path / "config.json").is_file():
        raise UserError(f"{model}: not a model directory (no config.json)")
    from ..harness.loading import pick_device

    load_kwargs = _architecture_kwargs(path)
    if backend == "hf":
        args = dict(pretrained=str(path), device=pick_device(device), dtype=dtype, batch_size=batch_size or 8,
                    max_batch_size=64, **load_kwargs)
        if adapter:
            args["peft"] = str(Path(adapter).expanduser())
        lm = _hf_class()(**(args | extra))
        if not getattr(lm.tokenizer, "chat_template", None):
            raise UserError(f"{model}: the tokenizer has no chat template (the suite runs chat-formatted; "
                            "a base model without one cannot be scored like a chat model)")
        return lm, Path(adapter).name if adapter else path.name
    from lm_eval.api.registry import get_model

    args = dict(pretrained=str(path), dtype=dtype, batch_size=batch_size or "auto", seed=seed,
                max_gen_toks=max_tokens)
    if adapter:
        args["lora_local_path"] = str(Path(adapter).expanduser())
    return get_model("vllm")(**(args | extra)), Path(adapter).name if adapter else path.name


def _architecture_kwargs(path: Path) -> dict[str, Any]:
    """Loading rules `loading.load_model` applies too: GPT-OSS needs eager attention and dequantised MXFP4."""
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: cannot read config.json ({e})") from None
    if config.get("model_type") != "gpt_oss":
        return {}
    kwargs: dict[str, Any] = {"attn_implementation": "eager"}
    if (config.get("quantization_config") or {}).get("quant_method") == "mxfp4":
        from transformers import Mxfp4Config

        kwargs["quantization_config"] = Mxfp4Config(dequantize=True)
    return kwargs


class _RecordingHook:
    """Sits in front of lm-eval's cache hook, which sees every generated reply: notes its token count there."""

    def __init__(self, lm: Any, inner: Any) -> None:
        self.lm = lm
        self.inner = inner

    def add_partial(self, attr: str, req: Any, res: Any) -> None:
        if attr == "generate_until" and self.lm._pending is not None:
            self.lm.generated[res] = self.lm._pending
            self.lm._pending = None
        self.inner.add_partial(attr, req, res)


_CLASSES: dict[str, type] = {}


def _hf_class() -> type:
    """lm-eval's HF backend, keeping harmony markers and recording which replies ran into the token budget."""
    if "hf" in _CLASSES:
        return _CLASSES["hf"]
    from lm_eval.models.huggingface import HFLM

    class RecordingHFLM(HFLM):
        def __init__(self, *args: Any, quantization_config: Any = None, **kwargs: Any) -> None:
            # HFLM hands from_pretrained the checkpoint's own quantization_config itself; ours (dequantise MXFP4)
            # must replace it there, not travel beside it ("got multiple values for keyword argument")
            self._quantization_config = quantization_config
            super().__init__(*args, **kwargs)
            self.generated: dict[str, tuple[int, bool]] = {}
            self._pending: tuple[int, bool] | None = None
            self._max_new: int | None = None
            self._keep_special = "<|channel|>" in self.tokenizer.get_vocab()
            eos = self.model.generation_config.eos_token_id
            eos = eos if isinstance(eos, list) else [eos]
            self._stop_ids = {i for i in [*eos, self.tokenizer.eos_token_id] if i is not None}
            self.set_cache_hook(self.cache_hook)

        def _create_model(self, *args: Any, quantization_config: Any = None, **kwargs: Any) -> None:
            super()._create_model(*args, quantization_config=self._quantization_config or quantization_config,
                                  **kwargs)

        def set_cache_hook(self, cache_hook: Any) -> None:
            inner = cache_hook.inner if isinstance(cache_hook, _RecordingHook) else cache_hook
            self.cache_hook = _RecordingHook(self, inner)

        def generate_until(self, requests: Any, disable_tqdm: bool = False) -> list[str]:
            try:
                return super().generate_until(requests, disable_tqdm=disable_tqdm)
            finally:
                self._max_new = None  # tok_decode outside generation (other request types) stays stock

        def _model_generate(self, context: Any, max_length: int, stop: list[str], **kwargs: Any) -> Any:
            self._max_new = max_length - context.shape[1]
            return super()._model_generate(context, max_length, stop, **kwargs)

        def tok_decode(self, tokens: Any, skip_special_tokens: bool = True) -> str:
            if isinstance(tokens, list) and self._max_new is not None:  # a generated continuation
                pad = self.tokenizer.pad_token_id
                n = len(tokens)
                while n and tokens[n - 1] == pad:
                    n -= 1
                tokens = tokens[:n]
                stopped = bool(tokens) and tokens[-1] in self._stop_ids
                self._pending = (n, n >= self._max_new and not stopped)
                if self._keep_special:  # harmony: the channel markers are how the final answer is found
                    skip_special_tokens = False
            return super().tok_decode(tokens, skip_special_tokens=skip_special_tokens)

        def get_model_info(self) -> dict[str, Any]:  # the stock one asks the hub for a local dir's sha
            return {"model_num_parameters": sum(p.numel() for p in self.model.parameters()),
                    "model_dtype": str(self.model.dtype), "model_revision": None, "model_sha": None,
                    "peft": self.peft}

    _CLASSES["hf"] = RecordingHFLM
    return RecordingHFLM


def _chat_class() -> type:
    """lm-eval's local-chat-completions, recording which replies stopped for length (`finish_reason`)."""
    if "chat" in _CLASSES:
        return _CLASSES["chat"]
    from lm_eval.models.openai_completions import LocalChatCompletion

    class RecordingChatCompletion(LocalChatCompletion):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.generated: dict[str, tuple[int | None, bool]] = {}

        def parse_generations(self, outputs: Any, **kwargs: Any) -> list[str]:
            texts = super().parse_generations(outputs, **kwargs)
            choices = []
            for out in outputs if isinstance(outputs, list) else [outputs]:
                if isinstance(out, dict):
                    listed = sorted(out.get("choices") or [], key=lambda c: c.get("index", 0))
                    tokens = (out.get("usage") or {}).get("completion_tokens") if len(listed) == 1 else None
                    choices += [(c, tokens) for c in listed]
            if len(choices) == len(texts):
                for text, (choice, tokens) in zip(texts, choices):
                    if text is not None:
                        self.generated[text] = (tokens, choice.get("finish_reason") == "length")
            return texts

    _CLASSES["chat"] = RecordingChatCompletion
    return RecordingChatCompletion


# --- caching --------------------------------------------------------------------------------------------------


def _candidate_prefix(label: str, backend: str, model: str | Path | None, adapter: str | Path | None,
                      base_url: str | None) -> str:
    """A cache-file prefix unique to the candidate: its label plus a fingerprint of what defines it
    (backend, endpoint, model and adapter dirs: small files by content, weights by name, size and mtime)."""
    parts = [f"{backend}|{base_url}|{model}|{adapter}"] + [Path(str(p)).expanduser() for p in (model, adapter)
                                                           if p and Path(str(p)).expanduser().is_dir()]
    return f"{slug(label)}-{fingerprint(*parts, length=10)}"
