"""Recipes: one TOML file says what to bake (base model, character, data, hyperparameters, output)."""

from __future__ import annotations

import hashlib
import math
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from ..harness.character import CONDITIONS, DEFAULT_TASKS, PACKS_DIR, TASKS
from ..harness.data import check_keys, read_toml
from ..harness.errors import UserError
from ..harness.loading import REASONING_EFFORTS
from ..judges.verdict import parse_judge_spec
from ..serving.engine import EngineConfig


@dataclass
class ProfileConfig:
    layers: list[int] | None = None  # None: the default rule (skip_first, every)
    skip_first: int = 2
    every: int = 2
    units: int = 32  # push units and pull units per layer
    selection: str = "multi"  # "multi" (across categories, as R5) or a category name ("math", as R4)
    anchor_units: int = 0  # reasoning units anchored to the base (high on math in both sets)
    batch_size: int = 8
    max_length: int = 512


MIN_REASONING_TOKENS = 16384  # AIME's new-token budget for a reasoning model (GPT-OSS, or any with an effort)


@dataclass
class TrainConfig:
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    targets: list[str] | None = None  # None: the architecture's default (q/k/v/o)
    # MoE: also LoRA the fused expert weights (dropout must be 0): "all" experts, or only those the profile picks
    # ("profile": [experts]); "none" (default). true / false are read as "all" / "none".
    expert_lora: str = "none"
    learning_rate: float = 2e-4
    max_steps: int = 200
    batch_size: int = 4
    grad_accum: int = 1
    max_length: int = 512
    save_steps: int = 50
    warmup_steps: int = 0
    seed: int = 0
    gradient_checkpointing: bool = False


@dataclass
class LossConfig:
    # push = pull = anchor = 0 switches the regulariser off: training is then exactly the `sft` baker's
    push: float = 0.1
    pull: float = 0.1
    anchor: float = 0.0
    explode_factor: float = 20.0  # stop when the loss exceeds this multiple of its early median
    beta: float = 0.1  # dpo's β (how far the preference may pull from the base); grpo's KL coefficient to the base


@dataclass
class ExpertsConfig:
    """MoE: the experts the profile picks per monitored layer, for router steering and expert-targeted LoRA:
    personality experts (routed to more on in-character replies) and assistant experts (more on assistant ones),
    each with a 95 % interval excluding 0 (docs/EXPERTS.md)."""

    per_layer: int = 2  # at most this many of each kind per layer
    category: str = ""  # "": pooled over the profiled categories; or one category's replies only


@dataclass
class SelectConfig:
    board: str = "skippy"
    limit: int | None = None  # first N prompts per task in the quick suite (None: all)
    max_tokens: int = 128


@dataclass
class ScoreConfig:
    """How a round scores the base and its candidates."""

    board: str = "skippy"
    conditions: list[str] = field(default_factory=lambda: ["none", "character", "assistant", "break"])
    # the persona suite; add "drift" (multi-turn conversations) or "tools" (household tool calls) to score them too
    tasks: list[str] = field(default_factory=lambda: list(DEFAULT_TASKS))
    # scored on the base and the round's chosen candidate only, besides the above (they cost more per model):
    # e.g. chosen_tasks = ["drift"], chosen_conditions = ["json"] (wrapped prompts, harness/character.WRAPPERS)
    chosen_tasks: list[str] = field(default_factory=list)
    chosen_conditions: list[str] = field(default_factory=list)
    judge: str | None = None  # None: $CHARACTER_BAKER_JUDGE, else the classifier
    max_tokens: int = 512
    epochs: int = 1
    limit: int | None = None
    batch_size: int = 8
    capability: bool = False  # AIME (and any lm-eval tasks) through lm-eval
    capability_data: str = "aime24"  # aime24 | aime25 | a local JSONL {id, problem, answer}
    capability_tasks: list[str] = field(default_factory=list)  # extra lm-eval tasks, e.g. ["gsm8k"]
    capability_k: int = 1
    capability_max_tokens: int = 4096
    reasoning_effort: str | None = None  # GPT-OSS: low | medium | high


@dataclass
class Preconditions:
    gpu: bool = False
    gpu_memory_gb: float = 0.0
    judge_gpu_memory_gb: float = 0.0  # a judge model served on the same GPU as the candidates (0: elsewhere)


STRATEGIES = ("ddp", "fsdp", "zero3")  # the shipped accelerate configs: bakers/accelerate/<strategy>.yaml


