"""Starting a bake's ranks with `accelerate launch`, reading why a launch failed, and being one rank."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from ...harness.errors import UserError
from ..recipe import Recipe, recipe_from
from .collective import parallel_kind

CONFIGS = Path(__file__).parent / "configs"  # the shipped accelerate configs, one per strategy
FAILED = "character-baker rank"  # how a rank's one-line failure starts in the launch log
SPEC = "launch.json"  # what the ranks are told: the recipe's table and where it came from


def config_file(recipe: Recipe) -> Path:
    """The accelerate config the ranks run under: the recipe's own, else the strategy's shipped one."""
    d = recipe.distributed
    return Path(d.accelerate_config) if d.accelerate_config else CONFIGS / f"{d.strategy}.yaml"


def launch_command(recipe: Recipe, spec: Path, port: int) -> list[str]:
    """`accelerate launch` for the recipe's ranks on this node (the config says the rest: strategy, sharding)."""
    d = recipe.distributed
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config_file(recipe)),
           "--num_processes", str(d.processes), "--num_machines", str(d.nodes), "--main_process_port", str(port)]
    return [*cmd, "-m", "character_baker.bakers.distributed", str(spec)]


def launch_env() -> dict[str, str]:
    """The ranks' environment. Without a GPU, ACCELERATE_USE_CPU makes them gloo ranks on the CPU (the tests; a
    CPU box): accelerate's `--cpu` flag would start one process, not a group."""
    import torch

    env = dict(os.environ)
    if not torch.cuda.is_available():
        env["ACCELERATE_USE_CPU"] = "true"
    return env


def expected_kind(recipe: Recipe) -> str:
    """What the accelerate config asks of the Trainer ("MULTI_GPU", "FSDP", "DEEPSPEED"; "MULTI_CPU" for DDP on
    a CPU), read by accelerate's own loader; refused here when this box cannot run it."""
    import importlib.util

    import torch
    from accelerate.commands.config.config_args import load_config_from_file

    path = config_file(recipe)
    try:
        kind = str(load_config_from_file(str(path)).distributed_type.value)
    except Exception as e:  # accelerate raises what its parser meets: a one-line error names the file
        raise UserError(f"{path}: not an accelerate config ({type(e).__name__}: {e})") from None
    if kind in ("FSDP", "DEEPSPEED") and not torch.cuda.is_available():
        raise UserError(f"{recipe.path}: [distributed] {kind} (from {path.name}): accelerate shards a model over GPU "
                        "ranks only; on a CPU use strategy = \"ddp\"")
    if kind == "DEEPSPEED" and importlib.util.find_spec("deepspeed") is None:
        raise UserError(f"{recipe.path}: [distributed] DeepSpeed ZeRO-3 needs the `deepspeed` package (pip install "
                        "deepspeed) on this box")
    return "MULTI_CPU" if kind == "MULTI_GPU" and not torch.cuda.is_available() else kind


def check_kind(trainer: Any, expected: str) -> None:
    """A rank's Trainer must run what the config asked for: accelerate silently falls back to plain DDP when it
    cannot shard (on a CPU), and a bake that was meant to shard must not pass as one."""
    got = parallel_kind(trainer)
    if got != expected:
        raise UserError(f"the accelerate config asks for {expected}, but the Trainer runs {got}")


