"""Scoring one candidate on the persona suite: build the tasks, run them with Inspect, write the scorecard.

Inspect's `eval_set` makes runs resumable: rerunning into the same log folder keeps finished tasks
and samples and runs only what is missing.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..harness.candidates import Candidate
from ..harness.character import DEFAULT_TASKS, QUICK_TASKS, TASKS, Character, load_character
from ..harness.errors import UserError
from ..harness.scorecard import (
    MetricRow,
    Scorecard,
    harness_info,
    judge_agreement,
    metric_rows,
    per_prompt,
    task_short_name,
)
from ..harness.secrets import redact_errors, redact_files
from ..judges.reply import build_judges
from ..judges.validity import card_for
from ..judges.verdict import Judge, rubric_version
from ..serving.engine import ENGINES, Endpoint, EngineConfig, choose_engine, serve
from .persona import task_keys

JUDGED_TASKS = {"personality", "assistant_leaks", "math_probes", "drift", "tools"}  # math: an LLM judge too


@dataclass
class ScoreOptions:
    character: str = "skippy"
    judge: str | None = None
    conditions: tuple[str, ...] = ("none",)
    tasks: tuple[str, ...] = DEFAULT_TASKS
    epochs: int = 1
    max_tokens: int = 512
    temperature: float | None = None
    seed: int = 0
    out: Path = Path("runs")
    max_samples: int | None = None
    display: str | None = None
    limit: int | None = None
    judge_cache: bool = True
    capability: str | None = None  # data for the capability suite (aime24, aime25, fixture, a JSONL path)
    capability_k: int = 1
    capability_max_tokens: int = 4096
    capability_tasks: tuple[str, ...] = ()  # extra lm-eval tasks
    reasoning_effort: str | None = None
    split: str = "eval"  # "dev" for checkpoint selection: never the prompts that are reported
    sample_retries: int = 2  # a failed model call is retried this often in the run; what still fails is an error
    max_retries: int = 5  # transport retries of one model call (Inspect's backoff) before the sample fails
    monitor: str | None = None  # a bake's profile folder: the activation monitor (tasks/monitor.py)
    monitor_layer: int | None = None
    # which engine generates a local model's replies (serving/engine.py): "auto" / "vllm" / "transformers" serve a
    # saved model for the whole run; "inprocess" keeps the harness's own batched generate (what a model in memory,
    # mid-training, or an adapter at a scale always gets)
    engine: str = "inprocess"
    engine_config: EngineConfig | None = None  # the knobs ([engine] of a recipe); engine names the engine
    devices: str | None = None  # the served engine's device group (one of [engine] device_groups); None: all visible

    @classmethod
    def from_recipe(cls, recipe: Any, out: Path, *, select: bool = False, **changes: Any) -> ScoreOptions:
        """How a recipe (`bakers/recipe.Recipe`) scores models: the one mapping from its tables to options.

        The eval scoring of a round or bake-off reads `[score]` and `[engine]`; `select=True` is the quick suite
        each checkpoint is scored with mid-training (`[select]`: the dev split, the embedded judge, the model in
        memory). `changes` replace single fields (a device group, a split)."""
        sc = recipe.score
        if select:
            opts = cls(character=recipe.character, judge="classifier", tasks=QUICK_TASKS, limit=recipe.select.limit,
                       split="dev", max_tokens=recipe.select.max_tokens, reasoning_effort=sc.reasoning_effort,
                       out=out, display="none")
        else:
            opts = cls(character=recipe.character, judge=sc.judge, conditions=tuple(sc.conditions),
                       tasks=tuple(sc.tasks), epochs=sc.epochs, max_tokens=sc.max_tokens, limit=sc.limit, out=out,
                       display="none", capability=sc.capability_data if sc.capability else None,
                       capability_k=sc.capability_k, capability_max_tokens=sc.capability_max_tokens,
                       capability_tasks=tuple(sc.capability_tasks), reasoning_effort=sc.reasoning_effort,
                       engine=recipe.engine.name, engine_config=recipe.engine)
        return replace(opts, **changes)


ENGINE_SERVICE = "cbengine"  # Inspect's openai-api/<service>/<model>: env CBENGINE_BASE_URL / CBENGINE_API_KEY


def drift_observations(sample: Any, judges: list[str], coherence: bool) -> list[tuple[str, int, dict[str, Any]]]:
    """A scored conversation as observations: its conversation-level values, and one per turn (pseudo-epochs
    1000 + turn; `per_prompt` clusters them by conversation, so intervals resample conversations). An errored
    sample counts against every key of every turn."""
    from .drift import conversation_keys

    turns = list((sample.metadata or {}).get("turns") or [])
    turn_keys = ["leak", "in_character", *(["coherent"] if coherence else []),
                 *[f"{m}:{j}" for j in judges for m in ("sarcastic", "personality")]]
    scores = [sc for sc in (sample.scores or {}).values() if isinstance(sc.value, dict)]
    sid = str(sample.id)
    if sample.error or not scores:
        return [(sid, sample.epoch, {k: None for k in conversation_keys(len(turns))})] + [
            (sid, 1000 + t, {k: None for k in turn_keys}) for t in range(1, len(turns) + 1)]
    out: list[tuple[str, int, dict[str, Any]]] = [(sid, sample.epoch, dict(scores[0].value))]
    for t, verdicts in enumerate((scores[0].metadata or {}).get("turns") or [], start=1):
        out.append((sid, 1000 + t, {k: verdicts.get(k) for k in turn_keys}))
    return out


def build_tasks(opts: ScoreOptions) -> list[Any]:
    from .drift import drift
    from .persona import CONDITIONS, PERSONA_TASKS
    from .tools import tools

    tasks_by_name = {**PERSONA_TASKS, "drift": drift, "tools": tools}
    for c in opts.conditions:
        if c not in CONDITIONS:
            raise UserError(f"--conditions: '{c}' is not one of {', '.join(CONDITIONS)}")
    for t in opts.tasks:
        if t not in tasks_by_name:
            raise UserError(f"--tasks: '{t}' is not one of {', '.join(tasks_by_name)}")
    tasks = []
    for condition in opts.conditions:
        for name in opts.tasks:
            args: dict[str, Any] = dict(character=opts.character, condition=condition, epochs=opts.epochs,
                                        max_tokens=opts.max_tokens, temperature=opts.temperature, seed=opts.seed,
                                        split=opts.split)
            if name in JUDGED_TASKS:
                args.update(judge=opts.judge, judge_cache=opts.judge_cache)
            tasks.append(tasks_by_name[name](**args))
    return tasks


def _run_persona(candidate: Candidate, opts: ScoreOptions, tasks: list[Any], log_dir: Path,
                 endpoint: Endpoint | None = None) -> list[Any]:
    """Every sample runs; failed model calls are retried in the run, and a log that still holds failed samples
    ends as an error, so the next run of the same command retries exactly those (finished ones are kept)."""
    from inspect_ai import eval_set
    from inspect_ai.model import GenerateConfig, ModelAPI, get_model

    from ..harness.providers import client_args

    # not memoised, and closed when the run ends: a local model leaves memory before the next one loads (API
    # clients that close asynchronously are left to Inspect). The reasoning effort rides on the model's config,
    # so every task and every provider (local: a chat-template variable; an endpoint: the request field) gets it.
    if endpoint is not None:  # the served model, named as the candidate (Inspect's cache keys on the name)
        config = GenerateConfig(reasoning_effort=opts.reasoning_effort,
                                max_connections=(opts.engine_config or EngineConfig()).max_concurrency)
        name = f"openai-api/{ENGINE_SERVICE}/{endpoint.model}"
        model = get_model(name, memoize=False, config=config, base_url=endpoint.base_url, api_key="local",
                          **client_args(name))
    else:
        model = get_model(candidate.model, memoize=False, config=GenerateConfig(reasoning_effort=opts.reasoning_effort),
                          **client_args(candidate.model) | candidate.model_args)
    redact_errors(model)  # an endpoint that echoes its key: masked before Inspect records the failed call
    try:
        _, logs = eval_set(
            tasks,
            log_dir=str(log_dir),
            model=model,
            max_samples=opts.max_samples,
            display=opts.display,  # type: ignore[arg-type]
            limit=opts.limit,
            retry_attempts=0,
            retry_immediate=False,  # no task-level retries; failed samples are retried by the next run
            retry_on_error=opts.sample_retries,
            max_retries=opts.max_retries,
            fail_on_error=True,
            continue_on_fail=True,
            log_level="warning",
            # logs of another eval set (an older harness, another model object) are left alone, not an error
            log_dir_allow_dirty=True,
        )
    finally:
        if type(model.api).aclose is ModelAPI.aclose:
            model.api.close()
        del model
        # a provider that echoes its key in an error body must not leave the key in the logs
        redact_files(p for p in log_dir.rglob("*") if p.is_file())
    unfinished = [log for log in logs if log.status not in ("success", "error")]
    if unfinished:
        raise UserError(f"scoring {candidate.id} did not finish: "
                        + "; ".join(f"{log.eval.task}: {log.status}" for log in unfinished)
                        + f" (logs in {log_dir}; rerun the same command to resume)")
    return list(logs)


def _decoding(opts: ScoreOptions, tasks: list[Any], candidate: Candidate,
              engine: dict[str, Any] | None = None) -> dict[str, Any]:
    temperature = tasks[0].config.temperature if tasks else 0.0
    out: dict[str, Any] = {"temperature": temperature, "seed": opts.seed, "max_tokens": opts.max_tokens,
                           "epochs": opts.epochs, "greedy": not temperature, "reasoning_effort": opts.reasoning_effort,
                           "template_preamble": _preamble(candidate, opts)}
    if engine is not None:  # which engine generated the replies (absent in older scorecards: in process)
        out["engine"] = engine
    if opts.capability:
        out["capability"] = {"data": opts.capability, "k": opts.capability_k,
                             "max_tokens": opts.capability_max_tokens, "reasoning_effort": opts.reasoning_effort}
    return out


def _preamble(candidate: Candidate, opts: ScoreOptions) -> str | None:
    """The chat template's text before the first user message under condition `none`, for a model whose template
    the harness renders (None for endpoints: their server renders it)."""
    from ..harness.loading import load_tokenizer, template_preamble, tokenizer_source
    from ..harness.providers import IN_MEMORY

    kwargs = {"reasoning_effort": opts.reasoning_effort} if opts.reasoning_effort else {}
    args = candidate.model_args
    try:
        if "in_memory" in args:
            return template_preamble(IN_MEMORY[args["in_memory"]].tokenizer, kwargs)
        if "path" in args:  # the tokenizer the provider generates with (an adapter's own, when it ships one)
            source = tokenizer_source(args["path"], args.get("adapter"))
            return template_preamble(load_tokenizer(source, bool(args.get("trust_remote_code"))), kwargs)
    except Exception as e:  # noqa: BLE001 - a record of the template; the generations are already scored
        return f"(not rendered: {type(e).__name__}: {e})"
    return None


def capability(candidate: Candidate, opts: ScoreOptions, out: Path, endpoint: Endpoint | None = None) -> dict[str, Any]:
    """The capability suite (AIME through lm-eval) on a candidate: the candidate's served engine, local model dirs,
    adapters at scale 1, or an OpenAI-compatible endpoint (`openai-api/NAME/MODEL`)."""
    from .capability import run_capability

    args: dict[str, Any] = dict(out_dir=out, data=opts.capability, k=opts.capability_k,
                                max_tokens=opts.capability_max_tokens, reasoning_effort=opts.reasoning_effort,
                                candidate_id=candidate.id, limit=opts.limit, extra_tasks=opts.capability_tasks,
                                temperature=0.0 if opts.capability_k == 1 else 0.7)
    if endpoint is not None:  # the same server the persona tasks used: lm-eval's local-chat-completions
        args.update(model=endpoint.model, base_url=endpoint.base_url, backend="local-chat-completions",
                    num_concurrent=(opts.engine_config or EngineConfig()).max_concurrency)
    elif candidate.kind == "model" and "path" in candidate.model_args:
        args["model"] = candidate.model_args["path"]
    elif candidate.kind == "adapter":
        if float(candidate.model_args.get("scale", 1.0)) != 1.0:
            raise UserError(f"capability suite: adapter {candidate.source} at scale "
                            f"{candidate.model_args['scale']:g}; merge it at that scale first (bake does)")
        args.update(model=candidate.model_args["path"], adapter=candidate.model_args["adapter"])
    elif candidate.kind == "inspect" and candidate.source.startswith("openai-api/"):
        _, name, model = candidate.source.split("/", 2)
        env = name.upper().replace("-", "_")
        if not os.environ.get(f"{env}_BASE_URL"):
            raise UserError(f"capability suite: set {env}_BASE_URL for {candidate.source}")
        args.update(model=model, base_url=os.environ[f"{env}_BASE_URL"], api_key=os.environ.get(f"{env}_API_KEY"))
    else:
        raise UserError(f"capability suite: cannot run on a {candidate.kind} candidate ({candidate.source}); "
                        "it needs a model folder, an adapter or an openai-api endpoint")
    return run_capability(**args)


def _monitor_direction(candidate: Candidate, opts: ScoreOptions) -> Any:
    """Checked before any generation: the profile reads, the candidate is weights we can read back, a judge rules."""
    from .monitor import load_direction

    if not opts.monitor:
        return None
    if not {"in_memory", "path"} & set(candidate.model_args):
        raise UserError(f"--monitor reads the candidate's activations: {candidate.source} is not a local model")
    if not {"personality", "drift"} & set(opts.tasks):
        raise UserError("--monitor compares with a judge's verdicts: score the personality or drift task too")
    return load_direction(opts.monitor, opts.monitor_layer)


def _monitor(candidate: Candidate, direction: Any, logs: list[Any], judge: str) -> dict[str, Any]:
    """The activation monitor on this run's replies: the candidate's own weights read them back."""
    from ..harness.loading import load_model
    from ..harness.providers import IN_MEMORY
    from .monitor import monitor_card

    args = candidate.model_args
    loaded = IN_MEMORY[args["in_memory"]] if "in_memory" in args else load_model(
        args["path"], adapter=args.get("adapter"), scale=float(args.get("scale", 1.0)),
        dtype=str(args.get("dtype", "auto")), trust_remote_code=bool(args.get("trust_remote_code")))
    return monitor_card(loaded, direction, logs, judge)


def servable(candidate: Candidate) -> bool:
    """A saved model folder (a merged checkpoint, a cached hub snapshot) can be served; an adapter at a scale, a
    model in memory, a responses file or an endpoint cannot (they keep their own path)."""
    path = candidate.model_args.get("path")
    return candidate.kind == "model" and isinstance(path, str) and (Path(path) / "config.json").is_file()


@contextlib.contextmanager
def engine_for(candidate: Candidate, opts: ScoreOptions, run_dir: Path,
               needed: bool = True) -> Iterator[tuple[Endpoint | None, dict[str, Any] | None]]:
    """The candidate's engine for the whole run: (endpoint, its scorecard record). One server scores every task and
    AIME, then stops before the next model loads. (None, record) where the harness generates in process; (None,
    None) for candidates that are endpoints or files."""
    if opts.engine not in ENGINES:
        raise UserError(f"--engine {opts.engine!r}: use one of {', '.join(ENGINES)}")
    if candidate.kind in ("responses", "inspect"):
        yield None, None
        return
    config = opts.engine_config or EngineConfig()
    knobs = config.knobs() | {"name": opts.engine}
    if opts.engine == "inprocess" or not servable(candidate):
        why = "asked for" if opts.engine == "inprocess" else (
            "a model in memory" if "in_memory" in candidate.model_args else
            "an adapter at a scale (a merged checkpoint is served)")
        yield None, {"name": "inprocess", "reason": why, "knobs": knobs, "startup_s": 0.0, "command": None,
                     "devices": opts.devices}
        return
    path = candidate.model_args["path"]
    name, reason = choose_engine(opts.engine, path, opts.devices)
    if name == "inprocess" or not needed:
        yield None, {"name": "inprocess", "reason": reason if needed else "nothing to generate", "knobs": knobs,
                     "startup_s": 0.0, "command": None, "devices": opts.devices}
        return
    served = candidate.model.split("/", 1)[1]  # the candidate id with its content fingerprint
    effort = {"reasoning_effort": opts.reasoning_effort} if opts.reasoning_effort else None
    env_names = [f"{ENGINE_SERVICE.upper()}_BASE_URL", f"{ENGINE_SERVICE.upper()}_API_KEY"]
    saved = {k: os.environ.get(k) for k in env_names}
    with serve(path, engine=name, config=config, served_name=served, chat_template_kwargs=effort,
               trust_remote_code=bool(candidate.model_args.get("trust_remote_code")),
               dtype=str(candidate.model_args.get("dtype", "auto")), log_dir=run_dir / "engine",
               devices=opts.devices) as endpoint:
        endpoint.reason = reason
        os.environ[env_names[0]], os.environ[env_names[1]] = endpoint.base_url, "local"
        try:
            yield endpoint, endpoint.record()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def judge_record(judge: Judge, pack: Character) -> dict[str, Any]:
    """Who judged, under which rubric, and how far to trust it: its own cross-validation (the embedded judge)
    and its validity card (computed on the spot for the embedded judge; for an LLM judge, the one `calibrate`
    stored, or a card saying it was never validated)."""
    inner = getattr(judge, "inner", judge)
    embedded = not getattr(inner, "gives_coherence", False)
    return {"name": judge.name, "id": judge.id, "rubric_version": judge.rubric_version,
            "training": getattr(inner, "calibration", None),
            "validity": card_for(inner, pack, compute_if_missing=embedded)}


def _generate(candidate: Candidate, opts: ScoreOptions, tasks: list[Any], log_dir: Path, run_dir: Path,
              endpoint: Endpoint | None) -> tuple[list[Any], list[MetricRow], dict[str, Any] | None]:
    """Everything that needs the candidate's replies, while its engine runs: the Inspect tasks, then AIME."""
    from ..serving.engine import answers

    logs = _run_persona(candidate, opts, tasks, log_dir, endpoint) if tasks else []
    if opts.capability and endpoint is not None and not answers(endpoint):
        # the server died during the persona tasks: their failed samples are in the logs (errors in n); lm-eval
        # would only crash on it
        raise UserError(f"engine {endpoint.engine} for {candidate.id} stopped during scoring (log: {endpoint.log}); "
                        "rerun the same command: finished samples are kept")
    cap = capability(candidate, opts, run_dir / "capability", endpoint) if opts.capability else None
    return logs, [], cap