@dataclass
class DistributedConfig:
    """Training past one process (docs/SCALING.md). With processes > 1 the bake's profile and training run under
    `accelerate launch` with the strategy's shipped config (or `accelerate_config`, a file of your own); the
    choice on dev, the merges and the scoring run in the round's own process afterwards."""

    processes: int = 1  # ranks in all, one per GPU (gloo ranks on a CPU)
    strategy: str = "ddp"  # ddp | fsdp | zero3 (DeepSpeed ZeRO stage 3)
    nodes: int = 1  # machines; more than one: each runs the round with its own accelerate config (SCALING.md)
    gpu_memory_gb: float = 80.0  # each rank's card: the per-rank memory plan is checked against it
    accelerate_config: str = ""  # an accelerate config file instead of the shipped one (relative: to the recipe)


@dataclass
class Estimate:
    """What the plan prints; the preflight compares gpu_memory_gb with the free memory."""

    memory_gb: float = 0.0
    hours: float = 0.0


@dataclass
class Recipe:
    path: Path
    round: str
    baker: str
    character: str
    base: str
    architecture: str = "auto"
    dtype: str = "auto"
    trust_remote_code: bool = False
    output: Path = Path("runs/bake")
    profile: ProfileConfig = field(default_factory=ProfileConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    experts: ExpertsConfig = field(default_factory=ExpertsConfig)
    select: SelectConfig = field(default_factory=SelectConfig)
    score: ScoreConfig = field(default_factory=ScoreConfig)
    preconditions: Preconditions = field(default_factory=Preconditions)
    estimate: Estimate = field(default_factory=Estimate)
    build: str | None = None  # "tiny-assistant": the demo builds its own base model (cached) if absent
    scales: list[float] = field(default_factory=lambda: [0.5, 1.0, 1.5])
    character_data: str | None = None  # override the pack's in-character pairs
    antipole_data: str | None = None
    # the serving engine of every scoring generation ([engine]; serving/engine.py): the choice on dev, the eval scores
    engine: EngineConfig = field(default_factory=EngineConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    # the bakers' own tables ([steer], [router], [grpo], a plug-in's): table name -> its BakerSettings, filled
    tables: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)

    def board_file(self, section: str) -> Path:
        """The board.toml that `[score]` or `[select]` names (`board_file` says where it is looked for)."""
        return board_file(self.path, self.score.board if section == "score" else self.select.board)

    def hash(self) -> str:
        """What the outputs depend on: the recipe's content (not its path)."""
        return hashlib.sha256(repr(sorted(_flatten(self.raw).items())).encode()).hexdigest()[:12]


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _section(cls: type, raw: Any, where: str) -> Any:
    if raw is None:
        return cls()
    if not isinstance(raw, dict):
        raise UserError(f"{where}: expected a table")
    known = cls.__dataclass_fields__
    check_keys(raw, known, where)
    for key, value in raw.items():
        default = getattr(cls(), key)
        wrong_bool = isinstance(value, bool) and not isinstance(default, bool)
        if default is not None and (wrong_bool or not isinstance(value, type(default)) and not (
                isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool))):
            raise UserError(f"{where}.{key}: expected {type(default).__name__}, got {type(value).__name__}")
        if isinstance(default, list) and default and not all(isinstance(v, type(default[0])) for v in value):
            raise UserError(f"{where}.{key}: expected a list of {type(default[0]).__name__}")
    return cls(**raw)


TOP_KEYS = ("round", "baker", "character", "output", "model", "data", "profile", "train", "loss", "experts", "select",
            "merge", "score", "preconditions", "estimate", "engine", "distributed")
EXPERT_LORA = ("none", "all", "profile")
MODEL_KEYS = ("base", "base_env", "architecture", "dtype", "trust_remote_code", "build")


def _legacy_expert_lora(train: Any) -> Any:
    """`expert_lora = true / false` (the first recipes) means "all" / "none"."""
    if isinstance(train, dict) and isinstance(train.get("expert_lora"), bool):
        return {**train, "expert_lora": "all" if train["expert_lora"] else "none"}
    return train


def _local(base: str) -> str:
    """A base written as ./path or ../path is a folder relative to the working folder; anything else (an
    absolute path, a hub id) is kept as written."""
    if Path(base).is_absolute() or not base.startswith("."):
        return base
    return str((Path.cwd() / base).resolve())


def load_recipe(path: str | Path) -> Recipe:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such recipe")
    return recipe_from(read_toml(path, "recipe"), path)