def train_in_ranks(recipe: Recipe, progress: bool = True) -> None:
    """Run the bake's profile and training as the recipe's ranks; returns when rank 0 has written `done.json`.
    A failed launch is a one-line `UserError` (which rank, its error, the log, where a rerun resumes)."""
    from ...serving.engine import free_port

    expected = expected_kind(recipe)
    train = recipe.output / "train"
    train.mkdir(parents=True, exist_ok=True)
    spec = train / SPEC
    spec.write_text(json.dumps({"raw": recipe.raw, "path": str(recipe.path), "base": recipe.base,
                                "progress": progress, "expected": expected}, default=str), encoding="utf-8")
    log = train / "launch.log"
    cmd = launch_command(recipe, spec, free_port())
    with log.open("w", encoding="utf-8") as sink:
        sink.write(" ".join(cmd) + "\n")
        sink.flush()
        # the ranks' stdout is the terminal's (rank 0's progress bars); their stderr (warnings, tracebacks) the log's
        process = subprocess.Popen(cmd, stdout=None, stderr=subprocess.PIPE, text=True, errors="replace",
                                   env=launch_env())
        copier = threading.Thread(target=_copy, args=(process.stderr, sink), daemon=True)
        copier.start()
        code = process.wait()
        copier.join(timeout=10)
    if code != 0:
        raise UserError(f"{failure(log.read_text(encoding='utf-8', errors='replace'))} (exit {code}; log: {log}); "
                        f"rerunning resumes from {getattr(last_checkpoint(train), 'name', None) or 'the start'}")
    if not (train / "done.json").is_file():
        raise UserError(f"the ranks exited without finishing training (log: {log})")


def _copy(stream: Any, sink: Any) -> None:
    for line in stream:
        sink.write(line)
        sink.flush()


def failure(log: str) -> str:
    """The one line that says why a launch failed: a rank's own error line, else the last exception a rank
    raised, else what accelerate's agent reported (a killed rank has no traceback of its own)."""
    lines = log.splitlines()
    own = [ln for ln in lines if FAILED in ln]
    if own:
        return own[0][own[0].index(FAILED):]
    raised = [ln.strip() for ln in lines  # exceptions the ranks raised (not the agent's own report of them)
              if re.match(r"^(\[rank\d+\]:\s*)?\w+(\.\w+)*(Error|Exception|Interrupt)\b", ln)
              and "ChildFailedError" not in ln]
    # torch's agent names the first failure under "Root Cause"; the ranks it stopped after are listed before it
    cause = log[log.index("Root Cause"):] if "Root Cause" in log else log
    agent = re.findall(r"rank\s*:\s*(\d+).*?\n\s*exitcode\s*:\s*(-?\d+)", cause)
    if agent:
        r, code = agent[0]
        why = f"killed by signal {-int(code)}" if int(code) < 0 else f"exit code {code}"
        # that rank's own exception (a killed rank has none: another rank's broken connection is not the cause)
        own_raised = [ln for ln in raised if ln.startswith(f"[rank{r}]:")] or [
            ln for ln in raised if not ln.startswith("[rank")]
        return f"rank {r} failed ({why})" + (f": {own_raised[-1]}" if own_raised else "")
    return f"a rank failed: {raised[-1]}" if raised else "the launch failed"


def last_checkpoint(train_dir: Path) -> Path | None:
    """The newest complete Trainer checkpoint (its trainer_state.json written), where a rerun resumes."""
    ckpts = [p for p in train_dir.glob("checkpoint-*") if (p / "trainer_state.json").is_file()]
    return max(ckpts, key=lambda p: int(p.name.split("-")[1])) if ckpts else None


# --- a rank -----------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """One rank: join the group accelerate set up, then profile and train with the recipe's baker."""
    args = sys.argv[1:] if argv is None else argv
    spec = json.loads(Path(args[0]).read_text(encoding="utf-8"))
    from accelerate import PartialState

    from ...harness.console import quiet_libraries
    from .. import get_baker

    state = PartialState()  # gloo on a CPU, NCCL on GPUs: the backend accelerate chose for this launch
    quiet_libraries()
    try:
        recipe = recipe_from(spec["raw"], Path(spec["path"]))
        recipe.base = spec["base"]  # as the round resolved it (a base_env, a relative path)
        baker = get_baker(recipe.baker)
        if not hasattr(baker, "train_ranks"):
            raise UserError(f"the {recipe.baker} baker cannot train as ranks ([distributed] is for LoRA bakers)")
        device = "cpu" if state.device.type == "cpu" else str(state.device)
        baker.train_ranks(recipe, device=device, progress=bool(spec["progress"]) and state.is_main_process,
                          parallel=spec["expected"])
    except UserError as e:
        print(f"{FAILED} {state.process_index}: {e}", file=sys.stderr, flush=True)
        return 2
    return 0