def score_candidate(candidate: Candidate, opts: ScoreOptions) -> tuple[Scorecard, Path]:
    """Run the suite on one candidate and write `<out>/<candidate id>/scorecard.json` beside its Inspect logs."""
    from inspect_ai.log import read_eval_log

    if opts.capability and "none" not in opts.conditions:  # its rows would be under a condition the card lacks
        raise UserError(f"the capability suite runs under condition none, which --conditions "
                        f"({','.join(opts.conditions)}) leaves out: add none, or score capability on its own")
    pack = load_character(opts.character)
    judges = build_judges(opts.judge, pack, use_cache=False) if JUDGED_TASKS & set(opts.tasks) else []
    run_dir = opts.out / candidate.id
    log_dir = run_dir / "logs"
    started = time.monotonic()
    agreement: list[dict[str, Any]] = []
    truncated: dict[str, int] = {}
    sample_values: dict[str, dict[str, dict[str, list[float | None]]]] = {}
    examples: dict[str, dict[str, str]] = {}
    logs: list[Any] = []
    tasks = build_tasks(opts) if opts.tasks else []
    if candidate.kind == "responses":  # its schema, and a reply per user turn of each sample, before any generation
        from ..harness.providers import check_replies

        check_replies(candidate.model_args["file"], pack, opts.tasks, opts.split)
    direction = _monitor_direction(candidate, opts)
    # one engine for every generation of this candidate (persona tasks, then AIME), stopped when they are done
    with engine_for(candidate, opts, run_dir, needed=bool(tasks or opts.capability)) as (endpoint, engine):
        logs, rows, cap = _generate(candidate, opts, tasks, log_dir, run_dir, endpoint)
    judge_names = [j.name for j in judges]
    llm_names = [j.name for j in judges if getattr(j, "gives_coherence", False)]
    failed_samples: dict[str, int] = {}
    for header in logs:
        log = read_eval_log(header.location)
        task = task_short_name(log.eval.task)
        condition = str(log.eval.task_args.get("condition", "none"))
        keys = task_keys(task, judge_names, llm_names, "judge" in pack.files) if task != "drift" else []
        samples = []
        # a harmony model (GPT-OSS) can stop before its final channel: its rate of that is a metric of every task
        harmony = any(s.output and "raw" in (s.output.metadata or {}) for s in log.samples or [])
        for s in log.samples or []:
            scored = [sc.value for sc in (s.scores or {}).values() if isinstance(sc.value, dict)]
            cut = int(bool(s.output and (s.output.metadata or {}).get("truncated")))
            if task == "drift":  # a conversation: its own keys, and one observation per turn for pooled rates
                samples += drift_observations(s, judge_names, "judge" in pack.files)
                if s.error or not scored:
                    failed_samples[f"{task}/{condition}"] = failed_samples.get(f"{task}/{condition}", 0) + 1
            elif s.error or not scored:  # a failed model call counts against every metric of its task
                samples.append((str(s.id), s.epoch, {k: None for k in keys} | ({"truncated": None} if harmony else {})))
                failed_samples[f"{task}/{condition}"] = failed_samples.get(f"{task}/{condition}", 0) + 1
            else:
                samples += [(str(s.id), s.epoch, v | {"truncated": cut} if harmony else v) for v in scored]
            if cut:
                truncated[f"{task}/{condition}"] = truncated.get(f"{task}/{condition}", 0) + 1
        values = per_prompt(samples)
        rows.extend(metric_rows(values, task, condition))
        sample_values[f"{task}/{condition}"] = values
        if task == "identity":
            examples[f"{task}/{condition}"] = {str(s.id): s.output.completion for s in log.samples or []
                                               if s.epoch == 1 and s.output}
        if task == "personality" and len(judge_names) > 1:
            agreement.extend(judge_agreement(samples, task, condition, judge_names))
        if task == "math_probes" and llm_names:
            agreement.extend(judge_agreement(samples, task, condition, ["rule", *llm_names], metric="math"))
    monitored = _monitor(candidate, direction, logs, judge_names[0]) if direction is not None else None
    if cap is not None:
        rows.extend(MetricRow(**{k: r.get(k) for k in MetricRow.__dataclass_fields__}) for r in cap["rows"])
        sample_values[f"capability/{cap['condition']}"] = cap["per_problem"]
        for r in cap["rows"]:
            if r.get("truncated"):
                truncated[f"capability/{r['metric']}"] = int(r["truncated"])
    elapsed = time.monotonic() - started
    order = {name: i for i, name in enumerate(TASKS)}
    conds = list(opts.conditions)
    rows.sort(key=lambda r: (conds.index(r.condition) if r.condition in conds else 99, order.get(r.task, 99),
                             r.metric, r.judge or ""))

    card = Scorecard(
        candidate=candidate.describe(),
        suite={"name": pack.slug, "character": pack.name,
               "version": pack.suite_version(opts.split, tuple(opts.conditions), tuple(opts.tasks)),
               "split": opts.split, "failed_samples": failed_samples,
               "tasks": list(opts.tasks) + (["capability"] if opts.capability else []),
               "conditions": list(opts.conditions)},
        judges=[judge_record(j, pack) for j in judges],
        decoding=_decoding(opts, tasks, candidate, engine),
        harness=harness_info() | {"rubric_version": rubric_version(pack)},
        metrics=rows,
        agreement=agreement,
        truncated=truncated,
        samples=sample_values,
        examples=examples,
        timings={"total_s": round(elapsed, 3)},
        monitor=monitored,
        logs=sorted(str(Path(h.location)) for h in logs) + ([str(run_dir / "capability")] if opts.capability else []),
        created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )
    path = run_dir / "scorecard.json"
    card.write(path)
    return card, path