def recipe_from(raw: dict[str, Any], path: Path) -> Recipe:
    """A recipe from its table; `path` is where relative paths in it are read from (the bake-off derives one
    recipe per baker from a round's table)."""
    tables = baker_tables()
    check_keys(raw, (*TOP_KEYS, *tables), str(path))
    for name in ("model", "data", "merge"):
        if not isinstance(raw.get(name, {}), dict):
            raise UserError(f"{path}: [{name}] must be a table")
    model = raw.get("model") or {}
    check_keys(model, MODEL_KEYS, f"{path}: [model]")
    check_keys(raw.get("data") or {}, ("character", "antipole"), f"{path}: [data]")
    check_keys(raw.get("merge") or {}, ("scales",), f"{path}: [merge]")
    for key in ("base", "base_env", "architecture", "dtype", "build"):
        if key in model and not isinstance(model[key], str):
            raise UserError(f"{path}: [model] {key} must be a string, got {type(model[key]).__name__}")
    if "trust_remote_code" in model and not isinstance(model["trust_remote_code"], bool):
        raise UserError(f"{path}: [model] trust_remote_code must be true or false")
    scales = (raw.get("merge") or {}).get("scales", [0.5, 1.0, 1.5])
    if not isinstance(scales, list) or not scales or not all(
            isinstance(x, (int, float)) and not isinstance(x, bool) and 0 < x <= 4 for x in scales):
        raise UserError(f"{path}: [merge] scales must be a non-empty list of numbers in (0, 4], got {scales!r}")
    base = model.get("base")
    env = model.get("base_env")
    if env and os.environ.get(env):
        base = os.environ[env]
    if not isinstance(base, str) or not base:
        raise UserError(f"{path}: [model] base is required (a local path or a hub id"
                        + (f", or set ${env}" if env else "") + ")")
    for key in ("round", "baker"):
        if not isinstance(raw.get(key), str):
            raise UserError(f"{path}: '{key}' is required (a string)")
    for key in ("character", "output"):
        if key in raw and not isinstance(raw[key], str):
            raise UserError(f"{path}: '{key}' must be a string")
    from ..harness.candidates import check_id

    check_id(raw["round"], f"{path}: round")
    data = raw.get("data") or {}
    recipe = Recipe(
        path=path, round=raw["round"], baker=raw["baker"], character=str(raw.get("character", "skippy")),
        base=_local(os.path.expanduser(base)), architecture=str(model.get("architecture", "auto")),
        dtype=str(model.get("dtype", "auto")), trust_remote_code=bool(model.get("trust_remote_code", False)),
        output=Path(os.path.expanduser(str(raw.get("output", f"runs/bake/{raw['round'].lower()}")))),
        profile=_section(ProfileConfig, raw.get("profile"), f"{path}: [profile]"),
        train=_section(TrainConfig, _legacy_expert_lora(raw.get("train")), f"{path}: [train]"),
        loss=_section(LossConfig, raw.get("loss"), f"{path}: [loss]"),
        experts=_section(ExpertsConfig, raw.get("experts"), f"{path}: [experts]"),
        select=_section(SelectConfig, raw.get("select"), f"{path}: [select]"),
        score=_section(ScoreConfig, raw.get("score"), f"{path}: [score]"),
        preconditions=_section(Preconditions, raw.get("preconditions"), f"{path}: [preconditions]"),
        estimate=_section(Estimate, raw.get("estimate"), f"{path}: [estimate]"), build=model.get("build"),
        scales=[float(x) for x in scales],
        character_data=data.get("character"), antipole_data=data.get("antipole"),
        engine=EngineConfig.from_table(raw.get("engine"), f"{path}: [engine]"),
        distributed=_section(DistributedConfig, raw.get("distributed"), f"{path}: [distributed]"), raw=raw,
        tables={name: _section(cls, raw.get(name), f"{path}: [{name}]") for name, cls in tables.items()},
    )
    for name in ("character_data", "antipole_data"):
        value = getattr(recipe, name)
        if value is not None:
            resolved = (path.parent / value) if not Path(value).is_absolute() else Path(value)
            if not resolved.is_file():
                raise UserError(f"{path}: [data] {name.split('_')[0]} = {value!r}: no such file")
            setattr(recipe, name, str(resolved))
    from .architectures import ARCHITECTURES

    if recipe.architecture != "auto" and recipe.architecture not in ARCHITECTURES:
        raise UserError(f"{path}: [model] unknown architecture '{recipe.architecture}' "
                        f"(known: auto, {', '.join(ARCHITECTURES)})")
    if recipe.profile.layers is not None and not all(isinstance(i, int) for i in recipe.profile.layers):
        raise UserError(f"{path}: [profile] layers must be a list of layer indices")
    if recipe.train.expert_lora not in EXPERT_LORA:
        raise UserError(f"{path}: [train] expert_lora = {recipe.train.expert_lora!r}: use "
                        + ", ".join(repr(x) for x in EXPERT_LORA))
    if recipe.experts.per_layer < 1:
        raise UserError(f"{path}: [experts] per_layer must be at least 1, got {recipe.experts.per_layer}")
    if recipe.train.expert_lora != "none" and recipe.train.lora_dropout != 0:
        raise UserError(f"{path}: [train] expert_lora needs lora_dropout = 0 (peft's ParamWrapper has no dropout)")
    reasoning = recipe.architecture == "gpt_oss" or recipe.score.reasoning_effort is not None
    if reasoning and recipe.score.capability and recipe.score.capability_max_tokens < MIN_REASONING_TOKENS:
        raise UserError(f"{path}: [score] capability_max_tokens = {recipe.score.capability_max_tokens}: a reasoning "
                        f"model thinks before it answers, and AIME cut short scores its budget, not its maths; "
                        f"give it at least {MIN_REASONING_TOKENS}")
    for key, values, allowed, empty_ok in (("tasks", recipe.score.tasks, TASKS, False),
                                           ("chosen_tasks", recipe.score.chosen_tasks, TASKS, True),
                                           ("conditions", recipe.score.conditions, CONDITIONS, False),
                                           ("chosen_conditions", recipe.score.chosen_conditions, CONDITIONS, True)):
        bad = [x for x in values if x not in allowed]
        if bad or not (values or empty_ok):
            raise UserError(f"{path}: [score] {key}: {bad[0] if bad else 'empty'!r} is not a list of "
                            f"{', '.join(allowed)}")
    d = recipe.distributed
    if d.strategy not in STRATEGIES:
        raise UserError(f"{path}: [distributed] strategy = {d.strategy!r}: use {', '.join(STRATEGIES)}")
    if d.processes < 1 or d.nodes < 1 or d.processes % d.nodes:
        raise UserError(f"{path}: [distributed] processes = {d.processes}, nodes = {d.nodes}: need processes >= 1 "
                        "and a whole number of processes per node")
    if d.processes > 1 and recipe.baker in ("steer", "router"):
        raise UserError(f"{path}: [distributed] processes = {d.processes}: the {recipe.baker} baker trains nothing "
                        "(ranks are for the LoRA bakers)")
    if not 0 < d.gpu_memory_gb < 10_000:
        raise UserError(f"{path}: [distributed] gpu_memory_gb = {d.gpu_memory_gb!r}: expected a card's memory in GB")
    if d.accelerate_config:
        config = Path(d.accelerate_config).expanduser()
        config = config if config.is_absolute() else path.parent / config
        if not config.is_file():
            raise UserError(f"{path}: [distributed] accelerate_config = {d.accelerate_config!r}: no such file")
        d.accelerate_config = str(config.resolve())
    if recipe.score.reasoning_effort not in (None, *REASONING_EFFORTS):
        raise UserError(f"{path}: [score] reasoning_effort = {recipe.score.reasoning_effort!r}: "
                        f"use {', '.join(REASONING_EFFORTS[:-1])} or {REASONING_EFFORTS[-1]}")
    _check_values(recipe)
    for name, settings in recipe.tables.items():
        settings.check(recipe, f"{path}: [{name}]")
    _check_references(recipe)
    return recipe


def _check_values(recipe: Recipe) -> None:
    """Values no run can use, refused before anything runs: Trainer reads `max_steps = -5` as "train by epochs" and
    trained for hours; `limit = "all"` passed the type check (its default is None) and failed after the bake."""
    path, t = recipe.path, recipe.train
    for section, key, value in (("train", "max_steps", t.max_steps), ("train", "save_steps", t.save_steps),
                                ("train", "batch_size", t.batch_size), ("train", "grad_accum", t.grad_accum),
                                ("profile", "batch_size", recipe.profile.batch_size),
                                ("score", "batch_size", recipe.score.batch_size),
                                ("score", "epochs", recipe.score.epochs),
                                ("score", "max_tokens", recipe.score.max_tokens),
                                ("select", "max_tokens", recipe.select.max_tokens)):
        if value < 1:
            raise UserError(f"{path}: [{section}] {key} = {value}: must be at least 1")
    if not (math.isfinite(t.learning_rate) and t.learning_rate > 0):
        raise UserError(f"{path}: [train] learning_rate = {t.learning_rate!r}: must be a number above 0")
    for section, limit in (("score", recipe.score.limit), ("select", recipe.select.limit)):
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
            raise UserError(f"{path}: [{section}] limit = {limit!r}: must be a whole number of prompts >= 1 "
                            "(leave it out for all of them)")


def declared(group: str) -> dict[str, str]:
    """Entry-point name -> "module:attr" in `group`: the installed ones and, in a checkout whose package is not
    installed (`tox -e r6` plans before any install), those its pyproject.toml declares. Standard library only,
    like the plan."""
    from importlib.metadata import entry_points

    found = {ep.name: ep.value for ep in entry_points(group=group)}
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    try:
        project = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {})
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return found
    if project.get("name") == "character-baker":
        found = {**project.get("entry-points", {}).get(group, {}), **found}
    return found


def known_bakers() -> set[str]:
    """The bakers a recipe may name (entry-point group `character_baker.bakers`)."""
    from . import GROUP

    return set(declared(GROUP))


TABLES = "character_baker.recipe_tables"  # entry-point group: a baker's own recipe table -> its BakerSettings
S = TypeVar("S", bound="BakerSettings")


class BakerSettings:
    """A baker's own recipe table, declared by the baker's package: a dataclass subclassing this, registered under
    the entry-point group `character_baker.recipe_tables` with the table's name (pyproject.toml has the built-in
    ones: `[steer]`, `[router]`, `[grpo]`). The recipe fills it from that table, refusing unknown keys and wrongly
    typed values like every other table; the baker reads it with `TheSettings.of(recipe)`. Keep its module free of
    torch: the plan reads recipes before anything heavy is installed."""

    def check(self, recipe: Recipe, where: str) -> None:
        """Refuse, with a UserError starting with `where`, values no run can use (run when the recipe is read, so
        the dry run refuses them too)."""

    @classmethod
    def of(cls: type[S], recipe: Recipe) -> S:
        """This table as the recipe set it (its defaults where the recipe has no such table)."""
        return next((value for value in recipe.tables.values() if type(value) is cls), cls())


def baker_tables() -> dict[str, type]:
    """Table name -> the BakerSettings dataclass the installed bakers declare for it."""
    import importlib

    tables: dict[str, type] = {}
    for name, value in sorted(declared(TABLES).items()):
        module, _, attr = value.partition(":")
        try:
            cls = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as e:
            raise UserError(f"recipe table [{name}] = {value!r} (entry-point group {TABLES}): cannot load it: "
                            f"{e}") from None
        if name in TOP_KEYS or not (isinstance(cls, type) and issubclass(cls, BakerSettings)
                                    and hasattr(cls, "__dataclass_fields__")):
            raise UserError(f"recipe table [{name}] = {value!r} (entry-point group {TABLES}): "
                            + ("the recipe already has that table" if name in TOP_KEYS
                               else "not a dataclass subclassing bakers.recipe.BakerSettings"))
        tables[name] = cls
    return tables


def board_file(recipe_path: Path, board: str) -> Path:
    """Where a recipe's board resolves, as the round and checkpoint selection resolve it: beside the recipe, else
    as given, else under leaderboards/ (from the working folder)."""
    near = recipe_path.parent / board
    path = near.resolve() if near.exists() else Path(board) if Path(board).exists() else Path("leaderboards") / board
    return path / "board.toml" if path.is_dir() else path


def _check_references(recipe: Recipe) -> None:
    """What the recipe names must exist (baker, character pack, boards) and its judge must parse: each of these
    failed a real round only after the bake, while the dry run said nothing."""
    path = recipe.path
    bakers = known_bakers()
    if recipe.baker not in bakers:
        raise UserError(f"{path}: baker = {recipe.baker!r}: no such baker (known: {', '.join(sorted(bakers))})")
    pack = Path(recipe.character)
    pack = pack if pack.exists() else PACKS_DIR / recipe.character
    if not (pack / "character.toml" if pack.is_dir() else pack).is_file():
        known = sorted(p.name for p in PACKS_DIR.iterdir() if (p / "character.toml").is_file())
        raise UserError(f"{path}: character = {recipe.character!r}: no such pack or file (built-in packs: "
                        f"{', '.join(known)})")
    for section, board in (("score", recipe.score.board), ("select", recipe.select.board)):
        if not recipe.board_file(section).is_file():
            raise UserError(f"{path}: [{section}] board = {board!r}: no board.toml beside the recipe, at that path "
                            "or under leaderboards/")
    judge = recipe.score.judge
    if judge is not None:
        if not isinstance(judge, str):
            raise UserError(f"{path}: [score] judge must be a string, got {type(judge).__name__}")
        try:
            parse_judge_spec(judge)
        except UserError as e:
            raise UserError(f"{path}: [score] judge = {judge!r}: {str(e).removeprefix('--judge: ')}") from None
